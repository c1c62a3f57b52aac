#!/bin/sh
# phases: 1 2
# load: cpu
# Node-if defined by cloud-init's netplan file on systemd-networkd (an Ubuntu cloud image's
# stack). cloud-init itself is not in the guest image (it would look for a datasource at each
# boot); its /etc/cloud/cloud.cfg stands in for it, which is what persist looks for.
# Phase 1: 50-cloud-init.yaml defines node-if statically (IPv4 and IPv6, a gateway, an extra
#   route in each family, name servers and a search domain) -> install -> persist without
#   --take-over is refused naming it; with it, node-if's definition moves into
#   60-ncp-bootstrap.yaml (keeping its name servers) and cloud-init's network rendering is turned
#   off -> ovs run attaches (peer pinging every 10 ms): networkd leaves node-if unmanaged and
#   configures br-int from node-if's file, so resolved keeps the node's DNS on br-int -> a
#   restart of networkd under probes changes nothing -> stop ovs run (restore): node-if is
#   networkd's again, with its DNS -> reboot.
# Phase 2: at boot networkd brings node-if up from our file and the enabled ncp-ovs.service
#   attaches it (boot-to-attached time printed) -> stop it (restore): node-if is networkd's
#   again with its DNS -> cleanup: both netplan files and cloud-init's config as before.
set -u
PHASE=$1
. "$(dirname "$0")/common.sh"
CI=/etc/netplan/50-cloud-init.yaml
OURS=/etc/netplan/60-ncp-bootstrap.yaml
DNS_WANT="192.168.76.53 / ncpb.test"

only_on_br_int() {
  ip -4 -o addr show dev br-int | grep -q 192.168.76.10/24 || return 1
  ip -6 -o addr show dev br-int | grep -q fd00:76::10/64 || return 1
  ! ip -o addr show dev $UP scope global | grep -q .
}
attached_as_meant() { # moment
  only_on_br_int && ok "addresses only on br-int ($1)" || { ip addr; fail "addresses ($1)"; }
  [ "$(networkd_setup $UP)" = unmanaged ] && ok "networkd leaves $UP unmanaged ($1)" || { networkctl list; fail "$UP setup ($1)"; }
  case "$(networkd_setup br-int)" in configured|configuring) ok "networkd configures br-int ($1)" ;; *) networkctl list; fail "br-int setup ($1)" ;; esac
  [ "$(link_dns br-int)" = "$DNS_WANT" ] && ok "resolved has the node's DNS on br-int ($1)" || { resolvectl; fail "DNS on br-int ($1): $(link_dns br-int)"; }
  ip route show default | grep -q "via $GW dev br-int" && ip -6 route show fd00:99::/48 | grep -q "dev br-int" \
    && ok "routes on br-int ($1)" || { ip route; ip -6 route; fail "routes ($1)"; }
  wait_for 10 "the peer answers through br-int ($1)" peer_answers
}
# After ovs run stopped with on_exit=restore.
given_back() {
  wait_for 10 "on_exit=restore put the addresses back on $UP" sh -c "ip -4 -o addr show dev $UP | grep -q 192.168.76.10/24 && ip -6 -o addr show dev $UP | grep -q fd00:76::10/64"
  wait_for 20 "$UP is networkd's again" networkd_setup_is $UP configured
  wait_for 10 "resolved has the node's DNS on $UP again" dns_is $UP "$DNS_WANT"
  [ ! -e /run/systemd/network/01-ncp-bootstrap-$UP.network ] && [ ! -e /run/systemd/network/01-ncp-bootstrap-br-int.network ] && ok "the runtime networkd files are gone" || fail "runtime files left"
  wait_for 10 "the peer answers through $UP" peer_answers
}

wait_for 60 "$UP exists" ip link show $UP
if [ "$PHASE" = 1 ]; then
  mkdir -p /etc/cloud
  printf '# Stand-in for cloud-init (not installed in the test image): persist looks for this file.\n' > /etc/cloud/cloud.cfg
  use_networkd $CI "# This file is generated from information provided by the datasource.  Changes
# to it will not persist across an instance reboot.
network:
    ethernets:
        eth1:
            addresses:
            - 192.168.76.10/24
            - fd00:76::10/64
            nameservers:
                addresses:
                - 192.168.76.53
                search:
                - ncpb.test
            routes:
            -   to: default
                via: $GW
            -   to: 10.99.0.0/16
                via: $GW
                metric: 50
            -   to: fd00:99::/48
                via: $GW6
                metric: 50
    version: 2
