"""The rules of one redirect, by the best mechanism the kernel offers.

- **nftables** (Linux 5.12+): one table per family that the kernel owns on the manager's
  behalf (:mod:`nftables`): it vanishes with the manager, also after ``kill -9`` or the OOM
  killer, so the target's connections reach the app again at once with no kdiag process alive.
- **iptables** (the fallback: older kernels, no nf_tables, ``$KDIAG_REDIRECT_RULES=iptables``):
  tagged rules (:mod:`iptables`) that :meth:`RuleSet.remove` deletes; after a manager crash they
  stay until the next manager starts in the namespace and removes stale rules
  (:mod:`liveness`). The ready event's warnings say so.

Either way :meth:`RuleSet.remove` is idempotent and *completing*: a caller returns only once
the rules are gone, also when another thread is removing them at the same time.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
from dataclasses import dataclass, field

from . import liveness, nftrules
from . import nftables as nft
from .iptables import Iptables, IptablesError, Rule, families, incoming_rules, outgoing_rules
from .redirectspec import RedirectOptions

log = logging.getLogger(__name__)

MECHANISM_ENV = "KDIAG_REDIRECT_RULES"  # auto (default) | nftables | iptables
NFTABLES, IPTABLES = "nftables", "iptables"
FALLBACK_WARNING = ("the redirect uses iptables rules ({reason}): if the manager dies without "
                    "removing them, connections fail open only once the next manager starts "
                    "in this network namespace and removes stale rules")


class RulesError(Exception):
    """The rules cannot be installed (FAILED_PRECONDITION); the message says why."""


@dataclass
class RuleSet:
    """Installed rules: their mechanism, their lines (in that mechanism's syntax, for
    reports), and warnings (what is not redirected, and why)."""

    mechanism: str
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _removed: bool = False

    def remove(self) -> None:
        """Remove the rules; returns once they are gone (a concurrent caller waits for the
        one already removing them). Idempotent."""
        with self._lock:
            if not self._removed:
                try:
                    self._remove()
                finally:
                    self._removed = True

    def _remove(self) -> None:
        raise NotImplementedError


@dataclass
class NftRuleSet(RuleSet):
    """Owned nf_tables tables (one per family)."""

    tables: list[nft.OwnedTable] = field(default_factory=list)

    def _remove(self) -> None:
        for table in self.tables:
            try:
                table.delete()  # acknowledged: the rules are gone when it returns
            except OSError as exc:  # closing the socket deletes it anyway
                log.warning("deleting nftables table %s: %s", table.name, exc)
            finally:
                table.close()


@dataclass
class IptablesRuleSet(RuleSet):
    """Tagged iptables/ip6tables rules; the session's liveness socket is held meanwhile."""

    iptables: Iptables = field(default_factory=Iptables)
    rules: list[Rule] = field(default_factory=list)
    session: str = ""

    def _remove(self) -> None:
        try:
            for rule in reversed(self.rules):  # newest first
                self.iptables.delete(rule)
        finally:
            liveness.release(self.session)


