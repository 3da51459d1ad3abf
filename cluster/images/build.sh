#!/usr/bin/env bash
# Build the cluster's images as OCI archives under .cluster/images/ (no Docker):
#   kdiag.local/pause:dev    the pod sandbox process (cluster/images/pause/pause.c, static)
#   kdiag.local/busybox:dev  Debian's busybox-static with its applet links (debug containers)
#   kdiag.local/testapp:dev  cluster/testapps/testapp, an image holding only its binary
#   kdiag.local/manager:dev  built from the repository's Dockerfile (also tagged with kdiag's
#                            version, kdiag's default image reference)
# Each archive is cached under a key made from its inputs; unchanged inputs are not rebuilt.
# Usage: build.sh [IMAGE...]   (default: all; KDIAG_CLUSTER_IMAGES overrides the default)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

out=$STATE/images
mkdir -p "$out"
OCIBUILD=(python3 "$here/ocibuild.py")
read -r -a wanted <<<"${*:-${KDIAG_CLUSTER_IMAGES:-pause busybox testapp manager}}"

hash_of() { # hash_of FILE... → short sha256 of the files' names and contents
  local f
  for f in "$@"; do printf '%s\0' "$f"; cat "$f"; done | sha256sum | cut -c1-16
}

# publish NAME KEY: link .cluster/images/NAME.tar to the archive for KEY, drop older ones
publish() {
  ln -sfn "$1-$2.tar" "$out/$1.tar"
  find "$out" -maxdepth 1 -name "$1-*.tar" ! -name "$1-$2.tar" -delete
}

build_pause() {
  local key; key=$(hash_of "$here/pause/pause.c" "$here/build.sh" "$here/ocibuild.py" "$(command -v gcc)")
  [[ -f $out/pause-$key.tar ]] || {
    command -v gcc >/dev/null || die "gcc is not installed"
    local root; root=$(mktemp -d); trap 'rm -rf "$root"' RETURN
    gcc -O2 -static -Wall -Wextra -Werror -o "$root/pause" "$here/pause/pause.c"
    strip "$root/pause"
    "${OCIBUILD[@]}" rootfs "$root" --name kdiag.local/pause:dev --entrypoint '["/pause"]' \
      --out "$out/pause-$key.tar"
  }
  publish pause "$key"
}

build_busybox() {
  local bb=/bin/busybox
  [[ -x $bb ]] && "$bb" --list >/dev/null 2>&1 && file -L "$bb" 2>/dev/null | grep -q 'statically linked' ||
    die "$bb is not Debian's busybox-static (apt-get install busybox-static)"
  local key; key=$(hash_of "$bb" "$here/build.sh" "$here/ocibuild.py")
  [[ -f $out/busybox-$key.tar ]] || {
    local root; root=$(mktemp -d); trap 'rm -rf "$root"' RETURN
    mkdir -p "$root/bin" "$root/tmp" "$root/etc"
    cp "$bb" "$root/bin/busybox"
    local applet
    for applet in $("$bb" --list); do
      [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    "${OCIBUILD[@]}" rootfs "$root" --name kdiag.local/busybox:dev --cmd '["/bin/sh"]' \
      --out "$out/busybox-$key.tar"
  }
  publish busybox "$key"
}

build_testapp() {
  local src=$CLUSTER_DIR/testapps
  local sources key
  mapfile -t sources < <(find "$src" -type f \( -name '*.go' -o -name go.mod \) | sort)
  key=$( { hash_of "${sources[@]}" "$here/build.sh" "$here/ocibuild.py"; go version; } | sha256sum | cut -c1-16)
  [[ -f $out/testapp-$key.tar ]] || {
    local root; root=$(mktemp -d); trap 'rm -rf "$root"' RETURN
    (cd "$src" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$root/testapp" ./testapp)
    "${OCIBUILD[@]}" rootfs "$root" --name kdiag.local/testapp:dev --entrypoint '["/testapp"]' \
      --out "$out/testapp-$key.tar"
  }
  publish testapp "$key"
}

build_manager() {
  # The Dockerfile builds `enter` itself; it caches every step, and the archive. The image is
  # tagged twice: :dev (what the tests name) and kdiag's version (kdiag's default reference,
  # kdiag.local/manager:VERSION, so a plain `kdiag` finds it on this cluster).
  local version
  version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO/kdiag/__init__.py")
  [[ -n $version ]] || die "no __version__ in kdiag/__init__.py"
  "${OCIBUILD[@]}" dockerfile --file "$REPO/Dockerfile" --context "$REPO" \
    --name kdiag.local/manager:dev --name "kdiag.local/manager:$version" \
    --cache "$STATE/cache/manager" --out "$out/manager-dockerfile.tar"
  ln -sfn manager-dockerfile.tar "$out/manager.tar"
  find "$out" -maxdepth 1 -name 'manager-*.tar' ! -name manager-dockerfile.tar -delete
}

for image in "${wanted[@]}"; do
  case $image in
    pause | busybox | testapp | manager) "build_$image" ;;
    *) die "unknown image $image (known: pause busybox testapp manager)" ;;
  esac
done
ready=()
for link in "$out"/*.tar; do [[ -L $link ]] && ready+=("${link##*/}"); done
log "images ready: ${ready[*]}"
