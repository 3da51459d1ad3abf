"""Errors the user sees, and the CLI exit code each one maps to.

Every error kdiag raises on purpose derives from :class:`KdiagError`; the CLI turns it into one
clear message and its exit code. Anything else escaping is a bug (and is still reported without a
traceback unless ``KDIAG_DEBUG`` is set).
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Location:
    """A place in a file; line and column are 1-based."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class KdiagError(Exception):
    """Base of all errors shown to the user; ``exit_code`` is the CLI's exit status."""

    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a runbook, with where it is."""

    message: str
    location: Location | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class RunbookError(KdiagError):
    """An invalid runbook, params or values file (exit 2). Carries every problem found."""

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class UsageError(KdiagError):
    """Wrong command-line usage (exit 2)."""

    exit_code = EXIT_INVALID


class EnvironmentProblem(KdiagError):
    """The environment is not usable: cluster unreachable, RBAC denied, pod gone, not root (exit 3).

    The message is one line naming the cause.
    """

    exit_code = EXIT_ENVIRONMENT


class TargetError(EnvironmentProblem):
    """The target cannot be reached or used: not root, no such PID, pod gone, manager did not
    start (CLI exit code 3). The message is one line naming the cause."""


class ManagerError(KdiagError):
    """A manager call failed (bad request, the target refused, ...)."""

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code


class ManagerUnavailable(ManagerError):
    """The manager cannot be reached or refused the token (environment error, exit 3)."""

    exit_code = EXIT_ENVIRONMENT


class Interrupted(KdiagError):
    """The user interrupted the run (Ctrl-C, or quit in step mode) (exit 130)."""

    exit_code = EXIT_INTERRUPTED
