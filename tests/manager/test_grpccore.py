"""gRPC's core is tuned before it loads, and the setting does not reach the commands we start."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import os, subprocess, sys
import kdiag  # the CLI's package: sets the variable before anything imports grpc
seen_before = os.environ.get("GRPC_EXPERIMENTS")
import grpc
from kdiag_manager.wire import grpccore
grpccore.loaded()
child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('GRPC_EXPERIMENTS'))"],
                       capture_output=True, text=True).stdout.strip()
print(seen_before, child, sep="|")
"""


def _run(env_value: str | None) -> list[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    if env_value is not None:
        env["GRPC_EXPERIMENTS"] = env_value
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip().split("|")


def test_set_while_grpc_loads_then_removed() -> None:
    from kdiag_manager.wire.grpccore import EXPERIMENTS

    assert _run(None) == [EXPERIMENTS, "None"]


def test_a_setting_of_the_user_wins_and_stays() -> None:
    assert _run("-event_engine_client") == ["-event_engine_client", "-event_engine_client"]
