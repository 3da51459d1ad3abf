"""The runbook JSON Schema: valid Draft 2020-12, current on disk, and agreeing with jsonschema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdiag.cli.schema import schema_text
from kdiag.language import schemacheck
from kdiag.language.runbook import _top_level_schema
from kdiag.language.yamlsource import load_file
from kdiag.steps import catalog

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = sorted((ROOT / "runbooks").rglob("*.yaml"))


def _keywords(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            if key in ("properties", "$defs"):
                for sub in value.values():
                    found |= _keywords(sub)
            elif key in ("items", "additionalProperties", "propertyNames"):
                found |= _keywords(value)
            elif key in ("anyOf", "oneOf"):
                for sub in value:
                    found |= _keywords(sub)
    return found


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(catalog().runbook_schema())


def test_schema_uses_only_keywords_our_validator_supports() -> None:
    assert _keywords(catalog().runbook_schema()) <= schemacheck.SUPPORTED


def test_checked_in_schema_is_current() -> None:
    on_disk = (ROOT / "schemas" / "runbook.schema.json").read_text()
    assert on_disk == schema_text(), "run: .venv/bin/kdiag schema > schemas/runbook.schema.json"


def test_cli_prints_the_schema(capsys) -> None:
    from kdiag.cli.main import main

    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["$id"] == "urn:kdiag:runbook:v1"


@pytest.mark.parametrize("path", RUNBOOKS, ids=[p.name for p in RUNBOOKS])
def test_example_runbooks_conform_to_the_json_schema(path: Path) -> None:
    data = load_file(str(path)).data
    jsonschema.Draft202012Validator(catalog().runbook_schema()).validate(data)


def _agree(document: Any) -> None:
    schema = catalog().runbook_schema()
    ours = schemacheck.validate(document, schema)
    theirs = list(jsonschema.Draft202012Validator(schema).iter_errors(document))
    assert bool(ours) == bool(theirs), (document, ours, [e.message for e in theirs])


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False),
                    st.sampled_from(["", "x", "{{ x }}", "30s", "5 minutes", "GET", "a=b"]))
KEYS = st.sampled_from(["name", "steps", "finally", "params", "target", "note", "run", "argv",
                        "script", "http", "url", "wait", "seconds", "until", "when", "retries",
                        "timeout", "register", "assert", "type", "default", "node", "pid",
                        "kubernetes", "pod", "bogus", "include", "file", "pause", "env"])
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, VALUES, max_size=4))
def test_our_validator_agrees_with_jsonschema_on_generated_documents(document: dict) -> None:
    _agree(document)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(KEYS, VALUES, min_size=1, max_size=4), max_size=3))
def test_agreement_on_generated_step_lists(steps: list) -> None:
    _agree({"steps": steps})


def test_top_level_schema_keeps_step_lists_shallow() -> None:
    top = _top_level_schema(catalog())
    assert top["properties"]["steps"] == {"type": "array",
                                          "description": "The steps, run in order."}


BODIES = st.sampled_from([
    ("note", "hello"), ("note", 3), ("run", {"argv": ["ls"]}), ("run", {"script": "ls"}),
    ("run", {"argv": ["ls"], "script": "ls"}), ("run", {}), ("run", {"argv": "{{ a }}"}),
    ("http", {"url": "http://x"}), ("http", {"url": "http://x", "expect_status": [200]}),
    ("http", {"method": "GET"}), ("wait", "5s"), ("wait", {"until": "x"}), ("wait", 3),
    ("wait", {}), ("pause", "look"), ("include", {"file": "a.yaml", "params": {"x": 1}}),
    ("assert", ["a == 1"]), ("assert", "a"), ("assert", []),
])
CONTROL_VALUES = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["a", "", 5]),
    "when": st.sampled_from(["x", True, 3]),
    "register": st.sampled_from(["r", "1bad", "ok_2"]),
    "timeout": st.sampled_from([5, "5s", "{{ t }}", "soon", -1]),
    "retries": st.sampled_from([0, 3, -1, "{{ n }}", "x"]),
    "continue_on_error": st.booleans(),
    "background": st.sampled_from([True, "yes"]),
    "assert": st.sampled_from(["x", ["x", "y"], [], 1]),
})


@st.composite
def _steps(draw: st.DrawFn) -> dict:
    kind, body = draw(BODIES)
    return {**draw(CONTROL_VALUES), kind: body}


@settings(max_examples=400, deadline=None)
@given(st.lists(_steps(), min_size=1, max_size=3))
def test_agreement_on_near_valid_steps(steps: list) -> None:
    _agree({"steps": steps})
