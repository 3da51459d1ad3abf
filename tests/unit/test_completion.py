"""Shell completion: what ``kdiag __complete`` answers, and the bash, zsh and fish scripts
driving it in the real shells (zsh's completion builtins stubbed: they need an interactive
line editor)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdiag.cli.completion import candidates
from kdiag.cli.main import build_parser

BIN = Path(sys.executable).parent


def _complete(*words: str) -> tuple[str, list[str]]:
    *before, current = words
    return candidates(build_parser(), before, current)


def test_commands_and_flags() -> None:
    kind, found = _complete("")
    assert kind == "words" and {"run", "validate", "doctor", "completion", "shell"} <= set(found)
    assert _complete("do") == ("words", ["doctor"])
    assert _complete("-") == ("words", ["--help", "--version"])
    assert _complete("run", "--re") == ("words", ["--report"])
    kind, found = _complete("doctor", "--")
    assert {"--json", "--file", "--pod", "--namespace", "--set"} <= set(found)


def test_values() -> None:
    assert _complete("run", "") == ("yaml", [])
    assert _complete("validate", "a.yaml", "") == ("yaml", [])
    assert _complete("doctor", "-f", "") == ("yaml", [])
    assert _complete("run", "--values", "") == ("files", [])
    assert _complete("run", "--artifacts", "") == ("dirs", [])
    assert _complete("shell", "--image-pull-policy", "I") == ("words", ["IfNotPresent"])
    assert _complete("completion", "") == ("words", ["bash", "zsh", "fish", "kubectl"])
    assert _complete("logs", "-l", "app=x", "--", "") == ("files", [])


def test_pod_names_give_up_quickly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://192.0.2.1:6443'}}]\n"  # blackhole
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n")
    started = time.monotonic()
    assert _complete("shell", "--kubeconfig", str(kubeconfig), "--pod", "") == ("words", [])
    assert time.monotonic() - started < 8
    assert _complete("shell", "--kubeconfig", str(kubeconfig), "--context", "") == (
        "words", ["c"])


def _script(shell: str) -> str:
    return subprocess.run([BIN / "kdiag", "completion", shell], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "runbook.yaml").write_text("steps: []\n")
    (tmp_path / "other.yml").write_text("steps: []\n")
    (tmp_path / "notes.txt").write_text("x\n")
    (tmp_path / "lib").mkdir()
    return tmp_path


def _shell_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}


def _bash(files: Path, words: list[str]) -> list[str]:
    line = " ".join(f"'{w}'" for w in words)
    code = (f"source <(kdiag completion bash)\nCOMP_WORDS=({line}); "
            f"COMP_CWORD={len(words) - 1}; _kdiag; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    proc = subprocess.run(["bash", "-c", code], cwd=files, env=_shell_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return sorted(proc.stdout.split())


def test_bash(files: Path) -> None:
    assert _bash(files, ["kdiag", "doc"]) == ["doctor"]
    assert _bash(files, ["kubectl-kdiag", "run", "--dry"]) == ["--dry-run"]
    assert _bash(files, ["kdiag", "run", ""]) == ["lib", "other.yml", "runbook.yaml"]
    assert _bash(files, ["kdiag", "run", "--values", "no"]) == ["notes.txt"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh(files: Path) -> None:
    script = files / "_kdiag"
    script.write_text(_script("zsh"))

    def complete(*words: str) -> list[str]:
        array = " ".join(f"'{w}'" for w in words)
        code = (f"compdef() {{ : }}; compadd() {{ [[ $1 == -- ]] && shift; print -l -- $@ }}; "
                f"_files() {{ print -- _files $@ }}; source {script}; "
                f"words=({array}); CURRENT={len(words)}; _kdiag")
        proc = subprocess.run(["zsh", "-f", "-c", code], cwd=files, env=_shell_env(),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    assert complete("kdiag", "doc") == ["doctor"]
    assert complete("kdiag", "doctor", "--js") == ["--json"]
    assert complete("kdiag", "run", "") == ["_files -g *.(yaml|yml)"]
    assert complete("kdiag", "run", "--artifacts", "") == ["_files -/"]


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish(files: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    script = tmp_path_factory.mktemp("fish") / "kdiag.fish"
    script.write_text(_script("fish"))

    def complete(line: str) -> list[str]:
        proc = subprocess.run(["fish", "--no-config", "-c", f"source {script}; complete -C '{line}'"],
                              cwd=files, env=_shell_env(), capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        return sorted(word.split("\t")[0] for word in proc.stdout.splitlines())

    assert complete("kdiag doc") == ["doctor"]
    assert complete("kdiag shell --image-pull-policy ") == ["Always", "IfNotPresent", "Never"]
    assert complete("kdiag run ") == ["lib/", "other.yml", "runbook.yaml"]


def test_kubectl_plugin_completion_script(tmp_path: Path) -> None:
    """``kdiag completion kubectl``: the ``kubectl_complete-kdiag`` a krew install lacks (krew
    links only ``kubectl-kdiag``); kubectl runs it with the words after ``kubectl kdiag`` and
    reads cobra's format (the candidates, then ``:DIRECTIVE``)."""
    shim = tmp_path / "kubectl_complete-kdiag"
    shim.write_text(_script("kubectl"))
    shim.chmod(0o755)
    env = {"PATH": f"{tmp_path}:{BIN}:/usr/bin:/bin", "HOME": str(tmp_path)}
    for words, expected in ((["doc"], "doctor\n:4\n"), (["run", ""], "yaml\nyml\n:8\n"),
                            (["completion", "k"], "kubectl\n:4\n")):
        proc = subprocess.run([str(shim), *words], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert (proc.returncode, proc.stdout) == (0, expected), proc.stderr
