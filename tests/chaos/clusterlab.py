"""What the cluster faults share: the local cluster, a namespace of our own with the test app,
an operator-side server on this host, and real kdiag CLIs aimed at the pod.

The pod's IP is reachable from this host over the cluster's bridge, so probes go straight to
it (they arrive over the pod's interface, as other pods' connections do; they come from the
node's address, so the redirects take the node's connections too: ``probes: redirect``). A probe sends
``GET / HTTP/1.0`` and half-closes: the app answers ``hello from <name>``, the operator-side
server ``op:`` + the request, so every answer says where the connection went. The app's
process (and through it the pod's network namespace, where the rules are counted) and the
manager's process are found on this host by their command lines.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo.lab import kdiag_rules

from .netprobe import HTTP_ECHO, answer
from .nodelab import ROOT, OperatorServer, alive
from .scenarios import Bench

STATE = Path(os.environ.get("KDIAG_CLUSTER_STATE", ROOT / ".cluster"))
APP_PORT = 8080
API_SERVER_PID = STATE / "run" / "pids" / "kube-apiserver.pid"
REQUEST = b"GET / HTTP/1.0\r\n\r\n"
RUNBOOK = """\
name: chaos-pod-background-redirect
params:
  namespace: {type: string}
  pod: {type: string}
  to: {type: string}
target:
  kubernetes: {namespace: "{{ params.namespace }}", pod: "{{ params.pod }}"}
steps:
  - name: redirect
    redirect: {ports: [8080], to: "{{ params.to }}", probes: redirect}
    background: true
  - wait: 120s
finally:
  - note: finally ran
"""


def route(reply: bytes | None) -> str:
    """Where a probe's connection went: ``app``, ``operator`` or ``none`` (refused, reset,
    timed out)."""
    if reply is None:
        return "none"
    if reply.startswith(b"op:"):
        return "operator"
    return "app" if b"hello from " in reply else "none"


@dataclass
class ClusterEnv:
    """A namespace with app pods, an operator server, a private folder for logs and reports."""

    core: Any  # kubernetes.client.CoreV1Api
    namespace: str
    operator: OperatorServer
    tmpdir: Path
    runbook: Path
    random: random.Random = field(default_factory=random.Random)
    pods: dict[str, str] = field(default_factory=dict)  # name -> pod IP

    def cli_env(self) -> dict[str, str]:
        """The environment of our kdiag CLIs: the cluster's kubeconfig, our own caches."""
        return {**os.environ, "KUBECONFIG": str(STATE / "kubeconfig"),
                "TMPDIR": str(self.tmpdir), "XDG_CACHE_HOME": str(self.tmpdir / "cache")}

    def start_pod(self, name: str) -> str:
        """Create an app pod (no probes: nothing but our redirect decides where its connections
        go) and wait until it runs; return its IP."""
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "chaos"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "app", "image": "kdiag.local/testapp:dev",
                    "imagePullPolicy": "Never",
                    "args": [f"-listen=:{APP_PORT}", f"-name={self.namespace}-{name}"]}]}}
        self.core.create_namespaced_pod(self.namespace, body)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pod = self.core.read_namespaced_pod(name, self.namespace)
            if pod.status.phase == "Running" and pod.status.pod_ip:
                ip = str(pod.status.pod_ip)
                if self.wait_route(ip, "app", time.monotonic() + 20) is not None:
                    self.pods[name] = ip
                    return ip
            time.sleep(0.2)
        raise RuntimeError(f"pod {self.namespace}/{name} did not start answering")

    def delete_pod(self, name: str) -> None:
        """Delete a pod (at once) and forget it."""
        from kubernetes.client import V1DeleteOptions

        with contextlib.suppress(Exception):
            self.core.delete_namespaced_pod(name, self.namespace,
                                            body=V1DeleteOptions(grace_period_seconds=0))
        self.pods.pop(name, None)

    def wait_route(self, ip: str, wanted: str, deadline: float,
                   since: float | None = None) -> float | None:
        """Seconds from ``since`` (now) until a fresh connection to the pod goes ``wanted``;
        None if none did by ``deadline``."""
        since = time.monotonic() if since is None else since
        while time.monotonic() < deadline:
            timeout = min(0.1, max(deadline - time.monotonic(), 0.01))
            if route(answer((ip, APP_PORT), REQUEST, timeout=timeout)) == wanted:
                return time.monotonic() - since
            time.sleep(0.01)
        return None

    def bench(self, name: str) -> Bench:
        """Pod ``name`` as the shared faults see it (clients on this host, over the bridge)."""
        ip = self.pods[name]
        return Bench(self.random, self.operator, (ip, APP_PORT), HTTP_ECHO, ThreadPoolExecutor,
                     lambda since, deadline: self.wait_route(ip, "app", deadline, since),
                     lambda since, deadline: self.wait_route(ip, "operator", deadline, since),
                     lambda deadline: self.rules_left(name, deadline))

    def app_pid(self, name: str) -> int | None:
        """The app's process on this host (its network namespace is the pod's)."""
        needle = f"-name={self.namespace}-{name}".encode()
        return _find_process(lambda cmdline: needle in cmdline)

    def manager_pids(self, name: str) -> list[int]:
        """Manager processes in the pod's network namespace (the live ephemeral ones)."""
        app = self.app_pid(name)
        if app is None:
            return []
        netns = _netns(app)
        return [pid for pid in _processes(lambda c: b"kdiag_manager" in c)
                if _netns(pid) == netns]

    def rules_left(self, name: str, deadline: float) -> int:
        """kdiag rules in the pod's network namespace at ``deadline`` (earlier once none)."""
        pid = self.app_pid(name)
        if pid is None:
            return 0  # the pod (and its namespace) is gone
        while True:
            count = len(kdiag_rules(pid=pid))
            if count == 0 or time.monotonic() >= deadline:
                return count
            time.sleep(0.05)


