"""What an idle manager loads. Its resident memory is a budget (`manager.rss_idle` ≤ 40 MB in
`make bench`): the mirror's modules (the packet socket, TCP reassembly, the copy stream) and the
header router load with the first mirror or header filter, not at start (that they then work:
tests/node/test_mirror*.py, tests/node/test_header_routing.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MANAGER = Path(__file__).resolve().parents[2] / "manager"
LAZY = {"kdiag_manager.mirror", "kdiag_manager.packettap", "kdiag_manager.tcpreassembly",
        "kdiag_manager.copystream", "kdiag_manager.mirrorhttp", "kdiag_manager.httprouter"}


def _loaded(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, timeout=60, cwd=MANAGER,
        env={"PYTHONPATH": str(MANAGER), "PATH": "/usr/bin:/bin"})
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_an_idle_manager_has_neither_the_mirror_nor_the_header_router_loaded() -> None:
    loaded = _loaded("import kdiag_manager.__main__, kdiag_manager.server")
    assert "kdiag_manager.redirect" in loaded  # (what it serves from the start)
    assert not LAZY & loaded, sorted(LAZY & loaded)

