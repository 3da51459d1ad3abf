#!/usr/bin/env python3
"""Readiness checks for kdiag's local test cluster (standard library only).

  ready.py                 full check: every component healthy, the node Ready, cluster DNS
                           answering on its ClusterIP, a test pod Running and answering HTTP
                           on its pod IP, its logs readable through the API server
                           (apiserver → kubelet → containerd), and the pod calling a Service
                           of its own by DNS name (CoreDNS, kube-proxy, hairpin)
  ready.py --quick         components healthy, the node Ready, cluster DNS answering
  ready.py --wait NAME     wait until one component answers (used while starting up)

On failure it names the component that failed, shows the tail of that component's log
and exits 1.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATE = Path(os.environ.get("KDIAG_CLUSTER_STATE", HERE.parent / ".cluster"))
RUN = STATE / "run"
LOGS = STATE / "logs"
PKI = RUN / "pki"
COMPONENTS = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "coredns",
    "containerd",
    "kubelet",
]
TEST_POD = "kdiag-readiness"


class NotReady(Exception):
    def __init__(self, component: str, message: str, also: tuple[str, ...] = ()):
        super().__init__(message)
        self.component = component
        self.also = also


class Dead(NotReady):
    """A component's process is gone: waiting longer cannot help."""


def config() -> dict:
    return json.loads((RUN / "cluster.json").read_text())


def tail(component: str, lines: int = 25) -> str:
    path = LOGS / f"{component}.log"
    if not path.exists():
        return f"  (no log at {path})"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in text)


def alive(component: str) -> bool:
    pid_file = RUN / "pids" / f"{component}.pid"
    marker_file = RUN / "pids" / f"{component}.cmd"
    if not pid_file.exists():
        return False
    try:
        cmdline = Path(f"/proc/{pid_file.read_text().strip()}/cmdline").read_bytes()
    except OSError:
        return False
    return marker_file.read_text() in cmdline.replace(b"\0", b" ").decode(errors="replace")


def check_alive(component: str) -> None:
    if not alive(component):
        raise Dead(component, f"{component} is not running (it exited or was never started)")


class Api:
    def __init__(self, cfg: dict):
        self.base = cfg.get("apiserver_url") or f"https://127.0.0.1:{cfg['apiserver_port']}"
        self.ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
        self.ctx.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))

    def request(self, method: str, path: str, body: dict | None = None, raw: bool = False):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as resp:
                payload = resp.read()
        except urllib.error.HTTPError:
            raise
        except OSError as e:  # connection refused, timeout, TLS: the API server is not there
            raise NotReady("kube-apiserver", f"{method} {path}: {e}", ("etcd",)) from None
        return payload.decode() if raw else json.loads(payload or b"{}")

    def get(self, path: str, raw: bool = False):
        return self.request("GET", path, raw=raw)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def until(deadline: float, what, interval: float = 0.5):
    """Call what() until it returns a true value or raises NotReady at the deadline."""
    last: NotReady | None = None
    while True:
        try:
            result = what()
            if result:
                return result
        except NotReady as e:
            last = e
            if isinstance(e, Dead) or time.monotonic() >= deadline:
                raise
        if time.monotonic() >= deadline:
            if last:
                raise last
            return result
        time.sleep(interval)


# ------------------------------------------------------------------ per-component probes


def probe(component: str, cfg: dict) -> None:
    check_alive(component)
    if component == "etcd":
        if not http_ok(f"http://127.0.0.1:{cfg['etcd_port']}/health"):
            raise NotReady("etcd", "etcd does not answer /health")
    elif component == "kube-apiserver":
        try:
            Api(cfg).get("/readyz", raw=True)
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            failed = [ln for ln in body.splitlines() if "failed" in ln]
            raise NotReady("kube-apiserver", f"/readyz: {e.code} {'; '.join(failed)}") from None
        except OSError as e:
            raise NotReady("kube-apiserver", f"/readyz: {e}") from None
    elif component == "containerd":
        sock = cfg["containerd_sock"]
        r = subprocess.run(
            ["ctr", "-a", sock, "version"], capture_output=True, text=True, timeout=10
        )
        if r.returncode != 0:
            raise NotReady("containerd", f"ctr version: {r.stderr.strip()}")
    elif component == "kube-proxy":
        if not http_ok(f"http://127.0.0.1:{cfg['kube_proxy_healthz_port']}/healthz"):
            raise NotReady("kube-proxy", "kube-proxy does not answer /healthz (rules not synced)",
                           ("kube-apiserver",))
    elif component == "coredns":
        if not http_ok(f"http://127.0.0.1:{cfg['coredns_ready_port']}/ready"):
            raise NotReady("coredns", "CoreDNS is not ready (its kubernetes plugin has not "
                           "synced with the API server)", ("kube-apiserver",))
    elif component == "kubelet":
        if not http_ok("http://127.0.0.1:10248/healthz"):
            raise NotReady("kubelet", "kubelet does not answer /healthz")
    elif component in ("kube-controller-manager", "kube-scheduler"):
        port = 10257 if component == "kube-controller-manager" else 10259
        with socket.socket() as s:
            s.settimeout(2)
            if s.connect_ex(("127.0.0.1", port)) != 0:
                raise NotReady(component, f"{component} does not listen on port {port}")


