"""README promises of the local step types, each checked for its effect: the `run` step's `env`,
`inherit_env`, `stdin`, `shell` and `check`; the `http` step's `body` and `verify`; the `match`
test; `kdiag run --timeout`."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _result(outcome, name: str) -> dict:
    return outcome.recorder.finished()[name].result


# -- run ---------------------------------------------------------------------------------------


def test_run_env_reaches_the_command_and_inherit_env_false_drops_kdiags(
        run_runbook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDIAG_TEST_INHERITED", "from-kdiag")
    outcome = run_runbook("""
        steps:
          - name: inherited
            run: {script: 'echo "[$KDIAG_TEST_INHERITED] [$GREETING] [$N]"',
                  env: {GREETING: hello there, N: 7}}
          - name: clean
            run: {script: 'echo "[$KDIAG_TEST_INHERITED] [$GREETING] [$PATH]"',
                  env: {GREETING: only this}, inherit_env: false}
    """)
    assert outcome.exit_code == 0, outcome.status
    assert _result(outcome, "inherited")["stdout"] == "[from-kdiag] [hello there] [7]\n"
    assert _result(outcome, "clean")["stdout"] == f"[] [only this] [{os.defpath}]\n"


def test_run_stdin_reaches_the_command(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - name: count
            run: {argv: [wc, -c], stdin: "twelve bytes"}
          - name: none
            run: {argv: [cat]}
    """)
    assert outcome.exit_code == 0, outcome.status
    assert _result(outcome, "count")["stdout"].strip() == "12"
    assert _result(outcome, "none")["stdout"] == ""  # no stdin: /dev/null, not kdiag's own


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_run_shell_names_the_interpreter_of_the_script(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - name: bash
            run: {script: 'echo "${BASH_VERSION:+bash} $0"', shell: /bin/bash}
          - name: default
            run: {script: 'echo "${BASH_VERSION:+bash} $0"'}
    """)
    assert outcome.exit_code == 0, outcome.status
    assert _result(outcome, "bash")["stdout"] == "bash /bin/bash\n"
    assert _result(outcome, "default")["stdout"] == " /bin/sh\n"


def test_run_check_false_keeps_a_failing_command_a_passed_step(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - name: tolerated
            run: {script: "echo out; exit 3", check: false}
            register: r
            assert: ["r.rc == 3", "r.stdout == 'out\\n'"]
          - name: checked
            run: {script: "exit 3"}
            continue_on_error: true
    """)
    assert outcome.exit_code == 0
    assert outcome.status == {"tolerated": "passed", "checked": "ignored"}
    assert outcome.recorder.finished()["checked"].message == "exit code 3"


# -- http --------------------------------------------------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with what it received (JSON)."""

    def log_message(self, *args: object) -> None:
        pass

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.dumps({"method": self.command, "body": self.rfile.read(length).decode(),
                           "type": self.headers.get("Content-Type")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _echo


def _serve(httpd: ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def echo_port() -> Iterator[int]:
    yield from _serve(ThreadingHTTPServer(("127.0.0.1", 0), _Echo))


@pytest.fixture
def https_port(tmp_path: Path) -> Iterator[int]:
    """The echo server over TLS, with a self-signed certificate no CA vouches for."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    yield from _serve(httpd)


def test_http_body_is_sent_as_is(run_runbook, echo_port: int) -> None:
    outcome = run_runbook(f"""
        steps:
          - name: put
            http: {{url: "http://127.0.0.1:{echo_port}/x", method: PUT, body: "a=1&b=two",
                    headers: {{Content-Type: application/x-www-form-urlencoded}}}}
            register: r
            assert: ["r.json.method == 'PUT'", "r.json.body == 'a=1&b=two'",
                     "r.json.type == 'application/x-www-form-urlencoded'"]
    """)
    assert outcome.exit_code == 0, outcome.recorder.finished()["put"].message


def test_http_verify_checks_the_certificate_unless_false(run_runbook, https_port: int) -> None:
    outcome = run_runbook(f"""
        steps:
          - name: checked
            http: {{url: "https://127.0.0.1:{https_port}/", timeout: 10s}}
            continue_on_error: true
          - name: unchecked
            http: {{url: "https://127.0.0.1:{https_port}/", verify: false, timeout: 10s}}
            register: r
            assert: ["r.status == 200", "r.json.method == 'GET'"]
    """)
    assert outcome.status == {"checked": "ignored", "unchecked": "passed"}, outcome.status
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.recorder.finished()["checked"].message


# -- templates ---------------------------------------------------------------------------------


def test_the_match_test_anchors_at_the_start_where_search_does_not(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - name: tests
            assert:
              - "'abc123' is match('[a-z]+[0-9]+')"
              - "not ('x abc123' is match('abc'))"
              - "'x abc123' is search('abc')"
              - "'ABC' is not match('abc')"
          - name: a failing match fails the assertion
            assert: ["'v2.1' is match('v3')"]
            continue_on_error: true
    """)
    assert outcome.status == {"tests": "passed", "a failing match fails the assertion": "ignored"}


# -- kdiag run --timeout -----------------------------------------------------------------------


def test_run_timeout_is_each_steps_default_and_ends_the_run_with_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "slow.yaml"
    marker = tmp_path / "finally-ran"
    path.write_text(textwrap.dedent(f"""
        steps:
          - name: own timeout
            run: {{script: "sleep 2"}}
            timeout: 30s
          - name: slow
            run: {{script: "sleep 30"}}
          - name: never
            run: {{script: "echo never"}}
        finally:
          - name: cleanup
            run: {{script: "touch {marker}"}}
    """))
    report = tmp_path / "r.json"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "kdiag", "run", str(path), "--timeout", "1s",
                             "--report", f"json={report}"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, env={**os.environ, "NO_COLOR": "1"})
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    steps = {s["name"]: s for s in json.loads(report.read_text())["runs"][0]["steps"]}
    assert steps["own timeout"]["status"] == "passed"  # its own 30 s, not the run's 1 s
    assert steps["slow"]["status"] == "failed" and "timed out" in steps["slow"]["message"]
    assert steps["slow"]["duration"] < 10  # cut at its 1 s, not after the 30 s of sleep
    assert steps["never"]["status"] == "skipped" and steps["cleanup"]["status"] == "passed"
    assert marker.exists() and took < 25
