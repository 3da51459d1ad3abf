"""``make demo``: start the sample app in a lab of network namespaces and run the demo runbook.

The app is a static binary alone in its root filesystem (no shell, no tools) in its own network
namespace; a second namespace calls it over veth. kdiag runs ``runbooks/demo.yaml`` against the
app's PID (node mode), prints its report and writes it as HTML and Markdown too
(``build/demo-report.html``, ``.md``); the lab is removed afterwards, whatever happened.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from demo.lab import build_app, lab

ROOT = Path(__file__).resolve().parents[1]
APP_BINARY = ROOT / "build" / "demo-app"
REPORTS = {"html": ROOT / "build" / "demo-report.html", "md": ROOT / "build" / "demo-report.md"}


def main(argv: list[str]) -> int:
    """Run the demo; extra arguments go to ``kdiag run`` (e.g. ``--step``)."""
    if os.geteuid() != 0:
        print("demo: needs root (network namespaces, iptables)", file=sys.stderr)
        return 3
    binary = build_app(APP_BINARY)
    with lab("demo", 250) as the_lab:
        pid = the_lab.start_app(binary, 8080)
        print(f"demo: app {binary.name} (PID {pid}) listens on {the_lab.app_ip}:8080 in "
              f"namespace {the_lab.app_ns}; its root holds only /app\n", flush=True)
        reports = [a for kind, path in REPORTS.items() for a in ("--report", f"{kind}={path}")]
        command = [sys.executable, "-m", "kdiag", "run", "runbooks/demo.yaml",  # (cwd: ROOT)
                   "--set", f"pid={pid}", "--set", f"app_ip={the_lab.app_ip}",
                   "--set", f"client_ns={the_lab.client_ns}", *reports, *argv]
        code = subprocess.run(command, cwd=ROOT).returncode
        leftovers = the_lab.tagged_rules()
    if leftovers:
        print(f"demo: kdiag left {len(leftovers)} rules behind", file=sys.stderr)
        return 1
    print(f"\ndemo: the lab is removed; kdiag exited with {code}")
    print(f"demo: the report: {REPORTS['html'].relative_to(ROOT)} (open it in a browser), "
          f"{REPORTS['md'].relative_to(ROOT)}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
