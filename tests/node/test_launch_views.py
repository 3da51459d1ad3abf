"""The launch helper's private view of the files, made for real: as root (a mount namespace)
and as an ordinary user (a user namespace too), with paths that exist here, under a folder that
exists (a shadow of it) and under ``/`` (a new root); nothing outside the command changes."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

from kdiag.launch.launcher import Launch, LaunchError, start

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"

LOOK = ("id -u; cat /kdiag-test-top/a.conf /etc/kdiag-test-shadow/b.conf; "
        "grep -c . /etc/passwd > /dev/null && echo passwd-kept; getent hosts kdiag-test-name; "
        "touch /kdiag-test-top/new 2>/dev/null || echo read-only; pwd")


def private_folder(base: Path, owner: int) -> tuple[Path, list[tuple[str, str]]]:
    (base / "root" / "top").mkdir(parents=True)
    (base / "root" / "shadow").mkdir()
    (base / "newroot").mkdir()
    (base / "root" / "top" / "a.conf").write_text("top-file\n")
    (base / "root" / "shadow" / "b.conf").write_text("shadow-file\n")
    (base / "hosts").write_text(Path("/etc/hosts").read_text() + "127.77.0.9 kdiag-test-name\n")
    for path in [base, *base.rglob("*")]:
        os.chown(path, owner, owner)
    return base, [(str(base / "root" / "top"), "/kdiag-test-top"),
                  (str(base / "root" / "shadow"), "/etc/kdiag-test-shadow"),
                  (str(base / "hosts"), "/etc/hosts")]


def check_untouched() -> None:
    assert not Path("/kdiag-test-top").exists()
    assert not Path("/etc/kdiag-test-shadow").exists()
    assert "kdiag-test-name" not in Path("/etc/hosts").read_text()


def test_as_root(tmp_path: Path) -> None:
    base, binds = private_folder(tmp_path / "private", 0)
    process = start(Launch(["sh", "-c", LOOK], {"PATH": os.defpath}, cwd="/tmp", binds=binds,
                           newroot=str(base / "newroot")), stdout=subprocess.PIPE)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert out.decode().split("\n") == ["0", "top-file", "shadow-file", "passwd-kept",
                                        "127.77.0.9      kdiag-test-name", "read-only", "/tmp",
                                        ""]
    check_untouched()


def test_a_failure_before_the_exec_is_one_line(tmp_path: Path) -> None:
    base, binds = private_folder(tmp_path / "private", 0)
    with pytest.raises(LaunchError, match=r"^command not found: no-such-command-kdiag$"):
        start(Launch(["no-such-command-kdiag"], {"PATH": os.defpath}, binds=binds,
                     newroot=str(base / "newroot")))
    with pytest.raises(LaunchError, match="No such file or directory"):
        start(Launch(["true"], {}, binds=[(str(tmp_path / "absent"), "/kdiag-test-top")],
                     newroot=str(base / "newroot")))
    check_untouched()


@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists() or shutil.which("setpriv") is None,
                    reason="needs the system python3 and setpriv")
def test_as_an_ordinary_user_in_a_user_namespace() -> None:
    """What a developer's laptop does (kdiag not root): the same view, and the command runs
    with the user's own id, not as root."""
    tmp_path = Path(tempfile.mkdtemp(prefix="kdiag-userns-test-"))  # (pytest's: root only)
    try:
        os.chmod(tmp_path, 0o755)
        as_nobody(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def as_nobody(tmp_path: Path) -> None:
    base, binds = private_folder(tmp_path / "private", NOBODY)
    script = tmp_path / "launch.py"
    script.write_text(textwrap.dedent(f"""
        import importlib.util, subprocess, sys
        spec = importlib.util.spec_from_file_location(
            "launcher", {str(ROOT / 'kdiag' / 'launch' / 'launcher.py')!r})
        launcher = importlib.util.module_from_spec(spec)
        sys.modules["launcher"] = launcher
        spec.loader.exec_module(launcher)
        process = launcher.start(launcher.Launch(
            ["sh", "-c", {LOOK!r}], {{"PATH": "/usr/bin:/bin"}}, cwd="/tmp", binds={binds!r},
            userns=True, newroot={str(base / 'newroot')!r}), stdout=subprocess.PIPE)
        sys.stdout.write(process.communicate()[0].decode())
        sys.exit(process.returncode)
    """))
    done = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", SYSTEM_PYTHON, str(script)],
                          capture_output=True, text=True, timeout=30)
    if "cannot make a user and mount namespace" in done.stderr:
        pytest.skip(f"no unprivileged user namespaces here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n") == [str(NOBODY), "top-file", "shadow-file", "passwd-kept",
                                       "127.77.0.9      kdiag-test-name", "read-only", "/tmp",
                                       ""]
    check_untouched()
