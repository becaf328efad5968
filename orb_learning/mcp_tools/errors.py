"""How a failed call reaches the agent: one line saying what is wrong, and whether the same
call may succeed later (the library's ``transient`` flag), never a traceback.

The SDK already turns a :class:`ToolError` into an error result carrying its message, and
anything else into a bare "Error executing tool NAME" (the traceback stays in the server's
log). :func:`explain` gives the library's errors, and the SDK's argument validation errors
(several lines of pydantic), their one-line message.
"""

from __future__ import annotations

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from pydantic import ValidationError

from ..errors import OrbLearningError, driver_error, translate

TRANSIENT = "transient: the same call may succeed later"
MAX_INPUT = 60
"""Characters of a rejected value quoted in a message."""


def explain(name: str, exc: ToolError) -> ToolError | None:
    """The one-line error for ``exc`` raised by tool ``name``; None to leave it as it is (a
    crash: the agent sees no more than the SDK's generic message)."""
    cause = exc.__cause__
    if isinstance(exc, UnexpectedToolError):
        error = library_error(cause)
        if error is None:
            return None
        return ToolError(f"Error executing tool {name}: {describe(error)}")
    if isinstance(cause, ValidationError):
        return ToolError(f"Error executing tool {name}: invalid arguments: {one_line(cause)}")
    return None


def library_error(exc: BaseException | None) -> OrbLearningError | None:
    """The library's error behind ``exc``: itself, or a driver error translated."""
    if exc is None or isinstance(exc, OrbLearningError):
        return exc
    cause = driver_error(exc)
    return None if cause is None else translate(cause)


def describe(error: OrbLearningError) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{text} ({TRANSIENT})" if error.transient else text


def one_line(exc: ValidationError) -> str:
    """Each problem as ``field: message (got value)``, joined with semicolons."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "value"
        problem = f"{where}: {error['msg']}"
        if error["type"] != "missing":
            shown = repr(error.get("input"))
            cut = shown if len(shown) <= MAX_INPUT else f"{shown[: MAX_INPUT - 3]}..."
            problem += f" (got {cut})"
        problems.append(problem)
    return " ".join("; ".join(problems).split())
