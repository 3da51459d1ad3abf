"""HTTP/1.x message heads (request and response), parsed for the header router's per-request use.

A head is checked once, whole, by one regular expression that accepts only the plain form (CRLF
line ends, token header names, visible-ASCII values, no line folding): almost every head. Its
header values are then looked up when asked, by a search of the lowercased head, instead of
being split into lines and indexed — the router asks for a handful of names per message and
this path runs once per request, on a kept-alive connection where the manager's CPU per
request is what the client waits for. Any other head (bare LF line ends, folding, other bytes)
is parsed line by line as before, into the same object; both ways give the same answers
(``tests/manager/test_httphead.py`` compares them on generated heads).
"""

from __future__ import annotations

import re

MAX_HEAD = 64 * 1024
METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS",
                     b"TRACE", b"PATCH"})

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_FIELDS = rb"(?:" + _TOKEN + rb":[\t\x20-\x7e]*\r\n)*\r\n"
_PLAIN_REQUEST = re.compile(
    rb"(" + b"|".join(sorted(METHODS)) + rb") ([\x21-\x7e]+) (HTTP/1\.[0-9])\r\n" + _FIELDS)
_PLAIN_RESPONSE = re.compile(rb"(HTTP/1\.[0-9]) ([0-9]{3})(?: [\t\x20-\x7e]*)?\r\n" + _FIELDS)
_FIELD = re.compile(rb"\r\n(" + _TOKEN + rb"):[\t ]*([\t\x20-\x7e]*?)[\t ]*(?=\r\n)")
# What a header name's values are looked up by: ``header_key(name)``, cached (the names asked for
# come from code and redirect specs: a handful).
_KEYS: dict[str, bytes] = {}
_KEYS_MAX = 256
# The key of a name no header can have: never found in a head (which ends at its first blank line).
_NO_KEY = b"\r\n\r\n:"


def head_end(buf: bytes | bytearray) -> int:
    """Index just past the blank line ending the head, or -1 if not there yet."""
    crlf = buf.find(b"\r\n\r\n")
    # Tolerate bare LF, as many servers do (only a blank line before the CRLF one counts).
    lf = buf.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else len(buf))
    if lf < 0:
        return crlf + 4 if crlf >= 0 else -1
    return lf + 2


def header_key(name: str) -> bytes:
    """What :meth:`Head.values` looks header ``name`` up by (case-insensitive): the bytes that
    precede its value in a lowercased plain head."""
    key = _KEYS.get(name)
    if key is None:
        try:
            low = name.lower().encode("latin-1")
        except UnicodeEncodeError:
            low = b":"
        # (A name with ":" or a line end could span lines of a plain head; no header has one.)
        key = _NO_KEY if b":" in low or b"\n" in low or not low else b"\r\n" + low + b":"
        if len(_KEYS) >= _KEYS_MAX:
            _KEYS.clear()
        _KEYS[name] = key
    return key


def index_headers(headers: list[tuple[str, str]]) -> dict[bytes, list[str]]:
    """Header values by lookup key (:func:`header_key`), in order."""
    index: dict[bytes, list[str]] = {}
    for name, value in headers:
        index.setdefault(header_key(name), []).append(value)
    return index


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


