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
  [ifquery]=ifupdown
  [netplan]=netplan.io
  [systemd-analyze]=systemd
)
missing=()
for tool in "${!NEED[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${NEED[$tool]}")
done
# The real CNI loopback plugin (no command on PATH to probe).
[ -x /usr/lib/cni/loopback ] || missing+=(containernetworking-plugins)
# Extra Debian packages named on the command line (make vagrant-test), when not installed.
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "setup: installing ${pkgs[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # Packages such as ifupdown and openvswitch-switch ship services; this machine's own network
  # must not be touched by them, so no service may start during the install.
  added_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  [ -z "$added_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi
# The Kubernetes schema validator (PyPI), pinned to a Kubernetes release's schemas.
if [ "$(python3 -c 'import kubernetes_validate; print(kubernetes_validate.__version__)' 2>/dev/null)" != 1.37.0 ]; then
  echo "setup: installing kubernetes-validate (pip)"
  python3 -m pip install -q --disable-pip-version-check kubernetes-validate==1.37.0 2>&1 | grep -v "Running pip as the 'root' user" || true
fi
python3 -c "import kubernetes_validate" 2>/dev/null || echo "setup: warning: kubernetes-validate did not install" >&2
# The JSON Schema validator for the report schema test (a kubernetes-validate dependency; made
# explicit so that the test does not rest on that).
if ! python3 -c "import jsonschema" >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check jsonschema 2>&1 | grep -v "Running pip as the 'root' user" || true
fi
echo "setup: system packages present"
