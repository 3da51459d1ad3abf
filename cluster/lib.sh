# Shared settings and helpers for the cluster scripts (sourced, not run).
# shellcheck shell=bash
CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$CLUSTER_DIR/.." && pwd)
# Everything lives under the git-ignored .cluster/:
#   bin/ images/ cache/   build results, kept across cluster-down (the cache)
#   run/                  the running cluster (pki, kubeconfigs, etcd, containerd, kubelet,
#                         CNI state); cluster-down deletes it
#   logs/                 one log per component, kept after cluster-down for post-mortems
STATE=${KDIAG_CLUSTER_STATE:-$REPO/.cluster}
RUN=$STATE/run
LOGS=$STATE/logs
BIN=$STATE/bin
KUBECONFIG_ADMIN=$STATE/kubeconfig

NODE_NAME=kdiag-node
BRIDGE=kdiag0
POD_SUBNET=10.213.0.0/24
NODE_IP=10.213.0.1            # the bridge's address: kubelet serves here, pods route here
SERVICE_RANGE=10.214.0.0/24   # ClusterIPs; kube-proxy (iptables mode) makes them work
DNS_IP=10.214.0.10            # ClusterIP of kube-system/kube-dns → CoreDNS on NODE_IP:53
CLUSTER_DOMAIN=cluster.local
APISERVER_PORT=6443           # on NODE_IP only: the host and the pods reach it there
APISERVER_URL=https://$NODE_IP:$APISERVER_PORT
KUBE_PROXY_HEALTHZ_PORT=10256 # on 127.0.0.1; its metrics on 10249
COREDNS_READY_PORT=10055      # on 127.0.0.1 (tests use 18xxx ports for their own servers)
ETCD_PORT=12379
ETCD_PEER_PORT=12380
CGROUP_ROOT=kdiag             # /sys/fs/cgroup/<controller>/kdiag holds every pod
CONTAINERD_SOCK=$RUN/containerd/containerd.sock
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy coredns containerd kubelet)

log() { printf '[cluster %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

# lock: one up/down at a time per state folder (held until the script exits)
lock() {
  [[ -z ${KDIAG_CLUSTER_LOCKED:-} ]] || return 0  # up.sh running down.sh holds it already
  exec 9>"$STATE/.lock"
  flock -w 600 9 || die "another cluster-up/down holds $STATE/.lock"
  export KDIAG_CLUSTER_LOCKED=1
}

need_root() { [[ $EUID -eq 0 ]] || die "this needs root (containers, mounts, network)"; }

# pid_of NAME → the pid of a component we started, if it is still running
pid_of() {
  local f=$RUN/pids/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -d /proc/$pid ]] || return 1
  # Guard against pid reuse: the process must still be the one we started.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(<"$RUN/pids/$1.cmd")" || return 1
  echo "$pid"
}

mkdir -p "$STATE"
[[ -f $STATE/.gitignore ]] || printf '*\n' >"$STATE/.gitignore"
