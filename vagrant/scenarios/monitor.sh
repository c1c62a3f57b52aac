#!/bin/sh
# phases: 1
# The host-OVS monitor on the kernel datapath (ncp-bootstrap-monitor.service, grace 10 s here):
#   an in-place restart (kill -9 of ovs-vswitchd; `ovs run` starts it again) -> the monitor does
#   nothing;
#   ncp-ovs.service stopped for good (ovs.on_exit = keep: the addresses stay on br-int with no
#   switch behind it) while the peer pings every 10 ms -> node-if has its addresses back within
#   the grace period plus 5 s and the peer reaches it there; `status` says what the monitor did;
#   ncp-ovs.service started again -> attached as usual, the monitor's record dropped;
#   cleanup -> the node as before. (A monitor killed in the middle of its move, and `ovs run`
#   starting while it acts, are tested in namespaces, where fault hooks place them exactly.)
# Prints ROW lines for the benchmark report.
set -u
. "$(dirname "$0")/common.sh"
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
on_uplink() { ip -4 -o addr show dev $UP | grep -q 192.168.76.10/24; }
on_bridge() { ip -4 -o addr show dev br-int 2>/dev/null | grep -q 192.168.76.10/24; }
monitor_log() { journalctl -u ncp-bootstrap-monitor --no-pager -o cat; }
GRACE=10

node_with_host_ovs
wait_for 90 "openvswitch-switch.service active" systemctl is-active -q openvswitch-switch
before=$(snapshot)
install_units "NCP_BOOTSTRAP_MONITOR_GRACE_SECONDS=$GRACE"
systemctl start ncp-bootstrap.service || fail "install"
systemctl start ncp-ovs.service || fail "ncp-ovs.service"
wait_for 120 "ovs health (kernel datapath, uplink attached)" $B -q ovs health
grep -q '^openvswitch ' /proc/modules || fail "no kernel datapath"
systemctl start ncp-bootstrap-monitor.service || fail "ncp-bootstrap-monitor.service"
wait_for 30 "the monitor sees nsx-ovs" sh -c "journalctl -u ncp-bootstrap-monitor --no-pager -o cat | grep -q 'nsx-ovs present'"

# In place: ovs run starts ovs-vswitchd again; never "gone".
kill -9 "$(cat /var/run/openvswitch/ovs-vswitchd.pid)" || fail "kill -9 ovs-vswitchd"
sleep 2
wait_for 60 "ovs health after the in-place restart" $B -q ovs health
sleep $((GRACE + 3))
monitor_log | grep -q 'gave .* back' && { monitor_log; fail "the monitor acted on an in-place restart"; }
on_bridge && ok "the monitor left an in-place restart alone" || fail "address not on br-int"

# Gone for good.
peer_ping_begin 0.01 3000
sleep 2
t_stop=$(date +%s.%N)
systemctl stop ncp-ovs.service
wait_for $((GRACE + 5)) "node-if has its address back (grace $GRACE s + 5 s)" on_uplink
took=$(since $t_stop)
wait_for 5 "the peer answers through $UP" peer_answers
echo "ROW monitor nsx-ovs stopped -> address on $UP: $took s (grace $GRACE s)"
peer_ping_end "monitor, ncp-ovs stopped for good, 10 ms"
monitor_log | grep 'gave'
ovs-dpctl show 2>/dev/null | grep -q "port [0-9]*: $UP\$" && fail "$UP still a port of the kernel datapath"
$B status > $S/status-released.txt 2>&1
grep -q "gave $UP its addresses back" $S/status-released.txt && ok "status says what the monitor did" || { cat $S/status-released.txt; fail "status"; }

# Back: attached as usual.
systemctl start ncp-ovs.service || fail "ncp-ovs.service again"
wait_for 120 "attached again" sh -c "$B -q ovs health --ready && ip -4 -o addr show dev br-int | grep -q 192.168.76.10/24"
# The attach drops the monitor's record once its check after the move is done.
wait_for 30 "the monitor's record dropped by the attach" sh -c "! grep -q monitor_released /var/lib/ncp-bootstrap/ledger.json"
wait_for 10 "the peer answers through br-int" peer_answers

systemctl stop ncp-bootstrap-monitor.service
systemctl stop ncp-ovs.service
$B cleanup || fail "cleanup"
wait_for 90 "openvswitch-switch.service active again" systemctl is-active -q openvswitch-switch
snapshot > $S/monitor-after.txt
echo "$before" > $S/monitor-before.txt
diff $S/monitor-before.txt $S/monitor-after.txt && ok "cleanup: the node as before" || fail "cleanup left changes"
exit 0
