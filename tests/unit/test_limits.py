"""The sizes limit messages name (`64 KiB`, `5 MiB`): whole units, else bytes."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("count, text", [(1 << 30, "1 GiB"), (5 << 20, "5 MiB"),
                                         (64 << 10, "64 KiB"), (1536, "1536 bytes"),
                                         (1000, "1000 bytes")])
def test_sizes_in_messages(count: int, text: str) -> None:
    from kdiag.language.limits import size_text

    assert size_text(count) == text
