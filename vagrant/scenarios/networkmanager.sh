#!/bin/sh
# phases: 1 2
# Node-if managed by NetworkManager (as on RHEL-family and desktop-derived nodes).
# Phase 1: the operator's NM connection `node-if` (static IPv4 and IPv6, a gateway, an extra
#   route in each family) is up -> install -> persist --apply finds NM's keyfile for node-if and
#   updates that connection in place (no second connection), NM reloads and reads it as meant ->
#   ovs run attaches the uplink on the kernel datapath (peer and node pinging each other every
#   10 ms) -> ncp-bootstrap hands node-if off (unmanaged at runtime) and NM leaves the attached
#   uplink and br-int alone, also across a restart of NM; systemd-resolved keeps node-if's DNS
#   (from its NM connection) on br-int ->
#   stop ovs run (on_exit=restore: node-if is NM's again) -> reboot.
# Phase 2: at boot NM brings node-if up from the persisted connection and the enabled
#   ncp-ovs.service (after network-online.target) attaches it and hands it off; NM still leaves
#   it alone -> stop it (on_exit=restore) -> node-if is NM's again -> cleanup (the operator's
#   keyfile back byte for byte) -> the node is as before install.
set -u
PHASE=$1
. "$(dirname "$0")/common.sh"
KEYFILE=/etc/NetworkManager/system-connections/node-if.nmconnection
DNS_WANT="192.168.76.53 / ncpb.test"

only_on_br_int() { # NetworkManager must not have put anything back on node-if
  ip -4 -o addr show dev br-int | grep -q 192.168.76.10/24 || return 1
  ip -6 -o addr show dev br-int | grep -q fd00:76::10/64 || return 1
  ! ip -o addr show dev $UP scope global | grep -q .
}
left_alone() { # what: a moment in the story
  # Give NetworkManager time to react to node-if losing its addresses to the bridge.
  sleep 10
  only_on_br_int && ok "NM left the attached uplink alone ($1)" || { ip addr; nmcli device; fail "NM fought the uplink ($1)"; }
  ip route show default | grep -q "via $GW dev br-int" && ok "default route still on br-int ($1)" || { ip route; fail "default route ($1)"; }
  nmcli -t -f DEVICE,STATE device | grep -qx 'br-int:unmanaged' && ok "br-int unmanaged in NM ($1)" || { nmcli -t -f DEVICE,STATE device; fail "br-int managed by NM ($1)"; }
  nmcli -t -f DEVICE,STATE device | grep -qx "$UP:unmanaged" && ok "$UP handed off, unmanaged in NM ($1)" || { nmcli -t -f DEVICE,STATE device; fail "$UP still managed by NM ($1)"; }
  ip link show $UP up | grep -q LOWER_UP && ok "$UP link still up ($1)" || { ip link show $UP; fail "$UP link down ($1)"; }
  wait_for 10 "the peer answers through br-int ($1)" peer_answers
  try_for 10 dns_is br-int "$DNS_WANT" && ok "resolved keeps the node's DNS, on br-int ($1)" \
    || { journalctl -b -u ncp-ovs -o cat | grep -i "networkmanager"; resolvectl status --no-pager; fail "DNS on br-int ($1): $(link_dns br-int)"; }
}
start_ovs() { # what
  # A start job that waits forever (an ordering cycle, a wait-online that never ends) is a bug.
  timeout 180 systemctl start ncp-ovs.service || { systemctl list-jobs; journalctl -b --no-pager | tail -40; fail "ncp-ovs.service ($1)"; }
  wait_for 120 "ovs health ($1)" $B -q ovs health
}

