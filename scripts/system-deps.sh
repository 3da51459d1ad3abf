#!/usr/bin/env bash
# Installs the Debian packages kdiag's node mode and its tests need, only when missing.
set -euo pipefail
need=()
command -v iptables >/dev/null || need+=(iptables)
command -v nft >/dev/null || need+=(nftables)  # tests list the manager's owned tables
command -v conntrack >/dev/null || need+=(conntrack)  # tests check forgotten connections
command -v ip >/dev/null || need+=(iproute2)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v nsenter >/dev/null || need+=(util-linux)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v zsh >/dev/null || need+=(zsh)    # the completion scripts' tests
command -v fish >/dev/null || need+=(fish)
command -v stress-ng >/dev/null || need+=(stress-ng)  # make bench: the busy throughput figure
command -v chromium >/dev/null || need+=(chromium)  # the HTML report's test, make docs
if [ ${#need[@]} -gt 0 ]; then
  echo "system-deps: installing ${need[*]}" >&2
  if [ "$(id -u)" != 0 ]; then echo "system-deps: need root to install ${need[*]}" >&2; exit 3; fi
  # Waits (up to KDIAG_APT_LOCK_TIMEOUT s, default 600) while another apt/dpkg holds its lock.
  apt=(bash "$(dirname "$0")/apt-get.sh")
  "${apt[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