"
  wait_for 30 "the peer answers through networkd's $UP" peer_answers
  wait_for 10 "resolved has the node's DNS on $UP" dns_is $UP "$DNS_WANT"
  wait_for 90 "openvswitch-switch.service active" systemctl is-active -q openvswitch-switch
  snapshot > $S/before.txt
  cp $CI $S/cloud-init.before

  install_enabled_units
  $B persist --apply > $S/persist-refused.txt 2>&1 && fail "persist without --take-over accepted a conflicting file"
  grep -q -- "--take-over" $S/persist-refused.txt && ok "persist names --take-over for cloud-init's file" || { cat $S/persist-refused.txt; fail "refusal text"; }
  cmp -s $CI $S/cloud-init.before && [ ! -e $OURS ] && ok "the refusal changed nothing" || fail "refused persist changed files"
  $B persist --take-over --apply | tee $S/persist.txt || fail "persist --take-over --apply"
  grep -q "format netplan" $S/persist.txt && ok "persist chose netplan" || fail "format"
  ! grep -q eth1 $CI && ok "cloud-init's file no longer defines $UP" || { cat $CI; fail "$CI"; }
  grep -q 'network: {config: disabled}' /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg && ok "cloud-init's network rendering off" || fail "cloud-init switch"
  # netplan's own reading of what we wrote: the networkd file it generates for node-if.
  NF=/run/systemd/network/10-netplan-$UP.network
  grep -qx 'Address=192.168.76.10/24' $NF && grep -qx 'Address=fd00:76::10/64' $NF && grep -qx 'DNS=192.168.76.53' $NF \
    && grep -qx 'Domains=ncpb.test' $NF && grep -qx 'Destination=10.99.0.0/16' $NF && grep -qx "Gateway=$GW6" $NF \
    && ok "netplan generates node-if's networkd file as meant (addresses, DNS, routes)" || { cat $NF; fail "netplan's reading"; }

  peer_ping_begin
  sleep 1
  timeout 180 systemctl start ncp-ovs.service || { journalctl -u ncp-ovs --no-pager | tail -30; fail "ncp-ovs.service"; }
  wait_for 120 "ovs run attached the uplink" sh -c "journalctl -u ncp-ovs -o cat | grep -q 'ovs run: uplink attached'"
  peer_ping_end "netplan attach (peer every 10 ms):"
  journalctl -u ncp-ovs -o cat --no-pager | grep -q "systemd-networkd leaves $UP unmanaged" && ok "ovs run handed $UP over from networkd" || fail "no hand-off"
  sleep 5
  attached_as_meant "after attach"
  $B status | grep -i "networkd" || fail "status says nothing of networkd"
  # A networkd restart (a package upgrade) must not touch the attached uplink or the bridge.
  peer_ping_begin 0.01 1000
  sleep 1
  systemctl restart systemd-networkd
  peer_ping_end "netplan networkd restart while attached (peer every 10 ms):"
  grep -q " 0% packet loss" $S/peer-ping.txt && ok "no probe lost across a networkd restart" || { tail -3 $S/peer-ping.txt; fail "loss across a networkd restart"; }
  sleep 5
  attached_as_meant "after networkd restarted"
  stop_ncp_ovs 1
  given_back
  exit 0
fi

wait_for 180 "ncp-ovs.service attached the uplink at boot" sh -c "journalctl -b -u ncp-ovs -o cat | grep -q 'ovs run: uplink attached'"
echo "ROW netplan boot-to-attached $(boot_to_attached) s"
journalctl -b -u ncp-ovs --no-pager -o cat > $S/ovs-run-boot.log
grep -q "delete address 192.168.76.10/24 .*label $UP" $S/ovs-run-boot.log && ok "at boot $UP carried its persisted address (netplan) and ovs run moved it" || { cat $S/ovs-run-boot.log; fail "boot-time attach"; }
sleep 5
attached_as_meant "after the reboot"
stop_ncp_ovs 2
given_back

run_cleanup_unit
cmp -s $CI $S/cloud-init.before && ok "cloud-init's netplan file is back byte for byte" || { diff $S/cloud-init.before $CI; fail "$CI not restored"; }
[ ! -e $OURS ] && [ ! -e /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg ] && ok "our netplan file and cloud-init's switch are gone" || fail "files left"
same_as_before
wait_for 10 "the peer answers at the end" peer_answers
exit 0
