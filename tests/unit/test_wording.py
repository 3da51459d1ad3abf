"""Messages a newcomer reads first (issue 18): counts and articles that read right."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kdiag.cli.validate import counted
from kdiag.language.params import a_type


def kdiag(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kdiag", *args], capture_output=True,
                          text=True, timeout=60)


def test_validate_counts_steps_in_words(tmp_path: Path) -> None:
    assert counted([1], []) == "1 step"
    assert counted([1, 2], [1]) == "2 steps, 1 finally step"
    assert counted([], [1, 2]) == "0 steps, 2 finally steps"
    one = tmp_path / "one.yaml"
    one.write_text("steps:\n  - note: hi\n")
    result = kdiag("validate", str(one))
    assert result.stdout == f"{one}: ok (1 step)\n"


@pytest.mark.parametrize(("kind", "words"), [("integer", "an integer"), ("object", "an object"),
                                             ("string", "a string"), ("list", "a list"),
                                             ("number", "a number"), ("boolean", "a boolean")])
def test_types_take_their_article(kind: str, words: str) -> None:
    assert a_type(kind) == words


def test_param_messages(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("params:\n  n: {type: integer, default: x}\n  m: {type: object, default: 3}\n"
                    "steps:\n  - note: hi\n")
    err = kdiag("validate", str(path)).stderr
    assert "the default of param 'n' is not an integer: a string 'x'" in err
    assert "the default of param 'm' is not an object: a number (3)" in err
    path.write_text("params:\n  n: {type: integer}\nsteps:\n  - note: hi\n")
    err = kdiag("run", str(path), "--set", "n=1.5").stderr
    assert err == "kdiag: error: --set n=1.5: expected an integer, got '1.5'\n"
