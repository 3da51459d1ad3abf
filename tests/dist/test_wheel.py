"""The built packages install and work outside the checkout (``make wheel-test``, in CI).

The krew archive of ``make dist`` is unpacked as krew would, and its launcher run once: it
makes a fresh venv and installs the kdiag wheel into it (dependencies from the package index,
quick from pip's cache). There ``kdiag``, ``kubectl-kdiag`` and ``kubectl_complete-kdiag`` are
on the venv's PATH and answer ``--help``, ``validate``, ``schema`` and completion, and the
manager package came with the wheel (node mode runs it). The manifest passes krew's own
validation rules and names the archive's sha256. The packages are ``make dist``'s
(``$KDIAG_DIST``), else built here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.dist

REPO = Path(__file__).resolve().parents[2]


def _dist(tmp: Path) -> Path:
    given = os.environ.get("KDIAG_DIST")
    if given:
        return Path(given)
    out = tmp / "dist"
    for project in (REPO, REPO / "manager"):
        subprocess.run([sys.executable, "-m", "build", "--wheel", "-o", str(out), str(project)],
                       check=True, capture_output=True, timeout=300)
    subprocess.run([sys.executable, str(REPO / "scripts" / "krew_package.py"), "--dist",
                    str(out)], check=True, capture_output=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _dist(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def plugin(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The krew archive unpacked, its launcher run once (which installs kdiag)."""
    folder = tmp_path_factory.mktemp("krew") / "kdiag"
    with tarfile.open(dist / "kdiag-krew.tar.gz") as tar:
        tar.extractall(folder, filter="data")
    proc = _run(folder, folder / "kubectl-kdiag", "--version", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "installing kdiag" in proc.stderr and proc.stdout.startswith("kdiag "), proc.stderr
    yield folder


def _run(folder: Path, *argv: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # Outside the checkout, with only the venv on PATH: nothing of the repository is imported.
    env = {"PATH": f"{folder / 'venv' / 'bin'}:/usr/bin:/bin", "HOME": str(folder),
           "NO_COLOR": "1"}
    return subprocess.run([str(a) for a in argv], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_packages_are_there(dist: Path) -> None:
    names = sorted(p.name for p in dist.iterdir())
    assert any(re.fullmatch(r"kdiag-[\d.]+-py3-none-any\.whl", n) for n in names), names
    assert any(re.fullmatch(r"kdiag_manager-[\d.]+-py3-none-any\.whl", n) for n in names), names


def test_commands_on_path_answer_help(plugin: Path) -> None:
    for command, prog in (("kdiag", "kdiag"), ("kubectl-kdiag", "kubectl kdiag")):
        proc = _run(plugin, command, "--help")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"usage: {prog} "), proc.stdout[:200]
        assert "validate" in proc.stdout and "doctor" in proc.stdout
    # The launcher, a second time: straight to the installed kdiag.
    proc = _run(plugin, plugin / "kubectl-kdiag", "--help")
    assert proc.returncode == 0 and "installing" not in proc.stderr, proc.stderr


def test_validate_and_schema(plugin: Path) -> None:
    proc = _run(plugin, "kdiag", "validate", REPO / "runbooks" / "demo.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _run(plugin, "kdiag", "schema")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads((REPO / "schemas" / "runbook.schema.json")
                                                 .read_text())
    bad = plugin / "bad.yaml"
    bad.write_text("steps:\n  - nosuchstep: {}\n")
    proc = _run(plugin, "kdiag", "validate", bad)
    assert proc.returncode == 2 and f"{bad}:2:" in proc.stderr, proc.stderr


def test_completion(plugin: Path) -> None:
    proc = _run(plugin, "kdiag", "completion", "bash")
    assert proc.returncode == 0 and "complete -F _kdiag kdiag" in proc.stdout, proc.stderr
    proc = _run(plugin, "kubectl_complete-kdiag", "doc")
    assert proc.stdout.split() == ["doctor", ":4"], proc.stdout + proc.stderr


def test_kubectl_completion_where_krew_installed_it(plugin: Path, tmp_path: Path) -> None:
    """krew links only ``kubectl-kdiag`` into its bin folder; the ``kubectl_complete-kdiag``
    that ``kdiag completion kubectl`` prints, saved there, completes through it."""
    bin_dir = tmp_path / "krew-bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl-kdiag").symlink_to(plugin / "kubectl-kdiag")
    proc = _run(plugin, bin_dir / "kubectl-kdiag", "completion", "kubectl")
    assert proc.returncode == 0, proc.stderr
    shim = bin_dir / "kubectl_complete-kdiag"
    shim.write_text(proc.stdout)
    shim.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "NO_COLOR": "1"}
    proc = subprocess.run([str(shim), "doc"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.stdout.split() == ["doctor", ":4"], proc.stdout + proc.stderr


def test_a_tab_does_not_install(dist: Path, tmp_path: Path) -> None:
    """Before the first ``kubectl kdiag``, completing says nothing and installs nothing."""
    folder = tmp_path / "kdiag"
    with tarfile.open(dist / "kdiag-krew.tar.gz") as tar:
        tar.extractall(folder, filter="data")
    proc = _run(folder, folder / "kubectl-kdiag", "__complete_kubectl", "doc")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, ":4\n", ""), proc
    assert not (folder / "venv").exists()


def test_the_manager_package_comes_with_it(plugin: Path) -> None:
    code = ("import kdiag, kdiag_manager, kdiag_manager.server; "
            "print(kdiag.__file__); print(kdiag_manager.__file__)")
    proc = _run(plugin, "python", "-c", code)
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.split():
        assert line.startswith(str(plugin / "venv")), proc.stdout
    proc = _run(plugin, "python", "-m", "kdiag_manager", "--help")
    assert proc.returncode == 0 and "usage: kdiag_manager" in proc.stdout, proc.stderr


def test_krew_manifest(dist: Path) -> None:
    """The rules krew applies (sigs.k8s.io/krew pkg/index/validation), and the archive's hash."""
    manifest = yaml.safe_load((dist / "kdiag.yaml").read_text())
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin"
    name = manifest["metadata"]["name"]
    assert name == "kdiag" and re.fullmatch(r"[\w-]+", name)  # == the file's name
    spec = manifest["spec"]
    assert spec["shortDescription"].strip()
    assert re.fullmatch(r"v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", spec["version"]), spec["version"]
    wheel = next(dist.glob("kdiag-*-py3-none-any.whl"))
    assert spec["version"] == "v" + wheel.name.split("-")[1]
    digest = hashlib.sha256((dist / "kdiag-krew.tar.gz").read_bytes()).hexdigest()
    assert spec["platforms"], spec
    for platform in spec["platforms"]:
        assert platform["uri"].startswith("https://") and platform["uri"].endswith(".tar.gz")
        assert re.fullmatch(r"[a-f0-9]{64}", platform["sha256"]) and platform["sha256"] == digest
        assert platform["bin"] == "kubectl-kdiag" and platform["files"], platform
        selector = platform["selector"]
        keys = list(selector.get("matchLabels") or {}) + [
            e["key"] for e in selector.get("matchExpressions") or []]
        assert keys and set(keys) <= {"os", "arch"}, selector
    with tarfile.open(dist / "kdiag-krew.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["kubectl-kdiag"].mode & 0o111, members
    assert wheel.name in members
