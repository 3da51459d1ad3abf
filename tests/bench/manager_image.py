"""The manager image's figures on the local cluster (called by bench_cluster's ``run``):

- ``cluster.manager_image_mb``: its size as the node holds it (uncompressed, MiB — the unit
  `ctr images ls` shows), from the node's image list;
- ``cluster.manager_ready_s``: from kdiag's injection request to the manager's first output line
  (it listens then), as the container runtime timestamps that line — what a user waits for on a
  first run: the kubelet starting the ephemeral container, python starting, the manager's
  imports and its gRPC server. The median of a few injections into the same pod.

When the image under test is not the cluster's usual ``kdiag.local/manager:dev``
(``KDIAG_E2E_MANAGER_IMAGE``), that one is measured in the same run as the baseline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kdiag.kube.podlog import read_pod_log

Record = Callable[..., None]
USUAL = "kdiag.local/manager:dev"
READY_RUNS = 4


def image_mib(core: Any, node: str, image: str) -> float | None:
    """The size the node reports for ``image`` (None if it does not hold it)."""
    for held in core.read_node(node).status.images or []:
        if image in (held.names or []):
            return float(held.size_bytes) / (1 << 20)
    return None


def ready_seconds(kube: Any, namespace: str, pod: str, container: str, images: list[str]
                  ) -> list[float]:
    """Median seconds from an injection request to the manager's first line, per image (the
    images take turns, so the pod's growing list of containers weighs on each alike)."""
    from kdiag.kube.inject import Injector, ManagerImage
    from kdiag.kube.pods import PodSelector, resolve

    core = kube.core()
    ref = resolve(core, PodSelector(namespace=namespace, pod=pod, container=container),
                  kube.server)[0]
    injectors = [Injector(core, kube.server, ManagerImage(image=i, pull_policy="Never"))
                 for i in images]
    times: list[list[float]] = [[] for _ in images]
    for _ in range(READY_RUNS):
        for injector, samples in zip(injectors, times, strict=True):
            samples.append(_ready_once(core, injector, ref, namespace, pod))
    return [statistics.median(samples) for samples in times]


def _ready_once(core: Any, injector: Any, ref: Any, namespace: str, pod: str) -> float:
    started = time.time()
    name, _ = injector.inject(ref)
    deadline = time.monotonic() + 60
    while True:
        log = read_pod_log(core, pod, namespace, container=name, timestamps=True)
        first = next((line for line in log.splitlines() if '{"kdiag_manager"' in line), "")
        if first:
            return _stamp(first.split(" ", 1)[0]) - started
        if time.monotonic() > deadline:
            raise TimeoutError(f"manager {name} printed no first line")
        time.sleep(0.05)


def _stamp(text: str) -> float:
    """An RFC 3339 time with nanoseconds (the runtime's log timestamps) as epoch seconds."""
    whole, _, rest = text.rstrip("Z").partition(".")
    fraction = float(f"0.{rest}") if rest else 0.0
    return datetime.fromisoformat(whole + "+00:00").timestamp() + fraction


def run(record: Record, kube: Any, namespace: str, pod: str, container: str, image: str,
        node: str) -> None:
    """Record both figures for ``image`` (with the usual image as baseline when it differs)."""
    core = kube.core()
    baseline_mib = image_mib(core, node, USUAL) if image != USUAL else None
    size = image_mib(core, node, image)
    if size is None:
        raise RuntimeError(f"node {node} does not hold {image}")
    record("cluster.manager_image_mb", size, "MiB", "<= 80", baseline=baseline_mib)
    images = [image, USUAL] if baseline_mib is not None else [image]
    ready = ready_seconds(kube, namespace, pod, container, images)
    record("cluster.manager_ready_s", ready[0], "s",
           baseline=ready[1] if len(ready) > 1 else None)
