"""Just enough HTTP/1.1 parsing to route requests by a request header.

Each request is routed on its own (``httprouter``); a connection whose first bytes are not an
HTTP/1.x request head goes to its original destination untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024
_METHODS = {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE",
            b"PATCH"}


def index_headers(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Header values by lowercased name, in order (what ``header()`` looks up)."""
    index: dict[str, list[str]] = {}
    for name, value in headers:
        index.setdefault(name.lower(), []).append(value)
    return index


@dataclass(frozen=True)
class RequestHead:
    """The request line and headers of one HTTP/1.x request."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    _index: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", index_headers(self.headers))

    def header(self, name: str) -> list[str]:
        """All values of header ``name`` (case-insensitive)."""
        return self._index.get(name.lower(), [])


def head_end(buf: bytes | bytearray) -> int:
    """Index just past the blank line ending the request head, or -1 if not there yet."""
    crlf = buf.find(b"\r\n\r\n")
    lf = buf.find(b"\n\n")  # tolerate bare LF, as many servers do
    if lf < 0:
        return crlf + 4 if crlf >= 0 else -1
    return lf + 2 if crlf < 0 else min(crlf + 4, lf + 2)


def looks_like_http(buf: bytes) -> bool:
    """Could ``buf`` be the beginning of an HTTP/1.x request? (False as soon as it cannot.)"""
    first = buf.split(b" ", 1)[0]
    if b" " not in buf[:16]:
        return len(buf) < 8 and any(m.startswith(first) for m in _METHODS)
    return first in _METHODS


def parse_head(buf: bytes) -> RequestHead | None:
    """Parse a complete request head; None when ``buf`` is not an HTTP/1.x request head."""
    end = head_end(buf)
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0].encode() not in _METHODS or not parts[2].startswith("HTTP/1."):
        return None
    headers = parse_headers(lines[1:])
    if headers is None:
        return None
    return RequestHead(parts[0], parts[1], parts[2], headers)


def parse_headers(lines: list[str]) -> list[tuple[str, str]] | None:
    """Header lines (no line ends) as (name, value) pairs; None if one is malformed."""
    headers: list[tuple[str, str]] = []
    for line in lines:
        if not line:
            continue
        if line[0] in " \t" and headers:  # obsolete line folding
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers.append((name, value.strip()))
    return headers


def matches(head: RequestHead | None, name: str, value: str) -> bool:
    """Does the request carry header ``name`` with exactly ``value``?"""
    return head is not None and value in head.header(name)
