#!/usr/bin/env bash
# Bring up kdiag's single-node test cluster from real components running as local
# processes, the way Kubernetes' hack/local-up-cluster.sh does: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kube-proxy (iptables), CoreDNS (cluster DNS),
# containerd (+ runc, CNI bridge) and kubelet.
#
# Idempotent: a healthy running cluster is left as it is; a partial one is torn down
# (cluster/down.sh) and started again. Binaries and images are built once and cached
# (cluster/build.sh, cluster/images/build.sh). Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
need_root
lock

start_time=$SECONDS

bash "$here/deps.sh"
bash "$here/build.sh"
bash "$here/images/build.sh"

# import_images: import every image archive containerd does not have yet (or has older).
import_images() {
  local link target stamp todo=()
  touch "$RUN/images.imported"
  for link in "$STATE"/images/*.tar; do
    [[ -L $link ]] || continue
    target=$(readlink -f "$link")
    stamp="$target $(stat -c %Y "$target")"
    grep -qxF "$stamp" "$RUN/images.imported" || todo+=("$link")
  done
  ((${#todo[@]})) || return 0
  log "importing images into containerd: ${todo[*]##*/}"
  python3 "$here/images/ocibuild.py" import --address "$CONTAINERD_SOCK" "${todo[@]}"
  for link in "${todo[@]}"; do
    target=$(readlink -f "$link")
    echo "$target $(stat -c %Y "$target")" >>"$RUN/images.imported"
  done
}

