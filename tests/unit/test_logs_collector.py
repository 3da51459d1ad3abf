"""The `logs` step's own logic, with a stand-in for the API server's log endpoint (the cluster
suite follows real pods): what the result holds, what the files hold, the kubelet's timestamps
split off, `since` passed on, and a cut that says so."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kdiag.kube.logs import LogLine, LogSource
from kdiag.steps import logs
from kdiag.steps.logs import LogsStep, _Collector

SOURCE = LogSource("shop", "api-1", "app")


class _Ctx:
    """What the collector uses of a StepContext: artifact paths and the console."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.console: list[tuple[str, str]] = []

    def artifact_path(self, name: str) -> Path:
        return self.folder / name

    def output(self, text: str, source: str) -> None:
        self.console.append((text, source))


class _Core:
    """read_namespaced_pod_log of the kubernetes client: the text asked for, and the call."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls: list[dict[str, Any]] = []

    def read_namespaced_pod_log(self, pod: str, namespace: str, **kwargs: Any) -> Any:
        self.calls.append({"pod": pod, "namespace": namespace, **kwargs})
        assert kwargs.get("_preload_content") is False, "a log is read as raw bytes"
        return SimpleNamespace(data=self.text.encode(), release_conn=lambda: None)


class _Kube:
    server = "https://test"

    def __init__(self, core: _Core) -> None:
        self._core = core

    def core(self) -> _Core:
        return self._core


def test_a_cut_result_says_so_and_the_file_holds_every_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "MAX_KEPT_LINES", 3)
    ctx = _Ctx(tmp_path)
    collector = _Collector(ctx)  # type: ignore[arg-type]
    collector.open([SOURCE])
    for n in range(5):
        collector.add(LogLine(SOURCE, f"line {n}", f"2026-12-03T10:00:0{n}Z"))
    collector.close()
    result = collector.result()
    assert [x["text"] for x in result["lines"]] == ["line 0", "line 1", "line 2"]
    assert (result["count"], result["omitted"]) == (5, 2)
    assert result["text"].splitlines() == ["api-1/app: line 0", "api-1/app: line 1",
                                           "api-1/app: line 2"]
    assert Path(result["files"][0]).read_text().splitlines() == [
        f"2026-12-03T10:00:0{n}Z line {n}" for n in range(5)]
    said = [text for text, source in ctx.console if source == "logs"]
    assert said == ["the result holds the first 3 of 5 lines; the files hold all\n"]
    assert ("line 4\n", "api-1/app") in ctx.console


def test_an_uncut_result_says_nothing_more(tmp_path: Path) -> None:
    ctx = _Ctx(tmp_path)
    collector = _Collector(ctx)  # type: ignore[arg-type]
    collector.open([SOURCE, SOURCE])  # the same source twice: one file
    collector.add(LogLine(SOURCE, "only"))
    collector.close()
    collector.close()
    result = collector.result()
    assert (result["count"], result["omitted"], len(result["files"])) == (1, 0, 1)
    assert Path(result["files"][0]).read_text() == "only\n"
    assert [t for t, s in ctx.console if s == "logs"] == []


def test_a_snapshot_splits_the_kubelets_timestamps_and_passes_since(tmp_path: Path) -> None:
    core = _Core("2026-12-03T10:00:00.5Z started\nno stamp here\n\n"
                 "2026-12-03T10:00:01Z ready on :8080\n")
    ctx = _Ctx(tmp_path)
    collector = _Collector(ctx)  # type: ignore[arg-type]
    collector.open([SOURCE])
    outcome = LogsStep._snapshot(_Kube(core), [SOURCE], 0, collector)
    assert [(x["time"], x["text"]) for x in outcome.result["lines"]] == [
        ("2026-12-03T10:00:00.5Z", "started"), ("", "no stamp here"), ("", ""),
        ("2026-12-03T10:00:01Z", "ready on :8080")]
    # since: 0s still asks for a window (the API takes whole seconds, at least 1)
    assert core.calls == [{"pod": "api-1", "namespace": "shop", "container": "app",
                           "timestamps": True, "since_seconds": 1, "_preload_content": False}]
    assert outcome.artifacts == [str(tmp_path / "api-1.app.log")]
    assert collector.closed


def test_a_snapshot_without_since_asks_for_every_line(tmp_path: Path) -> None:
    core = _Core("")
    collector = _Collector(_Ctx(tmp_path))  # type: ignore[arg-type]
    LogsStep._snapshot(_Kube(core), [SOURCE], None, collector)
    assert "since_seconds" not in core.calls[0]


@pytest.mark.parametrize("body, expected", [
    (None, "the target's logs"), ({"selector": "app=shop", "container": "all"},
                                  "app=shop (all)"), ({"pod": "api-1"}, "api-1")])
def test_describe(body: Any, expected: str) -> None:
    assert LogsStep().describe(body) == expected
