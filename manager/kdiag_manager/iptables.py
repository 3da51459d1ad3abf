"""iptables rules for redirects: building, installing, listing and removing tagged rules.

Every rule kdiag installs carries the comment ``kdiag:<session>``. A rule whose session has no
live manager (see :mod:`kdiag_manager.liveness`) is stale and is removed when a manager starts.
Rules exist for IPv4 (iptables) and IPv6 (ip6tables, ``Rule.family`` 6) alike.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

from .sysutil import KDIAG_MARK

TAG_PREFIX = "kdiag:"
SESSION_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TABLES = ("nat", "filter")


class IptablesError(Exception):
    """An iptables command failed; the message has its stderr."""


@dataclass(frozen=True)
class Rule:
    """One rule: table, chain and match/target arguments (as iptables-save prints them)."""

    table: str
    chain: str
    args: tuple[str, ...] = field(default_factory=tuple)
    family: int = 4  # 4: iptables, 6: ip6tables

    def command(self, action: str) -> list[str]:
        """Arguments after ``iptables`` for ``action`` (-I inserts first, -D deletes, -C checks)."""
        position = ["1"] if action == "-I" else []
        return ["-t", self.table, action, self.chain, *position, *self.args]

    def save_line(self) -> str:
        """The rule in iptables-save syntax (for reports and tests); IPv6 ones say so."""
        line = " ".join(a if a and not re.search(r"[\s'\"\\]", a) else shlex.quote(a)
                        for a in ["-A", self.chain, *self.args])
        return f"{line} (ip6tables)" if self.family == 6 else line

    @property
    def session(self) -> str | None:
        """The kdiag session in the rule's comment, if any."""
        return session_of(self.args)


def tag(session: str) -> str:
    """The comment that marks a rule as kdiag's."""
    if not SESSION_RE.match(session):
        raise ValueError(f"invalid session id {session!r} (letters, digits, _ . - only)")
    return TAG_PREFIX + session


def session_of(args: Iterable[str]) -> str | None:
    """The session named by a ``--comment kdiag:<session>`` among ``args``, if any."""
    items = list(args)
    for i, arg in enumerate(items[:-1]):
        if arg == "--comment" and items[i + 1].startswith(TAG_PREFIX):
            return items[i + 1][len(TAG_PREFIX) :]
    return None


def _common(session: str) -> list[str]:
    return ["-m", "comment", "--comment", tag(session)]


def _skip_marked() -> list[str]:
    # The manager's own sockets carry KDIAG_MARK (see sysutil.mark_socket): never redirect them.
    return ["-m", "mark", "!", "--mark", f"{KDIAG_MARK:#x}"]


def families(destination: str | None) -> tuple[int, ...]:
    """The IP versions rules are needed for: the destination's own when it is an address or a
    network, else both (no destination, or a host name: iptables and ip6tables each resolve
    it when the rule goes in)."""
    try:
        return (ipaddress.ip_network(destination or "", strict=False).version,)
    except ValueError:
        return (4, 6)


def _refuse_direct(session: str, listen_port: int, family: int) -> Rule:
    """The listener binds every address: refuse connections that reach it without having been
    redirected (no DNAT/REDIRECT in their conntrack entry)."""
    return Rule("filter", "INPUT", ("-p", "tcp", "--dport", str(listen_port), "-m", "conntrack",
                                    "!", "--ctstate", "DNAT", *_common(session), "-j", "DROP"),
                family)


def _skip_sources(networks: Iterable[str]) -> list[str]:
    # One iprange match per source (iptables refuses ``! -s`` with several addresses).
    args: list[str] = []
    for text in networks:
        network = ipaddress.ip_network(text, strict=False)
        args += ["-m", "iprange", "!", "--src-range",
                 f"{network.network_address}-{network.broadcast_address}"]
    return args


def incoming_rules(session: str, port: int, listen_port: int, family: int = 4,
                   skip: Iterable[str] = ()) -> list[Rule]:
    """Rules sending connections that arrive at ``port`` to the manager's ``listen_port``.

    - nat PREROUTING REDIRECT: connections from other hosts (over an interface), except from
      the ``skip`` sources (e.g. the node's addresses: the kubelet's probes);
    - nat OUTPUT REDIRECT for local destinations: connections from inside the namespace (e.g.
      a sidecar calling localhost:port), except the manager's own (marked) ones;
    - filter INPUT DROP: the listener binds all addresses (REDIRECT goes to the interface's
      address), so refuse connections that reach it directly, without being redirected.
    """
    p, lp = str(port), str(listen_port)
    return [
        Rule("nat", "PREROUTING", ("-p", "tcp", "--dport", p, *_skip_sources(skip),
                                    *_common(session), "-j", "REDIRECT", "--to-ports", lp),
             family),
        Rule("nat", "OUTPUT", ("-p", "tcp", "--dport", p, "-m", "addrtype", "--dst-type", "LOCAL",
                                *_skip_marked(), *_common(session), "-j", "REDIRECT",
                                "--to-ports", lp), family),
        _refuse_direct(session, listen_port, family),
    ]


