"""Owned nf_tables tables in a real network namespace: what `nft` shows, and their lease."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from demo.lab import Lab, sh

HOLDER = textwrap.dedent("""
    import ipaddress, subprocess, sys
    from kdiag_manager import nftables, nftrules
    lines, tables = [], []  # (a table whose socket is garbage-collected is deleted)
    for family, nets in ((4, ["10.1.0.0/16", "10.2.3.4"]), (6, ["fd00::/64", "fd00::5"])):
        rules = nftrules.incoming("kdiag:t", 8080, 41000) + nftrules.outgoing(
            "kdiag:t", 9000, 41000, family, [ipaddress.ip_network(n) for n in nets])
        rules = list(dict.fromkeys(rules))
        table = nftables.OwnedTable(family, "kdiag-t-1")
        table.create(nftrules.chains_for(rules), rules)
        tables.append(table)
        lines += [nftrules.line(family, "kdiag-t-1", r) for r in rules]
    # A child that keeps every inheritable descriptor must still not get the netlink sockets.
    child = subprocess.Popen(["sleep", "60"], close_fds=False)
    print(child.pid)
    print("\\n".join(lines), flush=True)
    sys.stdin.read()
""")


def _nft_rules(namespace: str) -> list[str]:
    """``add rule FAMILY TABLE CHAIN RULE`` for each rule `nft list ruleset` shows."""
    rules, table, chain = [], "", ""
    for line in sh("ip", "netns", "exec", namespace, "nft", "list", "ruleset").splitlines():
        words = line.split()
        if words[:1] == ["table"]:
            table = f"{words[1]} {words[2]}"
        elif words[:1] == ["chain"]:
            chain = words[1]
        elif words and words[0] not in ("}", "type", "flags", "policy"):
            rules.append(f"add rule {table} {chain} {line.strip()}")
    return rules


def test_owned_tables_show_as_reported_and_vanish_with_their_process(lab: Lab) -> None:
    holder = subprocess.Popen(["ip", "netns", "exec", lab.app_ns, sys.executable, "-c", HOLDER],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    child = int(holder.stdout.readline())
    reported = [holder.stdout.readline().strip() for _ in range(10)]
    try:
        assert sorted(_nft_rules(lab.app_ns)) == sorted(reported)
        assert "flags owner" in sh("ip", "netns", "exec", lab.app_ns, "nft", "list", "ruleset")
        holder.kill()  # SIGKILL: nothing of ours runs; the kernel releases the socket
        holder.wait()
        assert _nft_rules(lab.app_ns) == []
        assert subprocess.run(["kill", "-0", str(child)]).returncode == 0  # the child lives
    finally:
        holder.kill()
        subprocess.run(["kill", "-9", str(child)], check=False)
