#!/usr/bin/env bash
# Builds the Debian 12 guest the VM tests boot, from Debian's packages only: a raw ext4 root
# filesystem plus the kernel and initrd to boot it with qemu -kernel (no bootloader).
# Usage: build-image.sh OUT_DIR        (about two minutes; needs root and mmdebstrap)
# Packages come from this machine's own apt sources (mmdebstrap uses them when no mirror is
# given and the suite matches), so the guest is built from exactly the Debian packages here.
set -euo pipefail
OUT=${1:?usage: build-image.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
# The image is rebuilt when this script changes (its hash names the build).
STAMP=$(sha256sum "$0" | cut -c1-16)
if [ -f "$OUT/rootfs.img" ] && [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ] && [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$STAMP" ]; then
  echo "image: reusing $OUT"; exit 0
fi
ROOTFS=$(mktemp -d /tmp/ncpb-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
PKGS=linux-image-amd64,initramfs-tools,systemd-sysv,udev,kmod,dbus,openvswitch-switch,apparmor,ifupdown,iproute2,iputils-ping,procps,e2fsprogs,netbase,util-linux,network-manager,openssh-server,isc-dhcp-client,rsync,netplan.io,systemd-resolved,podman,crun,conmon,catatonit,containernetworking-plugins
mmdebstrap --variant=minbase --include="$PKGS" \
  --customize-hook='echo ncpb-vm > "$1/etc/hostname"' \
  --customize-hook='chroot "$1" passwd -d root' \
  --customize-hook='mkdir -p "$1/mnt/host"' \
  --customize-hook='printf "/dev/vda / ext4 rw 0 1\nhost0 /mnt/host 9p trans=virtio,version=9p2000.L,nofail 0 0\n" > "$1/etc/fstab"' \
  --customize-hook='printf "auto lo\niface lo inet loopback\n\n# The management NIC (qemu user-mode, restricted): left without an address.\nauto eth0\niface eth0 inet manual\n\n# node-if: the NIC on the NSX logical switch (a tap to the host-side peer). Its address is\n# set by hand (as on an NCP node before ncp-bootstrap): only persist keeps it.\nauto eth1\niface eth1 inet manual\n" > "$1/etc/network/interfaces"' \
  --customize-hook='printf "# The management NIC takes no router advertisements from qemu: its routes stay fixed.\nnet.ipv6.conf.eth0.accept_ra = 0\nnet.ipv6.conf.eth0.autoconf = 0\n" > "$1/etc/sysctl.d/90-management-nic.conf"' \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true' \
  --customize-hook='echo openvswitch >> "$1/etc/modules"' \
  --customize-hook='chroot "$1" systemctl disable NetworkManager NetworkManager-wait-online >/dev/null 2>&1 || true' \
  bookworm "$ROOTFS"
cp "$ROOTFS"/boot/vmlinuz-* "$OUT/vmlinuz"
cp "$ROOTFS"/boot/initrd.img-* "$OUT/initrd.img"
mkfs.ext4 -q -F -L root -d "$ROOTFS" "$OUT/rootfs.img.tmp" 3G
mv "$OUT/rootfs.img.tmp" "$OUT/rootfs.img"
echo "$STAMP" > "$OUT/stamp"
echo "image: built in $OUT"
