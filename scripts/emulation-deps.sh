#!/usr/bin/env bash
# Lets this machine run another architecture's programs (for `make image-arm64`): installs
# Debian's qemu-user-static when missing, mounts binfmt_misc, and registers the qemu handler
# for MACHINE (default aarch64) from the package's /usr/lib/binfmt.d/ file when no service
# did (containers and chroots-only hosts run no systemd-binfmt). Root; idempotent.
#   scripts/emulation-deps.sh [MACHINE]
set -euo pipefail
machine=${1:-aarch64}
binfmt=/proc/sys/fs/binfmt_misc
if [ "$(id -u)" != 0 ]; then echo "emulation-deps: need root" >&2; exit 3; fi
if [ "$(uname -m)" = "$machine" ]; then exit 0; fi  # native: nothing to emulate
if ! command -v "qemu-$machine-static" >/dev/null; then
  echo "emulation-deps: installing qemu-user-static" >&2
  apt=(bash "$(dirname "$0")/apt-get.sh")
  "${apt[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends \
    qemu-user-static >/dev/null
fi
[ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt"
if [ ! -e "$binfmt/qemu-$machine" ]; then
  conf=/usr/lib/binfmt.d/qemu-$machine.conf
  [ -f "$conf" ] || { echo "emulation-deps: $conf is missing (qemu-user-static)" >&2; exit 3; }
  echo "emulation-deps: registering $conf in $binfmt" >&2
  cat "$conf" >"$binfmt/register"
fi
echo "emulation-deps: $machine programs run under $(sed -n 's/^interpreter //p' "$binfmt/qemu-$machine")" >&2
