#!/bin/sh
# phases: 1
# nsx-ovs restarts on the kernel datapath, while the peer pings the node every 10 ms and streams
# TCP to it (the node echoes). Each kind of restart is done the way `ovs run` does it now
# (ovs.keep_flows = true: flows saved and restored under flow-restore-wait) and the naive way
# (keep_flows = false: the new ovs-vswitchd starts empty and flushes the datapath):
#   restart   systemctl restart ncp-ovs (SIGTERM, then start)
#   kill      kill -9 of ovs-vswitchd; `ovs run` starts it again in place (the naive way
#             without flow-restore-wait and the saved flows)
#   upgrade   a new binary (another file) started on the old database
# Then the first attach, with the peer pinging every 1 ms: `uplink attach` against a plain
# `ovs-vsctl add-port` and a control round that attaches nothing, with ovs-vswitchd's count of
# packets dropped on an "unassociated datapath port" and, per lost probe, its time after the
# attach began (the peer's clock against the guest's: approximate).
# Checks behaviour (a flow added with ovs-ofctl survives each restart of ours; flow-restore-wait
# is cleared; after every restart, kill and upgrade, both ways, no exact-match drop flow is left
# for the uplink's datapath port, ovs health is healthy and a fresh round of the peer's pings is
# answered; the peer answers at the end) and prints one ROW line per measurement for the
# benchmark report. It must pass with load beside the VM (NCPB_VM_LOAD=1).
set -u
. "$(dirname "$0")/common.sh"
node_with_host_ovs
# The baseline for start → attached: the OVS project's own start script on this database.
systemctl stop openvswitch-switch ovs-vswitchd ovsdb-server
t0=$(date +%s%N)
/usr/share/openvswitch/scripts/ovs-ctl start --system-id=random >/dev/null 2>&1 || fail "ovs-ctl start"
t1=$(date +%s%N)
/usr/share/openvswitch/scripts/ovs-ctl stop >/dev/null 2>&1
systemctl start openvswitch-switch
wait_for 90 "host OVS answers again" ovs-vsctl --timeout=2 show
install_units ""
systemctl start ncp-bootstrap.service || fail "install"
systemctl start ncp-ovs.service || fail "ncp-ovs.service"
wait_for 120 "ovs health (kernel datapath, uplink attached)" $B -q ovs health
# `ovs run` logs the figure once its check after the move is done, which can be after health.
wait_for 60 "ovs run logged its start → attached time" sh -c "journalctl -u ncp-ovs --no-pager -o cat | grep -q 'uplink attached [0-9]* ms after start'"
journalctl -u ncp-ovs --no-pager -o cat | grep 'uplink attached'
ours=$(journalctl -u ncp-ovs --no-pager -o cat | sed -n 's/.*uplink attached \([0-9]*\) ms after start.*/\1/p' | head -1)
echo "ROW start-attached ours probes_received=- start_attached_ms=$ours ovs_ctl_start_ms=$(( (t1 - t0) / 1000000 ))"
grep -q '^openvswitch ' /proc/modules || fail "no kernel datapath"
# What NCP's agent would have installed: a flow of its own, above the NORMAL one.
ovs-ofctl add-flow br-int "table=0,priority=200,cookie=0x77,ip,actions=NORMAL"
install -m 0755 $B /usr/local/sbin/ncp-bootstrap-next

healthy_again() {
  wait_for 120 "ovs health after $1" $B -q ovs health
  ovs-vsctl get Open_vSwitch . other_config | grep -q flow-restore-wait && fail "flow-restore-wait left set after $1"
  wait_for 10 "the peer answers after $1" peer_answers
}

# keep_flows for ncp-ovs.service: true (ours) or false (naive), and which binary runs it.
service_with() { # keep_flows binary
  mkdir -p /run/systemd/system/ncp-ovs.service.d
  printf '[Service]\nEnvironment=NCP_BOOTSTRAP_OVS_KEEP_FLOWS=%s\nExecStart=\nExecStart=%s ovs run --host-root /\n' "$1" "$2" \
    > /run/systemd/system/ncp-ovs.service.d/round.conf
  systemctl daemon-reload
}

