#!/usr/bin/env bash
# make packages: the host packages an operator installs, built offline from the static release
# binary (make build) with the pinned cargo-deb and cargo-generate-rpm (make setup-packages):
#   target/packages/ncp-bootstrap_<version>_amd64.deb    Debian, Ubuntu
#   target/packages/ncp-bootstrap-<version>.x86_64.rpm   RHEL and its rebuilds
# Each carries the binary, the systemd units (nothing enabled or started by installing), the
# README, and the bundle under /usr/share/ncp-bootstrap/bundle: the NCP release's plugin and
# conflist from bundle/ when they are there, or the marked demo bundle, as `make image` stages
# it, with the loopback and portmap plugins of containernetworking-plugins.
# NCPB_DEB_VERSION builds the .deb under another version, NCPB_PACKAGES_OUT puts the packages
# elsewhere, NCPB_PACKAGES_ONLY=deb skips the .rpm (the VM test's upgrade package).
# Usage: packages.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/packages
DEST=${NCPB_PACKAGES_OUT:-$OUT}
TRIPLE=x86_64-unknown-linux-gnu
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
fail() { echo "packages: $*" >&2; exit 2; }

# The bundle as the image carries it (checked there: a release bundle complete, never the
# placeholder conflist), plus the plugins the image takes from its Debian base.
bash units/container/build-image.sh --stage >/dev/null
rm -rf "$OUT/bundle"
mkdir -p "$OUT"
cp -a target/image/bundle "$OUT/bundle"
for plugin in loopback portmap; do
  [ -f "$OUT/bundle/opt/cni/bin/$plugin" ] && continue
  [ -x "/usr/lib/cni/$plugin" ] || fail "/usr/lib/cni/$plugin is missing: make setup-packages installs containernetworking-plugins"
  install -m 0755 "/usr/lib/cni/$plugin" "$OUT/bundle/opt/cni/bin/$plugin"
done
# Every top-level file of the bundle is packaged by one glob; this one makes sure it matches.
kind=release
[ -e "$OUT/bundle/DEMO-BUNDLE" ] && kind=demo
printf 'The CNI bundle ncp-bootstrap installs from (%s bundle); see the README.\n' "$kind" >"$OUT/bundle/BUNDLE"

mkdir -p "$DEST"
rm -f "$DEST"/*.deb "$DEST"/*.rpm
cargo deb --no-build --no-strip --target "$TRIPLE" --output "$DEST/" \
  ${NCPB_DEB_VERSION:+--deb-version "$NCPB_DEB_VERSION"} >/dev/null
[ "${NCPB_PACKAGES_ONLY:-}" = deb ] || cargo generate-rpm --target "$TRIPLE" --output "$DEST/" >/dev/null
for p in "$DEST"/*.deb "$DEST"/*.rpm; do
  [ -e "$p" ] || continue
  echo "packages: $p $(du -k "$p" | cut -f1) KiB ($kind bundle)"
done

# Both packages checked with their own tools (dpkg-deb; Debian's rpm, as no RHEL is at hand):
# the same files (the .deb's units under /lib, the .rpm's under /usr/lib; Debian's copyright
# file only in the .deb), the binary executable, and the scripts that stop, disable and restart.
[ "${NCPB_PACKAGES_ONLY:-}" = deb ] && exit 0
deb=$(ls "$DEST"/*.deb) rpm=$(ls "$DEST"/*.rpm)
deb_listing=$(dpkg-deb -c "$deb")
deb_files=$(awk '$1 !~ /^d/ {sub(/^\./, "", $6); print $6}' <<<"$deb_listing" |
  sed 's#^/lib/systemd/#/usr/lib/systemd/#' | grep -vx /usr/share/doc/ncp-bootstrap/copyright | sort)
rpm_files=$(rpm -qpl "$rpm" 2>/dev/null | sort)
if [ "$deb_files" != "$rpm_files" ]; then
  diff <(echo "$deb_files") <(echo "$rpm_files") >&2 || true
  fail "the .deb and the .rpm carry different files"
fi
grep -q '^-rwxr-xr-x .* ./usr/bin/ncp-bootstrap$' <<<"$deb_listing" || fail "$deb: /usr/bin/ncp-bootstrap is not 0755"
rpm_modes=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$rpm" 2>/dev/null)
grep -qx -- '-rwxr-xr-x /usr/bin/ncp-bootstrap' <<<"$rpm_modes" ||
  fail "$rpm: /usr/bin/ncp-bootstrap is not 0755"
scripts=$(rpm -qp --scripts "$rpm" 2>/dev/null)
for want in 'postinstall scriptlet' 'preuninstall scriptlet' 'postuninstall scriptlet' 'try-restart' 'disable $UNITS' 'still prepared'; do
  grep -qF "$want" <<<"$scripts" || fail "$rpm: its scriptlets lack \"$want\""
done
ctrl=$(mktemp -d)
dpkg-deb -e "$deb" "$ctrl"
for want in 'postinst:try-restart' 'prerm:disable $UNITS' 'prerm:still prepared' 'postrm:daemon-reload'; do
  grep -qF "${want#*:}" "$ctrl/${want%%:*}" || { rm -rf "$ctrl"; fail "$deb: its ${want%%:*} lacks \"${want#*:}\""; }
done
rm -rf "$ctrl"
echo "packages: the .deb and the .rpm carry the same $(wc -l <<<"$rpm_files") files; scripts checked"
