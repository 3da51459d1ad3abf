#!/usr/bin/env bash
# Build the cluster's Go binaries, once each: the result is cached under a key made from
# its module's go.mod and go.sum, its Go sources, this script and the Go version, and
# reused while they are unchanged.
#   .cluster/bin/kube      Kubernetes v1.34 from cluster/go.mod: kube-apiserver,
#                          kube-controller-manager, kube-scheduler, kubelet, kube-proxy and
#                          kubectl in one binary (cluster/kube/main.go; symlinks name them)
#   .cluster/bin/coredns   CoreDNS from its own module (cluster/coredns/go.mod)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

command -v go >/dev/null || die "go is not installed (need Go >= 1.24)"
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0
mkdir -p "$BIN"

# build NAME MODULE_DIR PACKAGE WHAT LDFLAGS: go build MODULE_DIR/PACKAGE into bin/NAME-<key>
# unless that key is built already; bin/NAME links to the current build.
build() {
  local name=$1 dir=$2 pkg=$3 what=$4 ldflags=$5 key out start
  key=$( { cat "$dir/go.mod" "$dir/go.sum" "$here/build.sh"
           find "$dir/$pkg" -name '*.go' | sort | xargs cat; go version; } | sha256sum | cut -c1-16)
  out="$BIN/$name-$key"
  if [[ -x $out ]]; then
    log "$name is cached ($out)"
  else
    log "building $what"
    rm -f "$BIN/$name"-*.tmp
    start=$SECONDS
    (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "./$pkg")
    mv "$out.tmp" "$out"
    log "built $out in $((SECONDS - start)) s"
    # Keep only the current build.
    find "$BIN" -maxdepth 1 -name "$name-*" ! -name "$name-$key" -type f -delete
  fi
  ln -sfn "$name-$key" "$BIN/$name"
}

# module_version DIR MODULE → the version DIR/go.mod requires
module_version() {
  awk -v m="$2" '$1 == m {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$1/go.mod"
}

k8s_version=$(module_version "$here" k8s.io/kubernetes)
[[ -n $k8s_version ]] || die "cannot find the k8s.io/kubernetes version in cluster/go.mod"
v=${k8s_version#v}; major=${v%%.*}; minor=${v#*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
build kube "$here" kube "kube $k8s_version (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl); a cold build takes ~8 min on 2 cores" "$ldflags"
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  ln -sfn kube "$BIN/$c"
done

coredns_version=$(module_version "$here/coredns" github.com/coredns/coredns)
build coredns "$here/coredns" . "CoreDNS $coredns_version; a cold build takes ~2 min on 2 cores" "-s -w"
