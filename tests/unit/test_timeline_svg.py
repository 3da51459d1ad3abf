"""The HTML report's timeline chart is well-formed SVG (every marker, bar and counter closed
as opened), and a redirect's counter row says that it counts connections."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.unit.test_timeline import reports

SVG = "{http://www.w3.org/2000/svg}"


def test_the_chart_is_well_formed_and_labels_its_counters(tmp_path: Path) -> None:
    html = reports(tmp_path)["html"]
    found = re.search(r"<svg\b.*?</svg>", html, re.S)
    assert found is not None
    root = ET.fromstring(found.group(0))
    groups = {g.get("class") for g in root.iter(f"{SVG}g")}
    assert {"counts", "interval"} <= groups
    markers = [g for g in root.iter(f"{SVG}g") if "marker" in (g.get("class") or "")]
    assert len(markers) >= 2
    counters = [t.text for t in root.iter(f"{SVG}text") if "counter" in (t.get("class") or "")]
    assert counters and all((text or "").startswith("connections per ") for text in counters), \
        counters
