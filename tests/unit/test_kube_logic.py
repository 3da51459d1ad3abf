"""Pure logic of the Kubernetes target, with fakes: pod picking and kubectl's default
container, API error messages, kubeconfig and namespace choice, the token cache, the
ephemeral container spec."""

from __future__ import annotations

import hashlib
import stat
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from kdiag.errors import TargetError
from kdiag.kube import errors
from kdiag.kube.pods import default_container, is_running, pick_pods, to_ref
from tests.unit.kubefakes import FakeApiException, install


def fake_pod(name: str, created: int, containers: tuple[str, ...] = ("app",),
             annotations: dict[str, str] | None = None, phase: str = "Running",
             deleting: bool = False) -> Any:
    meta = SimpleNamespace(name=name, namespace="ns", uid=f"uid-{name}",
                           creation_timestamp=datetime(2026, 1, 1, 0, 0, created, tzinfo=UTC),
                           annotations=annotations, labels={}, deletion_timestamp=(
                               datetime(2026, 1, 1, tzinfo=UTC) if deleting else None))
    spec = SimpleNamespace(containers=[SimpleNamespace(name=c) for c in containers],
                           node_name="node")
    return SimpleNamespace(metadata=meta, spec=spec,
                           status=SimpleNamespace(phase=phase, pod_ip="10.0.0.1"))


def test_pick_newest_oldest_all() -> None:
    pods = [fake_pod("b", 2), fake_pod("a", 1), fake_pod("c", 3)]
    assert [p.metadata.name for p in pick_pods(pods, "newest")] == ["c"]
    assert [p.metadata.name for p in pick_pods(pods, "oldest")] == ["a"]
    assert [p.metadata.name for p in pick_pods(pods, "all")] == ["c", "b", "a"]


def test_running_only() -> None:
    assert is_running(fake_pod("a", 1))
    assert not is_running(fake_pod("a", 1, phase="Pending"))
    assert not is_running(fake_pod("a", 1, deleting=True))


def test_default_container_as_kubectl() -> None:
    annotation = "kubectl.kubernetes.io/default-container"
    assert default_container(fake_pod("p", 1, ("main", "side"))) == "main"
    assert default_container(fake_pod("p", 1, ("main", "side"), {annotation: "side"})) == "side"
    # An annotation naming no container of the pod is ignored, as kubectl does.
    assert default_container(fake_pod("p", 1, ("main", "side"), {annotation: "gone"})) == "main"
    with pytest.raises(TargetError, match=r"has no container 'x' \(containers: main, side\)"):
        to_ref(fake_pod("p", 1, ("main", "side")), "x")


@pytest.fixture
def api_exception(monkeypatch: pytest.MonkeyPatch) -> type[FakeApiException]:
    return install(monkeypatch)


CALL = errors.Call("patch", "pods/ephemeralcontainers", "shop", "api-0",
                   "https://k8s.example:6443", "ci")


def test_rbac_message_from_the_api_server(api_exception: Any) -> None:
    body = {"message": 'pods "api-0" is forbidden: User "system:serviceaccount:shop:ci" cannot '
                       'patch resource "pods/ephemeralcontainers" in API group "" in the '
                       'namespace "shop"', "reason": "Forbidden", "code": 403}
    err = errors.translate(api_exception(403, body), CALL)
    assert isinstance(err, errors.RbacDenied)
    assert str(err) == ("RBAC: cannot patch pods/ephemeralcontainers in namespace shop "
                        "(as system:serviceaccount:shop:ci)")
    assert err.exit_code == 3


def test_rbac_message_fallback_and_api_group(api_exception: Any) -> None:
    assert str(errors.translate(api_exception(403, {"message": "nope"}), CALL)) == (
        "RBAC: cannot patch pods/ephemeralcontainers in namespace shop (as ci)")
    msg = errors.rbac_message('User "u" cannot list resource "deployments" in API group "apps" '
                              'in the namespace "x"', CALL)
    assert msg == "RBAC: cannot list deployments.apps in namespace x (as u)"


