"""What one run creates in a cluster (kdiag/kube/owned.py), against an in-memory fake of the
API: labels, the namespace's Lease created first (and renewed, recreated when removed), what
close deletes and in which order, keep_copy, and what ``kdiag gc`` removes. tests/cluster
runs it against a real API server."""

from __future__ import annotations

import datetime
import threading
from types import SimpleNamespace as NS
from typing import Any

import pytest

from kdiag.errors import TargetError
from kdiag.kube import owned
from kdiag.kube.owned import Ownership, collect, lease_name
from tests.unit.kubefakes import FakeApiException, install

SUFFIXES = {"namespaced_pod": "pods", "namespaced_service": "services",
            "namespaced_config_map": "configmaps", "namespaced_lease": "leases"}


class Store:
    """Objects by (kind, namespace, name), and every call made."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Any] = {}
        self.calls: list[tuple[str, str, str, str]] = []
        self.refuse: dict[tuple[str, str], int] = {}  # (verb, kind) → HTTP status
        self.lock = threading.RLock()  # a run's start collects in a thread of its own

    def api(self, _: Any = None) -> Any:
        return Api(self)


class Api:
    def __init__(self, store: Store) -> None:
        self.store = store

    def __getattr__(self, method: str) -> Any:
        verb, _, rest = method.partition("_")
        if rest.endswith("_for_all_namespaces"):
            kind = SUFFIXES["namespaced_" + rest.removesuffix("_for_all_namespaces")]
            return lambda **kw: self._list(kind, None, kw)
        kind = SUFFIXES[rest]
        store = self.store

        def call(*args: Any, **kw: Any) -> Any:
            with store.lock:
                return locked(*args, **kw)

        def locked(*args: Any, **kw: Any) -> Any:
            if verb == "list":
                return self._list(kind, args[0], kw)
            if verb == "create":
                namespace, body = args
                name = body["metadata"]["name"]
            else:
                name, namespace = args[:2]
            store.calls.append((verb, kind, namespace, name))
            status = store.refuse.get((verb, kind))
            key = (kind, namespace, name)
            if status is None and verb != "create" and key not in store.objects:
                status = 404
            if status is None and verb == "create" and key in store.objects:
                status = 409
            if status is not None:
                raise FakeApiException(status)
            if verb == "create":
                store.objects[key] = obj(kind, namespace, name, body["metadata"]["labels"],
                                         body.get("spec"))
                return store.objects[key]
            if verb == "delete":
                del store.objects[key]
                return None
            patch = args[2]
            found = store.objects[key]
            found.metadata.labels.update(patch.get("metadata", {}).get("labels", {}))
            if "spec" in patch:
                found.spec.renew_time = patch["spec"]["renewTime"]
            return found

        return call

    def _list(self, kind: str, namespace: str | None, kw: dict[str, Any]) -> Any:
        assert kw["label_selector"] == "app.kubernetes.io/managed-by=kdiag"
        with self.store.lock:
            return NS(items=[o for (k, ns, _), o in self.store.objects.items()
                             if k == kind and namespace in (None, ns)])


def obj(kind: str, namespace: str, name: str, labels: dict[str, str],
        spec: dict[str, Any] | None = None) -> Any:
    spec = spec or {}
    return NS(metadata=NS(name=name, namespace=namespace, labels=dict(labels),
                          creation_timestamp=None),
              spec=NS(renew_time=spec.get("renewTime"), acquire_time=spec.get("acquireTime"),
                      lease_duration_seconds=spec.get("leaseDurationSeconds")))


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    from kubernetes import client

    state = Store()
    monkeypatch.setattr(client, "CoreV1Api", state.api)
    monkeypatch.setattr(client, "CoordinationV1Api", state.api)
    install(monkeypatch)
    return state


KUBE = NS(api_client=lambda: None, server="https://k:6443")


def test_a_run_labels_what_it_creates_after_its_lease_and_deletes_it_newest_first(
        store: Store) -> None:
    run = Ownership(KUBE, run_id="r1")  # type: ignore[arg-type]
    run.create("pods", "shop", {"metadata": {"name": "copy", "labels": {"app": "api"}}}, "copy")
    run.create("services", "shop", {"metadata": {"name": "svc"}}, "expose")
    lease = lease_name("r1")
    assert [c for c in store.calls if c[0] == "create"] == [
        ("create", "leases", "shop", lease), ("create", "pods", "shop", "copy"),
        ("create", "services", "shop", "svc")]
    assert store.objects[("pods", "shop", "copy")].metadata.labels == {
        "app": "api", "app.kubernetes.io/managed-by": "kdiag", "kdiag.dev/run": "r1",
        "kdiag.dev/role": "copy"}
    assert store.objects[("leases", "shop", lease)].spec.lease_duration_seconds == 30
    store.calls.clear()
    assert run.close() == []
    assert [c for c in store.calls if c[0] == "delete"] == [
        ("delete", "services", "shop", "svc"), ("delete", "pods", "shop", "copy"),
        ("delete", "leases", "shop", lease)]
    assert store.objects == {}


def test_close_reports_each_object_it_could_not_delete_and_deletes_the_rest(
        store: Store) -> None:
    with Ownership(KUBE, run_id="r2") as run:  # type: ignore[arg-type]
        run.create("pods", "shop", {"metadata": {"name": "copy"}}, "copy")
        store.refuse[("delete", "pods")] = 403
    assert list(store.objects) == [("pods", "shop", "copy")]  # the lease went all the same
    store.refuse.clear()
    run = Ownership(KUBE, run_id="r3")  # type: ignore[arg-type]
    run.create("pods", "shop", {"metadata": {"name": "copy"}}, "copy")
    store.refuse[("delete", "pods")] = 403
    [error] = run.close()
    assert error.startswith("could not delete pod shop/copy (run r3, role copy): RBAC: cannot "
                            "delete pods in namespace shop")
    assert ("leases", "shop", lease_name("r3")) not in store.objects
    store.refuse.clear()
    gone = Ownership(KUBE, run_id="r6")  # type: ignore[arg-type]
    gone.create("pods", "shop", {"metadata": {"name": "evicted"}}, "copy")
    del store.objects[("pods", "shop", "evicted")]
    assert gone.close() == []  # already gone is not a failure


def test_a_kept_copy_is_labelled_and_not_deleted(store: Store) -> None:
    run = Ownership(KUBE, run_id="r4")  # type: ignore[arg-type]
    run.create("pods", "shop", {"metadata": {"name": "copy"}}, "copy")
    run.keep("pods", "shop", "copy")
    run.close()
    kept = store.objects[("pods", "shop", "copy")]
    assert kept.metadata.labels["kdiag.dev/kept"] == "true"
    assert list(store.objects) == [("pods", "shop", "copy")]
    # gc leaves it: it belongs to no run any more.
    assert collect(KUBE, ["shop"]) == []  # type: ignore[arg-type]


def test_the_lease_is_renewed_and_recreated_if_someone_removed_it(store: Store) -> None:
    run = Ownership(KUBE, run_id="r5", renew_every=3600)  # type: ignore[arg-type]
    run.enter("shop")
    run.enter("shop")  # once per namespace
    lease = ("leases", "shop", lease_name("r5"))
    assert [c for c in store.calls if c[1] == "leases"] == [("create", *lease)]
    run._write_lease("shop", create=False)
    assert store.calls[-1] == ("patch", *lease)
    del store.objects[lease]
    run._write_lease("shop", create=False)
    assert store.calls[-2:] == [("patch", *lease), ("create", *lease)] and lease in store.objects
    # Another part of the same run created it already: renewed instead.
    other = Ownership(KUBE, run_id="r5")  # type: ignore[arg-type]
    other._write_lease("shop", create=True)
    assert store.calls[-2:] == [("create", *lease), ("patch", *lease)]
    store.refuse[("patch", "leases")] = 403
    with pytest.raises(TargetError, match=r"^RBAC: cannot patch leases\.coordination\.k8s\.io"):
        run._write_lease("shop", create=False)
    store.refuse.clear()
    run.close()


def lease_obj(namespace: str, run: str, renewed: datetime.datetime | None) -> Any:
    lease = obj("leases", namespace, lease_name(run), owned.labels(run, "lease"))
    lease.spec.renew_time = renewed
    lease.spec.lease_duration_seconds = 30
    return lease


def test_gc_removes_what_runs_without_a_live_lease_left(store: Store,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)
    monkeypatch.setattr(owned, "_now", lambda: now)
    fresh = (now - datetime.timedelta(seconds=20)).replace(tzinfo=None)  # naive: UTC
    store.objects.update({
        ("leases", "a", lease_name("live")): lease_obj("a", "live", fresh),
        ("leases", "a", lease_name("old")): lease_obj("a", "old",
                                                      now - datetime.timedelta(seconds=31)),
        ("pods", "a", "live-copy"): obj("pods", "a", "live-copy", owned.labels("live", "copy")),
        ("pods", "a", "old-copy"): obj("pods", "a", "old-copy", owned.labels("old", "copy")),
        ("services", "b", "orphan"): obj("services", "b", "orphan",
                                         owned.labels("live", "expose")),
    })
    would = collect(KUBE, None, dry_run=True)  # type: ignore[arg-type]
    assert [(o.kind, o.namespace, o.name) for o in would] == [
        ("pods", "a", "old-copy"), ("services", "b", "orphan"),
        ("leases", "a", lease_name("old"))]
    assert len(store.objects) == 5 and not any(c[0] == "delete" for c in store.calls)
    assert collect(KUBE, ["a"]) == would[:1] + would[2:]  # type: ignore[arg-type]
    assert sorted(store.objects) == [("leases", "a", lease_name("live")),
                                     ("pods", "a", "live-copy"), ("services", "b", "orphan")]


def test_gc_at_a_runs_start_never_fails_the_run(store: Store, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    def refused(*_: Any, **__: Any) -> Any:
        raise FakeApiException(403)

    monkeypatch.setattr(Api, "_list", refused)
    with caplog.at_level("WARNING", logger="kdiag.kube.owned"):
        owned.collect_quietly(KUBE, "shop").join(10)  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records] == [
        "kdiag gc skipped in namespace shop: RBAC: cannot list pods in namespace shop"]