# ---------------------------------------------------------------- already up?
running=0
for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null && running=$((running + 1)); done
if ((running == ${#COMPONENTS[@]})); then
  log "cluster is already running; checking it"
  import_images
  python3 "$here/ready.py" --quick
  exit 0
elif ((running > 0)) || [[ -d $RUN ]]; then
  log "a previous cluster is partly there; cleaning it up first"
  bash "$here/down.sh"
fi

trap 'log "cluster-up FAILED; what started is left running for inspection (logs: $LOGS/); make cluster-down removes it"' ERR

# ---------------------------------------------------------------- preflight
# A cluster started from another checkout holds the same ports, bridge and cgroup. In CI
# (CI=true) or with KDIAG_CLUSTER_REPLACE=1 it is torn down; otherwise we stop and say so.
other_states() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
    [[ $cmd == *"/.cluster/run/"* ]] || continue
    cmd=${cmd%%/.cluster/run/*}  # "... --flag=/path/to/checkout"
    cmd=${cmd##* }
    echo "${cmd##*=}/.cluster"
  done | sort -u | grep -vxF "$STATE" || true
}
for other in $(other_states); do
  if [[ ${CI:-} == true || ${KDIAG_CLUSTER_REPLACE:-} == 1 ]]; then
    log "stopping the cluster of another checkout ($other)"
    KDIAG_CLUSTER_STATE=$other bash "$here/down.sh"
  else
    die "a kdiag cluster from another checkout is running ($other); stop it with" \
      "\`make -C ${other%/.cluster} cluster-down\` (or set KDIAG_CLUSTER_REPLACE=1)"
  fi
done
[[ $(stat -fc %T /sys/fs/cgroup) == tmpfs ]] && cgroup_v1=1 || cgroup_v1=0
for port in $APISERVER_PORT $ETCD_PORT $ETCD_PEER_PORT 10248 10250 10257 10259 \
  $KUBE_PROXY_HEALTHZ_PORT 10249 $COREDNS_READY_PORT; do
  if ss -Hltn "sport = :$port" | grep -q .; then
    die "port $port is already in use: $(ss -Hltnp "sport = :$port" | head -1)"
  fi
done
# CoreDNS serves on NODE_IP:53; a DNS server bound to all addresses would take it first.
if ss -Hlnu 'sport = :53' | awk '{print $4}' | grep -qE '^(0\.0\.0\.0|\*|\[::\]):53$'; then
  die "a DNS server listens on port 53 of every address: $(ss -Hlnup 'sport = :53' | head -1)"
fi
# pod → ClusterIP → pod on the same bridge: the reply is bridged, not routed, and only
# reaches iptables (where conntrack undoes kube-proxy's DNAT) with br_netfilter's sysctl on.
[[ -f /proc/sys/net/bridge/bridge-nf-call-iptables ]] ||
  die "net.bridge.bridge-nf-call-iptables is missing (kernel module br_netfilter not loaded):" \
    "Services cannot work between pods on the bridge without it; run modprobe br_netfilter"
# The bridge of a cluster whose processes are gone (killed, a machine whose processes were
# stopped without cluster-down): no cluster holds the ports checked above, so it is a leftover.
if ip link show "$BRIDGE" >/dev/null 2>&1; then
  log "network interface $BRIDGE is left from a cluster no longer running; removing leftovers"
  bash "$here/down.sh"
fi

mkdir -p "$RUN"/{pids,pki,etcd,containerd,kubelet,kube-proxy,coredns,cni/net.d,cni/ipam,apiserver} \
  "$LOGS" "$BIN"
cat >"$RUN/cluster.json" <<EOF
{"node_name": "$NODE_NAME", "node_ip": "$NODE_IP", "pod_subnet": "$POD_SUBNET",
 "service_range": "$SERVICE_RANGE", "dns_ip": "$DNS_IP", "cluster_domain": "$CLUSTER_DOMAIN",
 "apiserver_url": "$APISERVER_URL", "apiserver_port": $APISERVER_PORT, "etcd_port": $ETCD_PORT,
 "kube_proxy_healthz_port": $KUBE_PROXY_HEALTHZ_PORT, "coredns_ready_port": $COREDNS_READY_PORT,
 "containerd_sock": "$CONTAINERD_SOCK", "kubeconfig": "$KUBECONFIG_ADMIN"}
EOF
for c in "${COMPONENTS[@]}"; do
  [[ -f $LOGS/$c.log ]] && mv -f "$LOGS/$c.log" "$LOGS/$c.previous.log"
done

# ---------------------------------------------------------------- certificates
pki=$RUN/pki
openssl_quiet() { openssl "$@" 2>/dev/null; }
openssl_quiet genrsa -out "$pki/ca.key" 2048
openssl_quiet req -x509 -new -key "$pki/ca.key" -subj "/CN=kdiag-cluster-ca" -days 3650 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$pki/ca.crt"

# cert NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
cert() {
  local name=$1 subj=$2 eku=$3 san=${4:-}
  openssl_quiet genrsa -out "$pki/$name.key" 2048
  openssl_quiet req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -z $san ]] || echo "subjectAltName=$san"
  } >"$pki/$name.ext"
  openssl_quiet x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 3650 -extfile "$pki/$name.ext" -out "$pki/$name.crt"
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}
log "generating certificates and keys"
cert apiserver "/CN=kube-apiserver" serverAuth \
  "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$NODE_IP,IP:${SERVICE_RANGE%.*}.1"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
cert admin "/O=system:masters/CN=kdiag-admin" clientAuth
cert controller-manager "/CN=system:kube-controller-manager" clientAuth
cert scheduler "/CN=system:kube-scheduler" clientAuth
cert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
cert kubelet-server "/CN=$NODE_NAME" serverAuth "DNS:$NODE_NAME,IP:$NODE_IP"
cert kube-proxy "/CN=system:kube-proxy" clientAuth  # bound to system:node-proxier by default
cert coredns "/CN=system:coredns" clientAuth        # bound to system:coredns (addons below)
# Service-account token signing key pair (also signs TokenRequest tokens).
openssl_quiet genrsa -out "$pki/sa.key" 2048
openssl_quiet rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
chmod 600 "$pki"/*.key

# kubeconfig FILE USER_CERT_NAME
kubeconfig() {
  local b64='base64 -w0'
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kdiag
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $($b64 <"$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $($b64 <"$pki/$2.crt")
    client-key-data: $($b64 <"$pki/$2.key")
contexts:
- name: kdiag
  context: {cluster: kdiag, user: $2, namespace: default}
current-context: kdiag
EOF
  chmod 600 "$1"
}
for u in admin controller-manager scheduler kubelet-client kube-proxy coredns; do
  kubeconfig "$RUN/$u.kubeconfig" "$u"
done
cp "$RUN/admin.kubeconfig" "$KUBECONFIG_ADMIN"

# ---------------------------------------------------------------- processes
# start NAME MARKER COMMAND...: run COMMAND detached, log to logs/NAME.log, remember its pid.
# MARKER is a string of its command line that identifies the process later (pid reuse).
start() {
  local name=$1 marker=$2; shift 2
  log "starting $name"
  printf '%s' "$marker" >"$RUN/pids/$name.cmd"
  setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 9>&- &
  echo $! >"$RUN/pids/$name.pid"
}
wait_for() { python3 "$here/ready.py" --wait "$@"; }

# ---------------------------------------------------------------- network
# The bridge exists before the API server, CoreDNS and the kubelet start, so they can serve
# on the node address; the CNI bridge plugin adopts it. ip_forward and bridge-nf-call-iptables
# are restored by cluster-down.
sysctl -n net.ipv4.ip_forward >"$RUN/ip_forward.orig"
sysctl -qw net.ipv4.ip_forward=1
sysctl -n net.bridge.bridge-nf-call-iptables >"$RUN/bridge-nf-call-iptables.orig"
sysctl -qw net.bridge.bridge-nf-call-iptables=1
ip link add "$BRIDGE" type bridge
ip addr add "$NODE_IP/${POD_SUBNET#*/}" dev "$BRIDGE"
ip link set "$BRIDGE" up
cat >"$RUN/cni/net.d/10-kdiag.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "kdiag",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$RUN/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

# ---------------------------------------------------------------- etcd
start etcd "--data-dir $RUN/etcd" etcd --name kdiag --data-dir "$RUN/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "kdiag=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
  --snapshot-count 10000 --logger zap --log-level warn
wait_for etcd

# ---------------------------------------------------------------- control plane
# SizeBasedListCostEstimate (API priority and fairness sizing lists by stored bytes) is off:
# against etcd 3.4 its stats goroutines time out at shutdown and held cluster-down ~7 s.
start kube-apiserver "--cert-dir=$RUN/apiserver" "$BIN/kube-apiserver" \
  --cert-dir="$RUN/apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address="$NODE_IP" --secure-port="$APISERVER_PORT" --advertise-address="$NODE_IP" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$pki/ca.crt" \
  --kubelet-preferred-address-types=InternalIP \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range="$SERVICE_RANGE" \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true \
  --profiling=false \
  --feature-gates=SizeBasedListCostEstimate=false \
  --v=1
wait_for kube-apiserver

start kube-controller-manager "--kubeconfig=$RUN/controller-manager.kubeconfig" \
  "$BIN/kube-controller-manager" \
  --kubeconfig="$RUN/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$RUN/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$RUN/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --use-service-account-credentials=true \
  --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
  --controllers='*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle-controller' \
  --v=1
start kube-scheduler "--kubeconfig=$RUN/scheduler.kubeconfig" "$BIN/kube-scheduler" \
  --kubeconfig="$RUN/scheduler.kubeconfig" \
  --authentication-kubeconfig="$RUN/scheduler.kubeconfig" \
  --authorization-kubeconfig="$RUN/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --v=1

# ---------------------------------------------------------------- Services and DNS
# kube-proxy (iptables mode) makes ClusterIPs work: the `kubernetes` Service (the API server on
# NODE_IP), kube-dns, and every Service the tests make. It changes nothing machine-wide beyond
# its KUBE-* chains (removed by cluster-down): conntrack limits and route_localnet stay.
cat >"$RUN/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $RUN/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP                   # its node IP (it still waits for the Node object)
clusterCIDR: $POD_SUBNET                # traffic from outside it to a ClusterIP is masqueraded
nodePortAddresses: [$NODE_IP/32]
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0                          # lowering it needs CAP_SYS_RESOURCE
iptables:
  localhostNodePorts: false             # would set net.ipv4.conf.all.route_localnet=1
  syncPeriod: 30s
conntrack:                              # 0: leave the machine's conntrack settings alone
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
start kube-proxy "--config=$RUN/kube-proxy/config.yaml" "$BIN/kube-proxy" \
  --config="$RUN/kube-proxy/config.yaml" --v=1

# Cluster DNS as on kind, but CoreDNS runs as a process on the node: it serves NODE_IP:53, and
# the selectorless Service kube-system/kube-dns (ClusterIP DNS_IP, the kubelet's clusterDNS)
# points there. Names in CLUSTER_DOMAIN come from the API server; other names go to the
# host's resolver, and fail at once (SERVFAIL) while it does not answer, instead of hanging.
cat >"$RUN/addons.yaml" <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: kdiag-cluster}
addressType: IPv4
endpoints:
- addresses: [$NODE_IP]
  conditions: {ready: true}
  nodeName: $NODE_NAME
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
EOF
log "creating the kube-dns Service and CoreDNS's RBAC"
for i in $(seq 60); do  # kube-system appears a moment after the API server answers
  "$BIN/kubectl" --kubeconfig="$RUN/admin.kubeconfig" apply --server-side \
    --field-manager=kdiag-cluster -f "$RUN/addons.yaml" >"$RUN/addons.out" 2>&1 && break
  ((i < 60)) || die "kubectl apply -f $RUN/addons.yaml failed: $(cat "$RUN/addons.out")"
  sleep 0.5
done

forward="# no nameserver in /etc/resolv.conf: names outside $CLUSTER_DOMAIN are refused"
if grep -qE '^[[:space:]]*nameserver[[:space:]]' /etc/resolv.conf 2>/dev/null; then
  forward="forward . /etc/resolv.conf {
        max_fails 1
        failfast_all_unhealthy_upstreams
    }"
fi
cat >"$RUN/coredns/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    log
    ready 127.0.0.1:$COREDNS_READY_PORT
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $RUN/coredns.kubeconfig kdiag
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    $forward
    cache 5
    loadbalance
}
EOF
start coredns "-conf $RUN/coredns/Corefile" "$BIN/coredns" -conf "$RUN/coredns/Corefile"