def test_not_found_messages(api_exception: Any) -> None:
    gone = errors.translate(api_exception(404, {"details": {"name": "api-0", "kind": "pods"}}),
                            CALL)
    assert isinstance(gone, errors.PodGone)
    assert str(gone) == "pod shop/api-0 not found (deleted?)"
    unsupported = errors.translate(
        api_exception(404, {"message": "the server could not find the requested resource"}),
        CALL)
    assert isinstance(unsupported, errors.EphemeralUnsupported)
    assert "does not support ephemeral containers" in str(unsupported)
    get = errors.Call("get", "pods", "shop", "api-0", "https://x")
    assert str(errors.translate(api_exception(404, {"details": {"name": "api-0"}}), get)) == (
        "pod shop/api-0 not found (deleted?)")


def test_unreachable_and_other_errors(api_exception: Any) -> None:
    import urllib3

    refused = urllib3.exceptions.MaxRetryError(None, "/api", reason=urllib3.exceptions
                                               .NewConnectionError(None, "[Errno 111] "
                                                                   "Connection refused"))
    err = errors.translate(refused, CALL)
    assert isinstance(err, errors.ClusterUnreachable)
    assert str(err) == "cluster unreachable: https://k8s.example:6443 (connection refused)"
    assert str(errors.translate(api_exception(401, {}), CALL)) == (
        "cluster https://k8s.example:6443: credentials rejected (401 Unauthorized)")
    assert "\n" not in str(errors.translate(api_exception(500, {"message": "a\nb"}), CALL))


def test_api_call_context_manager(api_exception: Any) -> None:
    with pytest.raises(errors.PodGone), errors.api_call(CALL):
        raise api_exception(404, {"details": {"name": "api-0"}})
    with pytest.raises(ValueError), errors.api_call(CALL):
        raise ValueError("a bug stays a bug")


def _kubeconfig(path: Path, namespace: str | None = "shop") -> Path:
    ctx: dict[str, Any] = {"cluster": "c", "user": "u"}
    if namespace:
        ctx["namespace"] = namespace
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "main",
        "clusters": [{"name": "c", "cluster": {"server": "https://10.9.9.9:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "main", "context": ctx},
                     {"name": "other", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def test_kubeconfig_choice_and_namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kdiag.kube.config import KubeOptions, load

    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "a")))
    kube = load(KubeOptions())
    assert (kube.namespace, kube.context, kube.server) == ("shop", "main",
                                                           "https://10.9.9.9:6443")
    assert load(KubeOptions(context="other")).namespace == "default"
    assert load(KubeOptions(namespace="x")).namespace == "x"
    with pytest.raises(TargetError, match="no context 'nope' \\(contexts: main, other\\)"):
        load(KubeOptions(context="nope"))
    explicit = _kubeconfig(tmp_path / "b", namespace="billing")
    assert load(KubeOptions(kubeconfig=str(explicit))).namespace == "billing"
    with pytest.raises(TargetError, match="no such file"):
        load(KubeOptions(kubeconfig=str(tmp_path / "missing")))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(TargetError, match=r"KUBECONFIG=.*: no such file"):
        load(KubeOptions())


def test_token_cache_is_private(tmp_path: Path) -> None:
    from kdiag.kube.tokens import TokenCache, new_token, token_sha256

    cache = TokenCache(tmp_path / "kdiag")
    token = new_token()
    assert len(token) >= 40 and token_sha256(token) == hashlib.sha256(token.encode()).hexdigest()
    assert cache.get("s", "uid", "c") is None
    cache.put("s", "uid", "c", token)
    assert cache.get("s", "uid", "c") == token
    assert cache.get("s", "uid", "other") is None
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.directory.stat().st_mode) == 0o700
    cache.forget("s", "uid", "c")
    assert cache.get("s", "uid", "c") is None


def test_ephemeral_container_spec() -> None:
    from kdiag.kube.inject import CAPABILITIES, ManagerImage, container_spec, name_prefix

    spec = container_spec("kdiag-0-1-0-abc", "app", "ab" * 32,
                          ManagerImage("img:1", "Never", False))
    assert spec["targetContainerName"] == "app" and spec["image"] == "img:1"
    assert spec["env"] == [{"name": "KDIAG_TOKEN_SHA256", "value": "ab" * 32}]
    assert spec["securityContext"] == {"capabilities": {"add": list(CAPABILITIES)}}
    privileged = container_spec("n", "app", "x", ManagerImage("i", "Never", True))
    assert privileged["securityContext"] == {"privileged": True}
    assert name_prefix().startswith("kdiag-") and "." not in name_prefix()


