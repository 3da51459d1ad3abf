"""Objects kdiag creates in a cluster: their labels, keeping them alive, removing them.

Every object a run creates (a pod copy, a node pod, an expose pod and its Service, ...) carries
``app.kubernetes.io/managed-by: kdiag``, ``kdiag.dev/run: <run id>`` and
``kdiag.dev/role: <role>``.

Liveness: one ``coordination.k8s.io/v1`` Lease per run and namespace, ``kdiag-run-<run id>``
(labelled the same way, role ``lease``), created *before* the run's first object in that
namespace and renewed every few seconds (``spec.renewTime``) while the run lives. A run is alive
in a namespace while its Lease exists and ``renewTime + leaseDurationSeconds`` (30 s by default:
the grace after the last renewal) is in the future. Why a Lease rather than an annotation renewed
on each object: one write per namespace however many objects, the standard Kubernetes object for
exactly this, and a collector reads one list per namespace. Clocks: the renewer writes its own
time and the collector compares with its own; a skew beyond the grace could make a live run look
dead (or a dead one live for longer).

The collector lists the objects *first*, then the Leases: an object listed was created after
its run's Lease, so a live run's Lease is always in the second list. An object whose run has
no live Lease in its namespace belongs to a dead run (``kill -9``, a lost laptop) and is
deleted, and so are expired Leases. An object labelled ``kdiag.dev/kept: "true"`` (``keep_copy``)
belongs to no run and is left alone. A run deletes what it created when it ends (also after a
failure half-way), then its Leases.
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kdiag.errors import TargetError
from kdiag.kube.config import KubeConfig
from kdiag.kube.errors import Call, api_call

log = logging.getLogger(__name__)

MANAGED_BY = "app.kubernetes.io/managed-by"
RUN = "kdiag.dev/run"
ROLE = "kdiag.dev/role"
KEPT = "kdiag.dev/kept"
SELECTOR = f"{MANAGED_BY}=kdiag"
COLLECT_WAIT = 35.0
"""How long the end of a run waits for its start's background collection (API calls time out
after 30 s)."""
LEASE_SECONDS = 30
"""The grace after a run's last renewal before a collector counts it dead."""
RENEW_EVERY = 5.0


def new_run_id() -> str:
    """A label-safe, sortable, unique run id: ``20261203-111600-3f9a1c``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


_PROCESS_RUN: list[str] = []


def process_run_id() -> str:
    """This process's run id (one kdiag command is one run)."""
    if not _PROCESS_RUN:
        _PROCESS_RUN.append(new_run_id())
    return _PROCESS_RUN[0]


def labels(run_id: str, role: str) -> dict[str, str]:
    """The labels of an object of run ``run_id``."""
    return {MANAGED_BY: "kdiag", RUN: run_id, ROLE: role}


def lease_name(run_id: str) -> str:
    """The Lease that keeps run ``run_id`` alive in a namespace."""
    return f"kdiag-run-{run_id}"


@dataclass(frozen=True)
class Kind:
    """A kind of object kdiag may create: how to list (by label) and delete it."""

    resource: str  # for messages and RBAC: pods, services, leases.coordination.k8s.io
    api: str  # the kubernetes.client API class
    suffix: str  # namespaced_pod → list_namespaced_pod, delete_namespaced_pod, ...

    def client(self, kube: KubeConfig) -> Any:
        """The API object for this kind."""
        from kubernetes import client

        return getattr(client, self.api)(kube.api_client())

    def list(self, kube: KubeConfig, namespace: str | None) -> list[Any]:
        """Every kdiag-managed object of this kind in ``namespace`` (None: all)."""
        api = self.client(kube)
        with api_call(Call("list", self.resource, namespace or "(all)", server=kube.server)):
            if namespace is None:
                found = getattr(api, f"list_{self.suffix.replace('namespaced_', '')}"
                                     "_for_all_namespaces")(label_selector=SELECTOR,
                                                            _request_timeout=30)
            else:
                found = getattr(api, f"list_{self.suffix}")(namespace, label_selector=SELECTOR,
                                                            _request_timeout=30)
        return list(found.items)

    def create(self, kube: KubeConfig, namespace: str, body: dict[str, Any]) -> Any:
        """Create ``body``; TargetError (RBAC, admission, ...) if it cannot."""
        name = str(body.get("metadata", {}).get("name", ""))
        with api_call(Call("create", self.resource, namespace, name, kube.server)):
            return getattr(self.client(kube), f"create_{self.suffix}")(
                namespace, body, _request_timeout=30)

    def delete(self, kube: KubeConfig, namespace: str, name: str) -> bool:
        """Delete one object (quickly: 1 s grace); False if it was already gone."""
        from kubernetes.client.exceptions import ApiException

        with api_call(Call("delete", self.resource, namespace, name, kube.server)):
            try:
                getattr(self.client(kube), f"delete_{self.suffix}")(
                    name, namespace, grace_period_seconds=1,
                    propagation_policy="Background", _request_timeout=30)
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
        return True


