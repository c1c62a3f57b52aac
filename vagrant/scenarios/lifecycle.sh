#!/bin/sh
# The whole story on a real kernel (OVS kernel datapath, AppArmor enforcing, a reboot).
# Phase 1: a node as NCP finds it (host OVS running, node-if's address set by hand) ->
#   install (host OVS stopped and disabled, CNI installed, AppArmor profile loaded in enforce
#   mode) -> ovs run (kernel datapath, uplink attached, gateway pinged every 10 ms) -> persist
#   -> stop ovs run (keep) -> reboot.
# Phase 2: after the reboot node-if has its address and routes from the persisted config ->
#   ovs run again (attach) -> stop it with on_exit=restore -> cleanup -> the node is as before.
set -u
PHASE=$1
. "$(dirname "$0")/common.sh"
# The systemd units of units/systemd, as `make install-host` installs them, but under /run (gone
# at reboot, outside the snapshot) with the settings in drop-ins.
install_units() {
  install -m 0755 $B /usr/bin/ncp-bootstrap
  mkdir -p /run/systemd/system
  cp $S/units/*.service /run/systemd/system/
  for u in ncp-bootstrap ncp-ovs ncp-bootstrap-cleanup; do
    mkdir -p /run/systemd/system/$u.service.d
    printf '[Service]\nEnvironment=NCP_BOOTSTRAP_NODE_UPLINK=%s NCP_BOOTSTRAP_CNI_BUNDLE=%s/bundle NCP_BOOTSTRAP_PROBE_TIMEOUT_MS=10000 %s\n' \
      "$UP" "$S" "$1" > /run/systemd/system/$u.service.d/test.conf
  done
  systemctl daemon-reload
}
snapshot() { # what cleanup must give back
  {
    find /etc /opt /usr/share/ncp-bootstrap /var/lib/ncp-bootstrap -xdev \
      \( -path /etc/openvswitch -o -path /etc/apparmor.d/cache -o -path /etc/ld.so.cache -o -path /etc/machine-id \) -prune -o \
      -printf '%p %M %s\n' 2>/dev/null | sort
    find /etc /opt -xdev -type f \( -path '/etc/openvswitch/*' -o -path '/etc/apparmor.d/cache/*' -o -path /etc/ld.so.cache \) -prune -o -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum
    grep -c node-agent-apparmor /sys/kernel/security/apparmor/profiles
    echo "openvswitch-switch: $(systemctl is-enabled openvswitch-switch) $(systemctl is-active openvswitch-switch)"
    echo "bridges: $(ovs-vsctl --timeout=5 list-br | tr '\n' ' ')"
    ip -4 -o addr show dev $UP | awk '{print $4}'
    # Routes from router advertisements carry a countdown; their presence is what counts.
    ip route show table all | grep -v -e '^local' -e '^broadcast' -e '^multicast' -e 'fe80' -e '^ff00' | sed -E 's/ expires [0-9]+sec//' | sort
    ip rule show
  }
}

wait_for 60 "$UP is up" ip link show $UP up
if [ "$PHASE" = 1 ]; then
  # The node before ncp-bootstrap: address and routes set by hand, the host's OVS running.
  ip link set $UP up
  ip addr add 192.168.76.10/24 dev $UP
  # With a management NIC (Vagrant) the default route of node-if gets a metric of its own.
  ip route add default via $GW dev $UP ${NCPB_DEFAULT_METRIC:+metric $NCPB_DEFAULT_METRIC}
  ip route add 10.99.0.0/16 via $GW dev $UP metric 50
  wait_for 90 "host OVS answers" ovs-vsctl --timeout=2 show
  # The boot's start jobs run in the background (systemd.run); let the OVS unit settle so the
  # snapshot records its steady state.
  wait_for 90 "openvswitch-switch.service active" systemctl is-active -q openvswitch-switch
  wait_for 30 "gateway answers" ping -c1 -W1 $GW
  grep -q '^openvswitch ' /proc/modules && ok "kernel OVS module loaded" || fail "no openvswitch module"
  [ "$(cat /sys/module/apparmor/parameters/enabled)" = Y ] && ok "AppArmor enabled" || fail "AppArmor not enabled"
  snapshot > $S/before.txt

  install_units ""
  systemctl start ncp-bootstrap.service || { journalctl -u ncp-bootstrap --no-pager | tail -30; fail "ncp-bootstrap.service (install)"; }
  ok "ncp-bootstrap.service ran install"
  [ "$(systemctl is-enabled openvswitch-switch)" = disabled ] && ok "host OVS disabled" || fail "host OVS still enabled"
  systemctl is-active -q openvswitch-switch && fail "host OVS still active"
  pgrep -x ovs-vswitchd && fail "ovs-vswitchd still runs"
  grep -q '^node-agent-apparmor (enforce)' /sys/kernel/security/apparmor/profiles && ok "profile loaded in enforce mode" || fail "profile not loaded"
  [ -x /opt/cni/bin/nsx ] && [ -f /etc/cni/net.d/10-nsx.conflist ] && ok "CNI installed" || fail "CNI files"
  $B status --bundle $S/bundle || fail "status after install"

  # -O reports each missing reply, -D timestamps it: the log shows when a probe was lost.
  ping -D -O -i 0.01 -c 1500 -W1 $GW > $S/ping-attach.txt 2>&1 &
  PING=$!
  sleep 2
  systemctl start ncp-ovs.service || fail "ncp-ovs.service"
  wait_for 120 "ovs health (kernel datapath, uplink attached)" $B -q ovs health
  wait $PING
  ovs-dpctl show | grep -q "port [0-9]*: $UP\$" && ok "$UP is a port of the kernel datapath" || { ovs-dpctl show; fail "kernel datapath"; }
  [ "$(ovs-vsctl get Interface $UP ofport)" = 1 ] && ok "$UP has ofport 1" || fail "ofport of $UP"
  grep -o '"switch_window_ms":[^,}]*' $S/ovs-run-1.log || true
  ip -4 -o addr show dev br-int | grep -q 192.168.76.10/24 && ok "address on br-int" || fail "address not on br-int"
  ping -c3 -W1 $GW >/dev/null && ok "gateway answers through br-int" || fail "gateway after attach"
  $B persist || fail "persist"
  ifquery $UP | grep -q 'address: 192.168.76.10' && ok "ifupdown stanza persisted" || fail "persisted stanza"
  journalctl -u ncp-ovs --no-pager -o cat > $S/ovs-run-1.log
  systemctl stop ncp-ovs.service
  [ "$(systemctl show -p Result --value ncp-ovs.service)" = success ] && ok "ncp-ovs.service stopped cleanly" || fail "ncp-ovs.service result"
  exit 0
fi

# Phase 2: after the reboot.
wait_for 90 "$UP has its persisted address" sh -c "ip -4 -o addr show dev $UP | grep -q 192.168.76.10/24"
wait_for 30 "persisted default route" sh -c "ip route show default | grep -q 'via $GW dev $UP'"
ip route show 10.99.0.0/16 | grep -q "via $GW dev $UP metric 50" && ok "persisted extra route" || fail "extra route lost"
wait_for 30 "gateway answers after reboot" ping -c1 -W1 $GW
systemctl is-active -q openvswitch-switch && fail "host OVS came back after reboot"
grep -q '^node-agent-apparmor (enforce)' /sys/kernel/security/apparmor/profiles && ok "profile loaded at boot" || fail "profile not loaded at boot"

install_units NCP_BOOTSTRAP_OVS_ON_EXIT=restore
# ncp-ovs requires ncp-bootstrap: install runs again and must find everything converged.
systemctl start ncp-ovs.service || fail "ncp-ovs.service after reboot"
journalctl -u ncp-bootstrap --no-pager -o cat | grep -q "host-ovs: converged" && ok "install converged after reboot" || { journalctl -u ncp-bootstrap --no-pager -o cat | tail; fail "install not converged"; }
wait_for 120 "ovs health after reboot" $B -q ovs health
ping -c3 -W1 $GW >/dev/null && ok "gateway answers through br-int" || fail "gateway after re-attach"
systemctl stop ncp-ovs.service
journalctl -u ncp-ovs --no-pager -o cat > $S/ovs-run-2.log
ip -4 -o addr show dev $UP | grep -q 192.168.76.10/24 && ok "on_exit=restore put the address back on $UP" || fail "address not restored"

systemctl start ncp-bootstrap-cleanup.service || { journalctl -u ncp-bootstrap-cleanup --no-pager | tail -30; fail "ncp-bootstrap-cleanup.service"; }
ok "ncp-bootstrap-cleanup.service ran cleanup"
wait_for 60 "host OVS answers again" ovs-vsctl --timeout=2 show
wait_for 90 "openvswitch-switch.service active again" systemctl is-active -q openvswitch-switch
snapshot > $S/after.txt
if diff -u $S/before.txt $S/after.txt; then ok "node identical to its snapshot before install"; else fail "cleanup left differences"; fi

# NetworkManager's own parser on our keyfile (Debian 12's NM has no offline parser on the build
# machine). NM is installed but disabled in the image; eth0 is listed in ifupdown's file, so NM
# leaves the device alone and only reads the connection profile.
systemctl start NetworkManager || fail "NetworkManager"
wait_for 60 "NetworkManager answers" nmcli -t general status
$B persist --format nm-keyfile || fail "persist --format nm-keyfile"
nmcli connection reload
nmcli -g connection.interface-name,ipv4.method,ipv4.addresses,ipv4.gateway,ipv4.routes connection show $UP | tee $S/nm.txt
# nmstate writes the default route as a route to 0.0.0.0/0 in the main table, not as
# ipv4.gateway: the same meaning.
grep -qx $UP $S/nm.txt && grep -qx manual $S/nm.txt && grep -q '192.168.76.10/24' $S/nm.txt \
  && grep -q "0.0.0.0/0 $GW ${NCPB_DEFAULT_METRIC:-0} table=254" $S/nm.txt && grep -q "10.99.0.0/16 $GW 50" $S/nm.txt \
  && ok "NetworkManager reads our keyfile as written" || fail "NetworkManager's reading of the keyfile"
$B cleanup || fail "cleanup of the keyfile"
[ ! -e /etc/NetworkManager/system-connections/$UP.nmconnection ] && ok "keyfile removed by cleanup" || fail "keyfile left"
exit 0
