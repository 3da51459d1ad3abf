"""Choosing the rules' mechanism, and stopping a redirect completely however many callers."""

from __future__ import annotations

import errno
import threading
import time

import pytest
from kdiag_manager import nftables, redirect, redirectrules
from kdiag_manager.connections import ConnectionRegistry
from kdiag_manager.iptables import Iptables
from kdiag_manager.redirectrules import IPTABLES, NFTABLES, RuleSet
from kdiag_manager.redirectspec import RedirectOptions

OPTIONS = RedirectOptions(incoming=True, ports=(8080,), session="unit")


class SlowRules(RuleSet):
    """Rules whose removal takes a while (as iptables under load), counting removals."""

    def __init__(self) -> None:
        super().__init__(NFTABLES, ["rule"])
        self.removals = 0
        self.removed = threading.Event()

    def _remove(self) -> None:
        time.sleep(0.3)
        self.removals += 1
        self.removed.set()


def test_no_owned_tables_falls_back_to_iptables_and_says_why(monkeypatch) -> None:
    class NoOwner:
        def __init__(self, family: int, name: str) -> None:
            pass

        def create(self, *parts) -> None:
            raise nftables.NftError(errno.EOPNOTSUPP, "Operation not supported")

        def close(self) -> None:
            pass

    monkeypatch.setattr(nftables, "OwnedTable", NoOwner)
    monkeypatch.setattr(redirectrules, "_install_iptables",
                        lambda *a: redirectrules.IptablesRuleSet(IPTABLES, ["-A x"]))
    rules = redirectrules.install(OPTIONS, 40000, True, Iptables(), "kdiag-unit-1")
    assert rules.mechanism == IPTABLES
    assert "not available here: Operation not supported" in rules.warnings[0]
    assert "next manager" in rules.warnings[0]
    monkeypatch.setenv(redirectrules.MECHANISM_ENV, "nftables")
    with pytest.raises(redirectrules.RulesError, match="Operation not supported"):
        redirectrules.install(OPTIONS, 40000, True, Iptables(), "kdiag-unit-1")
    monkeypatch.setenv(redirectrules.MECHANISM_ENV, "ebtables")
    with pytest.raises(redirectrules.RulesError, match="auto, nftables or iptables"):
        redirectrules.install(OPTIONS, 40000, True, Iptables(), "kdiag-unit-1")


def test_a_host_name_is_resolved_to_all_its_addresses() -> None:
    found = redirectrules._destinations("localhost")
    assert [str(n) for n in found[4]] == ["127.0.0.1/32"]
    assert redirectrules._destinations("10.1.0.0/16") == {4: [redirectrules.ipaddress.ip_network(
        "10.1.0.0/16")]}
    assert redirectrules._destinations(None) == {4: [], 6: []}
    with pytest.raises(redirectrules.RulesError, match="cannot resolve"):
        redirectrules._destinations("no-such-host.invalid")


def test_every_stop_returns_only_once_the_rules_are_gone(monkeypatch) -> None:
    """Two callers (the control stream's end and the manager's exit) race to stop a redirect:
    the second one waits for the first instead of returning while rules are still there; and
    stop_all waits the same way, then refuses new redirects."""
    rules = SlowRules()
    monkeypatch.setattr(redirectrules, "install", lambda *a: rules)
    monkeypatch.setattr(redirect, "_closing", False)
    session = redirect.RedirectSession(OPTIONS, Iptables(), ConnectionRegistry())
    session.start()
    first = threading.Thread(target=session.stop)
    first.start()
    time.sleep(0.05)  # the first caller is removing the rules
    redirect.stop_all()
    assert rules.removed.is_set() and rules.removals == 1
    first.join()
    with pytest.raises(OSError, match="stopping"):
        redirect.RedirectSession(OPTIONS, Iptables(), ConnectionRegistry()).start()
