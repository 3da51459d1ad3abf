"""Pod logs read through the real kubernetes client (its request, urllib3, its response
handling) from a local HTTP server answering like the API server's ``pods/log``: the text is the
bytes the container wrote whatever the client's version. Client 35 and before ``json.loads`` a
preloaded log and hand back ``str()`` of the result, so a log that is one JSON document came
back as a Python dict's text (``{'kdiag_manager': ...}``); tests/cluster/test_images.py reads a
real manager's log the same way."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kdiag.kube.inject import Injector, ManagerImage
from kdiag.kube.podlog import read_pod_log
from kdiag.kube.pods import PodRef
from kdiag.kube.tokens import TokenCache

ONE_JSON = b'{"kdiag_manager": {"address": "127.0.0.1:7777", "ok": true, "pid": null}}\n'


class _LogServer(http.server.ThreadingHTTPServer):
    body = b""
    paths: list[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _LogServer

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[Any, _LogServer]]:
    server = _LogServer(("127.0.0.1", 0), _Handler)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{server.server_address[1]}"
    api_client = client.ApiClient(config)
    try:
        yield client.CoreV1Api(api_client), server
    finally:
        api_client.close()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("body", [
    ONE_JSON,
    ONE_JSON.rstrip(b"\n"),
    b"true",
    b"null\n",
    b"42\n",
    b'["a", 1]\n',
    b"plain line\nsecond line\n",
    b'{"a": 1}\n{"b": 2}\n',
])
def test_the_log_is_the_bytes_the_container_wrote(api: tuple[Any, _LogServer],
                                                  body: bytes) -> None:
    core, server = api
    server.body = body
    assert read_pod_log(core, "api-0", "shop", container="app") == body.decode()
    assert server.paths == ["/api/v1/namespaces/shop/pods/api-0/log?container=app"]


def test_bad_utf8_is_replaced_and_the_arguments_reach_the_server(
        api: tuple[Any, _LogServer]) -> None:
    core, server = api
    server.body = b"ok \xff\xfe end\n"
    text = read_pod_log(core, "api-0", "shop", container="app", tail_lines=3, timestamps=True)
    assert text == "ok \ufffd\ufffd end\n"
    (path,) = server.paths  # 35 writes the bool "True", 37 "true": the API server takes both
    assert path.lower() == ("/api/v1/namespaces/shop/pods/api-0/log"
                            "?container=app&taillines=3&timestamps=true")


def test_the_injectors_log_tail_keeps_a_json_line_as_written(api: tuple[Any, _LogServer],
                                                             tmp_path: Path) -> None:
    core, server = api
    server.body = ONE_JSON
    injector = Injector(core, "https://k:6443", ManagerImage("img:1", "IfNotPresent", timeout=5),
                        TokenCache(tmp_path / "tokens"))
    ref = PodRef("shop", "api-0", "u1", "app", ("app",))
    assert injector.logs_tail(ref, "kdiag-1") == ONE_JSON.decode().strip()
