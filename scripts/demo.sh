#!/usr/bin/env bash
# A sandboxed run of what exists so far: the CNI install against a temporary host root.
# Nothing outside the temporary directory is touched.
set -euo pipefail
BIN=$(realpath "${1:-target/release/ncp-bootstrap}")
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/ncp-bootstrap-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
HOST=$WORK/host BUNDLE=$WORK/bundle

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
nb() { echo "\$ ncp-bootstrap $*"; "$BIN" --host-root "$HOST" "$@" || echo "(exit $?)"; }

# The bundle: our sample conflist and loopback conf, the real loopback plugin, and a stand-in
# for the NSX plugin (the real one ships with NCP releases).
mkdir -p "$BUNDLE/opt/cni/bin" "$BUNDLE/etc/cni/net.d" "$BUNDLE/etc/apparmor.d"
cp "$REPO/distro/cni/10-nsx.conflist" "$REPO/distro/cni/99-loopback.conf" "$BUNDLE/etc/cni/net.d/"
cp /usr/lib/cni/loopback "$BUNDLE/opt/cni/bin/loopback"
printf '#!/bin/sh\necho "stand-in NSX CNI plugin"\n' > "$BUNDLE/opt/cni/bin/nsx"
chmod 755 "$BUNDLE/opt/cni/bin/"*
[ -f "$REPO/distro/ubuntu/apparmor/ncp-apparmor" ] && cp "$REPO/distro/ubuntu/apparmor/ncp-apparmor" "$BUNDLE/etc/apparmor.d/"

# The host: an older NSX CNI, and an operator's own loopback conf that must survive.
mkdir -p "$HOST/etc/cni/net.d" "$HOST/opt/cni/bin"
echo '{"cniVersion":"0.3.1","name":"nsx","plugins":[{"type":"nsx","nsxBuildVersion":"3.2.1.0.18562871"}]}' > "$HOST/etc/cni/net.d/10-nsx.conflist"
echo '{"cniVersion":"0.3.1","name":"operator-lo","type":"loopback"}' > "$HOST/etc/cni/net.d/99-loopback.conf"
printf 'old plugin\n' > "$HOST/opt/cni/bin/nsx"; chmod 755 "$HOST/opt/cni/bin/nsx"
before=$(cd "$HOST" && find . -printf '%p %m %s\n' | sort; find "$HOST" -type f -exec sha256sum {} + | sort)

say "status before: the host's CNI is older than the bundle (exit 1 = drift)"
nb status --bundle "$BUNDLE"
say "dry run: the plan, nothing changed"
nb cni --bundle "$BUNDLE" --dry-run
say "install"
nb install --bundle "$BUNDLE"
say "re-run: converged, writes nothing"
nb install --bundle "$BUNDLE"
say "status after"
nb status --bundle "$BUNDLE"
say "the ledger cleanup will follow"
cat "$HOST/var/lib/ncp-bootstrap/ledger.json"
say "cleanup"
nb cleanup
after=$(cd "$HOST" && find . -printf '%p %m %s\n' | sort; find "$HOST" -type f -exec sha256sum {} + | sort)
say "host after cleanup vs before"
if [ "$before" = "$after" ]; then echo "identical: every file, mode and byte is back"; else diff <(echo "$before") <(echo "$after"); exit 1; fi