measure() { # kind, way; the action is in "$@" after them
  kind=$1 way=$2; shift 2
  peer_tcp_begin 17
  peer_ping_begin 0.01 1500
  sleep 2
  since=$(date +%s)
  "$@"
  peer_ping_end
  tcp=$(peer_tcp_end)
  lost=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' $S/peer-ping.txt)
  # Out of what the peer sent: on a loaded host ping may send fewer than asked.
  tx=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' $S/peer-ping.txt)
  stall=$(echo "$tcp" | sed -n 's/.*ack_stall \([0-9]*\) ms.*/\1/p')
  echo_stall=$(echo "$tcp" | sed -n 's/.*longest stall \([0-9]*\) ms.*/\1/p')
  rtx=$(echo "$tcp" | sed -n 's/.*retransmits \([0-9]*\).*/\1/p')
  echo "ROW $kind $way probes_received=$lost/${tx:-1500} tcp_stall_ms=${stall:-none} echo_stall_ms=${echo_stall:-none} retransmits=${rtx:-none} ($tcp)"
  cp $S/peer-ping.txt $S/peer-ping.$kind.$way.txt
  if [ -z "$stall" ]; then
    # The stream did not finish: what the node's TCP and the datapath held then.
    echo "TCP stream of $kind $way did not finish; the node's socket and the datapath's TCP flows:"
    ss -tni dst $GW
    ovs-dpctl dump-flows | grep 'proto=6' | head -20
    cat $S/peer-tcp.err 2>/dev/null | tail -5
  fi
  # What `ovs run` said meanwhile, for the record.
  journalctl -u ncp-ovs --no-pager -o short-precise --since "@$since" | grep -v ' ovs run: \(add\|delete\|replace\) \||coverage|\||poll_loop|\||memory|' | tail -25
}

# Exact-match drop flows for the uplink's datapath port, as ovs-vswitchd installs them for
# packets it got before it had mapped the port (an exact key prints every field, skb_priority
# too; a megaflow leaves wildcards out).
uplink_odp() { ovs-dpctl show | sed -n "s/.*port \([0-9]*\): $UP\$/\1/p"; }
stale_drops() { ovs-dpctl dump-flows | grep "in_port($(uplink_odp))," | grep 'skb_priority(' | grep 'actions:drop$' | grep -vc /; }
# The peer reaches the node: a short round from the peer (its echo requests are what a stale
# drop flow black-holes; the node's own pings to the gateway are another flow).
peer_reaches_node() { # after what
  peer_ping_begin 0.01 200
  peer_ping_end
  n=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' $S/peer-ping.txt)
  [ "${n:-0}" -ge 190 ] && ok "the peer reaches the node after $1 ($n/200)" || { ovs-dpctl dump-flows | grep "in_port($(uplink_odp))," | head; fail "the peer does not reach the node after $1 ($n/200)"; }
}
# After each restart of the switch: no stale drop flow left (ovs run sweeps after each start),
# health healthy, the peer through.
datapath_clean() { # after what
  wait_for 15 "no stale drop flow for $UP after $1" test "$(stale_drops)" = 0
  $B -q ovs health || fail "ovs health after $1"
  peer_reaches_node "$1"
}
do_restart() { systemctl restart ncp-ovs.service; healthy_again "$1"; }
do_kill() {
  old=$(pgrep -x ovs-vswitchd) || fail "no ovs-vswitchd to kill"
  main=$(systemctl show -p MainPID --value ncp-ovs.service)
  kill -9 $old
  wait_for 30 "ovs-vswitchd started again" sh -c "p=\$(pgrep -x ovs-vswitchd) && [ \"\$p\" != $old ]"
  healthy_again "$1"
  [ "$(systemctl show -p MainPID --value ncp-ovs.service)" = "$main" ] || fail "ovs run itself restarted after ovs-vswitchd's death ($1)"
}

# The noise floor: the same measurement with nothing restarted (TCG guest, host-side peer).
measure none - true

for way in ours naive; do
  [ $way = ours ] && keep=true || keep=false
  service_with $keep /usr/bin/ncp-bootstrap
  systemctl restart ncp-ovs.service; healthy_again "switching to $way"
  ovs-ofctl add-flow br-int "table=0,priority=200,cookie=0x77,ip,actions=NORMAL"

  measure restart $way do_restart "restart ($way)"
  datapath_clean "restart ($way)"
  measure kill $way do_kill "kill -9 of ovs-vswitchd ($way)"
  datapath_clean "kill -9 ($way)"
  if [ $way = ours ]; then
    ovs-ofctl dump-flows br-int | grep -q cookie=0x77 && ok "the agent's flow survived restart and kill -9" || fail "flow lost ($way)"
  fi
  service_with $keep /usr/local/sbin/ncp-bootstrap-next
  measure upgrade $way do_restart "upgrade ($way)"
  datapath_clean "upgrade ($way)"
  if [ $way = ours ]; then
    ovs-ofctl dump-flows br-int | grep -q cookie=0x77 && ok "the agent's flow survived the upgrade" || fail "flow lost in the upgrade"
  fi
done

