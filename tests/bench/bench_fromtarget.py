"""``from_target`` benchmarks (issue 19): reading a target's context, side by side.

- the environment: one ``Environ`` call (50 variables);
- a folder of 100 files (1 KiB each): ``ListDir`` + one ``ReadFile`` per file (what kdiag
  does), against one ``Exec`` of busybox ``tar`` in the target streaming the same folder (the
  other way it could be done: one call, but a shell tool in the target and an archive to
  unpack safely); in a pod the files are a ConfigMap's, mounted (100 files, 101 links);
- starting a command in its private mount namespace (the helper, binds of the copied folder
  and of a path that needs a shadow) against starting it plainly.

Node mode needs root; the cluster part runs when the local cluster is up and the manager image
(``KDIAG_E2E_MANAGER_IMAGE``) knows ``Environ``. Medians of a few rounds; bounded (≈ 1 min).
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

Record = Callable[..., None]
FILES = 100
FILE_BYTES = 1024
VARIABLES = 50
ROUNDS = 7


def _median(measure: Callable[[], Any], rounds: int = ROUNDS) -> float:
    samples = []
    for _ in range(rounds + 1):  # the first warms up: not counted
        started = time.perf_counter()
        measure()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples[1:])


def _copy(manager: Any, folder: str) -> None:
    from kdiag.context.files import copy_paths
    from kdiag.context.folder import PrivateFolder

    private = PrivateFolder.make()
    try:
        done = copy_paths(manager, (folder + "/",), private, 64 << 20)
        assert len(done.paths[0].files) == FILES, done.paths[0].summary()
    finally:
        private.remove()


def _tar(manager: Any, folder: str) -> None:
    """The same folder through one Exec of busybox tar, unpacked with tarfile's data filter."""
    result = manager.exec(["tar", "cf", "-", "-C", folder, "."], capture_limit=64 << 20)
    assert result.exit_code == 0 and not result.truncated, result.stderr
    into = tempfile.mkdtemp(prefix="kdiag-bench-tar-")
    try:
        with tarfile.open(fileobj=io.BytesIO(result.stdout)) as archive:
            archive.extractall(into, filter="data")
        assert sum(1 for p in Path(into).rglob("*") if p.is_file()) >= FILES
    finally:
        shutil.rmtree(into)


def _context_figures(record: Record, prefix: str, manager: Any, folder: str) -> None:
    env = _median(lambda: manager.environ())
    record(f"{prefix}.from_target_env_ms", env * 1000, "ms")
    ours = _median(lambda: _copy(manager, folder))
    theirs = _median(lambda: _tar(manager, folder))
    record(f"{prefix}.from_target_copy_100_files_ms", ours * 1000, "ms", "", theirs * 1000)
    record(f"{prefix}.from_target_copy_vs_exec_tar", ours / theirs, "x")


def _launch_figures(record: Record) -> None:
    from kdiag.launch.launcher import Launch, start

    base = Path(tempfile.mkdtemp(prefix="kdiag-bench-launch-"))
    try:
        (base / "copy").mkdir()
        (base / "copy" / "a.conf").write_text("x\n")
        (base / "newroot").mkdir()
        binds = [(str(base / "copy"), "/etc/kdiag-bench"),
                 (str(base / "copy"), "/kdiag-bench-top")]

        def run(launch: Launch) -> None:
            assert start(launch, stdout=subprocess.DEVNULL).wait() == 0

        plain = _median(lambda: run(Launch(["true"], {"PATH": os.defpath})))
        viewed = _median(lambda: run(Launch(["true"], {"PATH": os.defpath}, binds=binds,
                                            newroot=str(base / "newroot"))))
        record("node.from_target_launch_ms", viewed * 1000, "ms", "", plain * 1000)
    finally:
        shutil.rmtree(base)


def _node(record: Record) -> None:
    from kdiag.targets.node import NodeTarget

    folder = Path(tempfile.mkdtemp(prefix="kdiag-bench-files-"))
    for index in range(FILES):
        (folder / f"f{index:03d}.conf").write_bytes(os.urandom(FILE_BYTES // 2).hex().encode())
    env = {f"BENCH_VAR_{i}": os.urandom(16).hex() for i in range(VARIABLES)}
    target = subprocess.Popen(["sleep", "300"], env={"PATH": os.defpath, **env})
    try:
        session = NodeTarget(target.pid).open()
        try:
            _context_figures(record, "node", session.manager, str(folder))
        finally:
            session.close()
        _launch_figures(record)
    finally:
        target.kill()
        target.wait()
        shutil.rmtree(folder)


def _cluster(record: Record) -> None:
    from tests.bench.bench_cluster import KUBECONFIG, MANAGER_IMAGE, _cluster_up

    why = _cluster_up()
    if why:
        print(f"  cluster part skipped: {why}")
        return
    from kdiag.kube.config import KubeOptions, load
    from kdiag.targets.kubernetes import KubernetesSpec, KubernetesTarget

    namespace = f"kdiag-bench-ft-{uuid.uuid4().hex[:6]}"
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="kdiag-bench-cache-")
    os.environ.setdefault("KDIAG_MANAGER_PULL_POLICY", "Never")
    os.environ["KDIAG_MANAGER_IMAGE"] = MANAGER_IMAGE
    kube = load(KubeOptions(kubeconfig=str(KUBECONFIG), namespace=namespace))
    core = kube.core()
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "many"}, "data": {
            f"f{i:03d}.conf": os.urandom(FILE_BYTES // 2).hex() for i in range(FILES)}})
        env = [{"name": f"BENCH_VAR_{i}", "value": os.urandom(16).hex()}
               for i in range(VARIABLES)]
        _create_pod(core, namespace, env)
        session = KubernetesTarget(KubernetesSpec(namespace=namespace, pod="bench",
                                                  kubeconfig=str(KUBECONFIG))).open()
        try:
            if "environ" not in session.manager.version().features:
                print(f"  cluster part skipped: {MANAGER_IMAGE} has no Environ call")
                return
            _context_figures(record, "cluster", session.manager, "/etc/many")
        finally:
            session.close()
    finally:
        core.delete_namespace(namespace, grace_period_seconds=0)


def _create_pod(core: Any, namespace: str, env: list[dict[str, str]]) -> None:
    deadline = time.monotonic() + 60
    while True:  # the namespace's default service account comes a moment later
        try:
            core.create_namespaced_pod(namespace, {
                "metadata": {"name": "bench"},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                    "name": "bb", "image": "kdiag.local/busybox:dev", "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"], "env": env,
                    "volumeMounts": [{"name": "many", "mountPath": "/etc/many"}]}],
                    "volumes": [{"name": "many", "configMap": {"name": "many"}}]}})
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    while core.read_namespaced_pod("bench", namespace).status.phase != "Running":
        if time.monotonic() > deadline:
            raise TimeoutError("the bench pod did not start")
        time.sleep(0.3)


def run(record: Record) -> None:
    """Measure and record the figures (node part: root only)."""
    if os.geteuid() != 0:
        print("bench_fromtarget: node part skipped (needs root)", file=sys.stderr)
    else:
        _node(record)
    _cluster(record)
