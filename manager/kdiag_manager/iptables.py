"""iptables rules for redirects: building, installing, listing and removing tagged rules.

Every rule kdiag installs carries the comment ``kdiag:<session>``. A rule whose session has no
live manager (see :mod:`kdiag_manager.liveness`) is stale and is removed when a manager starts.
"""

from __future__ import annotations

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

    def command(self, action: str) -> list[str]:
        """Arguments after ``iptables`` for ``action`` (-I inserts first, -D deletes, -C checks)."""
        position = ["1"] if action == "-I" else []
        return ["-t", self.table, action, self.chain, *position, *self.args]

    def save_line(self) -> str:
        """The rule in iptables-save syntax (for reports and tests)."""
        return " ".join(a if a and not re.search(r"[\s'\"\\]", a) else shlex.quote(a)
                        for a in ["-A", self.chain, *self.args])

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


def incoming_rules(session: str, port: int, listen_port: int) -> list[Rule]:
    """Rules sending connections that arrive at ``port`` to the manager's ``listen_port``.

    - nat PREROUTING REDIRECT: connections from other hosts (over an interface);
    - nat OUTPUT REDIRECT for local destinations: connections from inside the namespace (e.g.
      a sidecar calling localhost:port), except the manager's own (marked) ones;
    - filter INPUT DROP: the listener binds all addresses (REDIRECT goes to the interface's
      address), so refuse connections that reach it directly, without being redirected.
    """
    p, lp = str(port), str(listen_port)
    return [
        Rule("nat", "PREROUTING", ("-p", "tcp", "--dport", p, *_common(session),
                                    "-j", "REDIRECT", "--to-ports", lp)),
        Rule("nat", "OUTPUT", ("-p", "tcp", "--dport", p, "-m", "addrtype", "--dst-type", "LOCAL",
                                *_skip_marked(), *_common(session), "-j", "REDIRECT",
                                "--to-ports", lp)),
        Rule("filter", "INPUT", ("-p", "tcp", "--dport", lp, "-m", "conntrack", "!",
                                  "--ctstate", "DNAT", *_common(session), "-j", "DROP")),
    ]


def outgoing_rules(
    session: str, port: int, listen_port: int, destination: str | None = None
) -> list[Rule]:
    """Rules sending the namespace's own connections to ``port`` (optionally only towards
    ``destination``, an IP or CIDR) to the manager listening on 127.0.0.1:``listen_port``."""
    dest = ["-d", destination] if destination else []
    return [
        Rule("nat", "OUTPUT", ("-p", "tcp", *dest, "--dport", str(port), *_skip_marked(),
                                *_common(session), "-j", "DNAT", "--to-destination",
                                f"127.0.0.1:{listen_port}")),
    ]


def parse_save(text: str) -> list[Rule]:
    """Parse ``iptables-save`` output into rules (chain policies and COMMIT lines skipped)."""
    rules: list[Rule] = []
    table = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A ") and table:
            parts = shlex.split(line)
            rules.append(Rule(table, parts[1], tuple(parts[2:])))
    return rules


@dataclass
class Iptables:
    """Runs iptables in the current network namespace (``binary`` may be iptables-legacy)."""

    binary: str = field(default_factory=lambda: os.environ.get("KDIAG_IPTABLES", "iptables"))

    def run(self, args: list[str]) -> str:
        """Run ``iptables -w ARGS``; raise IptablesError with its stderr on failure."""
        try:
            proc = subprocess.run([self.binary, "-w", *args], capture_output=True, text=True,
                                  timeout=30, check=False)
        except FileNotFoundError as exc:
            raise IptablesError(f"{self.binary} not found: install iptables") from exc
        if proc.returncode != 0:
            msg = proc.stderr.strip() or proc.stdout.strip()
            raise IptablesError(f"{self.binary} {shlex.join(args)}: {msg}")
        return proc.stdout

    def insert(self, rule: Rule) -> None:
        """Insert ``rule`` first in its chain (before e.g. a service mesh's rules)."""
        self.run(rule.command("-I"))

    def delete(self, rule: Rule) -> bool:
        """Delete ``rule``; False if it was not there."""
        try:
            self.run(rule.command("-D"))
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
        """Every rule carrying a kdiag tag, in the tables kdiag uses."""
        save = self.binary + "-save"
        rules: list[Rule] = []
        for table in TABLES:
            try:
                proc = subprocess.run([save, "-t", table], capture_output=True, text=True,
                                      timeout=30, check=False)
            except FileNotFoundError as exc:
                raise IptablesError(f"{save} not found: install iptables") from exc
            if proc.returncode == 0:
                rules += [r for r in parse_save(proc.stdout) if r.session is not None]
        return rules

    def remove_sessions(self, sessions: set[str]) -> list[Rule]:
        """Remove every tagged rule of ``sessions``; return the rules removed."""
        removed = []
        for rule in self.tagged():
            if rule.session in sessions and self.delete(rule):
                removed.append(rule)
        return removed
