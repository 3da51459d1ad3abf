#!/usr/bin/env bash
# Check that no trace of the local cluster is left on this machine (run after down.sh):
# processes, mounts, network namespaces, interfaces, iptables rules, cgroups, state.
# Prints every leftover and exits 1 if there is any.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

problems=()
leak() { problems+=("$*"); }

for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
  cmd=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
  [[ $cmd == *check-clean.sh* ]] && continue
  [[ $cmd == *"$RUN/"* || $cmd == *"$BIN/"* ]] && leak "process $pid: ${cmd:0:150}"
done
for c in "${COMPONENTS[@]}"; do
  pid_of "$c" >/dev/null 2>&1 && leak "process: $c is still running"
done
# Our binaries (kube-apiserver ... kube-proxy, kubectl, coredns) by executable, whatever their
# command line says.
for exe in /proc/[0-9]*/exe; do
  target=$(readlink "$exe" 2>/dev/null) || continue
  [[ $target == "$BIN/"* ]] || continue
  pid=${exe#/proc/}; pid=${pid%/exe}
  leak "process $pid: $target ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-100))"
done
while read -r m; do leak "mount: $m"; done < <(awk -v p="$STATE/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo)
while read -r ns; do leak "network namespace: $ns"; done < <(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}')
ip link show "$BRIDGE" >/dev/null 2>&1 && leak "interface: bridge $BRIDGE"
# The CNI bridge plugin names host-side veths veth<8 hex digits>.
while read -r ifc; do leak "interface: $ifc (CNI veth)"; done < <(ip -o link show type veth 2>/dev/null |
  awk -F': ' '{split($2, a, "@"); print a[1]}' | grep -E '^veth[0-9a-f]{8}$' || true)
ip -o route show "$POD_SUBNET" 2>/dev/null | grep -q . && leak "route: $POD_SUBNET"
for ipt in iptables ip6tables; do
  command -v "$ipt-save" >/dev/null || continue
  # Rules of this cluster's CNI network (its name, bridge or pod subnet), kube-proxy's and
  # the kubelet's chains and every jump to them.
  while read -r line; do leak "$ipt: $line"; done < <(
    "$ipt-save" 2>/dev/null | grep -E '^(:|-A )KUBE-|-j KUBE-' || true
    "$ipt-save" 2>/dev/null | grep '^-A ' |
      grep -F -e 'name: \"kdiag\"' -e "$BRIDGE" -e "${POD_SUBNET%/*}" || true)
done
for d in /sys/fs/cgroup/*/"$CGROUP_ROOT" /sys/fs/cgroup/"$CGROUP_ROOT"; do
  [[ -d $d ]] && leak "cgroup: $d"
done
[[ -e $RUN ]] && leak "state: $RUN"
[[ -e $KUBECONFIG_ADMIN ]] && leak "state: $KUBECONFIG_ADMIN"
for d in /var/lib/kubelet /var/lib/cni/networks/kdiag /var/run/kubernetes /run/containerd/runc/k8s.io \
  /run/containerd/io.containerd.runtime.v2.task/k8s.io; do
  [[ -e $d ]] && leak "state outside the folder: $d"
done
if [[ -d /run/containerd/s ]]; then
  while read -r s; do leak "containerd shim socket: $s"; done < <(find /run/containerd/s -type s 2>/dev/null)
fi
if [[ -d /var/log/containers ]]; then
  while read -r l; do leak "log link: $l"; done < <(find /var/log/containers -maxdepth 1 -lname "$STATE/*")
fi

if ((${#problems[@]})); then
  printf '[cluster] left behind after cluster-down:\n' >&2
  printf '  %s\n' "${problems[@]}" >&2
  exit 1
fi
log "clean: no cluster process, mount, netns, interface, iptables rule, cgroup or state left"
