"""The per-file budget of template tokens: each template costs its tokens plus a fixed
``TEMPLATE_COST``, counted one by one, and a file that crosses the budget is refused at the
template that crosses it (``file:line:col``), in this process (``test_hostile_input`` runs the
command at the default limit)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import jinja2.nodes
import pytest

from kdiag.language.limits import current
from kdiag.language.runbook import Loader, RunbookError
from kdiag.language.templateparse import (
    TEMPLATE_COST,
    TemplateBudgetExceeded,
    TokenBudget,
    analyse,
    budget,
    parse,
    variables_of,
)
from kdiag.steps import catalog

TEMPLATE = "{{ a + b }}"
TOKENS = 5  # {{, a, +, b, }}


def test_a_template_costs_its_tokens_and_the_fixed_cost() -> None:
    tokens = TokenBudget(left=TEMPLATE_COST + TOKENS, limit=100)
    with budget(tokens):
        assert analyse(TEMPLATE).names == {"a", "b"}
    assert tokens.left == 0


def test_one_token_short_of_the_budget_is_refused_with_the_limit() -> None:
    tokens = TokenBudget(left=TEMPLATE_COST + TOKENS - 1, limit=77)
    with pytest.raises(TemplateBudgetExceeded) as raised, budget(tokens):
        analyse(TEMPLATE)
    assert raised.value.args == (77,)


def test_the_fixed_cost_alone_can_exhaust_the_budget() -> None:
    with pytest.raises(TemplateBudgetExceeded), budget(TokenBudget(TEMPLATE_COST - 1, 9)):
        pass


def test_without_a_budget_parsing_is_unbounded() -> None:
    with budget(None):
        assert analyse("{{ x }}" * 20_000).problem is None  # 60000 tokens


def test_a_file_past_its_budget_is_refused_at_the_template_that_crosses_it(
        write: Callable[..., Path]) -> None:
    # each note's template costs TEMPLATE_COST + 5 tokens: the third one crosses 40
    path = write("""\
        params: {a: {default: 1, type: integer}}
        steps:
          - note: "{{ params.a }}"
          - note: "{{ params.a }}"
          - note: "{{ params.a }}"
    """)
    limits = replace(current(), template_tokens=40)
    with pytest.raises(RunbookError) as raised:
        Loader(catalog(), limits=limits).load(str(path))
    assert str(raised.value).startswith(
        f"{path}:5:11: the templates of this file hold more than 40 tokens")
    Loader(catalog(), limits=replace(limits, template_tokens=45)).load(str(path))


def test_the_names_a_loop_reads_from_outside_it() -> None:
    template = parse("{% for x in items %}{{ x.port + offset }}{% endfor %}")
    loop = next(template.find_all(jinja2.nodes.For))
    assert variables_of(loop) == {"items", "offset"}
    assert variables_of(template) == {"items", "offset"}
