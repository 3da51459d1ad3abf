"""The token interceptor and redirect spec validation, in-process (no root needed)."""

from __future__ import annotations

import grpc
import pytest
from kdiag_manager.config import Config
from kdiag_manager.redirectspec import RedirectOptions, SpecError
from kdiag_manager.server import build_server
from kdiag_manager.wire.api.v1 import manager_pb2 as pb

from kdiag.errors import ManagerUnavailable
from kdiag.session.client import ManagerClient


@pytest.fixture
def server():
    config = Config(target_pid=None, enter_path="enter", busybox_path="busybox", session="t1")
    built = build_server(config, "secret", "127.0.0.1:0")
    srv, address = built.server, built.address
    srv.start()
    yield address
    srv.stop(0)


def test_token_required(server: str) -> None:
    good = ManagerClient.connect(server, "secret")
    assert good.version().session == "t1"
    good.close()
    bad = ManagerClient.connect(server, "Secret")
    with pytest.raises(ManagerUnavailable, match="UNAUTHENTICATED"):
        bad.version()
    with pytest.raises(ManagerUnavailable, match="UNAUTHENTICATED"):
        bad.exec(["true"])
    bad.close()
    channel = grpc.insecure_channel(server)
    from kdiag_manager.wire.api.v1 import manager_pb2_grpc as pb_grpc

    with pytest.raises(grpc.RpcError) as err:
        pb_grpc.ManagerStub(channel).Ps(pb.PsRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()


def test_redirect_spec_validation() -> None:
    ok = RedirectOptions.from_spec(pb.RedirectSpec(direction=pb.INCOMING, ports=[80, 80, 81]),
                                   "default")
    assert ok.ports == (80, 81) and ok.session == "default" and ok.fail_open_timeout == 3.0
    bad = [
        pb.RedirectSpec(ports=[80]),
        pb.RedirectSpec(direction=pb.INCOMING),
        pb.RedirectSpec(direction=pb.INCOMING, ports=[70000]),
        pb.RedirectSpec(direction=pb.INCOMING, ports=[80], destination="10.0.0.1"),
        pb.RedirectSpec(direction=pb.OUTGOING, ports=[80], session="bad id"),
    ]
    for spec in bad:
        with pytest.raises(SpecError):
            RedirectOptions.from_spec(spec, "d")
    spec = pb.RedirectSpec(direction=pb.OUTGOING, ports=[80], destination="10.0.0.0/8",
                           fail_open=True, fail_open_timeout_seconds=0.5)
    spec.header_filter.name, spec.header_filter.value = "X-A", "b"
    opts = RedirectOptions.from_spec(spec, "d")
    assert opts.header == ("X-A", "b") and opts.fail_open and opts.fail_open_timeout == 0.5
