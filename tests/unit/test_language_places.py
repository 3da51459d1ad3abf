"""Runbook mistakes found after the params are known, and the input limits, each told with
their place (``file:line:col``) and cause: a target value that does not render or is not a
duration, a runbook path that is a folder, a document with more values than allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdiag.cli.main import main

TARGET = """\
params:
  zero: {type: integer, default: 1}
  wait: {type: string, default: 30s}
target:
  kubernetes: {pod: api, namespace: "{{ 10 // params.zero }}", timeout: "{{ params.wait }}"}
steps:
  - note: x
"""


def test_a_target_value_that_does_not_render_is_placed(write, capsys) -> None:
    path = write(TARGET)
    assert main(["validate", str(path), "--set", "zero=0"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:5:37: target: in ' 10 // params.zero ': ZeroDivisionError" in err, err


def test_a_target_timeout_that_is_not_a_duration_is_placed(write, capsys) -> None:
    path = write(TARGET)
    assert main(["validate", str(path), "--set", "wait=soon"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:5:73: target: timeout: expected a duration" in err, err
    assert main(["validate", str(path)]) == 0


def test_a_folder_is_not_a_runbook(tmp_path: Path, capsys) -> None:
    assert main(["validate", str(tmp_path)]) == 2
    assert f"{tmp_path}: is a directory, not a runbook file" in capsys.readouterr().err


def test_a_document_with_too_many_values_is_refused_where_it_crosses(
        write, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDIAG_MAX_YAML_VALUES", "6")
    path = write("steps:\n  - note: a\n  - note: b\n  - note: c\n  - note: d\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3:5: the document holds more than 6 values (KDIAG_MAX_YAML_VALUES)" in err, \
        err
