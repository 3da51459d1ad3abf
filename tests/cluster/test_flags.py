"""Target flags and cluster-only step fields, each checked for its effect against the local
cluster: `--kubeconfig` and `--context` (and the target's `kubeconfig`/`context`), `--image`
(and `image:`), `--privileged`, `kdiag logs --since`, `kdiag ps --all`; the `forward` step's
`address` and `selector`; the `logs` step's `since` and `background`.

Note: `ps --all` in a pod lists what the manager sees, which is the target's PID namespace
(the same processes as without it unless the pod shares its process namespace); its effect is
checked in node mode (tests/node/test_adhoc_commands.py). The fan-out `pick: all` and TYPE/NAME
targets are issue 12's, tested there.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import MANAGER_IMAGE, Cluster, make_namespace
from .kube_fixtures import Kdiag, kdiag_cli  # noqa: F401  (fixture)

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def pods(cluster: Cluster) -> Iterator[str]:
    """A namespace with the test app (`testapp`) and a second one (`other`, app=other)."""
    namespace = make_namespace(cluster)
    cluster.core.create_namespaced_pod(namespace, cluster.manifest("app"))
    other = cluster.manifest("app")
    other["metadata"] = {"name": "other", "labels": {"app": "other"}}
    other["spec"]["containers"][0]["args"] = ["-listen=:8080", "-name=other"]
    cluster.core.create_namespaced_pod(namespace, other)
    cluster.wait_pod_running(namespace, "testapp")
    cluster.wait_pod_running(namespace, "other")
    yield namespace
    cluster.core.delete_namespace(namespace, grace_period_seconds=0)


def _ephemeral(cluster: Cluster, namespace: str, pod: str = "testapp") -> list[Any]:
    return list(cluster.core.read_namespaced_pod(pod, namespace).spec.ephemeral_containers or [])


def _two_contexts(cluster: Cluster, path: Path) -> Path:
    """The admin kubeconfig with a second context, `nowhere` (a server nothing answers on), made
    the current one: only `--context local` reaches the cluster."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["clusters"].append({"name": "nowhere",
                               "cluster": {"server": "https://127.0.0.1:9",
                                           "insecure-skip-tls-verify": True}})
    user = config["contexts"][0]["context"]["user"]
    config["contexts"] = [{"name": "local", "context": config["contexts"][0]["context"]},
                          {"name": "nowhere", "context": {"cluster": "nowhere", "user": user}}]
    config["current-context"] = "nowhere"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def test_kubeconfig_and_context_choose_the_cluster(cluster: Cluster, pods: str,
                                                   kdiag_cli: Kdiag, tmp_path: Path) -> None:  # noqa: F811
    kubeconfig = _two_contexts(cluster, tmp_path / "two.yaml")
    nowhere = {"KUBECONFIG": str(tmp_path / "missing")}
    target = ["-n", pods, "--pod", "testapp"]
    ok = kdiag_cli("ps", *target, "--kubeconfig", str(kubeconfig), "--context", "local",
                   env=nowhere)
    assert ok.returncode == 0, ok.output
    assert "*/testapp" in ok.stdout
    current = kdiag_cli("ps", *target, "--kubeconfig", str(kubeconfig), env=nowhere)
    assert current.returncode == 3, current.output
    assert "127.0.0.1:9" in current.stderr and "Traceback" not in current.output
    runbook = tmp_path / "rb.yaml"
    for context, code in (("local", 0), ("nowhere", 3)):
        runbook.write_text(textwrap.dedent(f"""
            target:
              kubernetes: {{namespace: {pods}, pod: testapp, kubeconfig: {kubeconfig},
                           context: {context}}}
            steps:
              - {{name: look, ps: {{}}, register: procs, assert: ["8080 in procs.ports"]}}
        """))
        result = kdiag_cli("run", str(runbook), env=nowhere)
        assert result.returncode == code, (context, result.output)


def test_image_flag_and_field_choose_the_manager_image(cluster: Cluster, pods: str,
                                                       kdiag_cli: Kdiag, tmp_path: Path) -> None:  # noqa: F811
    missing = "kdiag.local/manager:no-such-tag"
    target = ["-n", pods, "--pod", "testapp"]
    refused = kdiag_cli("ps", *target, "--image", missing, timeout=120)
    assert refused.returncode == 3, refused.output
    assert missing in refused.stderr and "Traceback" not in refused.output
    assert missing in [c.image for c in _ephemeral(cluster, pods)]
    # The flag beats $KDIAG_MANAGER_IMAGE.
    chosen = kdiag_cli("ps", *target, "--image", MANAGER_IMAGE, env={"KDIAG_MANAGER_IMAGE": missing})
    assert chosen.returncode == 0, chosen.output
    assert _ephemeral(cluster, pods)[-1].image == MANAGER_IMAGE
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(textwrap.dedent(f"""
        target:
          kubernetes: {{namespace: {pods}, pod: other, image: "{missing}"}}
        steps:
          - {{name: look, ps: {{}}}}
    """))
    result = kdiag_cli("run", str(runbook))
    assert result.returncode == 3, result.output
    assert [c.image for c in _ephemeral(cluster, pods, "other")][-1] == missing


