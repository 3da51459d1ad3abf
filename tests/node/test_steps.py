"""Manager step types run through `kdiag run` against a node target (a shell-less app)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from demo.lab import Lab

from .conftest import processes_in_root

ROOT = Path(__file__).resolve().parents[2]


def kdiag_run(runbook: str, tmp_path: Path, *args: str) -> tuple[int, str, dict]:
    path = tmp_path / "rb.yaml"
    path.write_text(textwrap.dedent(runbook))
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "kdiag", "run", str(path), "--report", f"json={report}",
         "--artifacts", str(tmp_path / "artifacts"), *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"})
    data = json.loads(report.read_text()) if report.exists() else {}
    steps = {s["name"]: s for s in data.get("runs", [{}])[0].get("steps", [])}
    return result.returncode, result.stdout + result.stderr, steps


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_copy_download_and_upload_without_tar_or_shell(app: Lab, tmp_path: Path) -> None:
    (app.root / "etc").mkdir()
    (app.root / "etc" / "app.conf").write_text("level=debug\n")
    os.chmod(app.root / "etc" / "app.conf", 0o640)
    upload = tmp_path / "fixture.txt"
    upload.write_text("uploaded by kdiag\n")
    code, output, steps = kdiag_run(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        steps:
          - name: download
            copy: {{download: /etc/app.conf}}
            register: conf
            assert: ["conf.size == 12", "conf.mode == '0640'"]
          - name: upload
            copy: {{upload: {upload}, to: /tmp/in/fixture.txt, mode: "0600", make_parents: true}}
          - name: read it back inside
            shell: {{script: "cat /tmp/in/fixture.txt"}}
            register: back
            assert: ["back.stdout == 'uploaded by kdiag\\\\n'"]
    """, tmp_path)
    assert code == 0, output
    downloaded = Path(steps["download"]["result"]["local"])
    assert downloaded.read_text() == "level=debug\n"
    assert (app.root / "tmp" / "in" / "fixture.txt").stat().st_mode & 0o777 == 0o600


def test_outgoing_redirect_step_sends_target_connections_here(app: Lab, tmp_path: Path) -> None:
    local = free_port()
    code, output, _steps = kdiag_run(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        steps:
          - name: operator server
            run:
              argv: [python3, -m, http.server, "{local}", --bind, 127.0.0.1, --directory, {tmp_path}]
            background: true
          - name: wait for it
            http: {{url: "http://127.0.0.1:{local}/"}}
            retries: 30
            delay: 100ms
            until: result.status == 200
          - name: capture outgoing
            redirect: {{direction: outgoing, ports: ["9999:{local}"]}}
            background: true
            register: out
          - name: the app's namespace calls out
            shell: {{script: "wget -qO- http://{app.client_ip}:9999/rb.yaml"}}
            register: call
            assert: ["'capture outgoing' in call.stdout"]
          - {{name: counted, assert: ["out.stats.to_operator >= 1"]}}
    """, tmp_path)
    assert code == 0, output
    assert not app.tagged_rules()


def test_header_filtered_redirect_leaves_other_requests_alone(app: Lab, tmp_path: Path) -> None:
    local = free_port()
    code, output, _steps = kdiag_run(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        steps:
          - name: operator server
            run:
              argv: [python3, -m, http.server, "{local}", --bind, 127.0.0.1, --directory, {tmp_path}]
            background: true
          - name: up
            http: {{url: "http://127.0.0.1:{local}/"}}
            retries: 30
            delay: 100ms
            until: result.status == 200
          - name: intercept alice
            redirect: {{ports: ["8080:{local}"], header: {{name: X-Debug-User, value: alice}}}}
            background: true
          - name: alice reaches the operator
            run: {{argv: [ip, netns, exec, {app.client_ns}, busybox, wget, -qO-,
                         --header, "X-Debug-User: alice", "http://{app.app_ip}:8080/rb.yaml"]}}
            register: alice
            assert: ["'intercept alice' in alice.stdout"]
          - name: everyone else reaches the app
            run: {{argv: [ip, netns, exec, {app.client_ns}, busybox, wget, -qO-,
                         "http://{app.app_ip}:8080/rb.yaml"]}}
            register: bob
            assert: ["bob.stdout == 'app'"]
    """, tmp_path)
    assert code == 0, output


def test_no_such_pid_is_an_environment_error(tmp_path: Path) -> None:
    code, output, _steps = kdiag_run("""
        target: {node: {pid: 999999}}
        steps:
          - {name: look, ps: {}}
        finally:
          - {name: cleanup, note: still runs}
    """, tmp_path)
    assert code == 3, output
    assert "999999" in output
    assert "Traceback" not in output


