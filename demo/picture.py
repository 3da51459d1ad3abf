"""``make docs``: the README's picture of a report — ``make demo``'s HTML report of
``runbooks/demo.yaml`` in headless Chromium, its top (the verdict, the timeline and the first
steps, one of them unfolded) saved as ``docs/report.png``."""

from __future__ import annotations

import subprocess
import sys

from demo.__main__ import REPORTS, ROOT
from demo.browser import load

PICTURE = ROOT / "docs" / "report.png"
UNFOLD = "redirect the app"
"""The step whose details the picture shows (its output: the connection, what went where)."""
SHOWN = f"""(() => {{
  const step = [...document.querySelectorAll('details.step')]
    .find(d => d.querySelector('.name').textContent.startsWith({UNFOLD!r}));
  if (step) step.open = true;
  const steps = document.querySelector('#steps');
  return steps ? steps.getBoundingClientRect().bottom + window.scrollY + 12 : 0;
}})()"""


def main() -> int:
    """Run the demo (quietly), then take the picture of its report."""
    demo = subprocess.run([sys.executable, "-m", "demo", "-q"], cwd=ROOT)
    if demo.returncode != 0:
        print(f"docs: the demo failed (exit {demo.returncode}); no picture taken",
              file=sys.stderr)
        return demo.returncode
    page = load(REPORTS["html"], screenshot=True, width=1180, height=SHOWN)
    if page.console:
        print("docs: the report logged: " + "; ".join(page.console), file=sys.stderr)
        return 1
    PICTURE.parent.mkdir(exist_ok=True)
    PICTURE.write_bytes(page.screenshot)
    print(f"docs: {PICTURE.relative_to(ROOT)} ({len(page.screenshot) // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
