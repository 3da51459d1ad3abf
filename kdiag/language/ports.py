"""``PORT`` and ``PORT:LOCALPORT``: the port syntax shared by runbook steps and the CLI."""

from __future__ import annotations


def parse_port_mapping(text: str, *, local_may_be_zero: bool = False) -> tuple[int, int | None]:
    """``8080`` → (8080, None); ``8080:9000`` → (8080, 9000). ValueError saying what is wrong.

    ``local_may_be_zero``: LOCALPORT 0 asks for any free port (``kdiag forward``).
    """
    remote, sep, local = text.partition(":")
    try:
        pair = (int(remote), int(local) if sep else None)
    except ValueError:
        raise ValueError(f"bad port {text!r}: use PORT or PORT:LOCALPORT") from None
    lowest_local = 0 if local_may_be_zero else 1
    if not 0 < pair[0] < 65536 or (pair[1] is not None and not lowest_local <= pair[1] < 65536):
        raise ValueError(f"port out of range: {text}")
    return pair


# Schema fragments for steps that take ports.
PORT_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 65535}
PORT_MAPPING_SCHEMA = {"type": "string", "pattern": r"^[0-9]{1,5}(:[0-9]{1,5})?$",
                       "title": "PORT or PORT:LOCALPORT"}
NAMED_PORT_SCHEMA = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(:[0-9]{1,5})?$",
                     "title": "NAME or NAME:LOCALPORT (a named port)"}
