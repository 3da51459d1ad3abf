"""A YAML scalar that cannot be read as its type is refused at its ``file:line:col`` with the
value (shortened) and the first clause of the reason, in this process."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kdiag.language.runbook import Loader, RunbookError
from kdiag.steps import catalog


def _problem(path: Path) -> str:
    with pytest.raises(RunbookError) as raised:
        Loader(catalog()).load(str(path))
    return str(raised.value)


def test_an_integer_too_long_to_read_keeps_only_the_first_clause_of_the_reason(
        write: Callable[..., Path]) -> None:
    path = write("steps:\n  - name: big\n    wait: " + "1" * 5000 + "\n")
    assert _problem(path) == (
        f"{path}:3:11: YAML error: cannot read '{'1' * 37}...' as int: Exceeds the limit "
        f"({sys.get_int_max_str_digits()} digits) for integer string conversion: value has "
        "5000 digits")


def test_a_tagged_value_that_is_not_of_its_type(write: Callable[..., Path]) -> None:
    path = write("steps:\n  - note: !!int abc\n")
    assert _problem(path) == (f"{path}:2:11: YAML error: cannot read 'abc' as int: invalid "
                              "literal for int() with base 10: 'abc'")
