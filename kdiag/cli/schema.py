"""``kdiag schema``: print the runbook JSON Schema."""

from __future__ import annotations

import argparse
import json

from kdiag.errors import EXIT_OK
from kdiag.steps import catalog


def schema_text() -> str:
    """The schema as the checked-in ``schemas/runbook.schema.json`` holds it."""
    return json.dumps(catalog().runbook_schema(), indent=2) + "\n"


def command(args: argparse.Namespace) -> int:
    """Print the schema."""
    print(schema_text(), end="")
    return EXIT_OK
