"""Small text and file helpers shared by the reporters (standard library only, cheap to import)."""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

# CSI (colour, cursor) and OSC (titles, hyperlinks) sequences a command may print; they are
# presentation, not content, and turn into garbage in files and CI logs.
_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
# Control characters other than tab and newline (carriage returns are handled by the caller).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Characters XML 1.0 cannot carry at all, not even escaped (lone surrogates included).
_XML_INVALID_RE = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def strip_ansi(text: str) -> str:
    """Remove ANSI escape sequences (colours, cursor movement) from ``text``."""
    return _ANSI_RE.sub("", text)


def terminal_line(line: str) -> str:
    """What a terminal would show for one line: the text after the last ``\\r``, no controls."""
    line = strip_ansi(line)
    if "\r" in line:
        # Progress bars redraw the line with \r; keep only the final state (a trailing \r from
        # CRLF line endings leaves the text before it).
        parts = [p for p in line.split("\r") if p]
        line = parts[-1] if parts else ""
    return _CONTROL_RE.sub("", line)


def xml_safe(text: str) -> str:
    """``text`` without ANSI sequences and without characters XML 1.0 cannot represent.

    Line ends become ``\n``: XML parsers turn a literal ``\r`` into ``\n`` anyway.
    """
    text = strip_ansi(text).replace("\r\n", "\n").replace("\r", "\n")
    return _XML_INVALID_RE.sub("", text)


def readable(text: str) -> str:
    """``text`` for a human-facing file (markdown): no ANSI sequences, no stray control chars."""
    text = strip_ansi(text).replace("\r\n", "\n")
    return "\n".join(terminal_line(line) for line in text.split("\n"))


def tail_lines(text: str, limit: int) -> tuple[list[str], int]:
    """The last ``limit`` lines of ``text`` and how many lines were cut before them."""
    lines = text.splitlines()
    if limit <= 0 or len(lines) <= limit:
        return lines, 0
    return lines[-limit:], len(lines) - limit


def first_line(text: str, width: int = 200) -> str:
    """The first non-empty line of ``text``, shortened to ``width`` characters."""
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= width else line[: width - 1] + "…"
    return ""


def format_duration(seconds: float | None) -> str:
    """``0.12s``, ``12.3s``, ``2m05s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"


def write_atomic(path: str | os.PathLike[str], data: str) -> None:
    """Write ``data`` (UTF-8) to ``path`` through a temporary file and a rename.

    A run interrupted while a report is written never leaves half a file behind; parent
    directories are created. Lone surrogates (undecodable bytes from a command) are written as
    backslash escapes rather than failing the whole report.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", newline="\n") as f:
            f.write(data)
        # mkstemp makes the file 0600; a report is an ordinary, shareable file.
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def jsonable(value: Any) -> Any:
    """``value`` with anything JSON cannot hold turned into strings (NaN, sets, objects...)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def value_text(value: Any) -> str:
    """A param or result value as text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    import json

    return json.dumps(jsonable(value), ensure_ascii=False)


def indent_rest(text: str, width: int) -> str:
    """Indent the second and later lines of ``text`` by ``width`` spaces."""
    return text.replace("\n", "\n" + " " * width)
