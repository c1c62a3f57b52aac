#!/bin/sh
# phases: 1 2
# needs: packages
# The host packages as an operator uses them (make packages): the .deb installed with apt-get,
# the units enabled by hand, the node attached across a reboot, an upgrade to a second package
# version while the peer pings the node, a removal refused while the node is prepared, the
# node decommissioned, the package removed.
# Phase 1: a node as NCP finds it (host OVS running, node-if set by hand) -> apt-get install
#   ./ncp-bootstrap_<v>_amd64.deb (nothing enabled or started) -> config -> systemctl enable
#   --now ncp-bootstrap ncp-ovs ncp-bootstrap-monitor -> attached -> persist -> reboot.
# Phase 2: attached again at boot -> apt-get install of the next version (ncp-ovs restarted
#   the hitless way; the peer's probes counted) -> apt-get remove refused, nothing changed ->
#   ncp-bootstrap-cleanup.service -> apt-get remove -> the node as before, less the operator's
#   config file.
set -u
PHASE=$1
. "$(dirname "$0")/common.sh"
DEB=$(ls $S/packages/ncp-bootstrap_*_amd64.deb)
NEXT=$(ls $S/packages/next/ncp-bootstrap_*_amd64.deb)
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0 "$@"; }
pkg_version() { dpkg-query -W -f='${Status} ${Version}' ncp-bootstrap 2>/dev/null; }
wait_for 60 "$UP is up" ip link show $UP up
if [ "$PHASE" = 1 ]; then
  node_with_host_ovs
  wait_for 90 "openvswitch-switch.service active" systemctl is-active -q openvswitch-switch
  snapshot > $S/before.txt

  apt_get install "$DEB" > $S/apt-install.txt 2>&1 || { cat $S/apt-install.txt; fail "apt-get install $DEB"; }
  ok "installed: $(pkg_version)"
  # The cleanup unit has no [Install] section (it is started by hand): "static".
  for u in ncp-bootstrap ncp-ovs ncp-bootstrap-monitor ncp-bootstrap-cleanup; do
    case "$(systemctl is-enabled $u.service 2>&1)" in
      disabled) ;;
      static) [ $u = ncp-bootstrap-cleanup ] || fail "$u.service is static" ;;
      *) fail "$u.service is $(systemctl is-enabled $u.service 2>&1) after installing" ;;
    esac
    systemctl is-active -q $u.service && fail "$u.service started by installing"
  done
  ok "installing enabled and started nothing"
  [ -x /usr/bin/ncp-bootstrap ] && [ -f /usr/share/ncp-bootstrap/bundle/etc/cni/net.d/10-nsx.conflist ] \
    && [ -f /lib/systemd/system/ncp-ovs.service ] && ok "binary, bundle and units in place" || fail "package files"
  systemctl show -p Conflicts --value ncp-ovs.service | grep -q openvswitch-switch.service \
    && ok "ncp-ovs.service conflicts with openvswitch-switch.service" || fail "ncp-ovs.service conflicts"

  # As the README says: configure, then enable. The demo bundle is allowed on this test node.
  /usr/bin/ncp-bootstrap config set node.uplink $UP >/dev/null || fail "config set node.uplink"
  /usr/bin/ncp-bootstrap config set cni.allow_demo_bundle true >/dev/null || fail "config set cni.allow_demo_bundle"
  /usr/bin/ncp-bootstrap config set probe.timeout_ms 10000 >/dev/null || fail "config set probe.timeout_ms"
  systemctl enable --now ncp-bootstrap.service ncp-ovs.service ncp-bootstrap-monitor.service \
    || { journalctl -u ncp-bootstrap -u ncp-ovs --no-pager | tail -30; fail "systemctl enable --now"; }
  wait_for 180 "ovs health (kernel datapath, uplink attached)" /usr/bin/ncp-bootstrap -q ovs health
  wait_for 10 "the peer answers through br-int" peer_answers
  /usr/bin/ncp-bootstrap persist >/dev/null || fail "persist"
  ok "persisted $UP's configuration"
  exit 0
fi

# Phase 2: after the reboot, attached again by the enabled units.
wait_for 180 "attached again at boot" /usr/bin/ncp-bootstrap -q ovs health
wait_for 30 "the peer answers through br-int after the reboot" peer_answers
ip -4 -o addr show dev br-int | grep -q 192.168.76.10/24 && ok "address on br-int after the reboot" || fail "address not on br-int"

