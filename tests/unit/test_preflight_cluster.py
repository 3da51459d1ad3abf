"""kdiag doctor's cluster checks against a fake API client: the verdict and the line each one
gives for what the API server answers (ephemeral containers served or not, each RBAC verb
allowed or denied, the namespace's Pod Security labels, the dry-run injection refused by
admission or by RBAC). tests/cluster/test_doctor.py asks a real API server."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

import pytest

from kdiag.errors import TargetError
from kdiag.preflight import cluster
from kdiag.preflight.demand import Demand, StepUse
from tests.unit.kubefakes import FakeApiException, install

CAPS = ("NET_ADMIN", "NET_RAW", "SYS_PTRACE", "SYS_ADMIN")


def refusal(status: int, message: str) -> FakeApiException:
    return FakeApiException(status, {"message": message})


class Api:
    """The answers of the fake API server, and the calls it got."""

    def __init__(self) -> None:
        self.resources = ["pods", "pods/ephemeralcontainers"]
        self.labels: dict[str, str] | None = {}
        self.allowed: dict[tuple[str, str], bool] = {}
        self.user: str | Exception = "alice"
        self.patch_error: Exception | None = None
        self.calls: list[tuple[Any, ...]] = []


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Api:
    from kubernetes import client

    state = Api()

    class Core:
        def __init__(self, _: Any) -> None:
            pass

        def get_api_resources(self, **_: Any) -> Any:
            if isinstance(state.resources, Exception):
                raise state.resources
            return NS(resources=[NS(name=n) for n in state.resources])

        def read_namespace(self, name: str, **_: Any) -> Any:
            if state.labels is None:
                raise refusal(403, 'User "bob" cannot get resource "namespaces" in the '
                                   'namespace "shop"')
            return NS(metadata=NS(labels=state.labels))

        def patch_namespaced_pod_ephemeralcontainers(self, name: str, namespace: str,
                                                     body: Any, **kw: Any) -> None:
            state.calls.append(("patch", name, namespace, body, kw.get("dry_run")))
            if state.patch_error is not None:
                raise state.patch_error

    class Authorization:
        def __init__(self, _: Any) -> None:
            pass

        def create_self_subject_access_review(self, body: Any, **_: Any) -> Any:
            attrs = body["spec"]["resourceAttributes"]
            name = attrs["resource"] + (f"/{attrs['subresource']}" if "subresource" in attrs
                                        else "")
            allowed = state.allowed.get((attrs["verb"], name), True)
            return NS(status=NS(allowed=allowed, reason=None if allowed else "no  RBAC\n rule",
                                evaluation_error=None))

    class Authentication:
        def __init__(self, _: Any) -> None:
            pass

        def create_self_subject_review(self, body: Any, **_: Any) -> Any:
            state.calls.append(("whoami",))
            if isinstance(state.user, Exception):
                raise state.user
            return NS(status=NS(user_info=NS(username=state.user)))

    monkeypatch.setattr(client, "CoreV1Api", Core)
    monkeypatch.setattr(client, "AuthorizationV1Api", Authorization)
    monkeypatch.setattr(client, "AuthenticationV1Api", Authentication)
    install(monkeypatch)
    return state


def session(version: tuple[int, int] | None = (1, 34), user: str = "") -> cluster.Session:
    kube = NS(server="https://k:6443")
    return cluster.Session(kube, object(), "shop", version,  # type: ignore[arg-type]
                           "v1.34.1" if version else "v?", user)


def test_ephemeral_containers_from_discovery_or_from_the_version(api: Api) -> None:
    assert cluster.ephemeral_check(session()).status == "ok"
    api.resources = ["pods"]
    check = cluster.ephemeral_check(session())
    assert (check.status, check.detail) == (
        "fail", "Kubernetes v1.34.1 does not serve pods/ephemeralcontainers")
    api.resources = TargetError("cluster unreachable: https://k:6443 (timed out)")  # type: ignore[assignment]
    check = cluster.ephemeral_check(session())
    assert (check.status, check.detail) == (
        "unknown", "API discovery failed: cluster unreachable: https://k:6443 (timed out)")
    quick = cluster.ephemeral_check(session((1, 24)), discover=False)
    assert (quick.status, quick.detail, quick.fix) == (
        "fail", "Kubernetes v1.34.1 has none", "Kubernetes 1.25 or later is needed")
    assert cluster.ephemeral_check(session((1, 25)), discover=False).status == "ok"


def test_server_versions_as_clouds_write_them() -> None:
    assert cluster._version("1", "34+") == (1, 34)
    assert cluster._version("1", "") is None


def test_each_denied_verb_is_a_check_naming_the_user_and_the_rule_to_ask_for(api: Api) -> None:
    api.allowed[("patch", "pods/ephemeralcontainers")] = False
    api.allowed[("get", "pods/log")] = False
    demand = Demand({"kubernetes": {"pod": "api"}}, [StepUse("l", "logs"), StepUse("p", "ps")])
    checks = cluster.rbac_checks(session(), demand)
    assert api.calls == [("whoami",)]  # asked once a refusal needs the name
    denied = [c for c in checks if c.status != "ok"]
    assert [(c.name, c.status, c.detail) for c in denied] == [
        ("RBAC: cannot patch pods/ephemeralcontainers in namespace shop (as alice)", "fail",
         "no RBAC rule"),
        ("RBAC: cannot get pods/log in namespace shop (as alice)", "fail", "no RBAC rule")]
    assert denied[0].fix == ('ask the cluster admin for a Role in shop with the rule {apiGroups: '
                             '[""], resources: ["pods/ephemeralcontainers"], verbs: ["patch"]} '
                             "(bound to you)")
    assert all(c.blocking for c in denied)
    # Kubernetes 1.34 upgrades a port-forward with "get" (1.35: "create").
    names = [c.name for c in checks]
    assert "RBAC: get pods/portforward in namespace shop" in names
    assert not any("create pods/portforward" in n for n in names)


def test_an_optional_verb_denied_only_warns_and_no_user_is_asked_when_all_is_allowed(
        api: Api) -> None:
    api.allowed[("create", "services")] = False
    checks = cluster.rbac_checks(session(user="bob"), Demand({"kubernetes": {"pod": "api"}}))
    services = next(c for c in checks if "create services" in c.name)
    assert (services.name, services.status, services.blocking) == (
        "RBAC: cannot create services in namespace shop (as bob)", "warn", False)
    assert api.calls == []  # the user was known
    api.allowed.clear()
    api.calls.clear()
    assert all(c.status == "ok" for c in cluster.rbac_checks(session(), Demand(
        {"kubernetes": {"pod": "api"}}, [StepUse("l", "logs")])))
    assert api.calls == []


def test_rbac_checks_for_an_unknown_way_or_an_unreachable_server(api: Api,
                                                                  monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    [check] = cluster.rbac_checks(session(), Demand({"kubernetes": {"way": "teleport"}}))
    assert (check.name, check.status, check.blocking) == ("way teleport", "unknown", False)

    def unreachable(*_: Any) -> Any:
        raise TargetError("cluster unreachable: https://k:6443 (connection refused)")

    monkeypatch.setattr(cluster.access, "ask", unreachable)
    [check] = cluster.rbac_checks(session(), Demand({"kubernetes": {"pod": "api"}}))
    assert (check.status, check.detail) == (
        "unknown", "cannot ask the API server: cluster unreachable: https://k:6443 "
        "(connection refused)")


def test_whoami_is_empty_when_the_server_cannot_say(api: Api) -> None:
    assert cluster.whoami(session()) == "alice"
    api.user = FakeApiException(404)
    assert cluster.whoami(session()) == ""


@pytest.mark.parametrize(("labels", "status", "detail"), [
    ({}, "ok", "no enforce label: the cluster's default level applies"),
    ({"pod-security.kubernetes.io/enforce": "privileged"}, "ok", "enforces 'privileged'"),
    ({"pod-security.kubernetes.io/enforce": "baseline"}, "fail",
     "enforces 'baseline', which refuses the manager's added capabilities NET_ADMIN, NET_RAW, "
     "SYS_PTRACE, SYS_ADMIN: the manager cannot start there"),
    ({"pod-security.kubernetes.io/enforce": "privileged",
      "pod-security.kubernetes.io/audit": "restricted"}, "warn",
     "enforces 'privileged'; audit at a stricter level"),
])
def test_pod_security_levels_of_the_namespace(api: Api, labels: dict[str, str], status: str,
                                              detail: str) -> None:
    api.labels = labels
    check = cluster.pod_security_check(session(), Demand({"kubernetes": {}}), CAPS)
    assert check.name == "pod security (namespace shop)"
    assert (check.status, check.detail[:len(detail)]) == (status, detail)
    assert check.blocking == (status != "warn")


def test_pod_security_of_a_privileged_manager_and_of_an_unreadable_namespace(api: Api) -> None:
    api.labels = {"pod-security.kubernetes.io/enforce": "baseline"}
    check = cluster.pod_security_check(session(), Demand({"node": {"node": "n1"}}), CAPS)
    assert "refuses the manager's privileged: true" in check.detail
    assert "label the namespace pod-security.kubernetes.io/enforce=privileged" in check.fix
    api.labels = None
    check = cluster.pod_security_check(session(), Demand({"kubernetes": {}}), ())
    assert (check.status, check.blocking) == ("unknown", False)
    assert check.detail.startswith("cannot read the namespace's labels (RBAC: cannot get "
                                   "namespaces in namespace shop (as bob))")
    assert check.fix.startswith("the manager needs the 'baseline' Pod Security level")


def test_the_dry_run_injection_says_who_refused(api: Api) -> None:
    pod = NS(metadata=NS(name="api-0"))
    spec = {"name": "kdiag-x"}
    check = cluster.dry_run_injection(session(), pod, spec)
    assert (check.status, check.detail) == ("ok", "pod shop/api-0 admits the manager")
    assert api.calls == [("patch", "api-0", "shop", {"spec": {"ephemeralContainers": [spec]}},
                          "All")]
    api.patch_error = refusal(403, 'pods "api-0" is forbidden: violates PodSecurity '
                                   '"baseline:latest": privileged')
    check = cluster.dry_run_injection(session(), pod, spec)
    assert check.status == "fail" and check.detail.startswith(
        "pod shop/api-0: the manager cannot start there: pods \"api-0\" is forbidden: violates")
    api.patch_error = refusal(403, 'User "bob" cannot patch resource '
                                   '"pods/ephemeralcontainers" in the namespace "shop"')
    check = cluster.dry_run_injection(session(), pod, spec)
    assert (check.status, check.detail) == (
        "fail", "pod shop/api-0: RBAC: cannot patch pods/ephemeralcontainers in namespace shop "
                "(as bob)")
    api.patch_error = ConnectionRefusedError("refused")
    check = cluster.dry_run_injection(session(), pod, spec)
    assert (check.status, check.blocking, check.detail) == (
        "unknown", False, "pod shop/api-0: refused")
    api.patch_error = KeyError("a bug")
    with pytest.raises(KeyError):
        cluster.dry_run_injection(session(), pod, spec)
