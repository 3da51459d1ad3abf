"""A page in headless Chromium, read over the DevTools protocol: what it logged, what it
fetched, values from its DOM, and a screenshot.

Used by the HTML report's test (the timeline is drawn, nothing is fetched, no console errors)
and by ``make docs`` (the README's picture of a report). Chromium comes from Debian
(``scripts/system-deps.sh``); the protocol goes over a websocket (``websocket-client``, a
dependency of ``kubernetes``).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-port=0")


def chromium() -> str | None:
    """The Chromium binary on the PATH, if any."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Page:
    """What loading a page showed."""

    values: dict[str, Any] = field(default_factory=dict)
    """The value of each expression asked for, evaluated once the page loaded."""
    console: list[str] = field(default_factory=list)
    """Console messages of level error or warning, exceptions and failed loads."""
    requests: list[str] = field(default_factory=list)
    """Every URL the page asked for (the page's own included)."""
    screenshot: bytes = b""


class _DevTools:
    """One page's DevTools websocket: calls, and the events that came meanwhile."""

    def __init__(self, url: str, timeout: float) -> None:
        import websocket  # websocket-client

        self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, method: str, deadline: float) -> None:
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} from the page")
            self.events.append(json.loads(self.ws.recv()))


def _end_group(pgid: int, timeout: float = 10.0) -> None:
    """Kill process group ``pgid`` and wait until none of its processes runs: Chromium's
    helpers (zygote, renderers) outlive the browser process for a moment on a busy machine and
    still write into the profile, which then cannot be removed ("Directory not empty")."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    """Does a process of group ``pgid`` still run (zombies aside)?"""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and fields[2] == str(pgid):
            return True
    return False


TIMEOUT = 120.0
"""Seconds Chromium may take to start and load a page: it needs CPU, which a busy two-core
machine gives it slowly (5-18 s seen beside other test suites); only a hang goes over."""


class Browser:
    """One headless Chromium (its own empty profile) for the pages opened in it; a context
    manager (ended, its profile removed, on exit)."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        binary = chromium()
        if binary is None:
            raise FileNotFoundError("chromium is not installed (scripts/system-deps.sh "
                                    "installs it)")
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="kdiag-chromium-")
        self._log = open(Path(self._profile.name) / "chromium.log", "wb")  # noqa: SIM115
        self._process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True)
        try:
            self.port = self._devtools_port(time.monotonic() + timeout)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End Chromium (and every helper process it started) and remove its profile."""
        self._process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(5)
        _end_group(self._process.pid)
        self._process.wait()
        self._log.close()
        self._profile.cleanup()

    def _devtools_port(self, deadline: float) -> str:
        active = Path(self._profile.name) / "DevToolsActivePort"
        while not active.exists() or len(active.read_text().split()) < 2:
            if self._process.poll() is not None:
                log = (Path(self._profile.name) / "chromium.log").read_bytes()[-2000:]
                raise RuntimeError(f"chromium exited ({self._process.returncode}): "
                                   f"{log.decode(errors='replace')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"chromium did not open its DevTools port in "
                                   f"{self.timeout:g}s")
            time.sleep(0.05)
        return active.read_text().split()[0]

    def load(self, path: Path, expressions: dict[str, str] | None = None, *, width: int = 1200,
             screenshot: bool = False, height: str = "") -> Page:
        """Open ``path`` in a new tab, evaluate ``expressions`` in it once it loaded (in
        order: one may change the page), and say what it logged and fetched;
        ``screenshot``: take one ``width`` wide, of the whole page or as high as the
        expression ``height`` says. The tab is closed after."""
        deadline = time.monotonic() + self.timeout
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank",
                                         method="PUT")
        with urllib.request.urlopen(request, timeout=self.timeout) as reply:
            target = json.load(reply)
        tools = _DevTools(str(target["webSocketDebuggerUrl"]), self.timeout)
        try:
            return _visit(tools, path.resolve().as_uri(), expressions or {}, width,
                          screenshot, height, deadline)
        finally:
            tools.ws.close()
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/json/close/{target['id']}", timeout=10):
                pass


def load(path: Path, expressions: dict[str, str] | None = None, *, width: int = 1200,
         screenshot: bool = False, height: str = "", timeout: float = TIMEOUT) -> Page:
    """:meth:`Browser.load` in a Chromium started for this page alone."""
    with Browser(timeout) as browser:
        return browser.load(path, expressions, width=width, screenshot=screenshot,
                            height=height)


def _visit(tools: _DevTools, url: str, expressions: dict[str, str], width: int,
           screenshot: bool, height: str, deadline: float) -> Page:
    for domain in ("Page", "Runtime", "Log", "Network"):
        tools.call(f"{domain}.enable")
    tools.call("Emulation.setDeviceMetricsOverride", width=width, height=900,
               deviceScaleFactor=1, mobile=False)
    tools.call("Page.navigate", url=url)
    tools.wait_for("Page.loadEventFired", deadline)
    page = Page()
    for name, expression in expressions.items():
        reply = tools.call("Runtime.evaluate", expression=expression, returnByValue=True)
        page.values[name] = reply.get("result", {}).get("value")
    if screenshot:
        tall = tools.call("Page.getLayoutMetrics")["cssContentSize"]["height"]
        if height:
            wanted = tools.call("Runtime.evaluate", expression=height, returnByValue=True)
            tall = min(tall, float(wanted.get("result", {}).get("value") or tall))
        shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": width, "height": tall, "scale": 1})
        page.screenshot = base64.b64decode(shot["data"])
    for event in tools.events:
        _note(page, event.get("method", ""), event.get("params", {}))
    return page


def _note(page: Page, method: str, params: dict[str, Any]) -> None:
    if method == "Network.requestWillBeSent":
        page.requests.append(params["request"]["url"])
    elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning",
                                                                         "assert"):
        texts = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
        page.console.append(f"console.{params['type']}: {' '.join(texts)}")
    elif method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        thrown = details.get("exception", {}).get("description", details.get("text"))
        page.console.append(f"exception: {thrown}")
    elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
        entry = params["entry"]
        page.console.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
    elif method == "Network.loadingFailed" and not params.get("canceled"):
        page.console.append(f"failed to load: {params.get('errorText')}")
