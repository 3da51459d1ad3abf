"""HTTP/1.x heads: the plain form's quick path gives what parsing line by line gives."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from kdiag_manager.httphead import (
    Head,
    head_end,
    header_key,
    parse_head,
    parse_response_head,
    request_by_lines,
    response_by_lines,
)

# Names the router and filters ask for, in other cases, and names no header can have.
ASKED = ["Content-Length", "content-length", "TRANSFER-ENCODING", "Connection", "Expect",
         "X-Kdiag-Session", "x-kdiag-session", "Host", "A", "a", "", "a:", "a\r\nb", "x y",
         "\u212a", "X-\xc0", "x-\xe0", "Content-Length:", "\r\nhost"]

NAMES = st.sampled_from(["Content-Length", "content-length", "Transfer-Encoding",
                         "Connection", "Expect", "X-Kdiag-Session", "X-KDIAG-SESSION", "Host",
                         "A", "a", "x y", "X-\xc0", "K"]) | st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xff, exclude_characters=":"),
    min_size=1, max_size=6)
VALUES = st.sampled_from(["5", " 5 ", "5, 5", "chunked", "gzip, chunked", "close",
                          "keep-alive", "100-continue", "alice", "", "\t x \t", "a\xa0",
                          "\xa0b"]) | st.text(
    alphabet=st.characters(min_codepoint=0x09, max_codepoint=0xff,
                           exclude_characters="\r\n"), max_size=8)
EOL = st.sampled_from(["\r\n"] * 6 + ["\n"])


@st.composite
def heads(draw: st.DrawFn, request: bool) -> bytes:
    """Heads mostly plain, some not (bare LF, folding, other bytes, broken lines)."""
    if request:
        start = (draw(st.sampled_from(["GET", "POST", "PUT", "CONNECT", "get", "FOO"])) + " "
                 + draw(st.sampled_from(["/", "/x?y=1", "*", "/a b", "/\xe9", ""])) + " "
                 + draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/1.x", "HTTP/2"])))
    else:
        start = (draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/1.12", "HTTP/2"])) + " "
                 + draw(st.sampled_from(["200", "101", "99", "2000", "20a", "204"]))
                 + draw(st.sampled_from(["", " OK", " ", " Not\tFound", "\tOK", " \xe9"])))
    text = start + draw(EOL)
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["field"] * 8 + ["fold", "broken", "space"]))
        if kind == "field":
            text += draw(NAMES) + ":" + draw(VALUES)
        elif kind == "fold":
            text += draw(st.sampled_from([" ", "\t"])) + draw(VALUES)
        elif kind == "broken":
            text += draw(st.sampled_from(["no colon", ":", " A: b"]))
        else:
            text += draw(NAMES) + " :" + draw(VALUES)
        text += draw(EOL)
    return (text + draw(EOL)).encode("latin-1") + draw(st.sampled_from([b"", b"body", b"\r\n"]))


def _same(quick: Head | None, slow: Head | None) -> None:
    assert (quick is None) == (slow is None)
    if quick is None or slow is None:
        return
    assert quick.raw == slow.raw
    assert quick.headers == slow.headers
    for name in ASKED + [n for n, _ in slow.headers]:
        assert quick.header(name) == slow.header(name), name
        assert quick.values(header_key(name)) == slow.header(name), name


@given(heads(request=True))
def test_request_quick_path_matches_line_parsing(raw: bytes) -> None:
    quick, slow = parse_head(raw), request_by_lines(raw)
    _same(quick, slow)
    if quick is not None and slow is not None:
        assert (quick.method, quick.target, quick.version) == \
            (slow.method, slow.target, slow.version)


@given(heads(request=False))
def test_response_quick_path_matches_line_parsing(raw: bytes) -> None:
    quick, slow = parse_response_head(raw), response_by_lines(raw)
    _same(quick, slow)
    if quick is not None and slow is not None:
        assert (quick.version, quick.status) == (slow.version, slow.status)


@given(st.binary(max_size=300))
def test_any_bytes(data: bytes) -> None:
    for raw in (data, b"GET / HTTP/1.1\r\n" + data, b"HTTP/1.1 200 OK\r\n" + data):
        _same(parse_head(raw), request_by_lines(raw))
        _same(parse_response_head(raw), response_by_lines(raw))


def test_usual_heads_take_the_quick_path() -> None:
    req = parse_head(b"GET /x HTTP/1.1\r\nHost: a\r\nAccept-Encoding: identity\r\n"
                     b"X-Kdiag-Session:  alice \r\nx-kdiag-session: bob\r\n\r\nrest")
    assert req is not None and req._index is None  # (looked up in the head, not indexed)
    assert req.header("X-KDIAG-SESSION") == ["alice", "bob"]
    assert req.raw.endswith(b"bob\r\n\r\n")
    resp = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert resp is not None and resp._index is None and resp.header("content-length") == ["2"]
    folded = parse_head(b"GET / HTTP/1.1\r\nA: 1\r\n 2\r\n\r\n")
    assert folded is not None and folded._index is not None and folded.header("a") == ["1 2"]


def test_may_have() -> None:
    names = re.compile(re.escape(header_key("Content-Length")))
    plain = parse_head(b"GET / HTTP/1.1\r\nX-Content-Length: 1\r\n\r\n")
    assert plain is not None and not plain.may_have(names)
    with_it = parse_head(b"POST / HTTP/1.1\r\nCONTENT-length: 1\r\n\r\n")
    assert with_it is not None and with_it.may_have(names)
    by_lines = parse_head(b"POST / HTTP/1.1\nX: 1\n\n")
    assert by_lines is not None and by_lines.may_have(names)  # (not plain: always True)


def test_head_end() -> None:
    assert head_end(b"GET / HTTP/1.1\r\n\r\nx") == 18
    assert head_end(b"GET / HTTP/1.1\nA: b\n\nx\r\n\r\n") == 21
    assert head_end(b"GET / HTTP/1.1\r\nA: b\r\n\nx\r\n\r\n") == 23
    assert head_end(b"GET / HTTP/1.1\r\nA: b\r\n") == -1


@given(st.lists(st.sampled_from([b"\r", b"\n", b"a", b" "]), max_size=30).map(b"".join))
def test_head_end_is_the_first_blank_line(buf: bytes) -> None:
    crlf, lf = buf.find(b"\r\n\r\n"), buf.find(b"\n\n")
    ends = [i + 4 for i in [crlf] if i >= 0] + [i + 2 for i in [lf] if i >= 0]
    assert head_end(buf) == (min(ends) if ends else -1)
    assert head_end(bytearray(buf)) == head_end(buf)
