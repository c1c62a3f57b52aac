#!/bin/sh
# phases: 1
# Where the probes lost on the kernel datapath come from. A measurement, not part of `make
# vm-test`: `bash vagrant/harness/vm-test.sh outage.sh`. Ten rounds each, interleaved, of the
# node pinging the peer every 10 ms (300 probes) while either
#   add-port: the host's OVS takes node-if into br-int (up, with node-if's MAC, as attach
#             makes it) and nothing else changes (the addresses stay on node-if; the kernel
#             still answers for them on br-int), or
#   attach:   `ncp-bootstrap uplink attach` (bridge, port, addresses and routes moved),
# each undone after (del-br / cleanup). Each round also prints how many packets ovs-vswitchd
# has dropped so far as "received packet on unassociated datapath port" (a packet that arrives
# on a datapath port before vswitchd has mapped it to its OpenFlow port; OVS rate-limits that
# log line, so the count is a lower bound).
set -u
. "$(dirname "$0")/common.sh"
node_with_host_ovs
MAC=$(cat /sys/class/net/$UP/address)
PEER_MAC=$(ip neigh show $GW dev $UP | awk '{print $3}')
mkdir -p $S/outage
round() { # kind, n
  ip -ts monitor address route link neigh > $S/outage/mon.$1.$2 2>&1 &
  m=$!
  ping -D -O -i 0.01 -c 300 -W1 $GW > /tmp/ping.$1.$2 2>&1 &
  p=$!
  sleep 1
  case $1 in
    add-port) ovs-vsctl add-br br-int -- set bridge br-int other-config:hwaddr=\"$MAC\" && ip link set br-int up && ovs-vsctl add-port br-int $UP ;;
    attach) $B -q uplink attach || fail "attach" ;;
    attach-neigh)
      ovs-vsctl add-br br-int -- set bridge br-int other-config:hwaddr=\"$MAC\" && ip link set br-int up
      ip neigh replace $GW lladdr $PEER_MAC dev br-int nud stale
      $B -q uplink attach || fail "attach" ;;
  esac
  wait $p
  kill $m
  cp /tmp/ping.$1.$2 $S/outage/
  echo "$1 round $2: $(grep -o '[0-9]* received' /tmp/ping.$1.$2) of 300, $(grep -c 'no answer yet' /tmp/ping.$1.$2) late, $(grep -o 'max/mdev = [0-9./]*' /tmp/ping.$1.$2 | cut -d/ -f3-4), ovs-vswitchd 'unassociated datapath port' drops so far: $(grep -c 'unassociated datapath port' /var/log/openvswitch/ovs-vswitchd.log)"
  case $1 in
    add-port) ovs-vsctl del-br br-int ;;
    attach) $B -q cleanup || fail "cleanup" ;;
    attach-neigh) $B -q cleanup || fail "cleanup"; ovs-vsctl --if-exists del-br br-int ;;
  esac
  wait_for 10 "the peer answers again" peer_answers >/dev/null
}
for n in 1 2 3 4 5 6 7 8 9 10; do round add-port $n; round attach $n; done
grep 'unassociated datapath port' /var/log/openvswitch/ovs-vswitchd.log | head -3
exit 0
