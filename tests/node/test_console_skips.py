"""A run whose target does not exist (issue 18): the cause is said on the failing step's line
and in the verdict, and the steps that did not run are listed after one line, without it."""

from __future__ import annotations

from pathlib import Path

from tests.node.test_steps import kdiag_run


def test_the_cause_is_said_once_and_the_steps_not_run_are_listed(tmp_path: Path) -> None:
    code, output, steps = kdiag_run("""
        target: {node: {pid: 999999}}
        steps:
          - {name: look, ps: {}}
          - {name: inside, shell: {script: ls}}
          - {name: facts, net: {}}
          - {name: local, note: not run either}
    """, tmp_path)
    assert code == 3, output
    lines = output.splitlines()
    cause = "target process 999999: no such process"
    failed = next(i for i, line in enumerate(lines) if line.startswith("[ERR ] look: "))
    assert cause in lines[failed]
    assert lines[failed + 1:failed + 5] == ["       so these steps did not run:",
                                            "[SKIP] inside", "[SKIP] facts", "[SKIP] local"]
    table = [line.split() for line in lines if line.startswith("  ")]
    assert ["inside", "skipped", "-", "not", "run"] in table
    assert lines[-1].startswith("ERROR: 3 skipped, 1 error in ") and cause in lines[-1]
    # the failing step's line, its row in the table (cut to fit), the verdict: nowhere else
    assert sum(cause in line for line in lines) == 3, output
    assert steps["inside"]["message"].startswith(f"not run: {cause}")  # reports keep it whole
