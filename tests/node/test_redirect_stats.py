"""A redirect's ``stats`` say what went where (issue 18): to the operator, to the app, rejected,
open — with a header filter, and when the operator side is down. The real manager in the app's
network namespace, calls from the client namespace; the counters also reach the reports over
time (``progress`` in the JSON report, for the timeline)."""

from __future__ import annotations

import re
from pathlib import Path

from demo.lab import Lab
from tests.node.test_steps import free_port, kdiag_run


def wget(app: Lab, path: str, user: str = "") -> str:
    header = f'--header, "X-Debug-User: {user}", ' if user else ""
    return (f"run: {{argv: [ip, netns, exec, {app.client_ns}, busybox, wget, -qO-, {header}"
            f'"http://{app.app_ip}:8080/{path}"]}}')


def test_header_filter_stats_name_where_connections_went(app: Lab, tmp_path: Path) -> None:
    local = free_port()
    code, output, steps = kdiag_run(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        steps:
          - name: operator server
            run: {{argv: [python3, -m, http.server, "{local}", --bind, 127.0.0.1,
                         --directory, {tmp_path}]}}
            background: true
          - name: up
            http: {{url: "http://127.0.0.1:{local}/"}}
            retries: 30
            delay: 100ms
            until: result.status == 200
          - name: intercept alice
            redirect: {{ports: ["8080:{local}"], header: {{name: X-Debug-User, value: alice}}}}
            background: true
            register: r
          - {{name: alice 1, {wget(app, "rb.yaml", "alice")}}}
          - {{name: alice 2, {wget(app, "rb.yaml", "alice")}}}
          - {{name: bob 1, {wget(app, "")}}}
          - {{name: bob 2, {wget(app, "")}}}
          - {{name: bob 3, {wget(app, "")}}}
          - name: all closed
            wait: {{until: "r.stats.to_app >= 3 and r.stats.open == 0", timeout: 10s,
                    interval: 100ms}}
          - name: counted
            assert:
              - r.stats.to_operator == 2
              - r.stats.to_app == 3
              - r.stats.rejected == 0 and r.stats.dropped == 0
              - r.stats.closed == 5
          - {{name: stop it, stop: intercept alice}}
    """, tmp_path)
    assert code == 0, output
    assert "stopped: 2 to the operator, 3 to the app" in output
    redirect = steps["intercept alice"]
    assert redirect["background_stopped_at"] is not None
    last = redirect["progress"][-1]
    assert last["counts"]["to_operator"] == 2 and last["counts"]["to_app"] == 3
    times = [p["at"] for p in redirect["progress"]]
    assert times == sorted(times) and redirect["started_at"] < times[0]


def test_a_connection_the_operator_side_refuses_is_rejected_and_reaches_the_app(
        app: Lab, tmp_path: Path) -> None:
    nobody = free_port()  # nothing listens there
    code, output, _steps = kdiag_run(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        steps:
          - name: redirect to nowhere
            redirect: {{ports: ["8080:{nobody}"]}}
            background: true
            register: r
          - name: call
            {wget(app, "")}
            register: call
            assert: ["call.stdout == 'app'"]
          - name: closed
            wait: {{until: "r.stats.to_app >= 1", timeout: 10s, interval: 100ms}}
          - name: counted
            assert:
              - r.stats.rejected == 1
              - r.stats.to_app == 1
              - r.stats.to_operator == 0
              - r.stats.open == 0
    """, tmp_path)
    assert code == 0, output
    assert "failed open" in output


RESETTING_SERVER = """
import socket, struct, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = server.accept()
    conn.recv(100)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
"""


def test_a_connection_the_operator_side_resets_is_counted_reset_with_its_cause(
        app: Lab, tmp_path: Path) -> None:
    local = free_port()
    server = tmp_path / "resetting.py"
    server.write_text(RESETTING_SERVER)
    code, output, _steps = kdiag_run(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        steps:
          - name: operator server
            run: {{argv: [python3, {server}, "{local}"]}}
            background: true
          - name: redirect
            redirect: {{ports: ["8080:{local}"], fail_open: false}}
            background: true
            register: r
          - name: call
            run: {{argv: [ip, netns, exec, {app.client_ns}, busybox, sh, -c,
                         "wget -qO- http://{app.app_ip}:8080/ || true"]}}
            retries: 20
            delay: 100ms
            until: r.stats.closed >= 1
          - name: counted
            wait: {{until: "r.stats.reset == 1 and r.stats.open == 0", timeout: 10s,
                    interval: 100ms}}
          - {{name: stop it, stop: redirect}}
    """, tmp_path)
    assert code == 0, output
    assert re.search(r"connection \d+ reset: \S", output), output  # its cause, as the manager saw it
    assert "stopped: 1 to the operator, 0 to the app, 1 reset" in output
