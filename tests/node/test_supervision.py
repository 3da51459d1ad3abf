"""Background work and the target are watched (node mode, the real manager): killing the
manager or the target process during a long ``wait`` ends the run with exit 3 within 2 s, the
``finally`` steps run, and the report names the cause; the ad-hoc redirect says in one line
what died and exits 3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from demo.lab import Lab

from .conftest import ENTER

EVENT_TO_STEP_END = 2.0
"""The promise: the step running when background work or the target dies ends within 2 s."""
EVENT_TO_EXIT = 5.0
"""The kdiag process ends this soon after (it has the finally steps to run and, in node mode,
removes the rules a killed manager left behind, which takes ~1 s on a busy machine)."""


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kdiag", *args], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "NO_COLOR": "1", "KDIAG_ENTER": str(ENTER)})


def _wait_for_file(path: Path, process: subprocess.Popen[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"kdiag ended early ({process.returncode}):\n{out}\n{err}")
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)
    return path.read_text().strip()


REDIRECT = 'redirect: {ports: [8080], to: "127.0.0.1:9"}'
CAPTURE = 'capture: {filter: "tcp port 8080", file: api.pcap}'


def _run_until_killed(app: Lab, tmp_path: Path, victim: str, background: str = REDIRECT
                      ) -> tuple[int, str, dict, float, float]:
    """A runbook with background work (a redirect by default) and a long wait; kill
    ``victim`` (manager or target) during the wait. Returns the exit code, output, report,
    and seconds from the kill to the end of the wait step and of the kdiag process."""
    pids = tmp_path / "pids"
    cleaned = tmp_path / "cleaned"
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(textwrap.dedent(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        steps:
          - name: api
            {background}
            background: true
          - name: tell the test
            run: {{script: "echo {{{{ target.manager_pid }}}} {{{{ target.pid }}}} > {pids}"}}
          - {{name: long wait, wait: 120s}}
          - {{name: never, note: x}}
        finally:
          - {{name: cleanup, run: {{argv: [touch, {cleaned}]}}}}
    """))
    report = tmp_path / "report.json"
    process = _start(["run", str(runbook), "--report", f"json={report}"], tmp_path)
    try:
        manager_pid, target_pid = map(int, _wait_for_file(pids, process).split())
        time.sleep(0.3)  # the wait has begun
        killed_at, killed_wall = time.monotonic(), time.time()
        os.kill(manager_pid if victim == "manager" else target_pid, signal.SIGKILL)
        out, err = process.communicate(timeout=30)
        ended = time.monotonic() - killed_at
    finally:
        process.kill()
    assert cleaned.exists(), "the finally step did not run"
    data = json.loads(report.read_text())["runs"][0]
    wait = next(s for s in data["steps"] if s["name"] == "long wait")
    step_end = wait["started_at"] + wait["duration"] - killed_wall
    return process.returncode, out + err, data, step_end, ended


def test_killed_manager_during_a_wait_fails_the_run_within_2s(app: Lab, tmp_path: Path) -> None:
    code, output, run, step_end, ended = _run_until_killed(app, tmp_path, "manager")
    assert code == 3, output
    assert step_end < EVENT_TO_STEP_END, f"{step_end:.2f}s from the kill to the step's end"
    assert ended < EVENT_TO_EXIT, f"{ended:.2f}s from the kill to the end of the run"
    steps = {s["name"]: s for s in run["steps"]}
    cause = steps["api"]["background_failure"]["cause"]
    assert cause.startswith("manager gone (process ") and cause.endswith("killed by SIGKILL)")
    assert steps["api"]["status"] == "error"
    assert steps["long wait"]["status"] == "error"
    assert steps["long wait"]["message"].startswith("stopped: ")
    assert steps["never"]["status"] == "skipped" and steps["cleanup"]["status"] == "passed"
    assert "manager gone" in run["message"] and "Traceback" not in output
    assert not app.tagged_rules()


def test_killed_manager_under_a_background_capture_fails_the_run_within_2s(
        app: Lab, tmp_path: Path) -> None:
    code, output, run, step_end, _ended = _run_until_killed(app, tmp_path, "manager", CAPTURE)
    assert code == 3, output
    assert step_end < EVENT_TO_STEP_END, f"{step_end:.2f}s from the kill to the step's end"
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["api"]["status"] == "error", steps["api"]
    assert "manager gone (process " in steps["api"]["background_failure"]["cause"], steps["api"]
    assert steps["long wait"]["status"] == "error"
    assert steps["never"]["status"] == "skipped" and steps["cleanup"]["status"] == "passed"
    assert "manager gone" in run["message"] and "Traceback" not in output


def test_killed_target_during_a_wait_fails_the_run_within_2s(app: Lab, tmp_path: Path) -> None:
    code, output, run, step_end, ended = _run_until_killed(app, tmp_path, "target")
    assert code == 3, output
    assert step_end < EVENT_TO_STEP_END, f"{step_end:.2f}s from the kill to the step's end"
    assert ended < EVENT_TO_EXIT, f"{ended:.2f}s from the kill to the end of the run"
    assert run["message"] == f"target: target process {app.app_pid} (app) exited"
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["long wait"]["status"] == "error"
    assert steps["cleanup"]["status"] == "passed"


def _adhoc_redirect(app: Lab, tmp_path: Path, victim: str) -> tuple[int, str, float, int]:
    process = _start(["redirect", "--pid", str(app.app_pid), "8080:9"], tmp_path)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("redirecting incoming 8080"), line
        manager = next(int(p) for p in os.listdir("/proc") if p.isdigit()
                       and _parent(int(p)) == process.pid and b"kdiag_manager" in
                       Path(f"/proc/{p}/cmdline").read_bytes())
        killed_at = time.monotonic()
        os.kill(manager if victim == "manager" else app.app_pid, signal.SIGKILL)
        _out, err = process.communicate(timeout=30)
        ended = time.monotonic() - killed_at
    finally:
        process.kill()
    return process.returncode, err, ended, manager


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def test_adhoc_redirect_names_a_killed_manager_and_exits_3(app: Lab, tmp_path: Path) -> None:
    code, err, ended, manager = _adhoc_redirect(app, tmp_path, "manager")
    assert code == 3, err
    # (before it, node mode may say that it removed the rules the killed manager left)
    assert err.strip().splitlines()[-1] == (f"kdiag: error: redirect ended: manager gone "
                                            f"(process {manager} killed by SIGKILL)")
    assert ended < EVENT_TO_EXIT


def test_adhoc_redirect_names_a_killed_target_and_exits_3(app: Lab, tmp_path: Path) -> None:
    code, err, ended, _manager = _adhoc_redirect(app, tmp_path, "target")
    assert code == 3, err
    assert err.strip().splitlines()[-1] == (f"kdiag: error: redirect ended: target process "
                                            f"{app.app_pid} (app) exited")
    assert ended < EVENT_TO_EXIT
