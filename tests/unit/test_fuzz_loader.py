"""Fuzzing the loader: whatever the input, the result is a runbook or a RunbookError."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdiag.errors import RunbookError
from kdiag.language.runbook import Loader
from kdiag.steps import catalog

VALID = """\
params:
  port: {type: integer, default: 8080}
  token: {type: string, default: x, secret: true}
steps:
  - name: call
    http: {url: "http://localhost:{{ params.port }}/"}
    register: resp
    retries: 2
    until: resp.status == 200
    assert: [resp.status == 200]
  - run:
      script: |
        echo {{ resp.text | quote }}
    when: resp.ok
  - wait: {until: "resp.ok", timeout: 1s}
finally:
  - note: "done {{ run.id }}"
"""

TOKENS = ["{", "}", "[", "]", ":", "- ", "\n", "  ", "'", '"', "{{", "}}", "{%", "&a", "*a",
          "!!binary", "!!python/object", "<<", "---", "\t", "\x00", "\ufeff", "#", "|", ">",
          "steps", "note", "run", "assert", "params", "type", "1e400", "~", "? ", ",", "%YAML"]


def _load(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            Loader(catalog()).load(str(path))
        except RunbookError as exc:
            assert exc.problems and all(str(p) for p in exc.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_random_text_never_crashes(text: str) -> None:
    _load(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS) | st.text(max_size=5), max_size=60))
def test_yaml_ish_token_soup_never_crashes(tokens: list[str]) -> None:
    _load("".join(tokens))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(VALID)), st.integers(0, 20), st.sampled_from(TOKENS) | st.text(max_size=4))
def test_mutated_valid_runbook_never_crashes(position: int, cut: int, insert: str) -> None:
    _load(VALID[:position] + insert + VALID[position + cut:])


def test_the_unmutated_runbook_is_valid() -> None:
    _load(VALID)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ok.yaml"
        path.write_text(VALID)
        assert len(Loader(catalog()).load(str(path)).steps) == 3


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    _load("steps: " + "[" * 5000 + "]" * 5000)
    _load("a:\n" + "".join("  " * i + "b:\n" for i in range(1, 400)))
