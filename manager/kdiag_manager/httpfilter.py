"""Just enough HTTP/1.1 to route requests by a request header.

Each request is routed on its own (``httprouter``); a connection whose first bytes are not an
HTTP/1.x request head goes to its original destination untouched. Heads are parsed by
:mod:`httphead` (its names are offered here for the connection's first request).
"""

from __future__ import annotations

from collections.abc import Callable

from .httphead import MAX_HEAD, METHODS, RequestHead, head_end, header_key, parse_head

__all__ = ["MAX_HEAD", "RequestHead", "head_end", "looks_like_http", "matcher", "matches",
           "parse_head"]


def looks_like_http(buf: bytes) -> bool:
    """Could ``buf`` be the beginning of an HTTP/1.x request? (False as soon as it cannot.)"""
    first = buf.split(b" ", 1)[0]
    if b" " not in buf[:16]:
        return len(buf) < 8 and any(m.startswith(first) for m in METHODS)
    return first in METHODS


def matches(head: RequestHead | None, name: str, value: str) -> bool:
    """Does the request carry header ``name`` with exactly ``value``?"""
    return head is not None and value in head.header(name)


def matcher(name: str, value: str) -> Callable[[RequestHead], bool]:
    """``matches(head, name, value)`` as a function of the head (the name's lookup key made
    once: it runs for every request)."""
    key = header_key(name)
    return lambda head: value in head.values(key)