service_with true /usr/bin/ncp-bootstrap
systemctl restart ncp-ovs.service; healthy_again "the last restart"
datapath_clean "the last restart"

# First attach at 1 ms: the uplink back on node-if, then ours and the plain add-port five times
# each, and twice a round that attaches nothing.
MAC=$(cat /sys/class/net/$UP/address)
first_attach() { # way
  case $1 in
    none) ;;
    ours) $B -q uplink attach || fail "uplink attach" ;;
    naive) ovs-vsctl add-br br-int -- set bridge br-int other-config:hwaddr=\"$MAC\" && ip link set br-int up && ovs-vsctl add-port br-int $UP ;;
  esac
  sleep 1
}
dropped() { grep -c 'unassociated datapath port' /var/log/openvswitch/ovs-vswitchd.log; }
# IPv4 packets the kernel freed as dropped while the port was added (the skb:kfree_skb
# tracepoint), and where: netdev_frame_hook is OVS's receive hook on a device not yet marked as
# an OVS port.
T=/sys/kernel/tracing
mountpoint -q $T || mount -t tracefs nodev $T
echo 'protocol == 2048' > $T/events/skb/kfree_skb/filter
echo 'stacktrace if protocol == 2048' > $T/events/skb/kfree_skb/trigger
trace_on() { echo > $T/trace; echo 1 > $T/events/skb/kfree_skb/enable; }
trace_off() { echo 0 > $T/events/skb/kfree_skb/enable; }
# The drops that can be a probe's: not those of the tool's own gateway probes (their echo replies,
# freed by icmp_rcv for want of a ping socket, and the raw socket's queue when it closes).
kernel_drops() { awk '/kfree_skb:/ { n = 0; next } /^ => / { if (++n == 3 && $2 != "icmp_rcv" && $2 != "inet_sock_destruct") c++ } END { print c + 0 }' $T/trace; }
kernel_drop_sites() { awk '/kfree_skb:/ { n = 0; next } /^ => / { if (++n == 3) print $2 }' $T/trace | sort | uniq -c | tr '\n' ' '; }
# Which probes never came back, in ms after the attach began (-O prints late ones too).
missing() { # ping output, start (s.ns)
  awk -v t0="$2" '/no answer yet/ { s = $6; sub("icmp_seq=", "", s); late[s] = $1 }
    /bytes from/ { for (i = 1; i <= NF; i++) if ($i ~ /^icmp_seq=/) { s = $i; sub("icmp_seq=", "", s); got[s] = 1 } }
    END { for (s in late) if (!(s in got)) { t = late[s]; gsub(/[][]/, "", t); printf "seq %s at %+.0f ms; ", s, (t - t0) * 1000 } }' "$1"
}
$B -q uplink detach || fail "uplink detach"
for round in 1 2 3 4 5; do
  for way in ours naive none; do
    # The control measures the harness's own loss; two rounds of it are enough.
    [ $way = none ] && [ $round -gt 2 ] && continue
    ovs-vsctl --if-exists del-br br-int
    wait_for 10 "the peer answers through $UP" peer_answers
    d0=$(dropped)
    peer_ping_begin 0.001 4000
    sleep 1.5
    t0=$(date +%s.%N)
    trace_on
    first_attach $way
    trace_off
    peer_ping_end
    n=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' $S/peer-ping.txt)
    tx=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' $S/peer-ping.txt)
    echo "ROW first-attach $way probes_received=$n/${tx:-4000} round=$round kernel_drops=$(kernel_drops) unassociated_logged=$(( $(dropped) - d0 )) missing: $(missing $S/peer-ping.txt $t0) drop sites: $(kernel_drop_sites)"
    # Exact-match drop flows for the uplink's datapath port, as ovs-vswitchd installs them for
    # packets it got before it knew the port: after ours none may be left.
    stale=$(stale_drops)
    echo "stale drop flows after $way: $stale"
    if [ $way = ours ]; then
      [ "$stale" = 0 ] || { ovs-dpctl dump-flows; fail "a drop flow for $UP was left after the attach"; }
      ip link show $UP | grep -q PROMISC && fail "the attach left $UP's promiscuous flag on"
      [ "$(ip -d link show $UP | sed -n 's/.*promiscuity \([0-9]*\).*/\1/p')" = 1 ] || fail "OVS does not hold $UP promiscuous"
    fi
    case $way in
      ours) $B -q uplink detach || fail "uplink detach" ;;
      naive) ovs-vsctl --if-exists del-br br-int ;;
    esac
  done
done
$B -q uplink attach || fail "attach at the end"
wait_for 10 "the peer answers at the end" peer_answers
exit 0
