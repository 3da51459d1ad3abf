"""How the console looks: a tag, symbol and style per status, the live region of running
steps, colours per output source, and the small line helpers the console reporter uses."""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import IO, Literal

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.spinner import Spinner
from rich.text import Text

from kdiag.engine.events import StepRef
from kdiag.reports.record import RunRecord
from kdiag.reports.text import first_line, format_duration, terminal_line

Mode = Literal["auto", "live", "lines", "plain"]
Segment = tuple[str, str]
"""A piece of a line and its rich style (ignored in plain mode)."""

# Tag (plain mode), symbol (rich modes) and style per status.
PLAIN_TAG = {
    "passed": "[ ok ]",
    "failed": "[FAIL]",
    "skipped": "[SKIP]",
    "ignored": "[IGNR]",
    "error": "[ERR ]",
    "incomplete": "[INCO]",
    "running": "[INCO]",
}
LOST_TAG = "[LOST]"
"""Plain-mode tag of a line announcing that background work or the target was lost."""
SYMBOL = {
    "passed": "✔",
    "failed": "✘",
    "skipped": "↷",
    "ignored": "!",
    "error": "⚠",
    "incomplete": "…",
    "running": "…",
}
STYLE = {
    "passed": "green",
    "failed": "bold red",
    "skipped": "yellow",
    "ignored": "yellow",
    "error": "bold magenta",
    "incomplete": "magenta",
    "running": "magenta",
    "interrupted": "bold magenta",
    "invalid": "bold red",
}
INFO = "\N{INFORMATION SOURCE}"
# Streams that need no label: the step's own stdout/stderr.
PLAIN_STREAMS = frozenset({"stdout", "stderr", "log", ""})


@dataclass
class Running:
    """A step shown in the live region."""

    ref: StepRef
    attempt: int
    started: float
    spinner: Spinner


class LiveView:
    """The live region: one spinner line per running step.

    Rendered from rich's refresh thread. It reads an immutable tuple the reporter swaps in, and
    takes no lock: the reporter prints (which needs rich's live lock) while holding its own, so
    taking the reporter's lock here could deadlock.
    """

    def __init__(self) -> None:
        self.entries: tuple[Running, ...] = ()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        now = time.monotonic()
        lines = []
        for e in self.entries:
            text = Text.assemble(
                (e.ref.qualified_name, "bold"),
                ("  " + format_duration(now - e.started), "dim"),
                (f"  attempt {e.attempt}" if e.attempt > 1 else "", "yellow"),
            )
            e.spinner.update(text=text)
            lines.append(e.spinner)
        yield Group(*lines)


def pick_mode(console: Console, no_color: bool, interactive: bool) -> Mode:
    """``plain`` off a terminal or with NO_COLOR; ``lines`` in step mode; else ``live``."""
    if not console.is_terminal or console.is_dumb_terminal or no_color:
        return "plain"
    return "lines" if interactive else "live"


def verdict(run: RunRecord) -> list[Segment]:
    totals = run.totals
    counts = ", ".join(f"{totals[k]} {k}" for k in totals if k != "steps" and totals[k])
    status = run.status
    text = f"{status.upper()}: {counts or 'no steps'} in {format_duration(run.duration)}"
    if run.message:
        text += f" — {first_line(run.message, 300)}"
    return [(text, STYLE.get(status, "bold"))]


SOURCE_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_cyan",
                  "bright_magenta", "bright_green", "bright_yellow", "bright_blue")


def source_colour(stream: str) -> str:
    """A stable colour per output source, so that lines of one pod/container stand out."""
    if stream in PLAIN_STREAMS:
        return "cyan"
    return SOURCE_COLOURS[zlib.crc32(stream.encode()) % len(SOURCE_COLOURS)]


def can_encode(stream: IO[str], sample: str) -> bool:
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        sample.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def sanitize(text: str) -> str:
    return "\n".join(terminal_line(line) for line in text.split("\n"))


def shorten(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
