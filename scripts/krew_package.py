#!/usr/bin/env python3
"""The krew package of ``kubectl kdiag``: an archive holding a launcher and the kdiag wheel,
and its manifest (plugins/kdiag.yaml with the version, address and sha256 filled in).

    python3 scripts/krew_package.py --dist dist [--url https://.../kdiag-krew.tar.gz]

The launcher (``kubectl-kdiag``) makes a venv beside itself on first use, installs the wheel
into it (dependencies from the package index) and runs kdiag from it. The wheel is pure
Python, so one archive serves every OS and architecture.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "plugins" / "kdiag.yaml"
ARCHIVE = "kdiag-krew.tar.gz"
DEFAULT_URL = "https://downloads.example/kdiag/v{version}/" + ARCHIVE

LAUNCHER = r"""#!/bin/sh
# kubectl kdiag, installed by krew: runs kdiag from a venv beside this file, made on first use
# from the wheel shipped with it (its dependencies come from the Python package index).
set -e
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
venv="$here/venv"
if [ ! -e "$venv/.installed" ] && [ "${1:-}" = __complete_kubectl ]; then
  echo ":4"  # a TAB does not install kdiag: no completions until the first kubectl kdiag
  exit 0
fi
if [ ! -e "$venv/.installed" ]; then
  py=${KDIAG_PYTHON:-python3}
  if ! "$py" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "kubectl-kdiag: needs python3 3.11 or later with the venv module (or KDIAG_PYTHON)" >&2
    exit 3
  fi
  echo "kubectl-kdiag: installing kdiag into $venv (once)" >&2
  rm -rf "$venv"
  if ! { "$py" -m venv "$venv" &&
         "$venv/bin/python" -m pip install -q --disable-pip-version-check \
           "$here"/kdiag-*-py3-none-any.whl >&2; }; then
    rm -rf "$venv"
    echo "kubectl-kdiag: installing kdiag failed (see above)" >&2
    exit 3
  fi
  touch "$venv/.installed"
fi
exec "$venv/bin/kubectl-kdiag" "$@"
"""


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def build(dist: Path, url: str | None) -> tuple[Path, Path]:
    """Write dist/kdiag-krew.tar.gz and dist/kdiag.yaml; return their paths."""
    wheels = sorted(dist.glob("kdiag-*-py3-none-any.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"krew_package: expected one kdiag wheel in {dist}, found {wheels}")
    wheel = wheels[0]
    version = wheel.name.split("-")[1]
    archive = dist / ARCHIVE
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "kubectl-kdiag", LAUNCHER.encode(), 0o755)
        _add(tar, wheel.name, wheel.read_bytes(), 0o644)
        _add(tar, "README.md", (ROOT / "README.md").read_bytes(), 0o644)
    archive.write_bytes(raw.getvalue())
    sha256 = hashlib.sha256(raw.getvalue()).hexdigest()
    text = TEMPLATE.read_text()
    text = re.sub(r"(?m)^  version: .*$", f"  version: v{version}", text)
    text = re.sub(r"(?m)^    uri: .*$", f"    uri: {url or DEFAULT_URL.format(version=version)}",
                  text)
    text = re.sub(r'(?m)^    sha256: .*$', f'    sha256: "{sha256}"', text)
    manifest = dist / "kdiag.yaml"
    manifest.write_text(text)
    return archive, manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dist", type=Path, default=ROOT / "dist")
    ap.add_argument("--url", help="where the archive will be downloaded from")
    args = ap.parse_args(argv)
    archive, manifest = build(args.dist, args.url)
    print(f"{archive.name} and {manifest.name} in {args.dist}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
