"""The CLI contract: exit codes, --dry-run, reports, and the example runbooks that need no target."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kdiag.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kdiag(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kdiag", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "NO_COLOR": "1"}, timeout=120)


def test_help_lists_commands_and_exit_codes() -> None:
    result = kdiag("--help")
    assert result.returncode == 0
    for word in ("run", "validate", "schema", "exit codes", "130", "examples"):
        assert word in result.stdout


def test_no_command_prints_help_and_exits_2(capsys) -> None:
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().out


def test_unknown_option_is_exit_2() -> None:
    result = kdiag("run", "--bogus")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_invalid_runbook_is_exit_2_with_location(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("steps:\n  - nope: 1\n")
    result = kdiag("run", str(path))
    assert result.returncode == 2
    assert f"{path}:2:5: unknown step type 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_set_and_missing_param(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("params:\n  n: {type: integer}\nsteps:\n  - note: '{{ params.n }}'\n")
    assert kdiag("run", str(path)).returncode == 2
    result = kdiag("run", str(path), "--set", "n=abc")
    assert result.returncode == 2
    assert "--set n=abc: expected an integer, got 'abc'" in result.stderr
    assert "is required" not in result.stderr  # it was given, only wrong
    assert kdiag("run", str(path), "--set", "n=0x10").returncode == 0


def test_bad_report_spec_and_start_at_are_usage_errors(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("steps:\n  - {name: a, note: x}\n")
    result = kdiag("run", str(path), "--report", "pdf=x.pdf")
    assert result.returncode == 2 and "unknown report format" in result.stderr
    result = kdiag("run", str(path), "--start-at", "zzz")
    assert result.returncode == 2 and "no such step" in result.stderr
    result = kdiag("run", str(path), "--timeout", "soon")
    assert result.returncode == 2 and "--timeout" in result.stderr


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "plan.yaml"
    path.write_text(f"""
params:
  port: {{type: integer, default: 8080}}
  token: {{type: string, default: sekrit-123, secret: true}}
steps:
  - name: touch
    run: {{script: "touch {marker} {{{{ params.token }}}}"}}
    register: t
    retries: 2
  - name: call
    http: {{url: "http://localhost:{{{{ params.port }}}}/{{{{ t.stdout }}}}"}}
""")
    result = kdiag("run", str(path), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert "   1. touch [run]" in result.stdout
    assert f"touch {marker} ***" in result.stdout
    assert "GET http://localhost:8080/{{ t.stdout }}" in result.stdout
    assert "sekrit-123" not in result.stdout


def test_failed_run_reports_carry_full_failure_details(tmp_path: Path) -> None:
    path = tmp_path / "fail.yaml"
    path.write_text("""
name: failing
params:
  token: {type: string, default: tok-98765, secret: true}
steps:
  - name: produce
    run: {script: "echo line one; echo token={{ params.token }}; echo oops >&2"}
    register: out
    assert: ["out.stdout == 'something else'"]
""")
    junit, report_json, md = tmp_path / "r.xml", tmp_path / "r.json", tmp_path / "r.md"
    result = kdiag("run", str(path), "--report", f"junit={junit}", "--report",
                   f"json={report_json}", "--report", f"md={md}", "--artifacts",
                   str(tmp_path / "art"))
    assert result.returncode == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert failure is not None
    assert "out.stdout == 'something else'" in (failure.text or "")
    assert "token=***" in (failure.text or "")
    data = json.loads(report_json.read_text())
    assert "tok-98765" not in report_json.read_text() + md.read_text() + junit.read_text()
    assert "line one" in json.dumps(data)
    assert "oops" in md.read_text()
    artifacts = "".join(p.read_text() for p in (tmp_path / "art").rglob("*") if p.is_file())
    assert "line one" in artifacts and "tok-98765" not in artifacts


@pytest.mark.runbook("runbooks/local-http-check.yaml", "runbooks/lib/http-health.yaml")
def test_local_http_check_example_runs(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    result = kdiag("run", "runbooks/local-http-check.yaml", "--set", f"port={free_port()}",
                   "--report", f"junit={junit}")
    assert result.returncode == 0, result.stdout + result.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("failures") == "0" and int(suite.get("tests", "0")) >= 6
    assert "not-a-real-token" not in result.stdout


@pytest.mark.parametrize("path", sorted((ROOT / "runbooks").rglob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_example_validates(path: Path) -> None:
    assert kdiag("validate", str(path)).returncode == 0


def test_every_example_runbook_is_run_by_some_test(tmp_path: Path) -> None:
    """Each file in runbooks/ (library runbooks too) is declared by a test that `make test` or
    `make e2e` runs, with ``@pytest.mark.runbook``; the declaration is checked while that test
    runs: its `kdiag run` must load the file (tests/quality/runbooks.py)."""
    mapping_file = tmp_path / "map.json"
    collect = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "--runbook-map", str(mapping_file), "tests"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert collect.returncode == 0, collect.stdout[-3000:] + collect.stderr[-3000:]
    mapping = json.loads(mapping_file.read_text())
    for path in sorted((ROOT / "runbooks").rglob("*.yaml")):
        name = str(path.relative_to(ROOT))
        tests = mapping.get(name, [])
        in_make_test = [t for t in tests if "cluster" not in t["markers"]
                        and "dist" not in t["markers"] and not t["skipped"]]
        in_make_e2e = [t for t in tests if "cluster" in t["markers"]
                       and t["test"].startswith("tests/cluster/") and not t["skipped"]]
        assert in_make_test or in_make_e2e, f"no test of make test or make e2e runs {name}"
