"""Probe: an HTTP request, a TCP connect or a DNS lookup from the target's network namespace.

A TCP probe may also send bytes once connected and read the reply until it holds the
``expect`` bytes (a banner or a PING/PONG check); the reply comes back as the body.

Names resolve through the target's hosts file and resolv.conf (see :mod:`dns`). With
``bypass_redirect`` the socket carries kdiag's mark, so kdiag's own redirect rules skip it;
otherwise the probe behaves like the app's own traffic (useful to test an outgoing redirect).
HTTPS certificates are checked only on request (``verify``), and then against the target's
own CA bundle, not the manager's: the question is what the app itself would trust.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
from urllib.parse import urlsplit

from . import dns
from .config import Config
from .sysutil import mark_socket, read_in_root
from .wire.api.v1 import manager_pb2 as pb

# Where distributions keep the CA bundle (Debian/Ubuntu/Alpine, RHEL/Fedora, others).
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
              "/etc/ssl/cert.pem")
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_BODY = 1 << 20


def _resolve(host: str, config: Config, timeout: float) -> list[str]:
    with contextlib.suppress(ValueError):  # an address: no files to read
        return [str(ipaddress.ip_address(host))]
    pid = config.target()
    return dns.resolve(host, read_in_root(pid, "/etc/hosts"),
                       read_in_root(pid, "/etc/resolv.conf"), timeout)


def _connect(addresses: list[str], port: int, timeout: float, mark: bool) -> socket.socket:
    last: OSError | None = None
    for addr in addresses:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            if mark:
                mark_socket(s)
            s.settimeout(timeout)
            s.connect((addr, port))
            return s
        except OSError as exc:
            s.close()
            last = exc
    raise last or OSError("no address")


def _tls_context(req: pb.ProbeRequest, config: Config) -> ssl.SSLContext:
    """No checks, or the target's own trust store (ValueError if it has none)."""
    if not req.verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    pid = config.target()
    for path in CA_BUNDLES:
        bundle = read_in_root(pid, path, limit=16 << 20)
        if "BEGIN CERTIFICATE" in bundle:
            return ssl.create_default_context(cadata=bundle)  # (and no other CA)
    raise ValueError(f"the target has no CA bundle ({', '.join(CA_BUNDLES)}): nothing to "
                     "verify with (verify: false skips the check)")


def _http(req: pb.ProbeRequest, config: Config, timeout: float) -> pb.ProbeResponse:
    # Imported here: http.client (with email) is ~1.3 MB of an idle manager's RSS.
    import http.client

    try:
        return _http_exchange(req, config, timeout)
    except http.client.HTTPException as exc:
        return pb.ProbeResponse(error=str(exc) or type(exc).__name__)


def _http_exchange(req: pb.ProbeRequest, config: Config, timeout: float) -> pb.ProbeResponse:
    import http.client

    url = urlsplit(req.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        return pb.ProbeResponse(error=f"unsupported URL {req.url!r} (http:// or https://)")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = _resolve(url.hostname, config, timeout)
    sock = _connect(addresses, port, timeout, req.bypass_redirect)
    if url.scheme == "https":
        try:
            ctx = _tls_context(req, config)
        except ValueError as exc:
            sock.close()
            return pb.ProbeResponse(error=str(exc))
        sock = ctx.wrap_socket(sock, server_hostname=url.hostname)
    conn = http.client.HTTPConnection(url.hostname, port, timeout=timeout)
    conn.sock = sock  # already connected from inside the namespace, maybe marked
    peer = sock.getpeername()[0]
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    headers = dict(req.headers)
    if url.port and not any(k.lower() == "host" for k in headers):
        headers["Host"] = f"{url.hostname}:{url.port}"
    try:
        conn.request(req.method or "GET", path, body=req.body or None, headers=headers)
        resp = conn.getresponse()
        limit = req.max_body_bytes or DEFAULT_MAX_BODY
        body = resp.read(limit + 1)
        return pb.ProbeResponse(
            ok=True, status=resp.status, reason=resp.reason,
            headers=[pb.Header(name=k, value=v) for k, v in resp.getheaders()],
            body=body[:limit], truncated=len(body) > limit, addresses=[peer])
    finally:
        conn.close()


def _tcp(req: pb.ProbeRequest, config: Config, timeout: float) -> pb.ProbeResponse:
    addrs = _resolve(req.host, config, timeout)
    with _connect(addrs, req.port, timeout, req.bypass_redirect) as s:
        resp = pb.ProbeResponse(ok=True, addresses=[s.getpeername()[0]])
        if req.send:
            s.sendall(req.send)
        if req.expect:
            resp.body = _read_until(s, req.expect, req.max_body_bytes or DEFAULT_MAX_BODY)
            if req.expect not in resp.body:
                resp.ok = False
                resp.error = (f"the reply ({len(resp.body)} bytes) does not hold "
                              f"{req.expect[:64]!r}")
    return resp


def _read_until(sock: socket.socket, expect: bytes, limit: int) -> bytes:
    """The reply up to and including ``expect`` (less at EOF or past ``limit`` bytes)."""
    got = b""
    while expect not in got and len(got) <= limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def run(req: pb.ProbeRequest, config: Config) -> pb.ProbeResponse:
    """Run one probe; failures are answered in ``error`` (the call itself succeeds)."""
    timeout = req.timeout_seconds or DEFAULT_TIMEOUT
    began = time.monotonic()
    try:
        if req.kind == "http":
            resp = _http(req, config, timeout)
        elif req.kind == "tcp":
            resp = _tcp(req, config, timeout)
        elif req.kind == "dns":
            resp = pb.ProbeResponse(ok=True, addresses=_resolve(req.host, config, timeout))
        else:
            resp = pb.ProbeResponse(error=f"unknown probe kind {req.kind!r} (http, tcp, dns)")
    except (OSError, dns.DnsError) as exc:
        resp = pb.ProbeResponse(error=str(exc) or type(exc).__name__)
    resp.elapsed_ms = (time.monotonic() - began) * 1000
    return resp