# ---------------------------------------------------------------- containerd
cat >"$RUN/containerd/config.toml" <<EOF
version = 2
root = "$RUN/containerd/root"
state = "$RUN/containerd/state"
plugin_dir = ""
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$RUN/containerd/containerd.sock.ttrpc"
[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "$RUN/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "kdiag.local/pause:dev"
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  # This machine withholds CAP_SYS_RESOURCE: containers may not get a lower OOM score
  # than containerd (the sandbox default is -998), so clamp it as rootless setups do.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$RUN/containerd/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
EOF
# Every image is imported; nothing is ever pulled. A pull by mistake (a test naming an image
# we do not build) goes to a closed loopback port and fails at once, instead of reaching out.
start containerd "--config $RUN/containerd/config.toml" \
  env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
  http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 no_proxy= \
  containerd --config "$RUN/containerd/config.toml"
wait_for containerd

import_images

# ---------------------------------------------------------------- kubelet
# Pods live in their own cgroup tree (cgroupRoot), so cluster-down can remove all of it.
if ((cgroup_v1)); then
  for ctrl in /sys/fs/cgroup/*/; do
    [[ -L ${ctrl%/} || ! -f $ctrl/cgroup.procs ]] && continue
    mkdir -p "$ctrl$CGROUP_ROOT"
    if [[ -f $ctrl/cpuset.cpus ]]; then
      cat "$ctrl/cpuset.cpus" >"$ctrl$CGROUP_ROOT/cpuset.cpus"
      cat "$ctrl/cpuset.mems" >"$ctrl$CGROUP_ROOT/cpuset.mems"
    fi
  done
else
  mkdir -p "/sys/fs/cgroup/$CGROUP_ROOT"
fi

cat >"$RUN/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $pki/kubelet-server.crt
tlsPrivateKeyFile: $pki/kubelet-server.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
podLogsDir: $RUN/kubelet/pod-logs
resolvConf: ""            # pods get clusterDNS (dnsPolicy ClusterFirst), never the host's
clusterDNS: [$DNS_IP]
clusterDomain: $CLUSTER_DOMAIN
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
nodeStatusReportFrequency: 10s
syncFrequency: 10s
maxPods: 50
oomScoreAdj: 0            # lowering it needs CAP_SYS_RESOURCE, which this machine withholds
EOF
start kubelet "--root-dir=$RUN/kubelet" "$BIN/kubelet" \
  --root-dir="$RUN/kubelet" \
  --config="$RUN/kubelet/config.yaml" \
  --kubeconfig="$RUN/kubelet-client.kubeconfig" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
  --v=1

# ---------------------------------------------------------------- readiness
python3 "$here/ready.py"
log "cluster is up in $((SECONDS - start_time)) s; KUBECONFIG=$KUBECONFIG_ADMIN"
