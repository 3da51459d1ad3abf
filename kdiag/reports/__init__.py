"""Reporters: every one consumes the same event stream; nothing else prints.

Kept light on purpose (``kdiag --help`` must start fast): rich and xml are imported only by the
reporters that use them, when they are made.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Protocol, TextIO

from kdiag.errors import KdiagError, UsageError

if TYPE_CHECKING:
    from kdiag.engine.events import Event

REPORT_KINDS = ("json", "junit", "md", "md-text", "html")
_ALIASES = {"json": "json", "junit": "junit", "xml": "junit", "md": "md", "markdown": "md",
            "md-text": "md-text", "markdown-text": "md-text", "html": "html"}
EXPECTED = "expected json=PATH, junit=PATH, md=PATH, md-text=PATH or html=PATH"


class Reporter(Protocol):
    """Consumes engine events. ``close()`` is called once at the end, whatever happened."""

    def handle(self, event: Event) -> None:
        """Take one event (called in order, one at a time)."""

    def close(self) -> None:
        """The stream ended (``RunFinished`` may not have come): finish output, write files."""


def parse_report_spec(spec: str) -> tuple[str, str]:
    """Split ``KIND=PATH`` into the canonical kind (:data:`REPORT_KINDS`) and the path.

    Raises :class:`~kdiag.errors.UsageError` naming what is wrong.
    """
    kind, sep, path = spec.partition("=")
    kind = kind.strip().lower()
    expected = EXPECTED
    if not sep:
        raise UsageError(f"--report {spec!r}: {expected}")
    if kind not in _ALIASES:
        raise UsageError(f"--report {spec!r}: unknown report format {kind!r}; {expected}")
    if not path.strip():
        raise UsageError(f"--report {spec!r}: missing file path; {expected}")
    if os.path.isdir(path):
        raise UsageError(f"--report {spec!r}: {path} is a directory, expected a file path")
    return _ALIASES[kind], path


def make_reporters(
    console: bool,
    report_specs: list[str],
    artifacts_dir: str | None,
    stream: TextIO | None = None,
    interactive: bool = False,
) -> list[Reporter]:
    """Build the reporters a run asked for.

    ``console``: show the run on ``stream`` (default ``sys.stdout``; live display on a
    terminal, plain lines otherwise, line mode when ``interactive``). ``report_specs``: values
    of ``--report`` (``json=PATH``, ``junit=PATH``, ``md=PATH``: a Markdown report with a
    Mermaid timeline, ``md-text=PATH``: with a fixed-width one, ``html=PATH``), written at close.
    ``artifacts_dir``: ``--artifacts DIR`` (created now). Bad specs raise
    :class:`~kdiag.errors.UsageError` before anything runs.
    """
    parsed = [parse_report_spec(spec) for spec in report_specs]
    seen: dict[str, str] = {}
    for spec, (_kind, path) in zip(report_specs, parsed, strict=True):
        key = os.path.abspath(path)
        if key in seen:
            raise UsageError(f"--report {spec!r}: {path} is also the target of {seen[key]!r}")
        seen[key] = spec

    reporters: list[Reporter] = []
    if console:
        from kdiag.reports.console import ConsoleReporter

        reporters.append(
            ConsoleReporter(stream if stream is not None else sys.stdout, interactive=interactive)
        )
    for kind, path in parsed:
        if kind == "json":
            from kdiag.reports.json_report import JsonReporter

            reporters.append(JsonReporter(path))
        elif kind == "junit":
            from kdiag.reports.junit import JunitReporter

            reporters.append(JunitReporter(path))
        elif kind == "html":
            from kdiag.reports.html import HtmlReporter

            reporters.append(HtmlReporter(path))
        else:
            from kdiag.reports.markdown import MarkdownReporter

            reporters.append(MarkdownReporter(
                path, timeline="text" if kind == "md-text" else "mermaid"))
    if artifacts_dir is not None:
        from kdiag.reports.artifacts import ArtifactsReporter

        if not artifacts_dir.strip():
            raise UsageError("--artifacts: missing directory")
        try:
            reporters.append(ArtifactsReporter(artifacts_dir))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UsageError(f"--artifacts {artifacts_dir}: cannot create it: {reason}") from exc
    return reporters


def close_all(reporters: list[Reporter]) -> None:
    """Close every reporter even if some fail; then raise the first failure.

    A report that could not be written (a :class:`~kdiag.errors.KdiagError`) must not stop the
    others from being written.
    """
    first: BaseException | None = None
    for reporter in reporters:
        try:
            reporter.close()
        except (KdiagError, OSError) as exc:
            first = first or exc
    if first is not None:
        raise first
