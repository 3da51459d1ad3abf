"""Templates: native values, the quote filter, strict undefined, the sandbox, the env allow-list."""

from __future__ import annotations

import shlex

import pytest

from kdiag.language.templating import Renderer, TemplateError, attribute_chains, check_template


@pytest.fixture
def renderer() -> Renderer:
    return Renderer()


def test_lone_expression_keeps_native_type(renderer: Renderer) -> None:
    scope = {"params": {"port": 8080, "tags": ["a", "b"]}}
    assert renderer.render_text("{{ params.port }}", scope) == 8080
    assert renderer.render_text(" {{ params.tags }} ", scope) == ["a", "b"]
    assert renderer.render_text("port {{ params.port }}", scope) == "port 8080"
    assert renderer.render({"a": ["{{ params.port + 1 }}"]}, scope) == {"a": [8081]}


@pytest.mark.parametrize("value", ["simple", "it's", "a b; rm -rf /", "$(id)", "", "`x`"])
def test_quote_filter_makes_one_shell_word(renderer: Renderer, value: str) -> None:
    rendered = renderer.render_text("echo {{ v | quote }}", {"v": value})
    assert shlex.split(rendered) == ["echo", value]


def test_undefined_is_an_error_not_an_empty_string(renderer: Renderer) -> None:
    with pytest.raises(TemplateError, match="'missing' is undefined"):
        renderer.render_text("x{{ missing }}y", {})
    with pytest.raises(TemplateError, match="undefined"):
        renderer.evaluate("missing", {})
    with pytest.raises(TemplateError, match="has no attribute 'nope'"):
        renderer.render_text("{{ r.nope }}", {"r": {"a": 1}})


@pytest.mark.parametrize("attack", [
    "''.__class__.__mro__[1].__subclasses__()",
    "params.__class__",
    "cycler.__init__.__globals__",
    "range.__self__",
])
def test_sandbox_blocks_python_internals(renderer: Renderer, attack: str) -> None:
    with pytest.raises(TemplateError):
        value = renderer.evaluate(attack, {"params": {}})
        if value is not None:  # some lookups return undefined instead of raising
            raise TemplateError(str(value))


def test_sandbox_is_immutable(renderer: Renderer) -> None:
    with pytest.raises(TemplateError):
        renderer.evaluate("params.update({'x': 1})", {"params": {}})


def test_filters_and_tests(renderer: Renderer) -> None:
    scope = {"r": {"text": '{"a": [1, 2]}', "stdout": "pid 42 up"}}
    assert renderer.evaluate("(r.text | from_json).a[1]", scope) == 2
    assert renderer.evaluate("r.stdout is search('pid [0-9]+')", scope) is True
    assert renderer.evaluate("r.stdout | regex_search('pid ([0-9]+)', 1)", scope) == "42"
    assert renderer.render_text("{{ r | to_json }}", scope).startswith('{"stdout"')


def test_syntax_checks() -> None:
    assert check_template("{{ a + }}") is not None
    assert check_template("{% if x %}y{% endif %}") is None
    assert check_template("a == 1", expression=True) is None
    problem = check_template("a }} {{ b", expression=True)
    assert problem is not None and "after the expression" in problem.message


def test_attribute_chains_for_assertion_values() -> None:
    assert attribute_chains("resp.status == 200 and 'x' in resp.headers['server']") == [
        "resp.status", "resp.headers['server']"]


def test_only_allow_listed_environment_is_visible(run_runbook, monkeypatch) -> None:
    monkeypatch.setenv("KDIAG_TEST_VISIBLE", "seen")
    monkeypatch.setenv("KDIAG_TEST_HIDDEN", "hidden")
    outcome = run_runbook("""
        env: [KDIAG_TEST_VISIBLE, KDIAG_TEST_HIDDEN]
        steps:
          - name: check
            assert: ["env.KDIAG_TEST_VISIBLE == 'seen'", "env | length == 2"]
    """)
    assert outcome.exit_code == 0
    outcome = run_runbook("""
        env: [KDIAG_TEST_VISIBLE]
        steps:
          - {name: leak, note: "{{ env.KDIAG_TEST_HIDDEN }}"}
    """)
    assert outcome.exit_code == 1
    assert "KDIAG_TEST_HIDDEN" in outcome.recorder.finished()["leak"].message


@pytest.mark.parametrize("text, expected", [
    ("{{ 'x' }} and }}", "x and }}"),
    ("{{ 'a' }}{{ 'b' }}", "ab"),
    ("{{ 'a' }} {% if true %}b{% endif %} {{ 'c' }}", "a b c"),
])
def test_text_with_more_than_one_expression_renders_as_text(
        renderer: Renderer, text: str, expected: str) -> None:
    assert renderer.render_text(text, {}) == expected
