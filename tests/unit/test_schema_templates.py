"""Which values of a step's body may be templates, and what a rendered value becomes.

Every non-string value inside a step type's body may also be given as a template (in a map of
integers too); the body itself never is one. The catalog is built afresh here (``catalog()`` is
built once per process), so what it makes is checked by these tests each time. After rendering,
a number or boolean where the schema wants a string becomes its text; where the schema takes a
number as it is, it stays a number."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kdiag.language.catalog import StepCatalog
from kdiag.language.runbook import Loader
from kdiag.language.schemacheck import Schema, coerce_strings
from kdiag.language.templating import Renderer
from kdiag.steps import step_types

ROOT = Path(__file__).resolve().parents[2]


def test_a_fresh_catalog_makes_the_checked_in_schema() -> None:
    schema = StepCatalog(step_types()).runbook_schema()
    on_disk = (ROOT / "schemas" / "runbook.schema.json").read_text()
    assert json.dumps(schema, indent=2) + "\n" == on_disk


@dataclass
class Tally:
    """A step type whose body is a map of names to integers."""

    kind: str = "tally"
    summary: str = "Count things."
    schema: Schema = field(default_factory=lambda: {
        "type": "object", "additionalProperties": {"type": "integer"},
        "properties": {"unit": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}})
    children_field: str | None = None
    expression_fields: frozenset[str] = frozenset()
    can_background: bool = False


def _load(write: Any, text: str) -> Any:
    return Loader(StepCatalog({"tally": Tally()})).load(str(write(text)))


def test_a_map_of_integers_takes_templates_and_says_so_when_a_value_is_neither(write) -> None:
    runbook = _load(write, """
        params:
          n: {type: integer, default: 3}
        steps:
          - tally: {apples: "{{ params.n }}", pears: 2}
    """)
    assert runbook.steps[0].body == {"apples": "{{ params.n }}", "pears": 2}
    with pytest.raises(Exception, match=r"runbook.yaml:3:31: expected an integer or a "
                                        r"\{\{ template \}\}, got a string 'many'$"):
        _load(write, """
            steps:
              - tally: {apples: 1, plums: many}
        """)


def test_options_that_take_a_string_get_no_template_option_added() -> None:
    unit = StepCatalog({"tally": Tally()}).schema["$defs"]["step_tally"]["properties"]["tally"]
    # (the integer option takes a template itself; the string option already takes one)
    assert unit["properties"]["unit"] == {"anyOf": [
        {"type": "string"}, {"anyOf": [{"type": "integer"}, {"$ref": "#/$defs/template"}]}]}
    assert unit["additionalProperties"] == {"anyOf": [{"type": "integer"},
                                                      {"$ref": "#/$defs/template"}]}


@pytest.mark.parametrize("value, text", [(8080, "8080"), (1.5, "1.5"), (True, "true"),
                                         (False, "false")])
def test_a_rendered_number_or_boolean_becomes_text_where_a_string_is_wanted(
        value: Any, text: str) -> None:
    assert coerce_strings(value, {"type": "string"}, {}) == text
    assert coerce_strings([value], {"type": "array", "items": {"type": "string"}}, {}) == [text]


@pytest.mark.parametrize("schema", [{"type": "integer"}, {"type": ["integer", "string"]},
                                    {"type": ["number", "string"]}, {"enum": [1, 2]}])
def test_a_number_stays_a_number_where_the_schema_takes_it(schema: Schema) -> None:
    assert coerce_strings(1, schema, {}) == 1
    assert coerce_strings({"n": 1}, {"type": "object", "additionalProperties": schema}, {}) \
        == {"n": 1}


def test_the_argv_of_a_run_step_gets_text_for_a_rendered_port() -> None:
    run = step_types()["run"]
    root = StepCatalog(step_types()).schema
    body = Renderer().render({"argv": ["echo", "{{ 8080 }}"]}, {})
    assert body == {"argv": ["echo", 8080]}  # a lone expression keeps its type...
    assert coerce_strings(body, run.schema, root) == {"argv": ["echo", "8080"]}  # ...until here
