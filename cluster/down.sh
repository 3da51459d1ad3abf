#!/usr/bin/env bash
# Tear kdiag's local test cluster down and leave nothing behind: no process, mount,
# network namespace, veth, bridge, iptables rule, cgroup or containerd/kubelet/etcd state.
# Keeps the cache (.cluster/bin, images, cache) and the component logs (.cluster/logs).
# Idempotent: safe to run when nothing (or half a cluster) is running.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
need_root
lock

# running PID: the process exists and is not a zombie waiting for its parent to reap it
running() { [[ -r /proc/$1/stat ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

# stop NAME...: TERM the components we started, KILL those still running after 10 s
stop() {
  local name pid pids=() i
  for name in "$@"; do
    if pid=$(pid_of "$name"); then
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$RUN/pids/$name".{pid,cmd}
  done
  local alive
  for i in $(seq 100); do
    alive=0
    for pid in "${pids[@]}"; do running "$pid" && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if running "$pid"; then log "killing pid $pid"; kill -KILL "$pid" 2>/dev/null || true; fi
  done
  sleep 0.2
}

# Processes started from this state folder that are not (or no longer) in a pid file:
# container shims, a component whose pid file was lost. Matched by their command line
# naming our state folder, so nothing else on the machine is touched.
strays() {
  local p cmd
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $p == "$$" ]] && continue
    cmd=$( { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null) || continue
    [[ $cmd == *"$RUN/"* || $cmd == *"$BIN/"* ]] && echo "$p"
  done
  return 0
}

# 1. The kubelet first, so it does not restart what we remove next.
stop kubelet

# 2. Every pod through the CRI (StopPodSandbox → CNI DEL: veth, IP, portmap rules).
if pid_of containerd >/dev/null && [[ -S $CONTAINERD_SOCK ]]; then
  log "removing pods through the CRI"
  timeout 120 "$BIN/kube" cri-cleanup --endpoint "unix://$CONTAINERD_SOCK" 2>&1 | sed 's/^/  /' >&2 ||
    log "cri-cleanup failed; removing what is left by hand"
fi

# 3. The rest, in reverse start order.
stop containerd
stop coredns kube-proxy
stop kube-scheduler kube-controller-manager kube-apiserver
stop etcd

# 4. Anything still running from our folder (shims of pods the CRI could not remove) and
# any process left in the pods' cgroup tree (containers whose shim died).
mapfile -t left < <(strays; cat /sys/fs/cgroup/*/"$CGROUP_ROOT"/cgroup.procs \
  $(find /sys/fs/cgroup/ -path "*/$CGROUP_ROOT/*" -name cgroup.procs 2>/dev/null) 2>/dev/null | sort -u)
if ((${#left[@]})); then
  log "killing leftover processes: ${left[*]}"
  kill -KILL "${left[@]}" 2>/dev/null || true
  sleep 0.5
fi

# Shim sockets: containerd 1.6 puts them in /run/containerd/s/, named by the sha256 of
# "<containerd address>/<namespace>/<task id>"; a killed shim leaves its socket behind.
for task in "$RUN"/containerd/state/io.containerd.runtime.v2.task/*/*; do
  [[ -d $task ]] || continue
  ns=$(basename "$(dirname "$task")")
  hash=$(printf '%s' "$CONTAINERD_SOCK/$ns/$(basename "$task")" | sha256sum | cut -d' ' -f1)
  rm -f "/run/containerd/s/$hash"
done
# Shim sockets nobody listens on any more (their shim was killed, their state folder is gone:
# a cluster whose processes died without cluster-down). A live one is never touched.
if [[ -d /run/containerd/s ]]; then
  find /run/containerd/s -maxdepth 1 -type s -print0 | python3 -c '
import errno, os, socket, sys
for path in filter(None, sys.stdin.buffer.read().split(b"\0")):
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            os.unlink(path)
    finally:
        probe.close()
'
fi

# 5. Mounts under our folder (container rootfs, netns, shm, kubelet volumes), deepest first.
for i in 1 2 3; do
  mapfile -t mounts < <(awk -v p="$STATE/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  ((${#mounts[@]})) || break
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
done

# 6. Network: pod veths (their netns are gone once unmounted), the bridge, the CNI plugins'
# iptables rules of this cluster (its network name, bridge or pod subnet: other CNI users of the
# machine keep theirs) and the CNI chains left empty by that, kube-proxy's chains, ip_forward
# and bridge-nf-call-iptables as they were.
if ip link show "$BRIDGE" >/dev/null 2>&1; then
  for veth in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$veth" 2>/dev/null || true
  done
  log "removing bridge $BRIDGE"
  ip link del "$BRIDGE"
fi
for ipt in iptables ip6tables; do
  command -v $ipt-save >/dev/null || continue
  for table in nat filter mangle; do
    { $ipt-save -t $table 2>/dev/null || true; } | { grep '^-A ' || true; } |
      { grep -F -e 'name: \"kdiag\"' -e "$BRIDGE" -e "${POD_SUBNET%/*}" || true; } |
      sed 's/^-A/-D/' | while read -r rule; do eval "$ipt -t $table $rule" 2>/dev/null || true; done
    # -X refuses chains that still hold rules or are jumped to: those are someone else's.
    for chain in $($ipt-save -t $table 2>/dev/null | awk '/^:CNI-/ {print substr($1, 2)}'); do
      $ipt -t $table -X "$chain" 2>/dev/null || true
    done
  done
done
# kube-proxy's chains (KUBE-*) and the jumps into them from the built-in chains, unless a
# kube-proxy of someone else runs here (ours is stopped by now): those chains would be its.
# Not `kube-proxy --cleanup`: that also flushes every IPVS rule of the machine.
other_kube_proxy=$(for p in /proc/[0-9]*; do
  cmd=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
  if [[ " $cmd" =~ ^\ ([^ ]*/)?kube(-proxy\ |\ kube-proxy\ ) ]]; then echo "${p#/proc/}"; break; fi
done)
if [[ -n $other_kube_proxy ]]; then
  log "another kube-proxy runs on this machine (pid $other_kube_proxy); leaving the KUBE-* chains to it"
else
  for ipt in iptables ip6tables; do
    command -v $ipt-save >/dev/null || continue
    for table in nat filter mangle; do
      { $ipt-save -t $table 2>/dev/null || true; } | { grep -E '^-A .* -[jg] KUBE-' || true; } |
        { grep -v '^-A KUBE-' || true; } |
        sed 's/^-A/-D/' | while read -r rule; do eval "$ipt -t $table $rule" 2>/dev/null || true; done
      chains=$( { $ipt-save -t $table 2>/dev/null || true; } | awk '/^:KUBE-/ {print substr($1, 2)}')
      [[ -z $chains ]] || log "removing kube-proxy's $ipt chains in table $table"
      for chain in $chains; do $ipt -t $table -F "$chain" 2>/dev/null || true; done
      for chain in $chains; do $ipt -t $table -X "$chain" 2>/dev/null || true; done
    done
  done
fi
if [[ -f $RUN/ip_forward.orig ]]; then
  sysctl -qw net.ipv4.ip_forward="$(<"$RUN/ip_forward.orig")"
fi
if [[ -f $RUN/bridge-nf-call-iptables.orig ]]; then
  sysctl -qw net.bridge.bridge-nf-call-iptables="$(<"$RUN/bridge-nf-call-iptables.orig")"
fi

# 7. Cgroups of pods (cgroupRoot) — only empty ones can go; deepest first.
for ctrl in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
  [[ -d $ctrl$CGROUP_ROOT ]] || continue
  find "$ctrl$CGROUP_ROOT" -depth -type d -exec rmdir {} + 2>/dev/null || true
done

# 8. Files the kubelet writes outside its root dir: links to our pod logs.
if [[ -d /var/log/containers ]]; then
  find /var/log/containers -maxdepth 1 -type l -lname "$STATE/*" -delete
  rmdir /var/log/containers 2>/dev/null || true
fi

# Paths kubelet 1.34 and containerd 1.6 hard-code outside their configured directories
# (device-plugin socket; shim sockets, client FIFOs): remove ours, then empty directories.
rm -f /var/lib/kubelet/device-plugins/kubelet.sock
for d in /var/lib/kubelet/device-plugins /var/lib/kubelet /run/containerd/s /run/containerd/fifo \
  /run/containerd/runc /run/containerd; do
  rmdir "$d" 2>/dev/null || true
done

# 9. State. After the steps above nothing should hold it; refuse to delete through a mount.
if [[ -d $RUN ]]; then
  if awk -v p="$RUN/" 'index($5, p) == 1 {found=1} END {exit !found}' /proc/self/mountinfo; then
    die "something is still mounted under $RUN; see: grep $RUN /proc/self/mountinfo"
  fi
  rm -rf "$RUN"
fi
rm -f "$KUBECONFIG_ADMIN"
bash "$here/check-clean.sh"
