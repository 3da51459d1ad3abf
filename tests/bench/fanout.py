"""Fan-out and workload intercept figures on the local cluster (bench_cluster.py runs it).

A Deployment of :data:`REPLICAS` test apps (no probes: ready once running), their managers
injected by a first run; then, with every manager already there and each median of
:data:`RUNS` runs:

- ``cluster.fanout_shell_ratio``: the time of one ``shell`` step over every replica
  (``pick: all``) ÷ the same step over one replica. The step is a run's first manager step, so
  it includes reaching each pod's manager (its port-forward and gRPC channel, opened at once);
  the second step of the same runs (sessions open) is printed beside it.
- ``cluster.intercept_all_setup_s``: seconds from starting ``kdiag run`` to the end of its
  first step, a background ``redirect`` of every replica (every pod redirected).
- ``cluster.intercept_all_threads``: the threads of that ``kdiag`` process once every replica
  is redirected (one port-forward, gRPC channel and redirect per pod).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPLICAS = 10
RUNS = 3


def _deployment(namespace: str) -> dict[str, Any]:
    return {"metadata": {"name": "fan", "namespace": namespace},
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "fan"}},
                     "template": {"metadata": {"labels": {"app": "fan"}}, "spec": {
                         "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "app", "image": "kdiag.local/testapp:dev",
                                         "imagePullPolicy": "Never",
                                         "args": ["-listen=:8080"],
                                         "ports": [{"name": "http", "containerPort": 8080}]}]}}}}


def _ready_pods(kube: Any, namespace: str) -> list[str]:
    pods = kube.core().list_namespaced_pod(namespace, label_selector="app=fan").items
    return sorted(p.metadata.name for p in pods if p.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in p.status.conditions or []))


def _steps(runbook: Path, env: dict[str, str], report: Path) -> tuple[float, list[dict[str, Any]]]:
    """Run it; (seconds from the start to ..., the report's steps)."""
    started = time.time()
    subprocess.run([sys.executable, "-m", "kdiag", "run", str(runbook), "-q", "--report",
                    f"json={report}"], env=env, check=True, timeout=180)
    return started, json.loads(report.read_text())["runs"][0]["steps"]


def run(record: Any, kube: Any, namespace: str, kubeconfig: str, cache: str) -> None:
    """Measure and record the figures (in ``namespace``, which the caller removes)."""
    from kubernetes import client

    client.AppsV1Api(kube.core().api_client).create_namespaced_deployment(
        namespace, _deployment(namespace))
    deadline = time.monotonic() + 180
    while len(_ready_pods(kube, namespace)) < REPLICAS:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{REPLICAS} replicas were not ready in time")
        time.sleep(0.5)
    one = _ready_pods(kube, namespace)[0]
    env = {**os.environ, "KUBECONFIG": kubeconfig, "XDG_CACHE_HOME": cache}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shell = ("steps:\n  - {name: first, shell: {script: cat /etc/hostname}}\n"
                 "  - {name: second, shell: {script: cat /etc/hostname}}\n")
        every = folder / "every.yaml"
        every.write_text(f"target: {{kubernetes: {{namespace: {namespace}, pod: deploy/fan, "
                         f"pick: all}}}}\n{shell}")
        single = folder / "single.yaml"
        single.write_text(f"target: {{kubernetes: {{namespace: {namespace}, pod: {one}}}}}\n"
                          f"{shell}")
        intercept = folder / "intercept.yaml"
        intercept.write_text(
            f"target: {{kubernetes: {{namespace: {namespace}, pod: deploy/fan, pick: all}}}}\n"
            "steps:\n  - {name: redirect, redirect: {ports: [http], to: '127.0.0.1:9'}, "
            "background: true}\n"
            "  - {name: threads, run: {script: 'ls /proc/$PPID/task | wc -l'}}\n")
        _steps(every, env, folder / "warm.json")  # injects every manager
        fanned, single_first, fanned_second, single_second = [], [], [], []
        setup, threads = [], []
        for i in range(RUNS):  # taking turns: the machine's load weighs on both alike
            _, steps = _steps(every, env, folder / f"e{i}.json")
            fanned.append(steps[0]["duration"])
            fanned_second.append(steps[1]["duration"])
            _, steps = _steps(single, env, folder / f"s{i}.json")
            single_first.append(steps[0]["duration"])
            single_second.append(steps[1]["duration"])
            started, steps = _steps(intercept, env, folder / f"i{i}.json")
            assert steps[0]["result"]["count"] == REPLICAS, steps[0]["result"]
            setup.append(steps[0]["started_at"] + steps[0]["duration"] - started)
            threads.append(int(steps[1]["result"]["stdout"].strip()))
    ratio = statistics.median(fanned) / statistics.median(single_first)
    print(f"  shell step over {REPLICAS} replicas {statistics.median(fanned):.2f} s, over one "
          f"{statistics.median(single_first):.2f} s; sessions already open: "
          f"{statistics.median(fanned_second):.3f} s against "
          f"{statistics.median(single_second):.3f} s")
    record("cluster.fanout_shell_ratio", ratio, "x", "<= 2.5",
           baseline=statistics.median(single_first))
    record("cluster.intercept_all_setup_s", statistics.median(setup), "s", "<= 3")
    record("cluster.intercept_all_threads", statistics.median(threads), "threads")