def wait_component(component: str, cfg: dict, timeout: float) -> None:
    deadline = time.monotonic() + timeout

    def ok():
        probe(component, cfg)
        return True

    until(deadline, ok)


# ------------------------------------------------------------------ cluster-level checks


def node_ready(api: Api, cfg: dict) -> bool:
    name = cfg["node_name"]
    try:
        node = api.get(f"/api/v1/nodes/{name}")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise NotReady("kubelet", f"node {name} has not registered", ("containerd",)) from None
        raise
    for cond in node.get("status", {}).get("conditions", []):
        if cond["type"] == "Ready":
            if cond["status"] == "True":
                return True
            raise NotReady(
                "kubelet",
                f"node {name} is not Ready: {cond.get('reason')}: {cond.get('message')}",
                ("containerd",),
            )
    raise NotReady("kubelet", f"node {name} reports no Ready condition", ("containerd",))


def dns_query(server: str, name: str, timeout: float = 2.0) -> tuple[int, list[str]]:
    """One DNS A query over UDP: (rcode, addresses). Raises OSError on no answer."""
    qid = random.randrange(1 << 16)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + b"\0\0\1\0\1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, (server, 53))
        while True:
            data = s.recv(4096)
            if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid:
                break
    rcode = data[3] & 0xF
    answers = struct.unpack(">H", data[6:8])[0]
    pos = 12 + len(question) + 5
    found = []
    for _ in range(answers):
        while data[pos] and data[pos] < 0xC0:  # the owner name: labels, then 0 or a pointer
            pos += data[pos] + 1
        pos += 2 if data[pos] >= 0xC0 else 1
        rtype, _cls, _ttl, length = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        if rtype == 1 and length == 4:
            found.append(socket.inet_ntoa(data[pos:pos + 4]))
        pos += length
    return rcode, found


def cluster_dns(cfg: dict) -> bool:
    """kubernetes.default resolves through the kube-dns ClusterIP (kube-proxy → CoreDNS)."""
    name = f"kubernetes.default.svc.{cfg['cluster_domain']}"
    want = str(ipaddress.ip_network(cfg["service_range"])[1])
    try:
        rcode, found = dns_query(cfg["node_ip"], name)
    except OSError as e:
        raise NotReady("coredns", f"CoreDNS on {cfg['node_ip']}:53 does not answer: {e}") from None
    if found != [want]:
        raise NotReady("coredns", f"CoreDNS answers {name} with {found} (rcode {rcode}), "
                       f"not {want}", ("kube-apiserver",))
    try:
        rcode, found = dns_query(cfg["dns_ip"], name)
    except OSError as e:
        raise NotReady("kube-proxy", f"CoreDNS answers on {cfg['node_ip']}:53 but not through "
                       f"the kube-dns ClusterIP {cfg['dns_ip']}: {e}", ("coredns",)) from None
    if found != [want]:
        raise NotReady("kube-proxy", f"through the kube-dns ClusterIP {cfg['dns_ip']}, {name} "
                       f"is {found} (rcode {rcode}), not {want}", ("coredns",))
    return True


def default_service_account(api: Api) -> bool:
    try:
        api.get("/api/v1/namespaces/default/serviceaccounts/default")
        api.get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
        return True
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise NotReady(
                "kube-controller-manager",
                "the default service account or the kube-root-ca.crt configmap is missing",
            ) from None
        raise


