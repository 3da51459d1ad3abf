"""Node mode's checks (a process on this host): root, the target process, iptables and
ip6tables, and the kernel's nf_tables features."""

from __future__ import annotations

import os
import platform
import re
import shutil

from kdiag.preflight.checks import Check
from kdiag.preflight.demand import Demand

OWNER_TABLES_SINCE = (5, 12)
"""nf_tables tables owned by a netlink socket (removed by the kernel when their owner dies)."""


def host_checks(demand: Demand) -> list[Check]:
    """Everything node mode needs of this machine."""
    uses_redirect = demand.steps is None or any(s.kind == "redirect" for s in demand.steps)
    return [_root(), _process(demand), *_iptables(uses_redirect), _kernel()]


def _root() -> Check:
    if os.geteuid() == 0:
        return Check("root", "ok", "kdiag runs as root")
    return Check("root", "fail", f"kdiag runs as uid {os.geteuid()}",
                 fix="node mode enters other processes' namespaces: run it as root (sudo)")


def _process(demand: Demand) -> Check:
    pid = demand.options.get("pid")
    if pid is None:
        return Check("target process", "skipped", "no --pid given", blocking=False)
    try:
        with open(f"/proc/{int(pid)}/comm") as f:
            comm = f.read().strip()
    except (OSError, ValueError):
        return Check(f"target process {pid}", "fail", "no such process",
                     fix="pass the PID of a running process (--pid, target node.pid)")
    return Check(f"target process {pid}", "ok", comm)


def _iptables(needed: bool) -> list[Check]:
    checks = []
    binary = os.environ.get("KDIAG_IPTABLES", "iptables")
    for name, what in ((binary, "IPv4"), (binary.replace("iptables", "ip6tables", 1), "IPv6")):
        path = shutil.which(name)
        if path:
            checks.append(Check(name, "ok", path, blocking=needed))
        elif what == "IPv4":
            checks.append(Check(name, "fail", "not found on PATH", blocking=needed,
                                needed_by=["redirect steps"],
                                fix="install iptables (Debian/Ubuntu: apt-get install iptables)"))
        else:
            checks.append(Check(name, "warn", f"not found: {what} connections are not redirected",
                                blocking=False, fix="install iptables (it has ip6tables)"))
    return checks


def kernel_version(release: str | None = None) -> tuple[int, int] | None:
    """(major, minor) of ``uname -r``."""
    m = re.match(r"(\d+)\.(\d+)", release or platform.release())
    return (int(m.group(1)), int(m.group(2))) if m else None


def _kernel() -> Check:
    release = platform.release()
    version = kernel_version(release)
    if version is None:
        return Check("kernel", "unknown", f"cannot read the version of {release!r}",
                     blocking=False)
    if version >= OWNER_TABLES_SINCE:
        return Check("kernel", "ok", f"{release}: nf_tables owner tables (5.12+)")
    return Check("kernel", "warn", f"{release}: no nf_tables owner tables (5.12+): redirect "
                 "rules are iptables rules the manager removes itself", blocking=False)