def install(options: RedirectOptions, listen_port: int, dual: bool, iptables: Iptables,
            name: str) -> RuleSet:
    """Install the rules of a redirect to ``listen_port`` (``dual``: IPv6 exists here), in
    owned tables named ``name`` where the kernel allows, else with iptables. IPv4 rules must
    install; IPv6 ones are best effort (a warning says why not). Raises RulesError,
    IptablesError."""
    choice = os.environ.get(MECHANISM_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", NFTABLES, IPTABLES):
        raise RulesError(f"${MECHANISM_ENV} must be auto, nftables or iptables, not {choice!r}")
    reason = f"${MECHANISM_ENV}={IPTABLES}"
    if choice != IPTABLES:
        try:
            return _install_nft(options, listen_port, dual, name)
        except nft.NftError as exc:
            if choice == NFTABLES:
                raise RulesError(f"cannot create an nftables table: {exc.strerror}") from None
            reason = f"owned nftables tables are not available here: {exc.strerror}"
    rules = _install_iptables(options, listen_port, dual, iptables)
    rules.warnings.insert(0, FALLBACK_WARNING.format(reason=reason))
    return rules


def _destinations(destination: str | None) -> dict[int, list[nftrules.Network]]:
    """The networks to match per family (empty: any destination). A host name is resolved
    here, to all its addresses (nf_tables does not resolve names)."""
    if not destination:
        return {4: [], 6: []}
    if _is_network(destination):
        network = ipaddress.ip_network(destination, strict=False)
        return {network.version: [network]}
    try:
        infos = socket.getaddrinfo(destination, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RulesError(f"cannot resolve destination {destination!r}: {exc}") from None
    found: dict[int, list[nftrules.Network]] = {4: [], 6: []}
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        network = ipaddress.ip_network(address)
        if network not in found[address.version]:
            found[address.version].append(network)
    return {family: nets for family, nets in found.items() if nets}


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _nft_rules(options: RedirectOptions, listen_port: int, family: int,
               networks: list[nftrules.Network]) -> list[nft.Rule]:
    tag = f"kdiag:{options.session}"
    rules: list[nft.Rule] = []
    for port in options.ports:
        if options.incoming:
            skip = [n for n in options.skip_sources if n.version == family]
            rules += nftrules.incoming(tag, port, listen_port, skip)
        else:
            rules += nftrules.outgoing(tag, port, listen_port, family, networks)
    return list(dict.fromkeys(rules))  # one DROP rule per listener


_anchors: dict[int, nft.OwnedTable] = {}
_anchor_lock = threading.Lock()


def _ensure_anchor(family: int) -> None:
    """Create this manager's anchor table for ``family`` once (see :mod:`nftrules`: it keeps
    redirected connections translated after their redirect stops). NftError if it cannot."""
    with _anchor_lock:
        if family in _anchors:
            return
        name, chains, objects = nftrules.anchor(family)
        table = nft.OwnedTable(family, name)
        try:
            table.create(chains, [], objects)
        except BaseException:
            table.close()
            raise
        _anchors[family] = table


def _install_nft(options: RedirectOptions, listen_port: int, dual: bool, name: str
                 ) -> NftRuleSet:
    """Owned tables; NftError when the first family's cannot be created (no owned tables
    here: the caller falls back to iptables)."""
    wanted = _destinations(options.destination) if not options.incoming else {4: [], 6: []}
    result = NftRuleSet(NFTABLES)
    for family in (4, 6):
        if family not in wanted and len(wanted) == 1 and options.destination and \
                not _is_network(options.destination):
            result.warnings.append(f"IPv{family} connections are not redirected: "
                                   f"{options.destination} has no IPv{family} address")
    try:
        for family, networks in wanted.items():
            if family == 6 and not dual:
                result.warnings.append("IPv6 connections are not redirected: no IPv6 here")
                continue
            rules = _nft_rules(options, listen_port, family, networks)
            table = nft.OwnedTable(family, name)
            try:
                _ensure_anchor(family)
                table.create(nftrules.chains_for(rules), rules)
            except nft.NftError as exc:
                table.close()
                if not result.tables:
                    raise
                result.warnings.append(f"IPv6 connections are not redirected: {exc.strerror}")
                continue
            result.tables.append(table)
            result.lines += [nftrules.line(family, name, rule) for rule in rules]
    except BaseException:
        result.remove()
        raise
    if not result.tables:
        raise RulesError("; ".join(result.warnings) or "no rules")
    return result


def _install_iptables(options: RedirectOptions, listen_port: int, dual: bool,
                      iptables: Iptables) -> IptablesRuleSet:
    """Tagged iptables rules (the fallback); raises IptablesError."""
    wanted = families(options.destination)
    result = IptablesRuleSet(IPTABLES, iptables=iptables, session=options.session)
    liveness.hold(options.session)  # before the rules exist: never stale while we live
    try:
        for family in wanted:
            if family == 6 and not dual:
                result.warnings.append("IPv6 connections are not redirected: no IPv6 here")
                continue
            family_rules: list[Rule] = []
            for port in options.ports:
                if options.incoming:
                    skip = [str(n) for n in options.skip_sources if n.version == family]
                    family_rules += incoming_rules(options.session, port, listen_port, family,
                                                   skip)
                else:
                    family_rules += outgoing_rules(options.session, port, listen_port,
                                                   options.destination, family)
            family_rules = list(dict.fromkeys(family_rules))
            try:
                iptables.install(family_rules)
            except IptablesError as exc:
                if family == 4 or wanted == (6,):
                    raise
                reason = str(exc).splitlines()[0]  # (not ip6tables' usage hint)
                result.warnings.append(f"IPv6 connections are not redirected: {reason}")
                continue
            result.rules += family_rules
        if not result.rules:
            raise IptablesError("; ".join(result.warnings) or "no rules")
    except BaseException:
        result.remove()
        raise
    result.lines = [rule.save_line() for rule in result.rules]
    return result
