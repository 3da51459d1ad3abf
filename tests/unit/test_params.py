"""Params: defaults, --values files, --set conversion, required params, choices, secrets."""

from __future__ import annotations

import pytest

from kdiag.errors import RunbookError, UsageError
from kdiag.language.params import load_values, parse_set_args, resolve_params
from kdiag.language.runbook import Loader
from kdiag.steps import catalog

RUNBOOK = """
params:
  name: {type: string, default: api}
  port: {type: integer, default: 80}
  ratio: {type: number, default: 0.5}
  debug: {type: boolean, default: false}
  ports: {type: list, default: []}
  labels: {type: object, default: {}}
  mode: {type: string, default: fast, choices: [fast, slow]}
  token: {type: string, secret: true, default: ""}
steps: []
"""


@pytest.fixture
def runbook(write):
    return Loader(catalog()).load(str(write(RUNBOOK)))


def test_defaults(runbook) -> None:
    values = resolve_params(runbook)
    assert values.values["port"] == 80 and values.values["mode"] == "fast"
    assert values.secrets == ()


def test_set_converts_by_type(runbook) -> None:
    sets = parse_set_args(["port=8080", "ratio=1.5", "debug=yes", "ports=[80, 443]",
                           "labels={app: api}", "name=x=y", "token=s3cret"])
    values = resolve_params(runbook, sets)
    assert values.values == {"name": "x=y", "port": 8080, "ratio": 1.5, "debug": True,
                             "ports": [80, 443], "labels": {"app": "api"}, "mode": "fast",
                             "token": "s3cret"}
    assert values.secrets == ("s3cret",)


def test_values_files_then_set_win(runbook, write) -> None:
    first = load_values(str(write("port: 1\nname: one\n", "a.yaml")))
    second = load_values(str(write("port: 2\n", "b.yaml")))
    values = resolve_params(runbook, {"name": "cli"}, values_files=[first, second])
    assert values.values["port"] == 2 and values.values["name"] == "cli"


def test_all_problems_at_once(runbook) -> None:
    with pytest.raises(RunbookError) as error:
        resolve_params(runbook, parse_set_args(["port=x", "debug=maybe", "nmae=1",
                                                "mode=medium"]))
    text = str(error.value)
    assert "--set port=x" in text and "--set debug=maybe: expected true or false" in text
    assert "unknown param 'nmae' (did you mean 'name'?)" in text
    assert "'medium' is not one of 'fast', 'slow'" in text


def test_set_needs_an_equals_sign() -> None:
    with pytest.raises(UsageError, match="expected NAME=VALUE"):
        parse_set_args(["port"])


def test_wrong_type_in_values_file_names_its_location(runbook, write) -> None:
    path = write("port: eighty\n", "v.yaml")
    with pytest.raises(RunbookError, match=f"{path}:1:7: param 'port': expected an integer"):
        resolve_params(runbook, values_files=[load_values(str(path))])


def test_set_integer_takes_python_literals(runbook) -> None:
    """Hex and underscores as in YAML 1.1 and Python (`--set port=0x1F90`)."""
    for text in ("0x1F90", "8_080", "0o17620"):
        assert resolve_params(runbook, parse_set_args([f"port={text}"])).values["port"] == 8080
