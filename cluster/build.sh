#!/usr/bin/env bash
# Build the bundled Kubernetes binary (.cluster/bin/kube) from cluster/go.mod,
# once: the result is cached under a key made from go.mod, go.sum, the Go
# sources, this script and the Go version, and reused while they are unchanged.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

k8s_version=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$here/go.mod")
[[ -n $k8s_version ]] || die "cannot find the k8s.io/kubernetes version in cluster/go.mod"

command -v go >/dev/null || die "go is not installed (need Go >= 1.24)"
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0

key=$( { cat "$here/go.mod" "$here/go.sum" "$here/build.sh"; find "$here/kube" -name '*.go' | sort | xargs cat; go version; } | sha256sum | cut -c1-16)
out="$STATE/bin/kube-$key"

if [[ -x $out ]]; then
  log "kube $k8s_version is cached ($out)"
else
  log "building kube $k8s_version (kube-apiserver, kubelet, kube-controller-manager, kube-scheduler); a cold build takes ~5 min on 2 cores"
  mkdir -p "$STATE/bin"
  rm -f "$STATE"/bin/kube-*.tmp
  v=${k8s_version#v}; major=${v%%.*}; minor=${v#*.}; minor=${minor%%.*}
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  start=$SECONDS
  (cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp" ./kube)
  mv "$out.tmp" "$out"
  log "built $out in $((SECONDS - start)) s"
  # Keep only the current build.
  find "$STATE/bin" -maxdepth 1 -name 'kube-*' ! -name "kube-$key" -type f -delete
fi
for c in kube-apiserver kubelet kube-controller-manager kube-scheduler; do
  ln -sfn "kube-$key" "$STATE/bin/$c"
done
ln -sfn "kube-$key" "$STATE/bin/kube"