def _processes(match: Any) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if match((entry / "cmdline").read_bytes()):
                    found.append(int(entry.name))
    return found


def _find_process(match: Any) -> int | None:
    found = _processes(match)
    return min(found) if found else None


def _netns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def cluster_up() -> bool:
    """Is the local cluster up (its kubeconfig there and the API server answering)?"""
    kubeconfig = STATE / "kubeconfig"
    if not kubeconfig.exists():
        return False
    proc = subprocess.run([sys.executable, str(ROOT / "cluster" / "ready.py"), "--quick"],
                          capture_output=True, env={**os.environ, "KDIAG_CLUSTER_STATE":
                                                    str(STATE)}, check=False)
    return proc.returncode == 0


@contextlib.contextmanager
def cluster_env(tag: str, pods: tuple[str, ...] = ("app",)) -> Iterator[ClusterEnv]:
    """A fresh namespace ``kdiag-chaos-<tag>-<hex>`` with ``pods`` running, an operator server
    on this host, a private folder; the namespace is deleted afterwards."""
    from kubernetes import client, config

    if not cluster_up():
        raise RuntimeError(f"the local cluster is not up ({STATE}): run `make cluster-up`")
    api = client.ApiClient(configuration=_configuration(config, client))
    core = client.CoreV1Api(api)
    namespace = f"kdiag-chaos-{tag}-{secrets.token_hex(3)}"
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": namespace}})
    operator = OperatorServer()
    try:
        with tempfile.TemporaryDirectory(prefix="kdiag-chaos-") as tmp:
            runbook = Path(tmp) / "background-redirect.yaml"
            runbook.write_text(RUNBOOK)
            env = ClusterEnv(core, namespace, operator, Path(tmp), runbook)
            _wait_default_service_account(core, namespace)
            for name in pods:
                env.start_pod(name)
            yield env
    finally:
        operator.stop()
        with contextlib.suppress(Exception):
            core.delete_namespace(namespace)


def _wait_default_service_account(core: Any, namespace: str, timeout: float = 60.0) -> None:
    """Wait until the controller manager has made the namespace's ``default`` service account
    (pods are refused without it); after the API server was restarted (a fault before this
    one) its controllers take a few seconds to watch again."""
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout
    while True:
        try:
            core.read_namespaced_service_account("default", namespace)
            return
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _configuration(config: Any, client: Any) -> Any:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(STATE / "kubeconfig"),
                            client_configuration=configuration)
    return configuration


