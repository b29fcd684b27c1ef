"""The project's one exception root and the exit code each kind of failure maps to.

Every error raised on purpose derives from `GatewatchError` and carries its exit code, so the
one CLI guard (`common.cli.guarded`) can print any of them as a single `error:` line and exit
with the documented code, whichever package raised it.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import ValidationError

#: the command did what it was asked
EXIT_OK = 0
#: a runtime failure: a missing model or video, a broker that refuses, a database that errs
EXIT_FAILURE = 1
#: bad input: an invalid config file or command-line argument; fix the input, then run again
EXIT_USAGE = 2
#: stopped by Ctrl-C (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130


class GatewatchError(Exception):
    """Base of every error gatewatch raises on purpose; the message is one line an operator can act on."""

    exit_code: ClassVar[int] = EXIT_FAILURE


class UsageError(GatewatchError):
    """A command-line argument that cannot work (wrong file type, a time past the end of a clip)."""

    exit_code: ClassVar[int] = EXIT_USAGE


class ConfigError(GatewatchError):
    """A config file or config value that cannot be used; `errors` holds one "where: what" line each.

    One format for edge and server alike: a single problem is one line (`unit.yaml: lanes.0.id:
    ...`); several are a count on the first line and one indented line per problem, so the
    `error:` line stays the first and only one while every path is still reported.
    """

    exit_code: ClassVar[int] = EXIT_USAGE

    def __init__(self, errors: str | list[str], source: str | None = None) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.source = source
        super().__init__(self._format())

    @classmethod
    def from_validation(cls, exc: ValidationError, source: str | None = None) -> ConfigError:
        """Every pydantic error as `dotted.path: message`, in pydantic's order."""
        return cls([f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()], source)

    def _format(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        if len(self.errors) == 1:
            return prefix + self.errors[0]
        return f"{prefix}{len(self.errors)} errors\n" + "\n".join(f"  {p}" for p in self.errors)
