#!/usr/bin/env bash
# Builds the stand-in for NSX's OVS kernel module that kmod.sh installs: no NSX module can be had
# here, so the kernel's own net/openvswitch (Debian's linux-source) is built against the guest
# kernel's headers with a MODULE_VERSION added. Like NSX's out-of-tree module it then carries a
# version and a srcversion, which the in-tree module (no MODULE_VERSION, and Debian builds
# without CONFIG_MODULE_SRCVERSION_ALL) does not: the two can be told apart as on an NSX node.
# Usage: build-kmod.sh IMAGE_DIR OUT_DIR   → OUT_DIR/<kernel release>/*.ko (cached by release)
# Needs linux-headers-<release> and linux-source-<major.minor> (scripts/setup-vm.sh installs them).
set -euo pipefail
IMAGE=${1:?usage: build-kmod.sh IMAGE_DIR OUT_DIR}
OUT=${2:?usage: build-kmod.sh IMAGE_DIR OUT_DIR}
REL=$(file -b "$IMAGE/vmlinuz" | sed -n 's/.*version \([^ ]*\) .*/\1/p')
[ -n "$REL" ] || { echo "build-kmod: no kernel release in $IMAGE/vmlinuz" >&2; exit 1; }
STAMP=$(cat "$0" | sha256sum | cut -c1-16)
if [ "$(cat "$OUT/$REL/stamp" 2>/dev/null)" = "$STAMP" ]; then
  echo "kmod: reusing $OUT/$REL"; exit 0
fi
HDR=/usr/src/linux-headers-$REL
SERIES=$(echo "$REL" | cut -d. -f1,2)
SRC=/usr/src/linux-source-$SERIES.tar.xz
for need in "$HDR/Makefile" "$SRC"; do
  [ -e "$need" ] || { echo "build-kmod: $need is missing: install linux-headers-$REL and linux-source-$SERIES (the guest kernel is $REL)" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/ncpb-kmod.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
tar -xJf "$SRC" -C "$WORK" --strip-components=1 "linux-source-$SERIES/net/openvswitch"
printf '\nMODULE_VERSION("0.0.0-ncpb-standin");\nMODULE_INFO(nsx_standin, "ncp-bootstrap test stand-in for the NSX OVS kernel module");\n' \
  >> "$WORK/net/openvswitch/datapath.c"
make -s -C "$HDR" M="$WORK/net/openvswitch" -j"$(nproc)" modules >"$WORK/build.log" 2>&1 \
  || { cat "$WORK/build.log" >&2; exit 1; }
rm -rf "$OUT/$REL"
mkdir -p "$OUT/$REL"
# Without debug info, as modules are installed (INSTALL_MOD_STRIP): 6.8 MB → well under 1 MB.
for ko in "$WORK"/net/openvswitch/*.ko; do strip --strip-debug -o "$OUT/$REL/$(basename "$ko")" "$ko"; done
echo "$STAMP" > "$OUT/$REL/stamp"
echo "kmod: built $(ls "$OUT/$REL" | grep -c '\.ko$') modules for $REL in $OUT/$REL"