def outgoing_rules(
    session: str, port: int, listen_port: int, destination: str | None = None, family: int = 4
) -> list[Rule]:
    """Rules sending the namespace's own connections to ``port`` (optionally only towards
    ``destination``, an IP or CIDR) to the manager listening on loopback:``listen_port``, and
    refusing connections that reach the listener directly."""
    dest = ["-d", destination] if destination else []
    loopback = "127.0.0.1" if family == 4 else "[::1]"
    return [
        Rule("nat", "OUTPUT", ("-p", "tcp", *dest, "--dport", str(port), *_skip_marked(),
                                *_common(session), "-j", "DNAT", "--to-destination",
                                f"{loopback}:{listen_port}"), family),
        _refuse_direct(session, listen_port, family),
    ]


def parse_save(text: str, family: int = 4) -> list[Rule]:
    """Parse ``iptables-save`` output into rules (chain policies and COMMIT lines skipped)."""
    rules: list[Rule] = []
    table = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A ") and table:
            parts = shlex.split(line)
            rules.append(Rule(table, parts[1], tuple(parts[2:]), family))
    return rules


@dataclass
class Iptables:
    """Runs iptables in the current network namespace (``binary`` may be iptables-legacy)."""

    binary: str = field(default_factory=lambda: os.environ.get("KDIAG_IPTABLES", "iptables"))

    def binary_for(self, family: int) -> str:
        """``iptables`` or its IPv6 twin (``iptables-legacy`` → ``ip6tables-legacy``)."""
        return self.binary.replace("iptables", "ip6tables", 1) if family == 6 else self.binary

    def run(self, args: list[str], family: int = 4) -> str:
        """Run ``iptables -w ARGS``; raise IptablesError with its stderr on failure."""
        binary = self.binary_for(family)
        try:
            proc = subprocess.run([binary, "-w", *args], capture_output=True, text=True,
                                  timeout=30, check=False)
        except FileNotFoundError as exc:
            raise IptablesError(f"{binary} not found: install iptables") from exc
        if proc.returncode != 0:
            msg = proc.stderr.strip() or proc.stdout.strip()
            raise IptablesError(f"{binary} {shlex.join(args)}: {msg}")
        return proc.stdout

    def insert(self, rule: Rule) -> None:
        """Insert ``rule`` first in its chain (before e.g. a service mesh's rules)."""
        self.run(rule.command("-I"), rule.family)

    def delete(self, rule: Rule) -> bool:
        """Delete ``rule``; False if it was not there."""
        try:
            self.run(rule.command("-D"), rule.family)
        except IptablesError:
            return False
        return True

    def install(self, rules: list[Rule]) -> None:
        """Insert all ``rules``, or none: on a failure the ones already inserted are removed."""
        done: list[Rule] = []
        try:
            for rule in rules:
                self.insert(rule)
                done.append(rule)
        except IptablesError:
            for rule in reversed(done):
                self.delete(rule)
            raise

    def tagged(self) -> list[Rule]:
        """Every rule carrying a kdiag tag, in the tables kdiag uses (IPv4, then IPv6 where
        ip6tables is there)."""
        rules: list[Rule] = []
        for family in (4, 6):
            save = self.binary_for(family) + "-save"
            for table in TABLES:
                try:
                    proc = subprocess.run([save, "-t", table], capture_output=True, text=True,
                                          timeout=30, check=False)
                except FileNotFoundError as exc:
                    if family == 6:
                        return rules  # no IPv6 tools: no IPv6 rules of ours either
                    raise IptablesError(f"{save} not found: install iptables") from exc
                if proc.returncode == 0:
                    rules += [r for r in parse_save(proc.stdout, family) if r.session is not None]
        return rules

    def remove_sessions(self, sessions: set[str]) -> list[Rule]:
        """Remove every tagged rule of ``sessions``; return the rules removed."""
        removed = []
        for rule in self.tagged():
            if rule.session in sessions and self.delete(rule):
                removed.append(rule)
        return removed
