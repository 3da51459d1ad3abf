"""`make demo` end to end: runbooks/demo.yaml against the sample app in its own namespaces.

Real network namespaces, veth, iptables, the real manager, `enter` and busybox (needs root).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.node,
              pytest.mark.skipif(os.geteuid() != 0, reason="the demo needs root")]


@pytest.mark.runbook("runbooks/demo.yaml")
def test_demo_runbook_passes_and_cleans_up(tmp_path: Path) -> None:
    junit, report = tmp_path / "demo.xml", tmp_path / "demo.json"
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--report", f"junit={junit}", "--report",
         f"json={report}", "--artifacts", str(tmp_path / "artifacts")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "hello from the operator: /hello" in result.stdout
    assert "the lab is removed" in result.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    assert int(suite.get("tests", "0")) >= 14
    steps = {s["name"]: s for s in json.loads(report.read_text())["runs"][0]["steps"]}
    assert steps["decode the capture"]["status"] == "passed"
    assert steps["what the capture saw"]["status"] == "passed"  # its summary: in on 8080
    told = steps["packet capture"]["output"]  # its packets by direction and port, when it ended
    assert "\n  in       tcp/8080 " in told and "\n  out      tcp/8080 " in told, told
    assert list((tmp_path / "artifacts").rglob("capture.pcap"))
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "kd-demo-" not in namespaces
