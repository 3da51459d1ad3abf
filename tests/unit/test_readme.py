"""The README documents every step type and every step control."""

from __future__ import annotations

from pathlib import Path

from kdiag.language.schema import CONTROLS
from kdiag.steps import step_types

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_step_type_is_in_the_reference() -> None:
    for kind in step_types():
        assert f"| `{kind}` |" in README, f"README's step table lacks {kind}"


def test_every_control_is_in_the_reference() -> None:
    for control in CONTROLS:
        assert f"{control}:" in README or f"`{control}`" in README, control


def test_set_up_commands() -> None:
    assert "make demo" in README and "make test" in README
