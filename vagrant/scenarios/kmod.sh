#!/bin/sh
# phases: 1 2
# needs: kmod
# NSX's OVS kernel module (ncp.ini use_nsx_ovs_kernel_module = True), with the stand-in the
# harness builds from Debian's linux-source (build-kmod.sh: the in-tree module with a
# MODULE_VERSION, so it has a srcversion the distribution's module lacks), in the bundle as
# kmod/<release>/*.ko.
# Phase 1: a bundle without the guest's kernel is refused with nothing changed -> install
#   killed at five moments (the host's switch stopped, a module file written, the tree indexed,
#   the in-tree module unloaded, ours loaded), each re-run converging and the key turned off
#   giving the in-tree module back with every file identical; cleanup then the whole node ->
#   ncp-ovs attached on the distribution's module -> the key turned on: a restart of the
#   bootstrap unit (ncp-ovs restarted with it) installs the module, defers, and ncp-ovs's start
#   swaps it under the attached uplink (the peer pinging every 10 ms) -> persist -> reboot.
# Phase 2: the boot loads NSX's module and ncp-ovs attaches on it -> cleanup -> the node,
#   /lib/modules included, identical to before, the in-tree module loaded again.
set -u
PHASE=$1
. "$(dirname "$0")/common.sh"
export NCP_BOOTSTRAP_CNI_BUNDLE=$S/bundle
REL=$(uname -r)
OURS=$(modinfo -F srcversion $S/bundle/kmod/$REL/openvswitch.ko)
loaded_src() { cat /sys/module/openvswitch/srcversion 2>/dev/null || echo none; }
modules_snapshot() { # every file of the kernel's module tree, and which openvswitch is loaded
  find /lib/modules/$REL -printf '%p %M\n' | sort
  find /lib/modules/$REL -type f -print0 | sort -z | xargs -0 sha256sum
  echo "openvswitch loaded: $(grep -c '^openvswitch ' /proc/modules), srcversion $(loaded_src)"
}
[ -n "$OURS" ] || fail "the stand-in module has no srcversion"
echo "kernel $REL; the bundle's openvswitch.ko: srcversion $OURS"

