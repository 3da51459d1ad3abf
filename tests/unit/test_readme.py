"""The README documents every step type and every step control."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from kdiag.language.schema import CONTROLS
from kdiag.steps import step_types

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_step_type_is_in_the_reference() -> None:
    for kind in step_types():
        assert f"| `{kind}` |" in README, f"README's step table lacks {kind}"


def test_every_control_is_in_the_reference() -> None:
    for control in CONTROLS:
        assert f"{control}:" in README or f"`{control}`" in README, control


def test_set_up_commands() -> None:
    assert "make demo" in README and "make test" in README


def test_cluster_readme_counts_the_cluster_tests() -> None:
    """cluster/README.md's timings name how many cluster tests there are: the number pytest
    collects (issue 18: it said 4, then 32, while the suite grew)."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "cluster" / "README.md").read_text()
    said = re.search(r"\(`pytest -m cluster tests/cluster`, (\d+) tests\)", text)
    assert said, "cluster/README.md's timings lack the number of cluster tests"
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "cluster",
                           "-p", "no:cacheprovider", "tests/cluster"], cwd=root,
                          capture_output=True, text=True, timeout=120, check=False)
    collected = re.search(r"^(\d+)/\d+ tests collected", proc.stdout, re.M)
    assert collected, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert int(said[1]) == int(collected[1]), (
        f"cluster/README.md says {said[1]} cluster tests, pytest collects {collected[1]}: "
        "update its timings")