def test_pod(api: Api, cfg: dict, timeout: float) -> None:
    ns = "default"
    path = f"/api/v1/namespaces/{ns}/pods"
    try:
        api.request("DELETE", f"{path}/{TEST_POD}?gracePeriodSeconds=0")
        until(time.monotonic() + 30, lambda: _gone(api, f"{path}/{TEST_POD}"))
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
    api.request(
        "POST",
        path,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": TEST_POD, "labels": {"app": TEST_POD}},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "name": "app",
                        "image": "kdiag.local/testapp:dev",
                        "imagePullPolicy": "Never",
                        "ports": [{"containerPort": 8080}],
                    }
                ],
            },
        },
    )

    def running():
        pod = api.get(f"{path}/{TEST_POD}")
        status = pod.get("status", {})
        if not pod["spec"].get("nodeName"):
            raise NotReady("kube-scheduler", f"pod {TEST_POD} is not scheduled")
        if status.get("phase") == "Running" and status.get("podIP"):
            return pod
        reasons = []
        for cs in status.get("containerStatuses", []) or []:
            for state, detail in (cs.get("state") or {}).items():
                reasons.append(f"{cs['name']} {state}: {detail.get('reason', '')} "
                               f"{detail.get('message', '')}".strip())
        events = api.get(
            f"/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name%3D{TEST_POD}"
        )
        for ev in events.get("items", [])[-3:]:
            if ev.get("type") == "Warning":
                reasons.append(f"event {ev.get('reason')}: {ev.get('message')}")
        msg = "; ".join(reasons) or f"phase {status.get('phase')}"
        raise NotReady("kubelet", f"pod {TEST_POD} is not running: {msg}", ("containerd",))

    pod = until(time.monotonic() + timeout, running)
    ip = pod["status"]["podIP"]

    def answers():
        if http_ok(f"http://{ip}:8080/healthz"):
            return True
        raise NotReady(
            "containerd", f"pod {TEST_POD} runs but {ip}:8080 does not answer from the host "
            "(CNI bridge networking)", ("kubelet",)
        )

    until(time.monotonic() + 20, answers)

    def logs():
        try:
            text = api.get(f"{path}/{TEST_POD}/log", raw=True)
        except urllib.error.HTTPError as e:
            raise NotReady(
                "kube-apiserver", f"reading pod logs through the API server: {e.code} "
                f"{e.read().decode(errors='replace')[:300]}", ("kubelet",)
            ) from None
        if "/healthz" in text:
            return True
        raise NotReady("kubelet", "pod logs do not show the request")

    until(time.monotonic() + 20, logs)
    try:
        service_by_name(api, cfg, ip, timeout)
    finally:
        api.request("DELETE", f"{path}/{TEST_POD}?gracePeriodSeconds=0")


def service_by_name(api: Api, cfg: dict, pod_ip: str, timeout: float) -> None:
    """The test pod calls a Service in front of itself by its DNS name: the pod's resolv.conf,
    CoreDNS through the kube-dns ClusterIP, kube-proxy's rules and hairpin traffic."""
    path = "/api/v1/namespaces/default/services"
    try:
        api.request("DELETE", f"{path}/{TEST_POD}")
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
    api.request("POST", path, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": TEST_POD},
        "spec": {"selector": {"app": TEST_POD}, "ports": [{"port": 80, "targetPort": 8080}]}})
    url = f"http://{TEST_POD}.default.svc.{cfg['cluster_domain']}/healthz"
    last = ""

    def answers():
        nonlocal last
        try:
            with urllib.request.urlopen(f"http://{pod_ip}:8080/call?url={url}", timeout=8) as r:
                last = r.read().decode(errors="replace").strip()
                if last.startswith("200 "):
                    return True
        except urllib.error.HTTPError as e:
            last = e.read().decode(errors="replace").strip()
        except OSError as e:
            last = str(e)
        raise NotReady("kube-proxy", f"pod {TEST_POD} cannot call its Service by name ({url}): "
                       f"{last}", ("coredns",))

    try:
        until(time.monotonic() + min(timeout, 30), answers)
    finally:
        api.request("DELETE", f"{path}/{TEST_POD}")


def _gone(api: Api, path: str) -> bool:
    try:
        api.get(path)
        return False
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return True
        raise


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--wait", metavar="COMPONENT", choices=COMPONENTS)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    start = time.monotonic()
    try:
        cfg = config()
    except OSError:
        print(f"cluster: not up ({RUN / 'cluster.json'} is missing); run `make cluster-up`",
              file=sys.stderr)
        return 1
    try:
        if args.wait:
            wait_component(args.wait, cfg, args.timeout)
            print(f"[ready] {args.wait} is up ({time.monotonic() - start:.1f} s)", file=sys.stderr)
            return 0
        deadline = time.monotonic() + args.timeout
        for c in COMPONENTS:
            wait_component(c, cfg, max(5.0, deadline - time.monotonic()))
        api = Api(cfg)
        until(deadline, lambda: node_ready(api, cfg))
        print(f"[ready] node {cfg['node_name']} is Ready", file=sys.stderr)
        until(deadline, lambda: cluster_dns(cfg))
        print(f"[ready] cluster DNS answers on {cfg['dns_ip']}", file=sys.stderr)
        if not args.quick:
            until(deadline, lambda: default_service_account(api))
            test_pod(api, cfg, max(10.0, deadline - time.monotonic()))
            print(f"[ready] test pod ran, answered HTTP, logged it and called a Service by name "
                  f"({time.monotonic() - start:.1f} s)", file=sys.stderr)
    except urllib.error.HTTPError as e:  # an API call the checks do not expect to fail
        body = e.read().decode(errors="replace")[:300]
        return report(NotReady("kube-apiserver", f"{e.code} from {e.url}: {body}", ("etcd",)))
    except NotReady as e:
        return report(e)
    return 0


def report(e: NotReady) -> int:
    """Name the failed component and show the tail of its log (and of related ones)."""
    print(f"\ncluster: NOT READY — component {e.component}: {e}", file=sys.stderr)
    for c in (e.component, *e.also):
        state = "running" if alive(c) else "NOT RUNNING"
        print(f"\n--- {c} ({state}), last lines of {LOGS / (c + '.log')}:", file=sys.stderr)
        print(tail(c), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
