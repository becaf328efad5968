"""The image's HEALTHCHECK: is the server this container runs answering HTTP?

One image runs every role, so the check reads the role from the running ``orb-learning``
command line (parsed by the CLI's own parser, defaults included): ``serve`` (OTLP) and
``mcp --http`` are asked for ``/`` and healthy on any HTTP answer, even 404; the other
commands (``refresh``, ``db upgrade``, ``mcp`` over stdio...) serve nothing and are healthy
while they run. ``python healthcheck.py ARGS...`` checks ARGS instead of the processes.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT = 4.0  # seconds; the image's HEALTHCHECK gives it 5
ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def running_command() -> list[str] | None:
    """The arguments of the first ``orb-learning`` process (PID 1, or its child under init)."""
    pids = sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except (OSError, UnicodeDecodeError):
            continue
        for index, arg in enumerate(argv[:2]):
            if Path(arg).name == "orb-learning":
                return [a for a in argv[index + 1 :] if a]
    return None


def served_address(argv: list[str]) -> tuple[str, int] | None:
    """Where the command listens for HTTP, or None when it serves nothing."""
    from orb_learning.cli import build_parser

    args = build_parser().parse_args(argv)
    address: tuple[str, int] | None = None
    if args.command == "serve":
        address = args.otlp
    elif args.command == "mcp":
        address = args.http
    return address


def answers(host: str, port: int) -> str | None:
    """None if an HTTP server answers at host:port, else what went wrong."""
    host = ANY_ADDRESS.get(host, host)
    url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with opener.open(url, timeout=TIMEOUT):
            return None
    except urllib.error.HTTPError:
        return None  # an answer: the server is up, whatever it thinks of GET /
    except OSError as exc:
        return f"{url}: {exc}"


def main(argv: list[str]) -> int:
    command = argv or running_command()
    if command is None:
        print("no orb-learning process here: nothing to check")
        return 0
    address = served_address(command)
    if address is None:
        print(f"orb-learning {' '.join(command)}: serves nothing, healthy while it runs")
        return 0
    problem = answers(*address)
    print(problem or f"answering on port {address[1]}")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
