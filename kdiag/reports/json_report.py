"""``--report json=PATH``: the whole run as one JSON document (see :meth:`RunLog.to_dict`)."""

from __future__ import annotations

import json

from kdiag.reports.record import FileReporter


class JsonReporter(FileReporter):
    """Writes ``{"format": "kdiag.report/v1", "complete": bool, "runs": [run, ...]}`` at close.

    Each run carries its params, totals and every step with its full message, output, result,
    assertions (expression, passed, values, message), notes and artifacts. Text is verbatim
    (JSON escapes control characters), so nothing is lost for machines reading it.
    """

    kind = "JSON"

    def render(self) -> str:
        """The JSON document."""
        return json.dumps(self.log.to_dict(), indent=2, ensure_ascii=False) + "\n"
