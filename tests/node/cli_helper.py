"""Stands in for the kdiag CLI in kill -9 tests: opens a node session, starts a redirect that
does not fail open, prints READY and the manager's PID, then waits to be killed."""

from __future__ import annotations

import sys
import time

from kdiag.session.results import RedirectSpec
from kdiag.targets.node import NodeTarget


def main() -> None:
    pid, port, enter = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    session = NodeTarget(pid, env={"KDIAG_ENTER": enter}).open()
    session.manager.redirect(RedirectSpec("incoming", [port], fail_open=False), ("127.0.0.1", 1))
    print("READY", session.info["manager_pid"], session.workdir, flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main()
