"""A local HTTP server for example runbooks: answers every request with a text and records
it; ``GET /_seen`` returns what it recorded as JSON (for assertions). With ``--refuse PATH``,
requests for PATH are recorded and answered 503 (a health check reaching this server, rather
than the app, would fail).

    python3 recording_server.py PORT [TEXT] [--refuse PATH]

In TEXT, ``{env:NAME}`` is the value of the environment variable NAME and ``{file:PATH}`` the
contents of the file PATH, read at each request (what the server got from the pod it stands in
for, with ``run: {from_target: ...}``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEEN: list[dict[str, object]] = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    text = "hello from laptop\n"
    refused: set[str] = set()

    def _reply(self, body: bytes, content_type: str = "text/plain", status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # One request per connection: a redirected connection then ends (and its statistics
        # are final) as soon as the answer is out, keep-alive client or not.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/_seen":
            with LOCK:
                seen = list(SEEN)
            data = {"count": len(seen), "requests": seen, "paths": [r["path"] for r in seen]}
            self._reply(json.dumps(data).encode(), "application/json")
            return
        with LOCK:
            SEEN.append({"method": self.command, "path": self.path,
                         "headers": dict(self.headers), "body": body.decode(errors="replace"),
                         "peer": self.client_address[0]})
        print(f"{self.command} {self.path}", flush=True)
        if self.path.split("?")[0] in self.refused:
            self._reply(b"not here\n", status=503)
            return
        self._reply(fill(self.text).encode())

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request is printed above


def _value(match: re.Match[str]) -> str:
    kind, name = match.group(1), match.group(2)
    if kind == "env":
        return os.environ.get(name, "")
    try:
        with open(name) as f:
            return f.read().strip()
    except OSError as exc:
        return f"(no file {name}: {exc.strerror})"


def fill(text: str) -> str:
    """TEXT with ``{env:NAME}`` and ``{file:PATH}`` filled in."""
    return re.sub(r"\{(env|file):([^}]+)\}", _value, text)


def main() -> None:
    args = sys.argv[1:]
    while "--refuse" in args:
        at = args.index("--refuse")
        Handler.refused.add(args[at + 1])
        del args[at:at + 2]
    port = int(args[0])
    if len(args) > 1:
        Handler.text = args[1] + "\n"
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
