"""Stands in for the kdiag CLI in kill -9 tests: opens a node session, starts a redirect that
does not fail open, prints READY, the manager's PID and the session's folder, then waits to be
killed. Arguments: PID PORT ENTER [MECHANISM [OPERATOR_PORT [MODE]]] (auto, nftables or
iptables; where connections go, default a refusing port; MODE ``mirror``: a mirror instead)."""

from __future__ import annotations

import sys
import time

from kdiag.session.results import RedirectSpec
from kdiag.targets.node import NodeTarget


def main() -> None:
    pid, port, enter = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    mechanism = sys.argv[4] if len(sys.argv) > 4 else "auto"
    operator = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    mirror = len(sys.argv) > 6 and sys.argv[6] == "mirror"
    session = NodeTarget(pid, env={"KDIAG_ENTER": enter,
                                   "KDIAG_REDIRECT_RULES": mechanism}).open()
    session.manager.redirect(RedirectSpec("incoming", [port], fail_open=False, mirror=mirror),
                             ("127.0.0.1", operator))
    print("READY", session.info["manager_pid"], session.workdir, flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main()