wait_for 60 "$UP exists" ip link show $UP
if [ "$PHASE" = 1 ]; then
  # The operator's node: node-if is NetworkManager's (ifupdown keeps only lo and the management
  # NIC, which NM's ifupdown plugin then leaves unmanaged), NM and its wait-online enabled.
  printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet manual\n' > /etc/network/interfaces
  systemctl enable NetworkManager NetworkManager-wait-online >/dev/null 2>&1
  systemctl start NetworkManager || fail "NetworkManager"
  wait_for 60 "NetworkManager answers" nmcli -t general status
  nmcli connection add type ethernet ifname $UP con-name node-if \
    ipv4.method manual ipv4.addresses 192.168.76.10/24 ipv4.gateway $GW ipv4.routes "10.99.0.0/16 $GW 50" \
    ipv6.method manual ipv6.addresses fd00:76::10/64 ipv6.routes "fd00:99::/48 $GW6 50" \
    ipv6.addr-gen-mode stable-privacy ipv4.dns 192.168.76.53 ipv4.dns-search ncpb.test >/dev/null || fail "nmcli connection add"
  nmcli connection up node-if >/dev/null || fail "nmcli connection up"
  wait_for 30 "the peer answers through NM's $UP" peer_answers
  wait_for 30 "resolved has NM's DNS for $UP" dns_is $UP "$DNS_WANT"
  wait_for 90 "host OVS answers" ovs-vsctl --timeout=2 show
  wait_for 90 "openvswitch-switch.service active" systemctl is-active -q openvswitch-switch
  snapshot > $S/before.txt
  cp $KEYFILE $S/keyfile.before

  # After the reboot, NM's wait-online holds network-online.target until node-if is up from its
  # connection, and ncp-ovs.service attaches after it.
  install_enabled_units
  $B persist --apply | tee $S/persist.txt || fail "persist --apply"
  grep -q "format nm-keyfile: $KEYFILE is NetworkManager's connection for $UP" $S/persist.txt && ok "persist chose nm-keyfile from NM's connection" || fail "format detection"
  grep -q "ran \`nmcli connection reload\`" $S/persist.txt && ok "persist --apply reloaded NM" || fail "no reload"
  [ "$(ls /etc/NetworkManager/system-connections)" = node-if.nmconnection ] && ok "one connection file for $UP, the operator's" || { ls /etc/NetworkManager/system-connections; fail "a second connection file"; }
  [ "$(nmcli -g connection.uuid connection show node-if)" = "$(sed -n 's/^uuid=//p' $S/keyfile.before)" ] && ok "the connection keeps its UUID" || fail "UUID changed"
  # NetworkManager's own reading of the keyfile we rewrote.
  # (nmcli -g escapes colons; the persisted default route keeps NM's metric, 100.)
  nmcli -g ipv4.method,ipv4.addresses,ipv4.routes,ipv6.method,ipv6.addresses,ipv6.routes,ipv6.addr-gen-mode connection show node-if | sed 's/\\//g' | tee $S/nm.txt
  grep -qx manual $S/nm.txt && grep -q '192.168.76.10/24' $S/nm.txt && grep -q "0.0.0.0/0 $GW 100 table=254" $S/nm.txt \
    && grep -q "10.99.0.0/16 $GW 50" $S/nm.txt && grep -q 'fd00:76::10/64' $S/nm.txt \
    && grep -q "fd00:99::/48 $GW6 50" $S/nm.txt && grep -qx stable-privacy $S/nm.txt \
    && ! grep -q '192.168.76.0/24' $S/nm.txt \
    && ok "NetworkManager reads the updated connection as meant" || fail "NetworkManager's reading of the keyfile"
  [ "$(nmcli -t -g GENERAL.STATE device show $UP)" = "100 (connected)" ] && ok "persist --apply did not touch the active device" || fail "device state changed"

  ping -D -O -i 0.01 -c 1500 -W1 $GW > $S/ping-attach.txt 2>&1 &
  PING=$!
  peer_ping_begin
  sleep 2
  start_ovs "attach with NM running"
  wait $PING
  peer_ping_end
  [ "$(ovs-vsctl get Interface $UP ofport)" = 1 ] && ok "$UP has ofport 1" || fail "ofport of $UP"
  left_alone "after attach"
  systemctl restart NetworkManager
  wait_for 60 "NetworkManager answers after its restart" nmcli -t general status
  left_alone "after NM restarted"
  stop_ncp_ovs 1
  exit 0
fi

# Phase 2: after the reboot. Nothing is started by hand: the boot runs NM (node-if from the
# persisted connection), network-online.target, ncp-bootstrap.service and ncp-ovs.service.
# (`ovs health` turns good with the netlink burst; the log lines follow the probes after it.)
wait_for 180 "ncp-ovs.service attached the uplink at boot" sh -c "journalctl -b -u ncp-ovs -o cat | grep -q 'ovs run: uplink attached'"
$B -q ovs health || fail "ovs health after the boot-time attach"
journalctl -b -u ncp-ovs --no-pager -o cat > $S/ovs-run-boot.log
grep -q "delete address 192.168.76.10/24 .*label $UP" $S/ovs-run-boot.log && grep -q "delete address fd00:76::10/64" $S/ovs-run-boot.log \
  && ok "at boot $UP carried its persisted addresses (from NM) and ovs run moved them" || { cat $S/ovs-run-boot.log; fail "boot-time attach"; }
grep -q "NetworkManager leaves $UP unmanaged while it is attached (it was 100 (connected))" $S/ovs-run-boot.log \
  && ok "at boot NM had activated $UP, and ovs run handed it off" || fail "boot-time hand-off"
online=$(systemctl show -P ActiveEnterTimestampMonotonic network-online.target)
ovs=$(systemctl show -P ExecMainStartTimestampMonotonic ncp-ovs.service)
[ "$online" -gt 0 ] && [ "$ovs" -gt "$online" ] && ok "ncp-ovs started after network-online.target ($online < $ovs us)" || fail "ordering: online $online, ncp-ovs $ovs"
ip -6 route show fd00:99::/48 | grep -q "via $GW6 dev br-int" && ip route show 10.99.0.0/16 | grep -q "via $GW dev br-int" \
  && ok "both persisted extra routes came back and moved to br-int" || { ip route; ip -6 route; fail "extra routes after boot"; }
left_alone "after the reboot"
stop_ncp_ovs 2
wait_for 10 "on_exit=restore put the addresses back on $UP" sh -c "ip -4 -o addr show dev $UP | grep -q 192.168.76.10/24 && ip -6 -o addr show dev $UP | grep -q fd00:76::10/64"
wait_for 10 "the peer answers through $UP" peer_answers
wait_for 30 "resolved has NM's DNS for $UP again" dns_is $UP "$DNS_WANT"
[ "$(nmcli -t -g GENERAL.STATE device show $UP)" = "100 (connected)" ] && ok "NM still holds $UP with its connection" || { nmcli device; fail "NM state of $UP"; }

run_cleanup_unit
cmp -s $KEYFILE $S/keyfile.before && ok "the operator's keyfile is back byte for byte" || { diff $S/keyfile.before $KEYFILE; fail "keyfile not restored"; }
same_as_before
wait_for 10 "the peer answers at the end" peer_answers
exit 0
