"""A command's output kept in bounded memory: its first and last bytes, and how much was cut.

The whole output goes elsewhere as it streams (a step's artifact files); what stays in memory
(for ``register``, templates and reports) is at most ``limit`` bytes per stream, however large
the output.
"""

from __future__ import annotations

DEFAULT_MAX_OUTPUT = 2 * 1024 * 1024
"""Bytes of a stream kept in memory unless configured: the first MiB and the last MiB."""


class HeadTail:
    """The first ``limit - limit // 2`` and the last ``limit // 2`` bytes of a stream."""

    def __init__(self, limit: int = DEFAULT_MAX_OUTPUT) -> None:
        self.limit = max(0, limit)
        self._head_limit = self.limit - self.limit // 2
        self._tail_limit = self.limit // 2
        self._head = bytearray()
        self._tail = bytearray()
        self.size = 0
        """Bytes seen in all."""

    def add(self, data: bytes) -> None:
        """Take the next chunk of the stream."""
        self.size += len(data)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data or not self._tail_limit:
            return
        self._tail += data
        if len(self._tail) > 2 * self._tail_limit:  # trim now and then, not at every chunk
            del self._tail[:len(self._tail) - self._tail_limit]

    def _trimmed_tail(self) -> bytes:
        return bytes(self._tail[-self._tail_limit:]) if self._tail_limit else b""

    @property
    def cut(self) -> int:
        """Bytes not kept (between the head and the tail)."""
        return self.size - len(self._head) - len(self._trimmed_tail())

    @property
    def truncated(self) -> bool:
        """Whether some of the stream was not kept."""
        return self.cut > 0

    def value(self) -> bytes:
        """What was kept: the head and the tail, joined."""
        return bytes(self._head) + self._trimmed_tail()

    def text(self, marker: str = "") -> str:
        """What was kept, decoded as UTF-8 (invalid bytes replaced); ``marker`` goes between
        the head and the tail when something was cut."""
        if not self.truncated:
            return self.value().decode(errors="replace")
        return (bytes(self._head).decode(errors="replace") + marker
                + self._trimmed_tail().decode(errors="replace"))


def human_size(size: int) -> str:
    """``512 B``, ``1.5 KiB``, ``200.0 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def parse_size(value: object) -> int:
    """Bytes from ``1048576``, ``"512KiB"``, ``"4 MiB"``, ``"1MB"`` (ValueError otherwise)."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return value
    text = str(value).strip().lower()
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz").strip()
    unit = text[len(number):].strip() if number else ""
    if unit not in _UNITS or not number:
        raise ValueError(f"not a size: {value!r} (e.g. 1048576, 512KiB, 4MiB)")
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"not a size: {value!r} (e.g. 1048576, 512KiB, 4MiB)") from None
    if amount < 0:
        raise ValueError(f"a size cannot be negative: {value!r}")
    return int(amount * _UNITS[unit])
