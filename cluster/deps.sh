#!/usr/bin/env bash
# Install the Debian packages the local cluster needs, skipping what is already there.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

packages=(
  containerd runc containernetworking-plugins etcd-server  # the node and its store
  iptables iproute2 socat conntrack                        # networking, port-forward
  busybox-static debootstrap gcc libc6-dev binutils file   # images (pause, busybox, manager)
  openssl ca-certificates curl                             # certificates, probes
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  need_root
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Waits (up to KDIAG_APT_LOCK_TIMEOUT s, default 600) while another apt/dpkg holds its lock.
  bash "$REPO/scripts/apt-get.sh" update -qq
  bash "$REPO/scripts/apt-get.sh" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's packages start their own services where they can; this cluster runs its
  # own containerd and etcd, so stop the packaged ones if an init script started them.
  for svc in containerd etcd; do
    if [[ -x /etc/init.d/$svc ]] && ! command -v systemctl >/dev/null; then
      /etc/init.d/$svc stop >/dev/null 2>&1 || true
    fi
  done
fi
command -v go >/dev/null || die "Go (>= 1.24) is required to build Kubernetes and the test app"