if [ "$PHASE" = 1 ]; then
  node_with_host_ovs
  wait_for 90 "openvswitch-switch.service active" systemctl is-active -q openvswitch-switch
  [ "$(loaded_src)" = none ] && grep -q '^openvswitch ' /proc/modules && ok "the in-tree openvswitch is loaded (no srcversion)" || fail "module before: $(loaded_src)"
  snapshot > $S/before.txt
  modules_snapshot > $S/modules-before.txt
  export NCP_BOOTSTRAP_OVS_NSX_KERNEL_MODULE=true

  # A bundle that does not cover this kernel: exit 2, nothing changed, the way out named.
  rm -rf /tmp/other && cp -r $S/bundle /tmp/other && mv /tmp/other/kmod/$REL /tmp/other/kmod/0.0.0-other
  $B install --bundle /tmp/other > $S/refused.txt 2>&1; rc=$?
  cat $S/refused.txt
  [ $rc = 2 ] && grep -q "running kernel $REL" $S/refused.txt && grep -q "covers 0.0.0-other" $S/refused.txt \
    && grep -q "use_nsx_ovs_kernel_module = False" $S/refused.txt && ok "a bundle without $REL refused (exit 2), naming both and the way out" || fail "refusal (exit $rc)"
  snapshot | diff -u $S/before.txt - && modules_snapshot | diff -u $S/modules-before.txt - \
    && ok "nothing changed by the refused install" || fail "the refused install changed the node"

  # kill -9 of install at five moments, each caught by a busy loop: the host's ovs-vswitchd
  # gone (systemd's stop job goes on without the killed run), the module's first file written,
  # the tree indexed, the in-tree module unloaded (before ours is loaded), ours loaded (before
  # the steps after it). Each re-run loads ours; then the key turned off (NCP's switch to the
  # upstream module) gives the in-tree module and an identical module tree back, and at the end
  # cleanup gives the whole node back.
  switch_gone() { ! pgrep -x ovs-vswitchd >/dev/null; }
  our_file() { [ -e /lib/modules/$REL/updates/nsx-ovs/openvswitch.ko ]; }
  indexed() { grep -q '^updates/nsx-ovs/openvswitch.ko:' /lib/modules/$REL/modules.dep; }
  unloaded() { [ ! -e /sys/module/openvswitch ]; }
  ours_loaded() { [ "$(cat /sys/module/openvswitch/srcversion 2>/dev/null)" = "$OURS" ]; }
  for moment in switch_gone our_file indexed unloaded ours_loaded; do
    $B -q install > $S/killed-$moment.txt 2>&1 & pid=$!
    while kill -0 $pid 2>/dev/null; do $moment && { kill -9 $pid; break; }; done
    wait $pid; rc=$?
    echo "install killed at '$moment' (exit $rc): module srcversion $(loaded_src), $(ls /lib/modules/$REL/updates/nsx-ovs 2>/dev/null | wc -l) file(s) of ours"
    [ $rc = 137 ] || { cat $S/killed-$moment.txt; fail "install finished before '$moment' was seen"; }
    $B -q install || fail "install after a kill at '$moment'"
    [ "$(loaded_src)" = "$OURS" ] && ok "the re-run loaded NSX's module (kill at '$moment')" || fail "module after the re-run: $(loaded_src)"
    [ "$(systemctl is-enabled openvswitch-switch)" = disabled ] || fail "the re-run left the host's OVS enabled (kill at '$moment')"
    NCP_BOOTSTRAP_OVS_NSX_KERNEL_MODULE=false $B -q install || fail "install with the key off (kill at '$moment')"
    modules_snapshot | diff -u $S/modules-before.txt - && ok "key off: module tree identical, in-tree module loaded (kill at '$moment')" || fail "modules after the key went off (kill at '$moment')"
  done
  $B -q install && $B -q cleanup || fail "install and cleanup after the kills"
  wait_for 90 "host OVS answers again" ovs-vsctl --timeout=2 show
  wait_for 90 "openvswitch-switch.service active again" systemctl is-active -q openvswitch-switch
  modules_snapshot | diff -u $S/modules-before.txt - && snapshot | diff -u $S/before.txt - \
    && ok "cleanup: node and module tree identical to before" || fail "node after cleanup"

  # ncp-ovs on the distribution's module first, as on a node that ran with the key off.
  unset NCP_BOOTSTRAP_OVS_NSX_KERNEL_MODULE
  install_units "" /etc/systemd/system
  systemctl enable ncp-ovs.service >/dev/null 2>&1 || fail "enable ncp-ovs.service"
  systemctl start ncp-bootstrap.service || { journalctl -u ncp-bootstrap --no-pager | tail -30; fail "install (key off)"; }
  systemctl start ncp-ovs.service || fail "ncp-ovs.service"
  wait_for 120 "ovs health on the distribution's module" $B -q ovs health
  [ "$(loaded_src)" = none ] || fail "module with the key off: $(loaded_src)"

  # The key on: `status` names the drift at once; then the bootstrap unit restarted, as after an
  # operator's ncp.ini change. systemd restarts ncp-ovs with it (Requires=): install, finding
  # the node's addresses on the datapath, installs and indexes the module and leaves the swap to
  # ovs run, whose start gives the addresses back to node-if, swaps the module and attaches
  # again; the peer pings every 10 ms throughout.
  $B config set ovs.nsx_kernel_module true >/dev/null || fail "config set ovs.nsx_kernel_module"
  $B status > $S/status-deferred.txt; cat $S/status-deferred.txt
  grep -q "^kmod .*drift.*not NSX's" $S/status-deferred.txt && ok "status names the module drift" || fail "status with the key on"
  peer_ping_begin
  sleep 2
  t0=$(date +%s.%N)
  systemctl restart ncp-bootstrap.service || { journalctl -u ncp-bootstrap --no-pager | tail -30; fail "install (key on)"; }
  journalctl -u ncp-bootstrap --no-pager -o cat | grep -q "swaps it at its next start" && ok "install deferred the swap to ovs run" || { journalctl -u ncp-bootstrap --no-pager -o cat | tail -20; fail "no deferral"; }
  [ -f /lib/modules/$REL/updates/nsx-ovs/openvswitch.ko ] && ok "module installed" || fail "module file after install (key on)"
  healthy_on_ours() { $B -q ovs health && ours_loaded; }
  wait_for 180 "ovs health on NSX's module after the swap" healthy_on_ours
  t1=$(date +%s.%N)
  peer_ping_end kmod-swap
  echo "ROW kmod-swap-to-healthy-s $(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.1f", b-a}')"
  journalctl -u ncp-ovs --no-pager -o cat | grep -E "swapping the module|module swapped|kernel module" | tail -4
  journalctl -u ncp-ovs --no-pager -o cat | grep -o "module swapped and daemons up in [0-9]* ms" | tail -1 | sed 's/^/ROW kmod-swap /'
  [ "$(loaded_src)" = "$OURS" ] && ok "NSX's module loaded by the restart (srcversion $OURS)" || fail "module after the restart: $(loaded_src)"
  ovs-dpctl show | grep -q "port [0-9]*: $UP\$" && ok "$UP is a port of the kernel datapath on NSX's module" || { ovs-dpctl show; fail "kernel datapath"; }
  $B ovs health | tee $S/health.txt
  grep -q "kernel module: NSX's openvswitch loaded: version 0.0.0-ncpb-standin, srcversion $OURS" $S/health.txt && ok "ovs health names the module" || fail "ovs health text"
  $B persist || fail "persist"
  exit 0
