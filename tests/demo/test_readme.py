"""The README's first example, run exactly as written: the first commands a reader copies must
work (``make demo``, then kdiag from the venv it made). Needs root, like the demo."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

pytestmark = [pytest.mark.node,
              pytest.mark.skipif(os.geteuid() != 0, reason="the demo needs root")]


def first_block() -> str:
    """The first fenced block of the README (the one under its title)."""
    match = re.search(r"^```[a-z]*\n(.*?)^```$", README.read_text(), re.S | re.M)
    assert match is not None, "the README has no code block"
    return match[1]


def test_the_first_block_runs_as_written() -> None:
    block = first_block()
    assert block.lstrip().startswith("make demo")  # what this test is about
    before = set((ROOT / "kdiag-artifacts").glob("*"))
    try:
        result = subprocess.run(["bash", "-e", "-c", block], cwd=ROOT, capture_output=True,
                                text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"})
    finally:
        for made in set((ROOT / "kdiag-artifacts").glob("*")) - before:
            subprocess.run(["rm", "-rf", str(made)], check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "PASSED: 15 passed" in result.stdout  # the demo
    assert "demo: the report: build/demo-report.html" in result.stdout
    assert "plan for demo (runbooks/demo.yaml)" in result.stdout  # the dry run
    assert "runbooks/demo.yaml: ok (15 steps)" in result.stdout  # validate
    assert "Traceback" not in out