def test_manager_step_without_a_target_is_an_environment_error(tmp_path: Path) -> None:
    code, output, _steps = kdiag_run("steps:\n  - {name: look, ps: {}}\n", tmp_path)
    assert code == 3, output
    assert "this runbook has no target" in output


def test_shell_timeout_kills_the_command_in_the_target(app: Lab, tmp_path: Path) -> None:
    started = time.monotonic()
    code, output, steps = kdiag_run(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        steps:
          - name: slow
            shell: {{script: "sleep 30; echo not reached"}}
            timeout: 1s
    """, tmp_path)
    took = time.monotonic() - started
    assert code == 1, output
    slow = steps["slow"]
    assert slow["status"] == "failed" and "timed out" in slow["message"], slow
    assert slow["result"]["timed_out"] is True
    # The step ends at its timeout, not when the command would have: well before 30 s, even
    # on a busy machine (the whole run, with the manager's start, included).
    assert 1.0 <= slow["duration"] < 10, slow["duration"]
    assert took < 20, took
    # ... and nothing of the command is left in the target: the shell and its child alike.
    assert processes_in_root(app.root, "/app"), "the search must see the target's processes"
    assert processes_in_root(app.root, "sleep") == []


def test_tcp_probe_step_sends_and_expects(app: Lab, tmp_path: Path) -> None:
    code, output, steps = kdiag_run(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        params:
          where: {{default: "127.0.0.1:8080"}}
        steps:
          - name: by hand
            probe: {{tcp: "{{{{ params.where }}}}", send: "GET /health HTTP/1.0\\r\\n\\r\\n",
                     expect: "app"}}
            register: raw
            assert: ["raw.ok", "raw.text.startswith('HTTP/1.')", "target.kind == 'node'",
                     "target.pid == {app.app_pid} and target.manager_pid > 0"]
          - name: not what it says
            probe: {{tcp: "127.0.0.1:8080", send: "GET / HTTP/1.0\\r\\n\\r\\n", expect: "+PONG",
                     timeout: 2}}
            continue_on_error: true
          - name: rendered into nonsense
            probe: {{tcp: "{{{{ params.where }}}}x"}}
            continue_on_error: true
    """, tmp_path)
    assert code == 0, output
    assert steps["by hand"]["status"] == "passed"
    assert steps["not what it says"]["status"] == "ignored"
    assert "does not hold b'+PONG'" in steps["not what it says"]["message"]
    assert "is not HOST:PORT" in steps["rendered into nonsense"]["message"]


def test_copy_folders_both_ways(app: Lab, tmp_path: Path) -> None:
    conf = app.root / "etc" / "app"
    (conf / "conf.d").mkdir(parents=True)
    (conf / "empty").mkdir()
    (conf / "main.yaml").write_text("level: debug\n")
    (conf / "conf.d" / "extra.yaml").write_text("extra: true\n")
    os.chmod(conf / "conf.d" / "extra.yaml", 0o600)
    os.chmod(conf / "conf.d", 0o750)
    os.symlink("/etc/shadow", conf / "escape")  # listed, never followed nor made here
    outgoing = tmp_path / "outgoing"
    (outgoing / "nested" / "deeper").mkdir(parents=True)
    (outgoing / "blank").mkdir()
    (outgoing / "nested" / "deeper" / "note.txt").write_text("from the operator\n")
    os.chmod(outgoing / "nested" / "deeper" / "note.txt", 0o640)
    os.symlink("/etc/passwd", outgoing / "link")
    code, output, _ = kdiag_run(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        steps:
          - name: down
            copy: {{download: /etc/app, to: {tmp_path / "got"}}}
            register: got
            assert: ["got.count == 2", "got.folders == 2", "got.size == 25",
                     "got.not_copied == [{{'path': 'escape', 'kind': 'symlink',
                                            'link': '/etc/shadow'}}]"]
          - name: up
            copy: {{upload: {outgoing}, to: /srv/in}}
            register: sent
            assert: ["sent.count == 1", "sent.folders == 3", "sent.not_copied[0].path == 'link'"]
    """, tmp_path)
    assert code == 0, output
    got = tmp_path / "got"
    assert (got / "main.yaml").read_text() == "level: debug\n"
    assert (got / "conf.d" / "extra.yaml").stat().st_mode & 0o777 == 0o600
    assert (got / "conf.d").stat().st_mode & 0o777 == 0o750
    assert (got / "empty").is_dir() and not (got / "escape").exists()
    inside = app.root / "srv" / "in"
    assert (inside / "nested" / "deeper" / "note.txt").read_text() == "from the operator\n"
    assert (inside / "nested" / "deeper" / "note.txt").stat().st_mode & 0o777 == 0o640
    assert (inside / "blank").is_dir() and not (inside / "link").exists()