@dataclass
class PodCli:
    """A real kdiag CLI process redirecting a pod's port to the operator server."""

    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 1) -> str:
        """What it printed last (for problems)."""
        text = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) if text else "(no output)"

    def end(self) -> None:
        """Kill it (if still running) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def start_cli(env: ClusterEnv, pod: str, kind: str) -> PodCli:
    """``kdiag redirect`` of the pod's port 8080 (kind "redirect"), or ``kdiag run`` of a
    runbook with a background redirect, a long wait and a finally step (kind "run")."""
    if kind == "redirect":
        args = ["redirect", "-n", env.namespace, "--pod", pod, "--to", "127.0.0.1",
                "--probes", "redirect", f"{APP_PORT}:{env.operator.port}"]
    else:
        (env.tmpdir / "report.json").unlink(missing_ok=True)  # (a round reads its own)
        args = ["run", str(env.runbook), "--set", f"namespace={env.namespace}",
                "--set", f"pod={pod}", "--set", f"to=127.0.0.1:{env.operator.port}",
                "--artifacts", str(env.tmpdir / "artifacts"), "--report",
                f"json={env.tmpdir / 'report.json'}", "-q"]
    log = env.tmpdir / f"cli-{kind}-{secrets.token_hex(3)}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kdiag", *args], stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, cwd=ROOT, env=env.cli_env())
    return PodCli(proc, log)


def wait_ready(env: ClusterEnv, pod: str, cli: PodCli, timeout: float = 60.0) -> bool:
    """Wait until connections to the pod reach the operator (the redirect is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and cli.proc.poll() is None:
        if env.wait_route(env.pods[pod], "operator", min(deadline, time.monotonic() + 0.5)):
            return True
    return False


@contextlib.contextmanager
def api_server_paused() -> Iterator[int]:
    """SIGSTOP the cluster's API server for the body (SIGCONT always follows): every stream
    through it (port-forwards, watches) hangs without being closed — a laptop whose network
    vanished looks the same from the pod's side."""
    pid = int(API_SERVER_PID.read_text().strip())
    if not alive(pid):
        raise RuntimeError(f"the API server (pid {pid}) is not running")
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


@dataclass
class ApiServer:
    """The cluster's kube-apiserver as cluster/up.sh started it: enough to start it again the
    same way (command line, environment, working folder, log, pid file)."""

    pid: int
    argv: list[str]
    environ: dict[str, str]
    cwd: str

    @classmethod
    def running(cls) -> ApiServer:
        """The API server of the pid file, read from /proc."""
        pid = int(API_SERVER_PID.read_text().strip())
        if not alive(pid):
            raise RuntimeError(f"the API server (pid {pid}) is not running")
        proc = Path(f"/proc/{pid}")
        argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
        environ = dict(e.decode().partition("=")[::2]
                       for e in (proc / "environ").read_bytes().split(b"\0") if e)
        return cls(pid, argv, environ, os.readlink(proc / "cwd"))

    def start(self) -> int:
        """Start it again as up.sh does (its own session, stdin from /dev/null, appending to
        its log), record the new pid in the pid file (cluster-down stops it by that), wait
        until it answers."""
        with open(STATE / "logs" / "kube-apiserver.log", "ab") as log:
            proc = subprocess.Popen(self.argv, env=self.environ, cwd=self.cwd,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
        API_SERVER_PID.write_text(f"{proc.pid}\n")
        subprocess.run([sys.executable, str(ROOT / "cluster" / "ready.py"), "--wait",
                        "kube-apiserver"], env={**os.environ, "KDIAG_CLUSTER_STATE": str(STATE)},
                       check=True, capture_output=True, timeout=120)
        return proc.pid


@contextlib.contextmanager
def api_server_stopped() -> Iterator[ApiServer]:
    """kill -9 the cluster's API server for the body, then start it again the same way and
    wait until it answers (always, also when the body fails): every connection through it
    (port-forwards, watches) is closed at once, and new ones are refused."""
    server = ApiServer.running()
    os.kill(server.pid, signal.SIGKILL)
    try:
        deadline = time.monotonic() + 10
        while alive(server.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        yield server
    finally:
        server.start()