fi

# Phase 2: after the reboot, with ncp-ovs enabled and the key on.
wait_for 240 "ovs health after the reboot" $B -q ovs health
[ "$(loaded_src)" = "$OURS" ] && ok "the boot loaded NSX's module" || fail "module after the reboot: $(loaded_src)"
ip -4 -o addr show dev br-int | grep -q 192.168.76.10/24 && ok "address on br-int" || fail "address not on br-int after the reboot"
wait_for 10 "the peer answers through br-int" peer_answers
$B status > $S/status-boot.txt; cat $S/status-boot.txt
grep -q "kmod.*ok.*NSX's openvswitch" $S/status-boot.txt && ok "status: NSX's module" || fail "status after the reboot"
systemctl stop ncp-ovs.service
systemctl disable ncp-ovs.service >/dev/null 2>&1
systemctl start ncp-bootstrap-cleanup.service || { journalctl -u ncp-bootstrap-cleanup --no-pager | tail -30; fail "cleanup"; }
journalctl -u ncp-bootstrap-cleanup --no-pager -o cat | grep -i "module" | tail -3
rm -f /etc/ncp-bootstrap/config.toml; rmdir /etc/ncp-bootstrap 2>/dev/null
for u in ncp-bootstrap ncp-ovs ncp-bootstrap-monitor ncp-bootstrap-cleanup; do rm -rf /etc/systemd/system/$u.service /etc/systemd/system/$u.service.d; done
rm -f /usr/bin/ncp-bootstrap
systemctl daemon-reload
wait_for 90 "host OVS answers again" ovs-vsctl --timeout=2 show
wait_for 90 "openvswitch-switch.service active again" systemctl is-active -q openvswitch-switch
wait_for 30 "the peer answers through $UP" peer_answers
modules_snapshot | diff -u $S/modules-before.txt - && ok "module tree identical, the in-tree module loaded again" || fail "modules after cleanup"
snapshot | diff -u $S/before.txt - && ok "node identical to its snapshot before install" || fail "cleanup left differences"
exit 0
