#!/usr/bin/env bash
# Boots the guest once (TCG: this machine's KVM cannot run stock kernels) and runs
# SHARE/run.sh inside it as root through systemd.run; the guest powers off when it ends.
# Usage: run-vm.sh IMAGE_DIR OVERLAY SHARE SERIAL_LOG NETNS [TIMEOUT_S]
# Two NICs, as on a node with a management NIC: eth0 on qemu's user-mode network with
# restrict=on (every packet stays inside qemu; the guest leaves it unconfigured), and eth1,
# node-if, a tap device in the network namespace NETNS, where the host-side peer lives (see
# vm-test.sh). qemu runs inside NETNS so the tap never exists in this machine's namespace.
set -euo pipefail
IMG=$1 OVERLAY=$2 SHARE=$3 SERIAL=$4 NETNS=$5 TIMEOUT=${6:-900}
[ -f "$OVERLAY" ] || qemu-img create -q -f qcow2 -b "$IMG/rootfs.img" -F raw "$OVERLAY"
RUN="/bin/sh -c 'mountpoint -q /mnt/host || mount -t 9p -o trans=virtio,version=9p2000.L host0 /mnt/host; exec sh /mnt/host/run.sh'"
timeout "$TIMEOUT" ip netns exec "$NETNS" qemu-system-x86_64 \
  -accel tcg,thread=multi -cpu max -smp 2 -m 1536 \
  -kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.img" \
  -append "root=/dev/vda rw console=ttyS0 net.ifnames=0 apparmor=1 security=apparmor systemd.run=\"$RUN\" systemd.run_success_action=poweroff systemd.run_failure_action=poweroff" \
  -drive file="$OVERLAY",if=virtio,format=qcow2,cache=unsafe \
  -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0 \
  -netdev tap,id=n1,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=n1 \
  -virtfs local,path="$SHARE",mount_tag=host0,security_model=none,id=fs0 \
  -display none -serial file:"$SERIAL" -monitor none -no-reboot
