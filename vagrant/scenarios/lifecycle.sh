#!/bin/sh
# phases: 1 2
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
wait_for 60 "$UP is up" ip link show $UP up
if [ "$PHASE" = 1 ]; then
  # The node before ncp-bootstrap: addresses and routes set by hand, the host's OVS running.
  configure_node_if
  wait_for 90 "host OVS answers" ovs-vsctl --timeout=2 show
  # The boot's start jobs run in the background (systemd.run); let the OVS unit settle so the
  # snapshot records its steady state.
  wait_for 90 "openvswitch-switch.service active" systemctl is-active -q openvswitch-switch
  wait_for 30 "the peer answers (IPv4${GW6:+ and IPv6})" peer_answers
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
  # Installed, the uplink configured, no containerized OVS yet: not ready, exit 1.
  $B status --bundle $S/bundle > $S/status-installed.txt; rc=$?
  cat $S/status-installed.txt
  [ $rc = 1 ] && grep -q "^node: not ready" $S/status-installed.txt && ! grep -q "^drift:" $S/status-installed.txt \
    && ok "status after install: not ready until ovs run attaches (exit 1), no drift" || fail "status after install (exit $rc)"

  # -O reports each missing reply, -D timestamps it: the log shows when a probe was lost. The
  # node pings the peer and the peer pings the node, both every 10 ms, across the attach.
  ping -D -O -i 0.01 -c 1500 -W1 $GW > $S/ping-attach.txt 2>&1 &
  PING=$!
  peer_ping_begin
  sleep 2
  systemctl start ncp-ovs.service || fail "ncp-ovs.service"
  wait_for 120 "ovs health (kernel datapath, uplink attached)" $B -q ovs health
  wait $PING
  peer_ping_end
  ovs-dpctl show | grep -q "port [0-9]*: $UP\$" && ok "$UP is a port of the kernel datapath" || { ovs-dpctl show; fail "kernel datapath"; }
  [ "$(ovs-vsctl get Interface $UP ofport)" = 1 ] && ok "$UP has ofport 1" || fail "ofport of $UP"
  grep -o '"switch_window_ms":[^,}]*' $S/ovs-run-1.log || true
  ip -4 -o addr show dev br-int | grep -q 192.168.76.10/24 && ok "address on br-int" || fail "address not on br-int"
  [ -z "$GW6" ] || { ip -6 -o addr show dev br-int | grep -q fd00:76::10/64 && ok "IPv6 address on br-int" || fail "IPv6 address not on br-int"; }
  [ -z "$GW6" ] || { ip -6 route show fd00:99::/48 | grep -q "via $GW6 dev br-int metric 50" && ok "IPv6 route on br-int" || fail "IPv6 route not on br-int"; }
  peer_answers && ok "the peer answers through br-int" || fail "peer after attach"
  $B persist || fail "persist"
  sed -n "/^iface $UP /,/^\$/p" /etc/network/interfaces
  ifquery $UP | grep -q 'address: 192.168.76.10' && ok "ifupdown stanza persisted" || fail "persisted stanza"
  [ -z "$GW6" ] || { ifquery $UP | grep -q 'address: fd00:76::10' && ok "ifupdown inet6 stanza persisted" || { ifquery $UP; fail "persisted inet6 stanza"; }; }
  stop_ncp_ovs 1
  exit 0
fi

# Phase 2: after the reboot.
wait_for 90 "$UP has its persisted address" sh -c "ip -4 -o addr show dev $UP | grep -q 192.168.76.10/24"
wait_for 30 "persisted default route" sh -c "ip route show default | grep -q 'via $GW dev $UP'"
ip route show 10.99.0.0/16 | grep -q "via $GW dev $UP metric 50" && ok "persisted extra route" || fail "extra route lost"
if [ -n "$GW6" ]; then
  wait_for 30 "$UP has its persisted IPv6 address" sh -c "ip -6 -o addr show dev $UP | grep -q fd00:76::10/64"
  # ifup runs the stanza's `up` lines once duplicate address detection has finished.
  wait_for 30 "persisted IPv6 route" sh -c "ip -6 route show fd00:99::/48 | grep -q 'via $GW6 dev $UP metric 50'"

fi
wait_for 30 "the peer answers after reboot" peer_answers
systemctl is-active -q openvswitch-switch && fail "host OVS came back after reboot"
grep -q '^node-agent-apparmor (enforce)' /sys/kernel/security/apparmor/profiles && ok "profile loaded at boot" || fail "profile not loaded at boot"

install_units NCP_BOOTSTRAP_OVS_ON_EXIT=restore
# ncp-ovs requires ncp-bootstrap: install runs again and must find everything converged.
systemctl start ncp-ovs.service || fail "ncp-ovs.service after reboot"
journalctl -u ncp-bootstrap --no-pager -o cat | grep -q "host-ovs: converged" && ok "install converged after reboot" || { journalctl -u ncp-bootstrap --no-pager -o cat | tail; fail "install not converged"; }
wait_for 120 "ovs health after reboot" $B -q ovs health
wait_for 10 "the peer answers through br-int after reboot" peer_answers
stop_ncp_ovs 2
ip -4 -o addr show dev $UP | grep -q 192.168.76.10/24 && ok "on_exit=restore put the address back on $UP" || fail "address not restored"
wait_for 10 "the peer answers through $UP" peer_answers

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
