"""HTTP head parsing and matching for header-filtered intercepts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from kdiag_manager.httpfilter import head_end, looks_like_http, matches, parse_head


def test_parse_and_match() -> None:
    buf = (b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nX-Kdiag-Session: alice\r\n"
           b"Accept: */*\r\n\r\nbody")
    head = parse_head(buf)
    assert head is not None
    assert (head.method, head.target, head.version) == ("GET", "/x?y=1", "HTTP/1.1")
    assert matches(head, "x-kdiag-session", "alice")
    assert not matches(head, "X-Kdiag-Session", "bob")
    assert not matches(head, "X-Other", "alice")
    assert head_end(buf) == len(buf) - 4


def test_repeated_headers_and_folding() -> None:
    head = parse_head(b"POST / HTTP/1.0\nA: 1\nA: 2\nB: x\n  y\n\n")
    assert head is not None
    assert head.header("a") == ["1", "2"]
    assert head.header("B") == ["x y"]
    assert matches(head, "A", "2")


def test_incomplete_or_not_http() -> None:
    assert parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n") is None
    assert parse_head(b"\x16\x03\x01\x00\xa5\x01\x00\r\n\r\n") is None
    assert parse_head(b"GET / SPDY/3\r\n\r\n") is None
    assert parse_head(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n") is None
    assert not matches(None, "a", "b")


def test_looks_like_http() -> None:
    assert looks_like_http(b"GE")
    assert looks_like_http(b"GET / HTTP/1.1")
    assert looks_like_http(b"PATCH /")
    assert not looks_like_http(b"\x16\x03\x01")
    assert not looks_like_http(b"HELLO WORLD")


@given(st.binary(max_size=300))
def test_parse_never_raises(data: bytes) -> None:
    parse_head(data)
    looks_like_http(data)


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126,
                                      exclude_characters=":"), min_size=1, max_size=20),
       st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=30))
def test_any_token_header_roundtrips(name: str, value: str) -> None:
    head = parse_head(f"GET / HTTP/1.1\r\n{name}: {value}\r\n\r\n".encode())
    assert matches(head, name.upper(), value)
