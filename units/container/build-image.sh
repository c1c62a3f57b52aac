#!/usr/bin/env bash
# make image: builds the ncp-bootstrap image with no network at all and saves it as an OCI
# archive, target/image/ncp-bootstrap.oci.tar.
#  1. The base is a Debian bookworm root filesystem made by mmdebstrap from this machine's apt
#     sources and units/container/packages, imported with `podman import`; it is rebuilt only
#     when that list or this script changes (their hash tags it).
#  2. The binary is the repository's static release build (make build: cargo --locked, glibc
#     linked in).
#  3. The CNI bundle is staged in target/image/bundle: the NCP release's plugin and conflist
#     from bundle/ (opt/cni/bin/nsx, etc/cni/net.d/10-nsx.conflist) when they are there, and a
#     demo bundle otherwise: the placeholder conflist of distro/cni, a plugin that does nothing,
#     and the DEMO-BUNDLE marker, which makes `install` refuse to roll it out unless
#     cni.allow_demo_bundle is set.
#  4. `podman build --network=none --pull=never` on units/container/Containerfile; file times
#     and the image's creation time come from SOURCE_DATE_EPOCH (the last commit's time).
# Usage: build-image.sh            (root, podman and mmdebstrap; `make image` installs them)
#        build-image.sh --stage    (step 3 only, after make build: the context for a build elsewhere)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=target/image
TRIPLE=x86_64-unknown-linux-gnu
BIN=target/$TRIPLE/release/ncp-bootstrap
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
TAG=${IMAGE_TAG:-localhost/ncp-bootstrap:$VERSION}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
mkdir -p "$OUT"

say() { echo "image: $*"; }
fail() { echo "image: $*" >&2; exit 2; }

check_binary() {
  [ -x "$BIN" ] || fail "$BIN is missing: run make build (make image does)"
  file -b "$BIN" | grep -Eq "static(-pie)? linked|statically linked" || fail "$BIN is not statically linked: run make build"
}

# The bundle as the image carries it: the NCP release's files, or a marked demo bundle.
stage_bundle() {
  local stage=$OUT/bundle nsx=bundle/opt/cni/bin/nsx conflist=bundle/etc/cni/net.d/10-nsx.conflist
  rm -rf "$stage"
  mkdir -p "$stage/opt/cni/bin" "$stage/etc/cni/net.d" "$stage/etc/apparmor.d"
  if [ -e "$nsx" ] || [ -e "$conflist" ]; then
    [ -f "$nsx" ] || fail "bundle/ has $conflist but not $nsx: add the NSX CNI plugin of the same NCP release"
    [ -f "$conflist" ] || fail "bundle/ has $nsx but not $conflist: add the conflist of the same NCP release"
    if cmp -s "$conflist" distro/cni/10-nsx.conflist; then
      fail "$conflist is the placeholder from distro/cni: use the conflist of the NCP release"
    fi
    cp -a bundle/. "$stage/"
    BUNDLE_KIND=release
  else
    cp distro/cni/10-nsx.conflist "$stage/etc/cni/net.d/"
    printf '#!/bin/sh\n# Demo bundle: not the NSX CNI plugin (that ships with NCP releases).\necho "nsx: demo bundle, no pod network" >&2\nexit 1\n' >"$stage/opt/cni/bin/nsx"
    chmod 0755 "$stage/opt/cni/bin/nsx"
    printf 'This bundle was built without the NCP release'"'"'s opt/cni/bin/nsx and\netc/cni/net.d/10-nsx.conflist: its plugin sets up no pod network.\n`ncp-bootstrap install` refuses it unless cni.allow_demo_bundle is set.\n' >"$stage/DEMO-BUNDLE"
    BUNDLE_KIND=demo
  fi
  [ -f "$stage/etc/cni/net.d/99-loopback.conf" ] || cp distro/cni/99-loopback.conf "$stage/etc/cni/net.d/"
  [ -f "$stage/etc/apparmor.d/ncp-apparmor" ] || cp distro/ubuntu/apparmor/ncp-apparmor "$stage/etc/apparmor.d/"
}

# The Debian base, imported once per package list.
build_base() {
  local key packages
  key=$(cat units/container/packages "$0" | sha256sum | cut -c1-12)
  BASE=localhost/ncp-bootstrap-base:bookworm-$key
  if podman image exists "$BASE"; then say "reusing base $BASE"; return; fi
  packages=$(grep -v '^#' units/container/packages | paste -sd, -)
  say "building base $BASE (mmdebstrap: $packages)"
  # Documentation, manuals and translations stay out; of containernetworking-plugins only the
  # loopback and portmap plugins are kept (the bundle's copies come from them).
  mmdebstrap --variant=minbase --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/lib/cni/*' --dpkgopt='path-include=/usr/lib/cni/loopback' \
    --dpkgopt='path-include=/usr/lib/cni/portmap' \
    --customize-hook='chroot "$1" dpkg-query -W -f="\${Package} \${Version}\n" > "$1/usr/share/ncp-bootstrap-packages.txt"' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    bookworm "$OUT/base.tar" 2>&1 | tail -n 3
  podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$OUT/base.tar" "$BASE" >/dev/null
  rm -f "$OUT/base.tar"
}

check_binary
stage_bundle
say "binary $BIN ($(du -h "$BIN" | cut -f1)), $BUNDLE_KIND bundle"
[ "${1:-}" = "--stage" ] && exit 0
build_base
# In a network namespace of its own, with nothing in it: the build cannot reach any network.
# chroot isolation runs the RUN steps without an OCI runtime, so the build also works where
# crun cannot (nested in a container that forbids setrlimit); the network it shares is that
# empty namespace.
unshare --net -- podman build -q --isolation=chroot --network=host --pull=never \
  --timestamp "$SOURCE_DATE_EPOCH" \
  --build-arg BASE="$BASE" --build-arg BUNDLE_KIND="$BUNDLE_KIND" \
  -f units/container/Containerfile -t "$TAG" . >/dev/null
rm -f "$OUT/ncp-bootstrap.oci.tar"
podman save -q --format oci-archive -o "$OUT/ncp-bootstrap.oci.tar" "$TAG"
ctr=$(podman create -q "$TAG")
podman cp "$ctr:/usr/share/ncp-bootstrap-packages.txt" "$OUT/packages.txt"
podman rm -f "$ctr" >/dev/null
echo "$TAG" >"$OUT/tag"
size=$(podman image inspect --format '{{.Size}}' "$TAG")
say "$TAG ($BUNDLE_KIND bundle): $((size / 1024 / 1024)) MiB uncompressed," \
  "archive $OUT/ncp-bootstrap.oci.tar $(du -m "$OUT/ncp-bootstrap.oci.tar" | cut -f1) MiB;" \
  "package versions in $OUT/packages.txt"
