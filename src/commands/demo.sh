#!/usr/bin/env bash
# ncp-bootstrap demo: the whole story in network namespaces and a temporary host root.
# Nothing here touches this machine's own network or files: every `ip` names a namespace made
# here, OVS runs in $WORK/ovs, the "host" is $WORK/host. Everything is removed on exit, Ctrl-C
# included. Run by `ncp-bootstrap demo`, which prepares $WORK (bundle) and sets $BIN.
set -euo pipefail
NODE=ncpb-demo-node-$DEMO_ID PEER=ncpb-demo-peer-$DEMO_ID
HOST=$WORK/host OVS=$WORK/ovs
export OVS_RUNDIR=$OVS OVS_DBDIR=$OVS OVS_LOGDIR=$OVS
export NCP_BOOTSTRAP_NODE_UPLINK=eth1 NCP_BOOTSTRAP_OVS_DATAPATH_TYPE=netdev NCP_BOOTSTRAP_PROBE_TIMEOUT_MS=3000
RUN_PID="" PING_PID=""
finish() {
  [ -z "$RUN_PID" ] || kill -TERM "$RUN_PID" 2>/dev/null || true
  [ -z "$PING_PID" ] || kill "$PING_PID" 2>/dev/null || true
  sleep 0.5
  for f in "$OVS"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  ip netns del "$NODE" 2>/dev/null || true
  ip netns del "$PEER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap finish EXIT
trap 'echo; echo "interrupted: removing everything the demo made"; exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
nb() { echo "\$ ncp-bootstrap $*"; ip netns exec "$NODE" "$BIN" --host-root "$HOST" "$@"; }
node() { ip -n "$NODE" "$@"; }
state() { echo "-- addresses"; node -br -4 addr show; echo "-- routes"; node route show table all | grep -v -e '^local' -e '^broadcast' -e fe80 -e '^multicast' | sed -E 's/ expires [0-9]+sec//'; }

say "a node and a peer (network namespaces joined by a veth), node-if = eth1"
ip netns add "$NODE"; ip netns add "$PEER"
ip link add eth1 netns "$NODE" address 52:54:00:de:40:01 type veth peer name peer0 netns "$PEER"
ip -n "$PEER" link set lo up; ip -n "$PEER" link set peer0 up; ip -n "$PEER" addr add 10.0.0.1/24 dev peer0
node link set lo up; node link set eth1 up
node addr add 10.0.0.5/24 dev eth1
node route add default via 10.0.0.1 dev eth1
node route add 192.168.50.0/24 via 10.0.0.1 dev eth1 metric 50
state

say "a temporary host root that looks like an Ubuntu node"
mkdir -p "$HOST/etc/network" "$HOST/sbin" "$OVS"
printf 'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n' > "$HOST/etc/os-release"
printf 'auto lo\niface lo inet loopback\n\n# node-if (its address was set by hand)\nauto eth1\niface eth1 inet manual\n' > "$HOST/etc/network/interfaces"
: > "$HOST/sbin/ifup"; chmod 755 "$HOST/sbin/ifup"
snapshot() { (cd "$HOST" && find . -printf '%p %m %s\n' | sort && find . -type f -exec sha256sum {} + | sort); state; }
BEFORE=$(snapshot)
find "$HOST" -type f | sed "s#$HOST##"

say "install: host OVS (none here), CNI plugin, AppArmor (not enabled on this kernel: skipped)"
nb install --bundle "$WORK/bundle"

say "ovs run (userspace OVS), while the peer pings the node every 2 ms"
ip netns exec "$PEER" ping -q -i 0.002 -c 2500 -W 1 10.0.0.5 > "$WORK/ping.txt" 2>&1 &
PING_PID=$!
sleep 1
ip netns exec "$NODE" "$BIN" --host-root "$HOST" ovs run > "$WORK/ovs-run.log" 2>&1 &
RUN_PID=$!
for _ in $(seq 100); do ip netns exec "$NODE" "$BIN" --host-root "$HOST" -q ovs health >/dev/null 2>&1 && break; sleep 0.1; done
nb ovs health
grep "uplink attached" "$WORK/ovs-run.log" || true
wait "$PING_PID"; PING_PID=""
echo "peer's view during the move: $(grep -E 'packets transmitted' "$WORK/ping.txt")"
if grep -q duplicates "$WORK/ping.txt"; then
  # The userspace datapath reads eth1 from a packet socket while the kernel still receives on
  # it too; the kernel holds 10.0.0.5 (on br-int) and answers as well (weak host model). A
  # kernel datapath (the VM's) takes eth1's packets away from the kernel: one answer each.
  echo "  (duplicates: on the userspace datapath the kernel also answers what arrives on eth1;"
  echo "   the kernel datapath, as on a real node, gives one reply per probe)"
fi
state

say "the switch window, from a detach and attach the tool times itself"
nb uplink detach --output json | grep -o '"switch_window_ms": [0-9.]*' | sed 's/^/detach /'
nb uplink attach --output json | grep -o '"switch_window_ms": [0-9.]*' | sed 's/^/attach /'

say "persist: the node keeps its address and routes after a reboot (ifupdown)"
nb persist
grep -A6 'iface eth1' "$HOST/etc/network/interfaces"

say "status"
nb status --bundle "$WORK/bundle" || true

say "stop ovs run (the uplink stays attached, as when the DaemonSet is deleted)"
kill -TERM "$RUN_PID"; wait "$RUN_PID" || true; RUN_PID=""

say "cleanup: undo everything the ledger records"
nb cleanup

say "the node after cleanup vs before install"
AFTER=$(snapshot)
if [ "$BEFORE" = "$AFTER" ]; then
  echo "identical: files, modes, bytes, addresses and routes are as they were"
else
  diff <(echo "$BEFORE") <(echo "$AFTER") || true
  exit 1
fi
