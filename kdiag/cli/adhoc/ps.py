"""``kdiag ps``: the target's processes and the ports they listen on (``--all``: of every
ready pod of the target, each pod's lines prefixed ``[pod]``)."""

from __future__ import annotations

import argparse
from typing import Any

from kdiag.cli.adhoc.targeting import open_session
from kdiag.errors import EXIT_ENVIRONMENT, EXIT_OK

HEADER = f"{'PID':>7} {'PPID':>7} {'USER':<10} {'LISTEN':<22} COMMAND"


def _rows(processes: list[Any], pods: bool = False) -> list[str]:
    """One line per process; ``pods``: with the pod each one runs in (a node's)."""
    rows = []
    for proc in processes:
        listening = ",".join(f"{s.protocol}:{s.port}" for s in proc.listening) or "-"
        mark = "*" if proc.is_target else " "
        rows.append(f"{proc.pid:>7} {proc.ppid:>7} {proc.user[:10]:<10} {listening:<22} "
                    f"{mark}{proc.command[:120]}{_in_pod(proc) if pods else ''}")
    return rows


def _in_pod(proc: Any) -> str:
    """`` [pod ns/name/container]`` for a process in a pod (seen on a node), else ''."""
    if proc.pod:
        return f"  [pod {proc.pod}{'/' + proc.container if proc.container else ''}]"
    return f"  [pod uid {proc.pod_uid}]" if proc.pod_uid else ""


def command(args: argparse.Namespace) -> int:
    """Print the target's processes (all the manager sees with --all-processes)."""
    with open_session(args) as session:
        fleet = session.fleet()
        if fleet is None:
            rows = _rows(session.manager.ps(all_processes=args.all_processes),
                         pods=session.info.get("way") == "node")
            print("\n".join([HEADER, *rows]))
            return EXIT_OK
        from kdiag.cli.adhoc.fanout import each

        results = each(fleet, lambda replica, pod: pod.manager.ps(
            all_processes=args.all_processes))
    width = max(len(r.name) for r, _ in results) + 3 if results else 0
    print(f"{'POD':<{width}}{HEADER}")
    code = EXIT_OK
    for replica, found in results:  # one pod's lines together, in the pods' order
        pod = f"[{replica.name}]"
        if isinstance(found, Exception):
            print(f"{pod:<{width}}kdiag: error: {found}", flush=True)
            code = EXIT_ENVIRONMENT
            continue
        for row in _rows(found):
            print(f"{pod:<{width}}{row}")
    return code
