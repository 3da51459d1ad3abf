"""A RedirectSpec is checked before anything is installed."""

from __future__ import annotations

import pytest
from kdiag_manager.api.v1 import manager_pb2 as pb
from kdiag_manager.redirect import RedirectOptions, SpecError


def test_destination_must_be_an_address_or_network() -> None:
    ok = RedirectOptions.from_spec(pb.RedirectSpec(direction=pb.OUTGOING, ports=[80],
                                                   destination="fd00::/8"), "s")
    assert ok.destination == "fd00::/8"
    with pytest.raises(SpecError, match=r"'db\.local' is not an IP address or network"):
        RedirectOptions.from_spec(pb.RedirectSpec(direction=pb.OUTGOING, ports=[80],
                                                  destination="db.local"), "s")
