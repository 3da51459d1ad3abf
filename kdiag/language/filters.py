"""The filters and tests kdiag adds to Jinja's (``quote``, ``to_json``, ``from_json``,
``regex_search``; ``match`` and ``search``): their names for static checks, their code for
rendering."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from typing import Any

MAX_JSON_INDENT = 16


def quote(value: object) -> str:
    """Quote a value as one shell word (the ``quote`` filter)."""
    return shlex.quote(value if isinstance(value, str) else str(value))


def _to_json(value: object, indent: int | None = None) -> str:
    if indent is not None and not 0 <= int(indent) <= MAX_JSON_INDENT:
        raise ValueError(f"to_json: indent must be between 0 and {MAX_JSON_INDENT}")
    return json.dumps(value, indent=indent, sort_keys=True, default=str)


def _regex_search(value: object, pattern: str, group: int | str = 0) -> str | None:
    match = re.search(pattern, str(value))
    return match.group(group) if match else None


FILTERS: dict[str, Callable[..., Any]] = {
    "quote": quote,
    "to_json": _to_json,
    "from_json": json.loads,
    "regex_search": _regex_search,
}
TESTS: dict[str, Callable[..., Any]] = {
    "match": lambda value, pattern: re.match(pattern, str(value)) is not None,
    "search": lambda value, pattern: re.search(pattern, str(value)) is not None,
}
