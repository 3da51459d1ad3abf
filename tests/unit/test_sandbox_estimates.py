"""The sandbox's size estimates, at their edges: what a value counts as text, and the checks
made before an operator or a call runs (a power at the bound runs, one past it is refused;
the count of ``lipsum`` paragraphs given by position is the one checked; a ``+`` of text that
looks like a printf format is an ordinary sum)."""

from __future__ import annotations

import pytest

from kdiag.language.limits import current
from kdiag.language.sandbox import measure
from kdiag.language.templating import Renderer, TemplateError

CAP = 1 << 20


@pytest.mark.parametrize("value", [None, True, False])
def test_none_and_booleans_count_as_the_longest_of_their_texts(value: object) -> None:
    assert measure(value, CAP) == len("False")


@pytest.mark.parametrize("items", [[None] * 1000, [True] * 1000, [False] * 1000,
                                   [7] * 1000, [[None, False]] * 300])
def test_a_list_counts_at_least_its_text_with_brackets_and_separators(items: list) -> None:
    assert len(str(items)) <= measure(items, CAP) <= 2 * len(str(items))


def test_a_list_counts_its_brackets_and_a_separator_per_item() -> None:
    assert measure([], CAP) == len("[]")
    assert measure(["ab", "cd"], CAP) == len("[ab, cd, ]")


def test_a_power_at_the_bound_runs_and_one_past_it_is_refused() -> None:
    renderer = Renderer()
    bound = current().output * 3 // 2  # 2 has two bits: 2 ** n is allowed while 2n <= 3 x output
    assert renderer.evaluate(f"(2 ** {bound}).bit_length()", {}) == bound + 1
    with pytest.raises(TemplateError, match=rf"2 \*\* {bound + 1} would be larger than 4 MiB"):
        renderer.evaluate(f"2 ** {bound + 1}", {})


def test_lipsum_paragraphs_given_by_position_are_counted_before_it_runs() -> None:
    renderer = Renderer()
    with pytest.raises(TemplateError, match=r"the result of generate_lorem_ipsum\(\) would be "
                                            r"larger than 4 MiB"):
        renderer.render_text("{{ lipsum(5000) }}", {})
    with pytest.raises(TemplateError, match=r"generate_lorem_ipsum\(\) would be larger"):
        renderer.render_text("{{ lipsum(n=5000) }}", {})
    assert renderer.render_text("{{ lipsum(2, html=false) }}", {}).count("\n\n") == 1


@pytest.mark.parametrize("template, expected", [
    ("{{ '%099999999d' + 'x' }}", "%099999999dx"),
    ("{{ 'width {:099999999}' + '!' }}", "width {:099999999}!"),
    ("{{ 7 % 3 }}", "1"),
])
def test_text_that_looks_like_a_format_is_only_checked_as_one_by_percent(
        template: str, expected: str) -> None:
    assert Renderer().render_text(f"x{template}", {}) == f"x{expected}"
