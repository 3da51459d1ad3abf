"""A node target's stand-in for the host: where PID 1 is closed to the manager, the host is
acted on through another host process, which may end while the session runs (CI saw `enter:
cannot open /proc/1437/root`). The manager picks another one then, never a process that ended."""

from __future__ import annotations

import os
import subprocess

from kdiag_manager.config import Config, _oldest_first, _start_time, host_target_pid
from kdiag_manager.exec import build_command
from kdiag_manager.wire.api.v1 import manager_pb2 as pb


def _config(pid: int | None) -> Config:
    return Config(target_pid=pid, enter_path="enter", busybox_path="busybox", session="h",
                  node_mode=True, host_target=True)


def test_a_live_stand_in_is_kept() -> None:
    live = host_target_pid()
    assert live is not None
    assert _config(live).target() == live


def test_a_stand_in_that_ended_is_replaced_by_a_live_host_process() -> None:
    stand_in = subprocess.Popen(["sleep", "60"])
    config = _config(stand_in.pid)
    stand_in.kill()
    stand_in.wait()
    now = config.target()
    assert now is not None and now != stand_in.pid
    assert os.path.exists(f"/proc/{now}/root") and now == host_target_pid()
    argv = build_command(pb.ExecStart(argv=["true"]), config).argv
    assert argv[:3] == ["enter", "-t", str(now)]


def test_a_zombie_stand_in_is_replaced_too() -> None:
    stand_in = subprocess.Popen(["sleep", "60"])
    config = _config(stand_in.pid)
    stand_in.kill()
    try:
        os.waitid(os.P_PID, stand_in.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped
        assert config.target() != stand_in.pid
    finally:
        stand_in.wait()


def test_a_pod_target_is_kept_as_given() -> None:
    config = Config(target_pid=999_999_999, enter_path="enter", busybox_path="busybox",
                    session="p")
    assert config.target() == 999_999_999


def test_the_stand_in_is_the_longest_running_host_process() -> None:
    """By start time, not by PID (PIDs wrap: a low PID may have started a moment ago)."""
    newest = subprocess.Popen(["sleep", "60"])
    try:
        picked = host_target_pid()
        assert picked is not None and picked != newest.pid
        assert _start_time(picked) <= _start_time(newest.pid)
        assert _oldest_first([newest.pid, picked]) == [picked, newest.pid]
    finally:
        newest.kill()
        newest.wait()
