"""A manager that knows only the token's SHA-256 (how it runs in a pod) accepts the token and
nothing else, and takes the hash out of its environment."""

from __future__ import annotations

import hashlib
import os

import pytest
from kdiag_manager.auth import TokenHash
from kdiag_manager.config import Config, take_token
from kdiag_manager.server import build_server

from kdiag.errors import ManagerUnavailable
from kdiag.session.client import ManagerClient

TOKEN = "s3cret-token"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()


@pytest.fixture
def server():
    config = Config(target_pid=None, enter_path="enter", busybox_path="busybox", session="h1")
    built = build_server(config, TokenHash(DIGEST), "127.0.0.1:0")
    srv, address = built.server, built.address
    srv.start()
    yield address
    srv.stop(0)


def test_the_token_whose_hash_matches_is_accepted(server: str) -> None:
    good = ManagerClient.connect(server, TOKEN)
    assert good.version().session == "h1"
    good.close()


@pytest.mark.parametrize("presented", [DIGEST, TOKEN + "x", TOKEN.upper(), ""])
def test_anything_else_is_refused(server: str, presented: str) -> None:
    bad = ManagerClient.connect(server, presented)
    with pytest.raises(ManagerUnavailable, match="UNAUTHENTICATED"):
        bad.version()
    bad.close()


def test_take_token_prefers_the_token_and_scrubs_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDIAG_TOKEN_SHA256", DIGEST.upper())
    monkeypatch.delenv("KDIAG_TOKEN", raising=False)
    assert take_token() == TokenHash(DIGEST)
    assert "KDIAG_TOKEN_SHA256" not in os.environ
    monkeypatch.setenv("KDIAG_TOKEN", TOKEN)
    monkeypatch.setenv("KDIAG_TOKEN_SHA256", DIGEST)
    assert take_token() == TOKEN
    assert "KDIAG_TOKEN" not in os.environ and "KDIAG_TOKEN_SHA256" not in os.environ
    assert take_token() is None


def test_a_malformed_hash_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KDIAG_TOKEN", raising=False)
    monkeypatch.setenv("KDIAG_TOKEN_SHA256", "not-a-digest")
    with pytest.raises(ValueError, match="64"):
        take_token()
