"""Which objects a collector removes (kdiag/kube/owned.py): a run's objects live while its
Lease in their namespace does."""

from __future__ import annotations

import datetime

from kdiag.kube.owned import Owned, dead, labels, new_run_id

NOW = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(seconds=10)
EARLIER = NOW - datetime.timedelta(seconds=1)


def test_objects_of_a_live_run_stay_and_of_a_dead_or_leaseless_run_go() -> None:
    live = Owned("pods", "a", "copy-1", "r1", "copy")
    elsewhere = Owned("pods", "b", "copy-2", "r1", "copy")  # r1 has no lease in b
    expired = Owned("services", "a", "svc", "r2", "expose")
    kept = Owned("pods", "a", "kept", "", "copy")  # kept: no run
    leases = [(Owned("leases", "a", "kdiag-run-r1", "r1", "lease"), LATER),
              (Owned("leases", "a", "kdiag-run-r2", "r2", "lease"), EARLIER),
              (Owned("leases", "a", "kdiag-run-r3", "r3", "lease"), None)]
    gone = dead([live, elsewhere, expired, kept], leases, NOW)
    assert gone == [elsewhere, expired, leases[1][0], leases[2][0]]


def test_labels_and_run_ids_are_label_values() -> None:
    run = new_run_id()
    assert len(run) <= 63 and run.replace("-", "").isalnum()
    assert labels(run, "node") == {"app.kubernetes.io/managed-by": "kdiag",
                                   "kdiag.dev/run": run, "kdiag.dev/role": "node"}
    assert Owned("pods", "ns", "p", run, "node").describe() == f"pod ns/p (run {run}, role node)"