# The upgrade, with the peer pinging the node every 10 ms for 30 s.
pid_before=$(systemctl show -p MainPID --value ncp-ovs.service)
t_upgrade=$(date +%s)
peer_ping_begin 0.01 3000
sleep 2
apt_get install "$NEXT" > $S/apt-upgrade.txt 2>&1 || { cat $S/apt-upgrade.txt; fail "apt-get install $NEXT"; }
wait_for 120 "ovs health after the upgrade" /usr/bin/ncp-bootstrap -q ovs health
peer_ping_end "package upgrade (apt-get install of the next version, ncp-ovs restarted)"
ok "upgraded: $(pkg_version)"
pid_after=$(systemctl show -p MainPID --value ncp-ovs.service)
[ "$pid_after" != "$pid_before" ] && [ "$pid_after" != 0 ] && ok "ncp-ovs restarted onto the new binary (pid $pid_before -> $pid_after)" || fail "ncp-ovs not restarted (pid $pid_before -> $pid_after)"
journalctl -u ncp-ovs --since "@$t_upgrade" --no-pager -o cat | grep -q "flow-restore-wait" && ok "the restart kept the flows (flow-restore-wait)" || fail "the restart did not keep the flows"

# Removal while the node is prepared: refused, nothing changed.
if apt_get remove ncp-bootstrap > $S/apt-remove-refused.txt 2>&1; then
  cat $S/apt-remove-refused.txt; fail "apt-get remove succeeded on a prepared node"
fi
grep -q "still prepared" $S/apt-remove-refused.txt && ok "removal refused while the node is prepared, with the way forward" || { cat $S/apt-remove-refused.txt; fail "refusal message"; }
[ "$(dpkg-query -W -f='${db:Status-Status}' ncp-bootstrap)" = installed ] && [ -x /usr/bin/ncp-bootstrap ] \
  && ok "still installed: $(pkg_version)" || fail "package state after the refusal: $(pkg_version)"
systemctl is-active -q ncp-ovs.service && /usr/bin/ncp-bootstrap -q ovs health && ok "ncp-ovs still runs, healthy" || fail "ncp-ovs after the refused removal"

systemctl start ncp-bootstrap-cleanup.service || { journalctl -u ncp-bootstrap-cleanup --no-pager | tail -30; fail "ncp-bootstrap-cleanup.service"; }
ok "ncp-bootstrap-cleanup.service ran cleanup"
wait_for 30 "the peer answers through $UP" peer_answers
apt_get remove ncp-bootstrap > $S/apt-remove.txt 2>&1 || { cat $S/apt-remove.txt; fail "apt-get remove"; }
# dpkg keeps a removed package that has a postrm as "config-files" until it is purged.
ok "removed: $(pkg_version || true)"
apt_get purge ncp-bootstrap > $S/apt-purge.txt 2>&1 || { cat $S/apt-purge.txt; fail "apt-get purge"; }
dpkg-query -W ncp-bootstrap >/dev/null 2>&1 && fail "dpkg still lists ncp-bootstrap after the purge: $(pkg_version)"
ok "purged: dpkg no longer lists ncp-bootstrap"
for f in /usr/bin/ncp-bootstrap /usr/share/ncp-bootstrap /lib/systemd/system/ncp-ovs.service; do
  [ -e $f ] && fail "$f left by the removal"
done
for u in ncp-bootstrap ncp-ovs ncp-bootstrap-monitor ncp-bootstrap-cleanup; do
  systemctl is-active -q $u.service && fail "$u.service still active after the removal"
  ls /etc/systemd/system/*.wants/$u.service >/dev/null 2>&1 && fail "$u.service still enabled after the removal"
done
ok "the removal left no binary, bundle, unit or enablement"
echo "left by the removal: $(ls -A /etc/ncp-bootstrap /var/lib/ncp-bootstrap 2>/dev/null | tr '\n' ' ')"
# The operator's settings are theirs: the removal keeps them; the operator removes them.
rm -rf /etc/ncp-bootstrap
wait_for 60 "host OVS answers again" ovs-vsctl --timeout=2 show
wait_for 90 "openvswitch-switch.service active again" systemctl is-active -q openvswitch-switch
snapshot > $S/after.txt
if diff -u $S/before.txt $S/after.txt; then ok "node identical to its snapshot before the package"; else fail "differences after cleanup and removal"; fi
exit 0
