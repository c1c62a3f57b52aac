#!/usr/bin/env bash
# Installs what the VM harness needs: qemu (TCG), mmdebstrap, dnsmasq (the binary only,
# no service: the peer's DHCP server and router advertisements run in the peer's namespace), and
# the kernel headers and source that kmod.sh's stand-in for NSX's OVS module is built from
# (vagrant/harness/build-kmod.sh; the guest's kernel is linux-image-amd64 from the same apt lists). Debian 12's qemu-system-x86
# (7.2) installs only beside the qemu-utils of the same version, so that one is pinned
# (downgrading a newer preinstalled qemu-utils), as measured in ../shared/vm-notes.md.
set -euo pipefail
if command -v qemu-system-x86_64 >/dev/null && command -v mmdebstrap >/dev/null && command -v dnsmasq >/dev/null \
  && dpkg -s linux-headers-amd64 linux-source >/dev/null 2>&1; then
  echo "setup-vm: qemu, mmdebstrap, dnsmasq and the kernel's headers and source present"; exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
ver=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --allow-downgrades --no-install-recommends \
  qemu-system-x86 "qemu-utils=$ver" mmdebstrap dnsmasq-base linux-headers-amd64 linux-source >/dev/null
echo "setup-vm: installed qemu-system-x86 $ver, mmdebstrap, dnsmasq-base, linux-headers-amd64 and linux-source"
