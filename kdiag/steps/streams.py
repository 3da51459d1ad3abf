"""A command's output streams (the ``shell`` and ``run`` steps): the whole of each goes to an
artifact file as it comes, a head and a tail stay in memory, the text goes to the reporters.

Nothing holds the whole output, however large: a step's result carries what was kept and,
when something was cut, ``truncated: true``, the sizes, the files, and a note in the report.
"""

from __future__ import annotations

import codecs
from typing import Any

from kdiag.session.output import HeadTail, human_size, parse_size
from kdiag.steps.base import ArtifactFile, StepContext, StepFailed


def output_limit(body: dict[str, Any], ctx: StepContext) -> int:
    """The step's ``max_output`` (StepFailed when it is no size), else the run's."""
    if body.get("max_output") is None:
        return ctx.max_output
    try:
        return parse_size(body["max_output"])
    except ValueError as exc:
        raise StepFailed(f"max_output: {exc}") from None


class OutputStream:
    """One stream (``stdout``/``stderr``) of one command."""

    def __init__(self, ctx: StepContext, name: str, limit: int) -> None:
        self.ctx = ctx
        self.name = name
        self.kept = HeadTail(limit)
        self._text = codecs.getincrementaldecoder("utf-8")("replace")
        self.file: ArtifactFile | None = None
        try:
            self.file = ctx.open_artifact(name)
        except OSError as exc:  # said, not silent: the step still runs
            ctx.note(f"{name} is not kept in a file: {exc.strerror or exc}")

    def add(self, data: bytes) -> None:
        """The next chunk: to the file, the memory kept, and the reporters."""
        if self.file is not None:
            self.file.write(data)
        self.kept.add(data)
        self.ctx.output(self._text.decode(data), self.name)

    def close(self) -> None:
        """The stream ended."""
        self.ctx.output(self._text.decode(b"", final=True), self.name)
        if self.file is not None:
            self.file.close()

    def fields(self) -> dict[str, Any]:
        """``stdout``, ``stdout_bytes``, ``stdout_file`` (for ``stdout``)."""
        where = str(self.file.path) if self.file is not None else "no file"
        marker = (f"\n[... kdiag: {human_size(self.kept.cut)} not kept in memory; the whole "
                  f"{self.name} is in {where} ...]\n")
        return {self.name: self.kept.text(marker), f"{self.name}_bytes": self.kept.size,
                f"{self.name}_file": str(self.file.path) if self.file is not None else ""}


class CommandOutput:
    """Both streams of a command."""

    def __init__(self, ctx: StepContext, limit: int) -> None:
        self.ctx = ctx
        self.streams = {name: OutputStream(ctx, name, limit) for name in ("stdout", "stderr")}

    def add(self, stream: str, data: bytes) -> None:
        """A chunk of ``stream`` (stdout or stderr)."""
        self.streams[stream].add(data)

    def close(self) -> None:
        """Both streams ended."""
        for stream in self.streams.values():
            stream.close()

    def fields(self) -> dict[str, Any]:
        """The result's output fields and ``truncated``; a note says what was cut."""
        found: dict[str, Any] = {}
        for stream in self.streams.values():
            found.update(stream.fields())
            if stream.kept.truncated:
                where = found[f"{stream.name}_file"] or "no file"
                limit = stream.kept.limit
                self.ctx.note(f"{stream.name} truncated in memory: {human_size(stream.kept.size)}"
                              f"; the first {human_size(limit - limit // 2)} and the last "
                              f"{human_size(limit // 2)} are kept for register and reports, "
                              f"all of it is in {where}")
        found["truncated"] = any(s.kept.truncated for s in self.streams.values())
        return found