def test_privileged_flag_runs_the_manager_privileged(cluster: Cluster, pods: str,
                                                     kdiag_cli: Kdiag) -> None:  # noqa: F811
    target = ["-n", pods, "--pod", "other"]

    def injected_by(*args: str, cache: str) -> Any:
        before = {c.name for c in _ephemeral(cluster, pods, "other")}
        result = kdiag_cli("ps", *target, *args, env={
            "XDG_CACHE_HOME": str(Path(kdiag_cli.env["XDG_CACHE_HOME"]) / cache)})
        assert result.returncode == 0, result.output
        new = [c for c in _ephemeral(cluster, pods, "other") if c.name not in before]
        assert len(new) == 1, [c.name for c in new]  # a cache of its own: no manager to reuse
        return new[0]

    plain = injected_by(cache="plain")
    assert not (plain.security_context and plain.security_context.privileged)
    privileged = injected_by("--privileged", cache="privileged")
    assert privileged.security_context.privileged is True


def test_logs_since_shows_lines_from_before_the_command(cluster: Cluster, pods: str,
                                                        kdiag_cli: Kdiag) -> None:  # noqa: F811
    target = ["-n", pods, "--pod", "testapp"]
    started = "app listening on :8080"  # the app's first line, printed before this test ran
    fresh = kdiag_cli("logs", *target, "--drain", "1s", "--", "true")
    assert fresh.returncode == 0, fresh.output
    assert started not in fresh.stdout
    back = kdiag_cli("logs", *target, "--since", "1h", "--drain", "1s", "--", "true")
    assert back.returncode == 0, back.output
    assert started in back.stdout and "[testapp/app]" in back.stdout


def test_forward_step_address_and_selector(pods: str, kdiag_cli: Kdiag, tmp_path: Path) -> None:  # noqa: F811
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(textwrap.dedent(f"""
        target:
          kubernetes: {{namespace: {pods}, pod: testapp}}
        steps:
          - name: the other pod, on 127.0.0.2
            forward: {{selector: app=other, port: 8080, address: 127.0.0.2}}
            background: true
            register: fwd
          - name: call it
            http: {{url: "{{{{ fwd.url }}}}/"}}
            register: call
            assert: ["fwd.pod == 'other'", "fwd.url.startswith('http://127.0.0.2:')",
                     "call.text == 'hello from other\\\\n'"]
          - name: not on 127.0.0.1
            http: {{url: "http://127.0.0.1:{{{{ fwd.local_port }}}}/", timeout: 3s}}
            continue_on_error: true
            register: loopback
          - {{name: refused, assert: ["not loopback.ok"]}}
          - name: the target's own by default
            forward: {{port: 8080}}
            background: true
            register: own
          - name: call the target
            http: {{url: "{{{{ own.url }}}}/"}}
            register: mine
            assert: ["own.pod == 'testapp'", "mine.text == 'hello from app\\\\n'"]
    """))
    result = kdiag_cli("run", str(runbook))
    assert result.returncode == 0, result.output


def test_logs_step_since_and_background(pods: str, kdiag_cli: Kdiag, tmp_path: Path) -> None:  # noqa: F811
    marker = f"marker-{time.time_ns()}"
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(textwrap.dedent(f"""
        params:
          namespace: {{type: string}}
        target:
          kubernetes: {{namespace: "{{{{ params.namespace }}}}", pod: testapp}}
        steps:
          - name: all of it
            logs: {{}}
            register: everything
            assert: ["'app listening on :8080' in everything.text"]
          - name: the last seconds only
            logs: {{since: 1s}}
            register: recent
            assert: ["'app listening on :8080' not in recent.text"]
          - name: follow
            logs: {{}}
            background: true
            register: followed
          - name: reach the app
            forward: {{port: 8080}}
            background: true
            register: app
          - name: a request the app logs
            http: {{url: "{{{{ app.url }}}}/{marker}"}}
          - wait: 2s
          - stop: follow
          - name: logged
            assert: ["'{marker}' in followed.text", "followed.count >= 1"]
    """))
    result, report = kdiag_cli.run(str(runbook), pods, report=tmp_path / "r.json")
    assert result.returncode == 0, result.output
    steps = {s["name"]: s for s in report["runs"][0]["steps"]}
    assert steps["logged"]["status"] == "passed"
    assert "[follow:testapp/app]" in result.stdout  # shown as it came, while later steps ran
