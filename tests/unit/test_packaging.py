"""The packages' metadata builds without a warning (issue 18): setuptools printed its
deprecation of a ``project.license`` table three times in ``make install``'s output, which must
stay quiet on success."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("project", [".", "manager"])
def test_metadata_builds_without_warnings(project: str, tmp_path: Path) -> None:
    code = ("import sys; from setuptools import build_meta; "
            "build_meta.prepare_metadata_for_build_wheel(sys.argv[1])")
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code, str(tmp_path)],
                          cwd=ROOT / project, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "Warning" not in output and "deprecat" not in output.lower(), output[-3000:]