def test_manager_image_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from kdiag.kube.inject import DEFAULT_IMAGE, ManagerImage

    monkeypatch.delenv("KDIAG_MANAGER_IMAGE", raising=False)
    monkeypatch.delenv("KDIAG_MANAGER_PULL_POLICY", raising=False)
    assert ManagerImage().resolved().image == DEFAULT_IMAGE
    monkeypatch.setenv("KDIAG_MANAGER_IMAGE", "mine:2")
    monkeypatch.setenv("KDIAG_MANAGER_PULL_POLICY", "Always")
    resolved = ManagerImage().resolved()
    assert (resolved.image, resolved.pull_policy) == ("mine:2", "Always")
    assert ManagerImage(image="flag:3").resolved().image == "flag:3"


def test_kdiag_help_does_not_import_kubernetes() -> None:
    import subprocess
    import sys

    code = ("import sys; from kdiag.cli.main import build_parser; build_parser(); "
            "import kdiag.steps; kdiag.steps.step_types(); "
            "print(any(m.startswith(('kubernetes', 'grpc')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_kubeconfig_without_context_broken_or_absent(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from kdiag.kube import config
    from kdiag.kube.config import KubeOptions, load

    nocurrent = _kubeconfig(tmp_path / "a")
    nocurrent.write_text(nocurrent.read_text().replace("current-context: main\n", ""))
    with pytest.raises(TargetError, match=r": no current context; pass --context$"):
        load(KubeOptions(kubeconfig=str(nocurrent)))
    assert load(KubeOptions(kubeconfig=str(nocurrent), context="main")).namespace == "shop"
    broken = tmp_path / "broken"
    broken.write_text("apiVersion: v1\nkind: Config\ncontexts: 7\n")
    with pytest.raises(TargetError, match=rf"^kubeconfig {broken}: "):
        load(KubeOptions(kubeconfig=str(broken)))
    with pytest.raises(TargetError, match=rf"^kubeconfig {broken}: "):
        load(KubeOptions(kubeconfig=str(broken), context="main"))
    broken.write_text("contexts: [\n")  # not YAML
    with pytest.raises(TargetError, match=rf"^kubeconfig {broken}: "):
        load(KubeOptions(kubeconfig=str(broken)))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(TargetError, match=r"^no kubeconfig: set KUBECONFIG, pass --kubeconfig, "
                                          r"or create ~/.kube/config$"):
        load(KubeOptions())
    # ~/.kube/config when nothing else is named.
    (tmp_path / "home" / ".kube").mkdir(parents=True)
    _kubeconfig(tmp_path / "home" / ".kube" / "config", namespace="fromhome")
    assert load(KubeOptions()).namespace == "fromhome"
    assert config.in_cluster_available() is False


def test_in_cluster_configuration_from_the_service_account(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    from kubernetes.config import incluster_config

    from kdiag.kube import config
    from kdiag.kube.config import KubeOptions, load

    account = tmp_path / "sa"
    account.mkdir()
    (account / "token").write_text("t0ken")
    (account / "ca.crt").write_text("not read until a call is made")
    (account / "namespace").write_text("jobs\n")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(config, "IN_CLUSTER_TOKEN", account / "token")
    monkeypatch.setattr(config, "IN_CLUSTER_NAMESPACE", account / "namespace")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(account / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(account / "ca.crt"))
    kube = load(KubeOptions())
    assert (kube.in_cluster, kube.namespace, kube.context, kube.server) == (
        True, "jobs", None, "https://10.96.0.1:443")
    assert load(KubeOptions(namespace="x")).namespace == "x"
    (account / "namespace").unlink()
    assert load(KubeOptions()).namespace == "default"
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(account / "gone"))
    with pytest.raises(TargetError, match=r"^in-cluster configuration: "):
        load(KubeOptions())