class Head:
    """The headers of one message head (``raw``: its bytes through the blank line)."""

    __slots__ = ("_headers", "_index", "_low", "raw")

    raw: bytes
    _low: bytes | None
    _headers: list[tuple[str, str]] | None
    # Parsed line by line (not a plain head): the values by key. None: look them up in ``raw``.
    _index: dict[bytes, list[str]] | None

    def header(self, name: str) -> list[str]:
        """All values of header ``name`` (case-insensitive), in order."""
        return self.values(header_key(name))

    def values(self, key: bytes) -> list[str]:
        """All values of the header whose :func:`header_key` is ``key``, in order."""
        if self._index is not None:
            return self._index.get(key, [])
        low = self._low
        if low is None:
            low = self._low = self.raw.lower()
        i = low.find(key)
        if i < 0:
            return []
        values = []
        while i >= 0:
            start = i + len(key)
            end = low.find(b"\r\n", start)
            values.append(self.raw[start:end].strip(b" \t").decode("ascii"))
            i = low.find(key, end)
        return values

    def may_have(self, names: re.Pattern[bytes]) -> bool:
        """Could the head have a header ``names`` finds (a pattern of lookup keys, as
        :func:`header_key` makes them)? Always True for a head parsed line by line."""
        if self._index is not None:
            return True
        low = self._low
        if low is None:
            low = self._low = self.raw.lower()
        return names.search(low) is not None

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Every header, (name, value) in order."""
        if self._headers is None:
            self._headers = [(n.decode("ascii"), v.decode("ascii"))
                             for n, v in _FIELD.findall(self.raw)]
        return self._headers


class RequestHead(Head):
    """The request line and headers of one HTTP/1.x request."""

    __slots__ = ("method", "target", "version")

    def __init__(self, raw: bytes, method: str, target: str, version: str,
                 headers: list[tuple[str, str]] | None = None) -> None:
        self.raw, self._low, self._headers = raw, None, headers
        self._index = None if headers is None else index_headers(headers)
        self.method, self.target, self.version = method, target, version

    def __repr__(self) -> str:
        return f"RequestHead({self.method} {self.target} {self.version}, {self.headers!r})"


class ResponseHead(Head):
    """The status line and headers of one HTTP/1.x response."""

    __slots__ = ("status", "version")

    def __init__(self, raw: bytes, version: str, status: int,
                 headers: list[tuple[str, str]] | None = None) -> None:
        self.raw, self._low, self._headers = raw, None, headers
        self._index = None if headers is None else index_headers(headers)
        self.version, self.status = version, status

    def __repr__(self) -> str:
        return f"ResponseHead({self.version} {self.status}, {self.headers!r})"


def _lines(buf: bytes, end: int) -> list[str]:
    return buf[:end].decode("latin-1").replace("\r\n", "\n").split("\n")


def parse_head(buf: bytes) -> RequestHead | None:
    """Parse a complete request head; None when ``buf`` is not an HTTP/1.x request head."""
    plain = _PLAIN_REQUEST.match(buf)
    if plain is not None:
        method, target, version = plain.groups()
        return RequestHead(buf[:plain.end()], method.decode(), target.decode(), version.decode())
    return request_by_lines(buf)


def request_by_lines(buf: bytes) -> RequestHead | None:
    """:func:`parse_head` for any head, line by line (what it does with a head not plain)."""
    end = head_end(buf)
    if end < 0:
        return None
    lines = _lines(buf, end)
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0].encode() not in METHODS or not parts[2].startswith("HTTP/1."):
        return None
    headers = parse_headers(lines[1:])
    if headers is None:
        return None
    return RequestHead(buf[:end], parts[0], parts[1], parts[2], headers)


def parse_response_head(buf: bytes) -> ResponseHead | None:
    """Parse a complete response head; None when it is not an HTTP/1.x response head."""
    plain = _PLAIN_RESPONSE.match(buf)
    if plain is not None:
        version, status = plain.groups()
        return ResponseHead(buf[:plain.end()], version.decode(), int(status))
    return response_by_lines(buf)


def response_by_lines(buf: bytes) -> ResponseHead | None:
    """:func:`parse_response_head` for any head, line by line (what it does with a head not
    plain)."""
    end = head_end(buf)
    if end < 0:
        return None
    lines = _lines(buf, end)
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[1]) != 3 \
            or not (parts[1].isascii() and parts[1].isdigit()):
        return None
    headers = parse_headers(lines[1:])
    if headers is None:
        return None
    return ResponseHead(buf[:end], parts[0], int(parts[1]), headers)
