"""The dry-run plan rendered in this process (``test_plan`` runs the command): the target and
the steps see the params, and a value known only at run time shows as the path that will give
it (attributes and subscripts), while what is known is filled in around it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kdiag.engine.masking import Masker
from kdiag.engine.plan import render_plan
from kdiag.language.prerun import resolve_for_run
from kdiag.language.runbook import Loader
from kdiag.steps import catalog
from tests.unit.test_plan import EXPECTED, RUNBOOK


def _plan(path: Path, sets: dict[str, str]) -> str:
    runbook = Loader(catalog()).load(str(path))
    values = resolve_for_run(runbook, sets, [], missing_ok=True)
    return render_plan(runbook, values.values, {}, Masker(values.secrets).text, values.missing)


def test_the_plan_reads_as_expected(write: Callable[..., Path]) -> None:
    path = write(RUNBOOK, "plan.yaml")
    assert _plan(path, {"pid": "42"}) == EXPECTED.format(path=path)


def test_a_param_not_given_shows_as_its_template_in_the_target(
        write: Callable[..., Path]) -> None:
    lines = _plan(write(RUNBOOK, "plan.yaml"), {}).splitlines()
    assert "  pid = (not given: --set pid=VALUE)" in lines
    assert "target: node (pid={{ params.pid }})" in lines


def test_run_time_values_show_as_their_paths_with_known_values_filled_in(
        write: Callable[..., Path]) -> None:
    path = write("""
        name: paths
        params:
          port: {type: integer, default: 9000}
        steps:
          - {name: call, http: {url: "http://127.0.0.1:{{ params.port }}/"}, register: call}
          - name: tell
            note: "{{ params.port }}: {{ call.headers[\\"x-id\\"] }} {{ call['json'].items[0] }}"
    """, "paths.yaml")
    lines = _plan(path, {}).splitlines()
    assert lines[-1] == "       9000: {{ call.headers['x-id'] }} {{ call['json'].items[0] }}"
