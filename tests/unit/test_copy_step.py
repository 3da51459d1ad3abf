"""The ``copy`` step's own logic against a stand-in manager: where a download goes (``to``
relative to the runbook, else the step's artifacts), an upload's ``mode`` (octal) and
``make_parents``, and the mistakes it refuses before calling the manager."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdiag.errors import ManagerError
from kdiag.session.results import RemoteFile
from kdiag.targets.base import TargetSession


class Manager:
    def __init__(self, refuse: str = "") -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.refuse = refuse

    def copy_from(self, remote: str, local: Path, *, max_bytes: int) -> RemoteFile:
        self.calls.append(("from", remote, local, max_bytes))
        if self.refuse:
            raise ManagerError(self.refuse)
        local.write_text("remote content\n")
        return RemoteFile(remote, 15, 0o100640, 0, 0, 0.0)

    def copy_to(self, local: Path, remote: str, *, mode: int | None,
                make_parents: bool) -> RemoteFile:
        self.calls.append(("to", local, remote, mode, make_parents))
        return RemoteFile(remote, local.stat().st_size, 0o100000 | (mode or 0o644), 1, 2, 0.0)


def session(manager: Manager) -> Any:
    class Session(TargetSession):
        info = {"kind": "fake"}

        def close(self) -> None:
            pass

    made = Session()
    made.manager = manager  # type: ignore[assignment]
    return made


def test_download_to_a_path_relative_to_the_runbook(run_runbook, tmp_path: Path) -> None:
    manager = Manager()
    out = run_runbook("""
target: {node: {pid: 1}}
steps:
  - name: get
    copy: {download: /etc/app.conf, to: got/app.conf, max_bytes: 100}
    register: got
  - name: told
    note: "{{ got.mode }} {{ got.size }}"
""", open_target=lambda spec: session(manager))
    assert out.exit_code == 0, out.recorder.finished()["get"].message
    local = tmp_path / "got" / "app.conf"
    assert manager.calls == [("from", "/etc/app.conf", local, 100)]
    assert out.recorder.output("get") == f"/etc/app.conf -> {local} (15 bytes, mode 640)\n"
    assert out.recorder.finished()["get"].result["local"] == str(local)
    notes = [e.message for e in out.recorder.events
             if getattr(e, "message", None) and e.step.qualified_name == "told"]
    assert notes == ["0640 15"]


def test_download_without_to_goes_to_the_steps_artifacts(run_runbook, tmp_path: Path) -> None:
    manager = Manager()
    out = run_runbook("""
target: {node: {pid: 1}}
steps:
  - {name: get, copy: {download: /etc/app.conf}}
""", open_target=lambda spec: session(manager))
    assert out.exit_code == 0
    local = manager.calls[0][2]
    assert local.name == "app.conf" and (tmp_path / "artifacts") in local.parents
    assert out.recorder.finished()["get"].artifacts == (str(local),)


def test_a_manager_refusal_other_than_a_folder_fails_the_step(run_runbook) -> None:
    manager = Manager(refuse="permission denied: /etc/shadow")
    out = run_runbook("""
target: {node: {pid: 1}}
steps:
  - {name: get, copy: {download: /etc/shadow}}
""", open_target=lambda spec: session(manager))
    assert out.exit_code == 1
    assert "permission denied: /etc/shadow" in out.recorder.finished()["get"].message
    assert len(manager.calls) == 1


def test_upload_with_mode_and_parents(run_runbook, tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("12345")
    manager = Manager()
    out = run_runbook("""
target: {node: {pid: 1}}
steps:
  - name: put
    copy: {upload: data.txt, to: /srv/in/data.txt, mode: "0600", make_parents: true}
""", open_target=lambda spec: session(manager))
    assert out.exit_code == 0, out.recorder.finished()["put"].message
    assert manager.calls == [("to", tmp_path / "data.txt", "/srv/in/data.txt", 0o600, True)]
    assert out.recorder.output("put") == (f"{tmp_path / 'data.txt'} -> /srv/in/data.txt "
                                          "(5 bytes, mode 600)\n")


def test_upload_mistakes_fail_before_the_manager_is_called(run_runbook,
                                                           tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * 101)
    manager = Manager()
    out = run_runbook("""
target: {node: {pid: 1}}
steps:
  - {name: nowhere, copy: {upload: big.bin}, continue_on_error: true}
  - {name: missing, copy: {upload: nosuch.txt, to: /x}, continue_on_error: true}
  - {name: big, copy: {upload: big.bin, to: /x, max_bytes: 100}, continue_on_error: true}
""", open_target=lambda spec: session(manager))
    finished = out.recorder.finished()
    assert finished["nowhere"].message == "upload needs 'to': the path in the target"
    assert finished["missing"].message == f"no such local file or folder: {tmp_path / 'nosuch.txt'}"
    assert finished["big"].message == f"{tmp_path / 'big.bin'} is 101 bytes, over max_bytes 100"
    assert manager.calls == []
