"""The copy of a pod (kdiag/kube/podcopy.py): what changes and what stays."""

from __future__ import annotations

import pytest

from kdiag.errors import TargetError
from kdiag.kube.podcopy import CopySpec, copy_body, copy_name

POD = {"metadata": {"name": "api-0", "namespace": "shop", "labels": {"app": "api"},
                    "uid": "u", "resourceVersion": "9", "ownerReferences": [{"kind": "X"}],
                    "annotations": {"a": "b"}},
       "spec": {"nodeName": "n1", "ephemeralContainers": [{"name": "kdiag-x"}],
                "volumes": [{"name": "cfg", "configMap": {"name": "c"}}],
                "containers": [
                    {"name": "app", "image": "api:1", "command": ["/api"], "args": ["-x"],
                     "livenessProbe": {}, "readinessProbe": {}, "startupProbe": {},
                     "volumeMounts": [{"name": "cfg", "mountPath": "/etc/api"}]},
                    {"name": "side", "image": "side:1", "readinessProbe": {}}]},
       "status": {"phase": "Running"}}


def test_the_chosen_container_sleeps_without_probes_and_nothing_selects_the_copy() -> None:
    body = copy_body(POD, "app", CopySpec(), "mgr:1", "Never", "api-0-kdiag-copy-1")
    assert body["metadata"] == {"name": "api-0-kdiag-copy-1", "namespace": "shop",
                                "labels": {"kdiag.dev/copy-of": "api-0"},
                                "annotations": {"a": "b"}}
    assert "status" not in body and "nodeName" not in body["spec"]
    assert "ephemeralContainers" not in body["spec"]
    app, side = body["spec"]["containers"]
    assert app["command"] == ["/.kdiag/busybox", "sleep", "2147483647"] and "args" not in app
    assert app["image"] == "api:1"
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & (set(app) | set(side))
    assert app["volumeMounts"][-1] == {"name": "kdiag-bin", "mountPath": "/.kdiag",
                                       "readOnly": True}
    [init] = body["spec"]["initContainers"]
    assert init["image"] == "mgr:1" and init["securityContext"]["runAsNonRoot"] is True
    assert {"name": "kdiag-bin", "emptyDir": {}} in body["spec"]["volumes"]
    assert POD["spec"]["containers"][0]["command"] == ["/api"]  # the original is untouched


def test_a_given_command_and_image_replace_the_containers() -> None:
    spec = CopySpec.from_options({"command": "/api -debug", "image": "api:debug"})
    body = copy_body(POD, "app", spec, "mgr:1", "Never", "c")
    app = body["spec"]["containers"][0]
    assert app["command"] == ["/api", "-debug"] and app["image"] == "api:debug"
    assert "initContainers" not in body["spec"] and len(body["spec"]["volumes"]) == 1


def test_bad_copy_options_and_long_names() -> None:
    with pytest.raises(TargetError, match="command: a list of strings"):
        CopySpec.from_options({"command": [1]})
    with pytest.raises(TargetError, match="a mapping"):
        CopySpec.from_options("yes")
    assert CopySpec.from_options(True, keep=True) == CopySpec(keep=True)
    name = copy_name("x" * 80)
    assert len(name) <= 63 and name.startswith("x" * 41 + "-kdiag-copy-")
