#!/usr/bin/env bash
# Installs the system packages the build, tests and demo need (Debian/Ubuntu, apt-get).
# Only missing ones are installed, so a second run is quick.
set -euo pipefail

# tool -> package
declare -A NEED=(
  [dpkg-deb]=dpkg
  [rpm]=rpm
  [rpmbuild]=rpm
  [ip]=iproute2
  [unshare]=util-linux
  [apparmor_parser]=apparmor
  [ovs-vsctl]=openvswitch-switch
  [hyperfine]=hyperfine
  [ping]=iputils-ping
)
missing=()
for tool in "${!NEED[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${NEED[$tool]}")
done
# The real CNI loopback plugin (no command on PATH to probe).
[ -x /usr/lib/cni/loopback ] || missing+=(containernetworking-plugins)

if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "setup: installing ${pkgs[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
echo "setup: system packages present"
