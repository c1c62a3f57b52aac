#!/usr/bin/env bash
# make install-host / make uninstall-host: the binary, the NCP release's CNI bundle, the
# AppArmor profile and the systemd units on a host (or under DESTDIR, for packaging).
#   install-host.sh install BUNDLE DESTDIR PREFIX
#   install-host.sh uninstall "" DESTDIR PREFIX
set -euo pipefail
cd "$(dirname "$0")/.."
action=$1 bundle=$2 destdir=$3 prefix=$4

share="$destdir$prefix/share/ncp-bootstrap"
# Packages put units under the prefix; an administrator's install goes to /etc.
if [ -n "$destdir" ]; then units="$destdir$prefix/lib/systemd/system"; else units=/etc/systemd/system; fi
unit_names=(ncp-bootstrap.service ncp-ovs.service ncp-bootstrap-monitor.service ncp-bootstrap-cleanup.service)
# What the bundle must carry, as the host will see it (the code's cni::FILES).
bundle_files=(opt/cni/bin/nsx opt/cni/bin/loopback etc/cni/net.d/10-nsx.conflist etc/cni/net.d/99-loopback.conf)

if [ "$action" = uninstall ]; then
  # As a package removal does: the units stopped and disabled before their files go.
  if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
    systemctl stop "${unit_names[@]}" 2>/dev/null || true
    systemctl disable "${unit_names[@]}" >/dev/null 2>&1 || true
  fi
  rm -f "$destdir$prefix/bin/ncp-bootstrap"
  rm -rf "$share" "$destdir$prefix/share/doc/ncp-bootstrap"
  for u in "${unit_names[@]}"; do rm -f "$units/$u"; done
  [ -n "$destdir" ] || systemctl daemon-reload 2>/dev/null || true
  echo "uninstall-host: stopped and disabled the units; removed the binary, bundle, documentation and units ($units)"
  echo "uninstall-host: what ncp-bootstrap did on this node stays until 'ncp-bootstrap cleanup' (run it first)"
  exit 0
fi

# The NSX plugin and its conflist come only with an NCP release: never install the placeholder
# from distro/cni, and name everything that is missing at once.
if [ -z "$bundle" ]; then
  echo "install-host: NCP_BUNDLE is not set. Point it at the CNI bundle of the NCP release (a directory" >&2
  echo "  that mirrors the host: ${bundle_files[*]}), e.g. make install-host NCP_BUNDLE=/path/to/bundle" >&2
  exit 2
fi
missing=()
for f in "${bundle_files[@]}"; do
  [ -f "$bundle/$f" ] || missing+=("$bundle/$f")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-host: the bundle $bundle lacks: ${missing[*]}" >&2
  echo "  take them from the NCP release (the loopback plugin from containernetworking-plugins)" >&2
  exit 2
fi
if cmp -s "$bundle/etc/cni/net.d/10-nsx.conflist" distro/cni/10-nsx.conflist; then
  echo "install-host: $bundle/etc/cni/net.d/10-nsx.conflist is the placeholder from distro/cni;" >&2
  echo "  use the conflist of the NCP release" >&2
  exit 2
fi

install -D -m 0755 "${NCP_BIN:-target/x86_64-unknown-linux-gnu/release/ncp-bootstrap}" "$destdir$prefix/bin/ncp-bootstrap"
for f in "${bundle_files[@]}"; do
  mode=0644
  case "$f" in opt/cni/bin/*) mode=0755 ;; esac
  install -D -m "$mode" "$bundle/$f" "$share/bundle/$f"
done
# The release's AppArmor profile when its bundle carries one; the repository's otherwise.
profile=distro/ubuntu/apparmor/ncp-apparmor
[ -f "$bundle/etc/apparmor.d/ncp-apparmor" ] && profile=$bundle/etc/apparmor.d/ncp-apparmor
install -D -m 0644 "$profile" "$share/bundle/etc/apparmor.d/ncp-apparmor"
for u in "${unit_names[@]}"; do install -D -m 0644 "units/systemd/$u" "$units/$u"; done
install -D -m 0644 README.md "$destdir$prefix/share/doc/ncp-bootstrap/README.md"
[ -n "$destdir" ] || systemctl daemon-reload 2>/dev/null || true
echo "install-host: binary $destdir$prefix/bin/ncp-bootstrap, bundle $share/bundle, units in $units"
