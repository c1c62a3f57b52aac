#!/usr/bin/env bash
# Fills the directory a VM gets: the release binary, a bundle (our conflist, loopback conf and
# AppArmor profile, the real loopback plugin, a labelled placeholder for the NSX plugin), the
# systemd units and the scenario scripts.
# Usage: make-share.sh SHARE_DIR
set -euo pipefail
SHARE=$1
REPO=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$SHARE"
mkdir -p "$SHARE/bundle/opt/cni/bin" "$SHARE/bundle/etc/cni/net.d" "$SHARE/bundle/etc/apparmor.d" "$SHARE/units"
cp "$REPO/target/x86_64-unknown-linux-gnu/release/ncp-bootstrap" "$SHARE/"
cp "$REPO/distro/cni/10-nsx.conflist" "$REPO/distro/cni/99-loopback.conf" "$SHARE/bundle/etc/cni/net.d/"
cp "$REPO/distro/ubuntu/apparmor/ncp-apparmor" "$SHARE/bundle/etc/apparmor.d/"
cp /usr/lib/cni/loopback "$SHARE/bundle/opt/cni/bin/loopback"
cp /usr/lib/cni/portmap "$SHARE/bundle/opt/cni/bin/portmap"
printf '#!/bin/sh\n# placeholder for the NSX CNI plugin (ships with NCP releases)\nexit 0\n' > "$SHARE/bundle/opt/cni/bin/nsx"
chmod 755 "$SHARE/bundle/opt/cni/bin/"*
cp "$REPO"/units/systemd/*.service "$SHARE/units/"
cp "$REPO"/vagrant/scenarios/*.sh "$SHARE/"