KINDS: dict[str, Kind] = {
    "pods": Kind("pods", "CoreV1Api", "namespaced_pod"),
    "services": Kind("services", "CoreV1Api", "namespaced_service"),
    "configmaps": Kind("configmaps", "CoreV1Api", "namespaced_config_map"),
    "leases": Kind("leases.coordination.k8s.io", "CoordinationV1Api", "namespaced_lease"),
}
"""What kdiag creates (leases last: they keep the others alive)."""
OBJECT_KINDS = tuple(k for k in KINDS if k != "leases")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro_time(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Owned:
    """One object a run created."""

    kind: str
    namespace: str
    name: str
    run: str = ""
    role: str = ""

    def describe(self) -> str:
        """``pod ns/name (run R, role copy)``."""
        what = self.kind[:-1] if self.kind.endswith("s") else self.kind
        return f"{what} {self.namespace}/{self.name} (run {self.run or '?'}, " \
               f"role {self.role or '?'})"


def _owned(kind: str, obj: Any) -> Owned:
    meta = obj.metadata
    found = meta.labels or {}
    # A kept object (keep_copy) belongs to no run: no collector removes it.
    run = "" if found.get(KEPT) == "true" else found.get(RUN, "")
    return Owned(kind, meta.namespace, meta.name, run, found.get(ROLE, ""))


def _alive_until(lease: Any) -> datetime.datetime | None:
    spec = lease.spec
    when = spec.renew_time or spec.acquire_time or lease.metadata.creation_timestamp
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when + datetime.timedelta(seconds=spec.lease_duration_seconds or LEASE_SECONDS)


def dead(objects: Iterable[Owned], leases: Iterable[tuple[Owned, datetime.datetime | None]],
         now: datetime.datetime) -> list[Owned]:
    """Of ``objects`` and ``leases`` (each with the time it expires), those of runs without a
    live Lease in their namespace: what a collector removes (objects first, leases last)."""
    leases = list(leases)
    alive = {(lease.namespace, lease.run) for lease, until in leases
             if until is not None and until > now}
    gone = [o for o in objects if o.run and (o.namespace, o.run) not in alive]
    return gone + [lease for lease, _ in leases if (lease.namespace, lease.run) not in alive]


def collect(kube: KubeConfig, namespaces: list[str] | None, *, dry_run: bool = False
            ) -> list[Owned]:
    """Find (and unless ``dry_run`` delete) what dead runs left in ``namespaces`` (None: all
    namespaces). Returns what was (or would be) removed; TargetError (e.g. RBAC) if a list or
    delete fails."""
    targets: list[str | None] = list(namespaces) if namespaces is not None else [None]
    objects = [_owned(kind, obj) for ns in targets for kind in OBJECT_KINDS
               for obj in KINDS[kind].list(kube, ns)]
    leases = [(_owned("leases", obj), _alive_until(obj)) for ns in targets
              for obj in KINDS["leases"].list(kube, ns)]
    found = dead(objects, leases, _now())
    if not dry_run:
        for item in found:
            KINDS[item.kind].delete(kube, item.namespace, item.name)
    return found


def collect_quietly(kube: KubeConfig, namespace: str) -> threading.Thread:
    """Best effort at run start: collect in ``namespace`` in the background (the thread,
    for the run's end to wait for); a failure (no RBAC to list leases, say) is logged, never
    failing the run."""

    def work() -> None:
        try:
            removed = collect(kube, [namespace])
        except TargetError as exc:
            log.warning("kdiag gc skipped in namespace %s: %s", namespace, exc)
            return
        for item in removed:
            log.info("removed %s (left by a dead run)", item.describe())

    thread = threading.Thread(target=work, name="kdiag-gc", daemon=True)
    thread.start()
    return thread


@dataclass
class Ownership:
    """What one run creates in a cluster: labels them, keeps them alive (a renewed Lease per
    namespace) and deletes them at :meth:`close`. Use as a context manager."""

    kube: KubeConfig
    run_id: str = field(default_factory=process_run_id)
    lease_seconds: int = LEASE_SECONDS
    renew_every: float = RENEW_EVERY
    created: list[Owned] = field(default_factory=list)
    _namespaces: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _collecting: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Ownership:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def create(self, kind: str, namespace: str, body: dict[str, Any], role: str) -> Any:
        """Create ``body`` (a dict in API field names) labelled as this run's, registered for
        deletion at :meth:`close`; the namespace's Lease first. TargetError if it cannot."""
        self.enter(namespace)
        metadata = body.setdefault("metadata", {})
        metadata["labels"] = {**(metadata.get("labels") or {}), **labels(self.run_id, role)}
        made = KINDS[kind].create(self.kube, namespace, body)
        with self._lock:
            self.created.append(Owned(kind, namespace, made.metadata.name, self.run_id, role))
        return made

    def enter(self, namespace: str) -> None:
        """Before the first object in ``namespace``: collect what dead runs left there (best
        effort), create this run's Lease and keep renewing it."""
        with self._lock:
            if namespace in self._namespaces:
                return
        self._collecting.append(collect_quietly(self.kube, namespace))
        self._write_lease(namespace, create=True)
        with self._lock:
            self._namespaces.append(namespace)
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew, name="kdiag-lease",
                                                daemon=True)
                self._thread.start()

    def _lease_body(self) -> dict[str, Any]:
        now = _micro_time(_now())
        return {"metadata": {"name": lease_name(self.run_id),
                             "labels": labels(self.run_id, "lease")},
                "spec": {"holderIdentity": f"kdiag {self.run_id} on {socket.gethostname()} "
                                           f"pid {os.getpid()}",
                         "leaseDurationSeconds": self.lease_seconds,
                         "acquireTime": now, "renewTime": now}}

    def _write_lease(self, namespace: str, *, create: bool) -> None:
        """Create the Lease (or renew it; recreated if someone removed it)."""
        from kubernetes.client.exceptions import ApiException

        lease = KINDS["leases"]
        name = lease_name(self.run_id)
        body = self._lease_body()
        api = lease.client(self.kube)
        with api_call(Call("create" if create else "patch", lease.resource, namespace, name,
                           self.kube.server)):
            try:
                if create:
                    api.create_namespaced_lease(namespace, body, _request_timeout=30)
                else:
                    api.patch_namespaced_lease(name, namespace,
                                               {"spec": {"renewTime": body["spec"]["renewTime"]}},
                                               _request_timeout=30)
            except ApiException as exc:
                if exc.status == 409 and create:  # this run's, from another part of it
                    self._write_lease(namespace, create=False)
                elif exc.status == 404 and not create:
                    api.create_namespaced_lease(namespace, body, _request_timeout=30)
                else:
                    raise

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_every):
            with self._lock:
                namespaces = list(self._namespaces)
            for namespace in namespaces:
                try:
                    self._write_lease(namespace, create=False)
                except TargetError as exc:
                    log.warning("renewing the lease of run %s in %s: %s", self.run_id,
                                namespace, exc)

    def keep(self, kind: str, namespace: str, name: str) -> None:
        """Leave object ``name`` in place (``keep_copy``): labelled ``kdiag.dev/kept: "true"``,
        which :func:`collect` leaves alone, and no longer deleted by :meth:`close`."""
        with api_call(Call("patch", KINDS[kind].resource, namespace, name, self.kube.server)):
            getattr(KINDS[kind].client(self.kube), f"patch_{KINDS[kind].suffix}")(
                name, namespace, {"metadata": {"labels": {KEPT: "true"}}}, _request_timeout=30)
        with self._lock:
            self.created[:] = [o for o in self.created
                               if (o.kind, o.namespace, o.name) != (kind, namespace, name)]

    def close(self) -> list[str]:
        """Stop renewing; delete what this run created (newest first), then its Leases.
        Returns the failures (one line each), also logged; never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.renew_every + 35)
        # A collection still running when the process exits is a daemon thread inside an API
        # call or logging to stderr while the interpreter shuts down: that can abort the
        # process (SIGABRT after a run that failed fast, e.g. refused by admission).
        for thread in self._collecting:
            thread.join(timeout=COLLECT_WAIT)
        with self._lock:
            items = list(reversed(self.created)) + [
                Owned("leases", ns, lease_name(self.run_id), self.run_id, "lease")
                for ns in self._namespaces]
            self.created.clear()
            self._namespaces.clear()
        errors = []
        for item in items:
            try:
                KINDS[item.kind].delete(self.kube, item.namespace, item.name)
            except TargetError as exc:
                errors.append(f"could not delete {item.describe()}: {exc}")
                log.warning("%s", errors[-1])
        return errors




