#!/bin/sh
# phases: 1
# kill -9 in the middle of `uplink attach` and of `cleanup`, on the kernel datapath with the
# host's own OVS: each re-run converges and the peer answers (IPv4 and IPv6) at the end. The kill lands at a
# different moment in each round (0.1 s to 1.5 s into a run that takes about 2 s under TCG).
set -u
. "$(dirname "$0")/common.sh"
node_with_host_ovs
node_state() {
  ip -o addr show dev $UP scope global | awk '{print $4}'
  ip route show dev $UP
  ip -6 route show dev $UP | grep -v fe80 | sed -E 's/ expires [0-9]+sec//'
}
before=$(node_state)

for delay in 0.1 0.4 0.8 1.5; do
  timeout -s KILL $delay $B -q uplink attach; echo "attach killed after ${delay}s (exit $?)"
  $B -q uplink attach || fail "attach after a kill at ${delay}s"
  ip -4 -o addr show dev br-int | grep -q 192.168.76.10/24 || fail "address not on br-int after the re-run"
  ip -4 -o addr show dev $UP | grep -q 192.168.76.10 && fail "address still on $UP"
  wait_for 10 "the peer answers through br-int (kill at ${delay}s)" peer_answers
  timeout -s KILL $delay $B -q cleanup; echo "cleanup killed after ${delay}s (exit $?)"
  $B -q cleanup || fail "cleanup after a kill at ${delay}s"
  after=$(node_state)
  [ "$after" = "$before" ] || { echo "$before"; echo "$after"; fail "node not restored (kill at ${delay}s)"; }
  [ -z "$(ovs-vsctl list-br)" ] || fail "bridge left behind"
  wait_for 10 "the peer answers through $UP (kill at ${delay}s)" peer_answers
done
exit 0
