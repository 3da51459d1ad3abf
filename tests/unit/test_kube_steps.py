"""The Kubernetes step types (forward, logs) and target fields: bad input is caught by
`kdiag validate` (exit 2, file:line:col), good input passes; nested logs steps are checked."""

from __future__ import annotations

import pytest

from kdiag.cli.main import main

CASES = {
    "forward without port": ("steps:\n  - forward: {pod: api}\n", "2:14",
                             "missing required field 'port'"),
    "forward port out of range": ("steps:\n  - forward: {port: 70000}\n", "2:21",
                                  "must be at most 65535"),
    "forward unknown field": ("steps:\n  - forward: {port: 80, remote: x}\n", "2:25",
                              "unknown field 'remote'"),
    "forward bad duration": ("steps:\n  - forward: {port: 80, duration: soon}\n", "2:35",
                             "is not a duration"),
    "logs unknown field": ("steps:\n  - logs: {follow: true}\n", "2:12",
                           "unknown field 'follow'"),
    "logs bad since": ("steps:\n  - logs: {since: yesterday}\n", "2:19", "is not a duration"),
    "logs nested step error": ("steps:\n  - logs:\n      steps:\n        - note: a\n"
                               "          retry: 1\n", "5:11", "unknown field 'retry'"),
    "kubernetes target bad pick": ("target:\n  kubernetes: {pod: x, pick: random}\nsteps: []\n",
                                   "2:30", "expected one of 'newest', 'oldest', 'all'"),
    "kubernetes target unknown field": ("target:\n  kubernetes: {pods: x}\nsteps: []\n",
                                        "2:16", "unknown field 'pods'"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exit_2_with_location(name: str, write, capsys) -> None:
    text, where, message = CASES[name]
    path = write(text)
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{path}:{where}: " in err, err
    assert message in err, err


def test_valid_kubernetes_runbook(write, capsys) -> None:
    path = write("""
        params:
          ns: {type: string, default: shop}
        target:
          kubernetes: {namespace: "{{ params.ns }}", selector: app=api, pick: oldest,
                       container: api, kubeconfig: ~/.kube/other, context: staging,
                       image: kdiag.local/manager:dev, image_pull_policy: Never,
                       privileged: false, timeout: 90s}
        steps:
          - forward: {port: 8080, local_port: 0}
            background: true
            register: api
          - logs:
              selector: app=shop
              container: all
              since: 5m
              drain: 1s
              steps:
                - http: {url: "{{ api.url }}/health"}
            register: shop_logs
            assert: ["shop_logs.count > 0"]
          - logs: {duration: 2s}
          - logs: {}
            background: true
    """)
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_forward_and_logs_are_documented_step_types() -> None:
    from kdiag.steps import step_types

    kinds = step_types()
    assert kinds["forward"].can_background and not kinds["forward"].needs_target
    assert kinds["logs"].children_field == "steps" and kinds["logs"].inline
