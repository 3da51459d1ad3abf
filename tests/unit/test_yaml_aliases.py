"""A problem inside a YAML alias is placed where the aliased value was written (its anchor),
at the line and column of the offending key or value, not at the alias; a problem of the
alias as a whole (a field missing there) is placed at the alias."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kdiag.language.runbook import Loader, RunbookError
from kdiag.steps import catalog


def _problem(path: Path) -> str:
    with pytest.raises(RunbookError) as raised:
        Loader(catalog()).load(str(path))
    return str(raised.value)


def test_a_key_not_allowed_where_the_alias_stands_is_placed_at_the_anchor(
        write: Callable[..., Path]) -> None:
    path = write("""\
        steps:
          - name: first
            run: &body
              script: "echo hi"
          - name: second
            http: *body
    """)
    lines = _problem(path).splitlines()
    assert f"{path}:6:11: missing required field 'url'" in lines  # the alias: no url in it
    assert any(line.startswith(f"{path}:4:7: unknown field 'script'") for line in lines)


def test_a_template_problem_inside_an_alias_is_placed_at_the_anchor_for_each_use(
        write: Callable[..., Path]) -> None:
    path = write("""\
        steps:
          - name: first
            run: &body
              script: "echo {{ params.nope }}"
          - name: second
            run: *body
    """)
    assert _problem(path).splitlines() == [f"{path}:4:15: unknown param 'nope'"] * 2

