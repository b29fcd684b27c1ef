"""The one error printer and guard of every `gatewatch` command.

Operators read command output in a terminal or in journald, where a traceback buries the one
line that matters. So an expected failure is printed as `error: <message>` on stderr and the
command exits with the code its exception class carries (`common.errors`: 1 runtime failure,
2 bad config or usage, 130 interrupted). Only a bug prints a traceback, unless the command is a
long-running service, which also turns a bug into one line (its traceback goes to the debug log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import typer
from typer.exceptions import TyperException

from common.errors import EXIT_FAILURE, EXIT_INTERRUPTED, GatewatchError

T = TypeVar("T")
log = logging.getLogger(__name__)


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    """Print `error: <message>` on stderr and return the exit to raise. Colour only on a terminal
    (typer's echo strips it elsewhere), so logs and tests see plain text."""
    typer.echo(f"{typer.style('error:', fg='red', bold=True)} {message}", err=True)
    return typer.Exit(code)


def guarded(fn: Callable[[], T], *, catch_all: bool = False) -> T:
    """Run a command body, turning a `GatewatchError` (and Ctrl-C) into one line and its exit code.

    With `catch_all` (services, whose output goes to journald) any other exception is one line too.
    """
    try:
        return fn()
    except (typer.Exit, typer.Abort, TyperException):
        raise  # the command's own exit or a usage error typer reports itself
    except GatewatchError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_INTERRUPTED) from None
    except Exception as exc:
        if not catch_all:
            raise
        log.debug("unexpected failure", exc_info=True)
        raise fail(f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILURE) from None
