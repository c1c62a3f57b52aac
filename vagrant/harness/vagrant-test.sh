#!/usr/bin/env bash
# `make vagrant-test`: the lifecycle scenario through Vagrant (vagrant-libvirt, qemu/TCG driver)
# on a local box made from the harness image, offline. libvirtd, its bridges and dnsmasq, and
# Vagrant itself run inside a network namespace this script creates and removes, so no traffic
# to a private address crosses this machine's own namespace.
# Usage: vagrant-test.sh        (root; vagrant, vagrant-libvirt, libvirt-daemon-system)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=$REPO/target/vagrant
IMG=$REPO/target/vm/image
NS=ncpb-vagrant-$$
mkdir -p "$WORK"
t0=$(date +%s)
bash "$HERE/build-image.sh" "$IMG"

# The box: the harness image with an ssh key for root, eth0 on DHCP (Vagrant's management
# network) and eth1 (node-if) left to the scenario. debugfs edits the ext4 image unmounted.
[ -f "$WORK/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$WORK/id_ed25519"
cp --sparse=always "$IMG/rootfs.img" "$WORK/root.raw"
printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n\n# node-if\nauto eth1\niface eth1 inet manual\n' > "$WORK/interfaces"
debugfs -w -R "mkdir /root/.ssh" "$WORK/root.raw" >/dev/null 2>&1 || true
debugfs -w -f - "$WORK/root.raw" >/dev/null 2>&1 <<DBG
cd /root/.ssh
write $WORK/id_ed25519.pub authorized_keys
cd /etc/network
rm interfaces
write $WORK/interfaces interfaces
DBG
mkdir -p "$WORK/box"
qemu-img convert -O qcow2 "$WORK/root.raw" "$WORK/box/box.img"
rm -f "$WORK/root.raw"
echo '{"provider":"libvirt","format":"qcow2","virtual_size":3}' > "$WORK/box/metadata.json"
tar -C "$WORK/box" -cf "$WORK/ncpb-debian12.box" metadata.json box.img

# What the guest gets: the same share as the qemu harness.
SHARE=$REPO/target/vm/share
bash "$HERE/make-share.sh" "$SHARE"

finish() {
  set +e
  (cd "$REPO/vagrant" && ip netns exec "$NS" env VAGRANT_HOME="$WORK/vagrant.d" NCPB_BOX=local NCPB_IMAGE="$IMG" NCPB_KEY="$WORK/id_ed25519" vagrant destroy -f) >/dev/null 2>&1
  ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null
  sleep 1
  ip netns del "$NS" 2>/dev/null
}
trap finish EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" virtlogd -d
ip netns exec "$NS" libvirtd -d
sleep 2
V() { (cd "$REPO/vagrant" && ip netns exec "$NS" env VAGRANT_HOME="$WORK/vagrant.d" NCPB_BOX=local NCPB_IMAGE="$IMG" NCPB_KEY="$WORK/id_ed25519" vagrant "$@"); }
ip netns exec "$NS" virsh -q pool-info default >/dev/null 2>&1 || {
  mkdir -p /var/lib/libvirt/images
  ip netns exec "$NS" virsh -q pool-define-as default dir --target /var/lib/libvirt/images
  ip netns exec "$NS" virsh -q pool-start default
}
V box add --force --name ncpb-debian12 "$WORK/ncpb-debian12.box"
t1=$(date +%s)
V up --provider libvirt
t2=$(date +%s)
# The libvirt network has no IPv6: NCPB_GATEWAY6 empty keeps the scenario to IPv4.
RUN="env NCPB_SHARE=/vagrant-share NCPB_UPLINK=eth1 NCPB_GATEWAY=192.168.76.1 NCPB_GATEWAY6= NCPB_DEFAULT_METRIC=50 sh /vagrant-share/lifecycle.sh"
V ssh -c "$RUN 1"
V reload
V ssh -c "$RUN 2"
t3=$(date +%s)
echo "vagrant-test: image+box $((t1 - t0)) s, vagrant up $((t2 - t1)) s, scenario with reload $((t3 - t2)) s, total $((t3 - t0)) s"
