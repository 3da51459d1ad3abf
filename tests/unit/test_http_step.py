"""The http step against a real local server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self._send(302, b"", extra={"Location": "/echo"})
        elif self.path == "/missing":
            self._send(404, b"not here", "text/plain")
        else:
            echo = {"path": self.path, "auth": self.headers.get("Authorization")}
            self._send(200, json.dumps(echo).encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._send(201, json.dumps({"got": json.loads(body),
                                    "type": self.headers["Content-Type"]}).encode())


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_get_post_headers_json_and_status(run_runbook, server: str) -> None:
    outcome = run_runbook(f"""
        steps:
          - name: get
            http: {{url: "{server}/echo", headers: {{Authorization: Bearer abc}}}}
            register: g
            assert: ["g.status == 200", "g.json.auth == 'Bearer abc'",
                     "g.headers['content-type'] == 'application/json'", "g.elapsed >= 0"]
          - name: post
            http: {{url: "{server}/items", method: post, json: {{id: 7}}, expect_status: 201}}
            register: p
            assert: ["p.json.got.id == 7", "p.json.type == 'application/json'"]
          - name: redirect followed
            http: {{url: "{server}/redirect"}}
            register: r
            assert: ["r.status == 200", "r.json.path == '/echo'"]
          - name: redirect not followed
            http: {{url: "{server}/redirect", follow_redirects: false}}
            register: n
            assert: ["n.status == 302"]
          - name: a 404 is a response
            http: {{url: "{server}/missing"}}
            register: m
            assert: ["m.status == 404", "m.text == 'not here'", "m.json is none"]
    """)
    assert outcome.exit_code == 0, outcome.recorder.finished()


def test_expect_status_fails_the_step(run_runbook, server: str) -> None:
    outcome = run_runbook(f"""
        steps:
          - {{name: strict, http: {{url: "{server}/missing", expect_status: [200, 204]}}}}
    """)
    assert outcome.exit_code == 1
    assert outcome.recorder.finished()["strict"].message == "status 404, expected 200 or 204"


def test_connection_refused_is_a_clear_failure(run_runbook) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = run_runbook(f"""
        steps:
          - {{name: down, http: {{url: "http://127.0.0.1:{port}/", timeout: 1s}}}}
    """)
    assert outcome.exit_code == 1
    assert "Connection refused" in outcome.recorder.finished()["down"].message
