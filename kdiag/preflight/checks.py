"""One check's result, and what a list of them adds up to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kdiag.errors import EXIT_ENVIRONMENT, EXIT_OK

Status = Literal["ok", "fail", "warn", "unknown", "skipped"]


@dataclass
class Check:
    """A line of doctor's table: what was checked, how it went, and what to do about it.

    ``blocking``: a ``fail`` here stops a run (exit 3); a non-blocking one is a warning about
    something only some steps need.
    """

    name: str
    status: Status
    detail: str = ""
    fix: str = ""
    blocking: bool = True
    needed_by: list[str] = field(default_factory=list)

    @property
    def refuses(self) -> bool:
        """Whether this check stops a run."""
        return self.status == "fail" and self.blocking

    def line(self, fix: bool = True) -> str:
        """The check as one line (what ``kdiag run`` prints when it refuses)."""
        text = f"{self.name}: {self.detail}" if self.detail else self.name
        if self.needed_by:
            text += f" (needed by {listed(self.needed_by)})"
        return f"{text}; {self.fix}" if self.fix and fix else text

    def to_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return {"check": self.name, "status": self.status, "detail": self.detail,
                "fix": self.fix, "blocking": self.blocking, "needed_by": list(self.needed_by)}


def listed(items: list[str], most: int = 3) -> str:
    """``a, b, c and 2 more``."""
    shown = ", ".join(items[:most])
    return f"{shown} and {len(items) - most} more" if len(items) > most else shown


def exit_code(checks: list[Check]) -> int:
    """0 when nothing blocks a run, else 3 (an environment problem)."""
    return EXIT_ENVIRONMENT if any(c.refuses for c in checks) else EXIT_OK
