"""`make bench`'s runner (tests/bench/run.py): a fresh results file each run, with what the
figures depend on; a figure this machine could measure and did not fails the run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

import pytest

from tests.bench.run import Unmeasurable, main


def _module(figures: tuple[str, ...], run) -> ModuleType:
    module = ModuleType("bench_fake")
    module.FIGURES = figures  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    return module


def _measures(*names: str, value: float = 2.0, target: str = ""):
    def run(record) -> None:
        for name in names:
            record(name, value, "x", target, 1.0, sides=f"{name}: this ÷ that")
    return run


def test_a_fresh_file_with_the_header_and_no_figure_of_an_earlier_run(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    assert main([], [("bench_a", _module(("a.one", "a.two"), _measures("a.one", "a.two")))],
                results) == 0
    assert main([], [("bench_a", _module(("a.one",), _measures("a.one")))], results) == 0
    data = json.loads(results.read_text())
    assert set(data["figures"]) == {"a.one"}  # a.two of the first run is gone
    assert data["figures"]["a.one"]["sides"] == "a.one: this ÷ that"
    assert data["cpu_count"] == os.cpu_count() and len(data["load_average"]) == 3
    assert len(data["commit"]) == 40 and isinstance(data["dirty"], bool)
    assert data["time"].endswith("Z") and data["missing"] == {} and data["not_measured"] == {}


def test_a_declared_figure_not_recorded_fails_the_run(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    module = _module(("a.one", "a.two"), _measures("a.one"))
    assert main([], [("bench_a", module)], results) == 1
    assert json.loads(results.read_text())["missing"] == {
        "a.two": "the module did not record it"}


def test_a_module_that_fails_fails_the_run_and_names_its_figures(tmp_path: Path) -> None:
    def broken(record) -> None:
        record("a.one", 1.0, "x")
        raise RuntimeError("pod did not start")

    results = tmp_path / "results.json"
    assert main([], [("bench_a", _module(("a.one", "a.two"), broken))], results) == 1
    data = json.loads(results.read_text())
    assert data["missing"] == {"a.two": "RuntimeError: pod did not start"}
    assert data["failed_modules"] == {"bench_a": "RuntimeError: pod did not start"}
    assert "a.one" in data["figures"]


def test_unmeasurable_here_is_listed_with_its_reason_and_passes(tmp_path: Path) -> None:
    def no_cluster(record) -> None:
        raise Unmeasurable("the local cluster is not up")

    results = tmp_path / "results.json"
    modules = [("bench_a", _module(("a.one",), _measures("a.one"))),
               ("bench_cluster", _module(("c.one", "c.two"), no_cluster))]
    assert main([], modules, results) == 0
    data = json.loads(results.read_text())
    assert data["not_measured"] == {"c.one": "the local cluster is not up",
                                    "c.two": "the local cluster is not up"}
    assert main(["bench_a"], modules, results) == 0  # not selected: said, not failed
    assert json.loads(results.read_text())["not_measured"]["c.one"].startswith("not selected")


@pytest.mark.parametrize(("value", "code"), [(2.0, 0), (0.5, 1)])
def test_a_missed_target_fails_the_run(tmp_path: Path, value: float, code: int,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.json"
    module = _module(("a.ratio",), _measures("a.ratio", value=value, target=">= 1.0"))
    assert main([], [("bench_a", module)], results) == code
    assert json.loads(results.read_text())["figures"]["a.ratio"]["met"] is (code == 0)
    assert "a.ratio: this ÷ that" in capsys.readouterr().out  # each ratio says its sides
