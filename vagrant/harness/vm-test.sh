#!/usr/bin/env bash
# The VM test of record: builds (or reuses) the guest image, then runs a scenario's phases as
# separate boots of one disk (so phase 2 runs after a real reboot). Prints each phase's log and
# exits non-zero when any phase fails.
# Usage: vm-test.sh [SCENARIO] [WORK_DIR]    (root; qemu-system-x86, mmdebstrap)
# A scenario names its phases in a `# phases:` line (default: 1 2).
#
# The host-side peer: a network namespace this script creates (and removes) holding tap0, the
# other end of the guest's node-if, with 192.168.76.1/24 and fd00:76::1/64. The node's gateway
# is this peer, and while the guest attaches its uplink the peer pings the node every 10 ms from
# outside (the guest asks for it by creating peer-ping.go in the share).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SCENARIO=${1:-lifecycle.sh}
WORK=${2:-$REPO/target/vm}
mkdir -p "$WORK/logs"
# A copy of everything printed, for `make bench` (NCPB_BENCH_REUSE_VM_LOGS).
exec > >(tee "$WORK/logs/$SCENARIO.log") 2>&1
IMG=$WORK/image
t0=$(date +%s)
bash "$HERE/build-image.sh" "$IMG"
t1=$(date +%s)
RUN=$(mktemp -d "$WORK/run.XXXXXX")
SHARE=$RUN/share
bash "$HERE/make-share.sh" "$SHARE"
echo "$SCENARIO" > "$SHARE/scenario"
# A scenario with `# needs: image` gets the image of `make image` and the Pods that
# kube-pods.py makes of units/kubernetes (the demo bundle allowed: no NCP release here).
if grep -q '^# needs: image' "$REPO/vagrant/scenarios/$SCENARIO"; then
  cp "$REPO/target/image/ncp-bootstrap.oci.tar" "$SHARE/"
  mkdir -p "$SHARE/pods"
  python3 "$HERE/kube-pods.py" "$REPO" "$(cat "$REPO/target/image/tag")" "$SHARE/pods" \
    NCP_BOOTSTRAP_CNI_ALLOW_DEMO_BUNDLE=true NCP_BOOTSTRAP_PROBE_TIMEOUT_MS=10000 NCP_BOOTSTRAP_MONITOR_GRACE_SECONDS=10
fi
# A scenario with `# needs: ncp-manifests` gets, in ncp-pods/, NCP's own Ubuntu manifest
# (tests/fixtures/ncp-operator) rendered as NCP's operator does, with the example ConfigMap's
# ncp.ini, then given to `ncp-bootstrap inject`: the Pods kube-pods.py makes of its DaemonSets.
if grep -q '^# needs: ncp-manifests' "$REPO/vagrant/scenarios/$SCENARIO"; then
  mkdir -p "$SHARE/ncp-pods"
  python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["ncp.ini"], end="")' \
    "$REPO/units/kubernetes/example/nsx-node-agent-config.yaml" > "$SHARE/ncp-pods/ncp.ini"
  python3 "$HERE/render-ncp.py" "$REPO/tests/fixtures/ncp-operator/ncp-ubuntu.yaml" \
    "$SHARE/ncp-pods/ncp.ini" > "$SHARE/ncp-pods/ncp-ubuntu.yaml"
  "$SHARE/ncp-bootstrap" inject --image registry.example.com/ncp-bootstrap:injected \
    -f "$SHARE/ncp-pods/ncp-ubuntu.yaml" > "$SHARE/ncp-pods/ncp-ubuntu-injected.yaml"
  python3 "$HERE/kube-pods.py" --ncp "$SHARE/ncp-pods/ncp-ubuntu-injected.yaml" "$REPO" \
    "$(cat "$REPO/target/image/tag")" "$SHARE/ncp-pods" \
    NCP_BOOTSTRAP_CNI_ALLOW_DEMO_BUNDLE=true NCP_BOOTSTRAP_PROBE_TIMEOUT_MS=10000 NCP_BOOTSTRAP_MONITOR_GRACE_SECONDS=10
fi
# A scenario with `# needs: packages` gets the packages of `make packages`, and in packages/next
# the .deb again under the next version (its upgrade).
if grep -q '^# needs: packages' "$REPO/vagrant/scenarios/$SCENARIO"; then
  mkdir -p "$SHARE/packages/next"
  cp "$REPO"/target/packages/*.deb "$SHARE/packages/"
  version=$(dpkg-deb -f "$REPO"/target/packages/*.deb Version)
  NCPB_PACKAGES_OUT="$SHARE/packages/next" NCPB_PACKAGES_ONLY=deb NCPB_DEB_VERSION="${version%-*}-2" \
    bash "$REPO/scripts/packages.sh"
fi
# A scenario with `# needs: kmod` gets the stand-in for NSX's OVS kernel module, built for the
# guest's kernel (build-kmod.sh, cached), in its bundle as NCP ships it: kmod/<release>/*.ko.
if grep -q '^# needs: kmod' "$REPO/vagrant/scenarios/$SCENARIO"; then
  bash "$HERE/build-kmod.sh" "$IMG" "$WORK/kmod"
  mkdir -p "$SHARE/bundle/kmod"
  for d in "$WORK"/kmod/*/; do
    rel=$(basename "$d"); mkdir -p "$SHARE/bundle/kmod/$rel"; cp "$d"*.ko "$SHARE/bundle/kmod/$rel/"
  done
fi

NS=ncpb-vm-$$
WATCH=
HOGS=
finish() {
  [ -n "$WATCH" ] && kill "$WATCH" 2>/dev/null
  [ -n "$HOGS" ] && kill $HOGS 2>/dev/null
  ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null
  ip netns del "$NS" 2>/dev/null
  true
}
trap finish EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" tuntap add dev tap0 mode tap
ip -n "$NS" addr add 192.168.76.1/24 dev tap0
ip -n "$NS" addr add fd00:76::1/64 dev tap0 nodad
ip -n "$NS" link set tap0 up
# The peer's side of the outage measurements: one round per peer-ping.go the guest creates
# (it may name the interval and count: "0.001 3000"; default every 10 ms, 1500 probes; a
# peer-ping.stop ends it early), and one
# TCP stream per peer-tcp.go ("SECONDS": the node connects to port 5001 and echoes).
(
  while :; do
    if [ -e "$SHARE/peer-ping.go" ]; then
      read -r interval count < "$SHARE/peer-ping.go" || true
      rm -f "$SHARE/peer-ping.go"
      ( ip netns exec "$NS" ping -D -O -i "${interval:-0.01}" -c "${count:-1500}" -W1 192.168.76.10 > "$SHARE/peer-ping.txt" 2>&1 &
        echo $! > "$RUN/peer-ping.pid"; wait $!
        touch "$SHARE/peer-ping.done" ) &
    fi
    # peer-ping.stop ends the round early (SIGINT: ping prints its summary).
    if [ -e "$SHARE/peer-ping.stop" ]; then
      rm -f "$SHARE/peer-ping.stop"
      [ -e "$RUN/peer-ping.pid" ] && kill -INT "$(cat "$RUN/peer-ping.pid")" 2>/dev/null
    fi
    if [ -e "$SHARE/peer-tcp.go" ]; then
      read -r seconds < "$SHARE/peer-tcp.go" || true
      rm -f "$SHARE/peer-tcp.go"
      ( ip netns exec "$NS" timeout 100 python3 "$HERE/peer-tcp.py" 192.168.76.1 5001 "${seconds:-15}" "$SHARE/peer-tcp.txt" \
          > "$SHARE/peer-tcp.err" 2>&1; touch "$SHARE/peer-tcp.done" ) &
    fi
    sleep 0.1
  done
) &
WATCH=$!
touch "$SHARE/peer-watch"
# A scenario with `# peer: dnsmasq` gets a DHCP server (one address, 192.168.76.10, on 2-minute
# leases, so a renewal is due every minute; a client with another identity gets nothing while the
# lease lives) and router advertisements for fd00:76::/64 (every
# 10 s, 2-minute lifetimes) from the peer; its log and lease file are in the share.
if grep -q '^# peer: dnsmasq' "$REPO/vagrant/scenarios/$SCENARIO"; then
  ip netns exec "$NS" dnsmasq --keep-in-foreground --user=root --port=0 --no-resolv --no-hosts \
    --bind-interfaces --interface=tap0 --except-interface=lo \
    --dhcp-range=192.168.76.10,192.168.76.10,255.255.255.0,2m \
    --dhcp-option=option:router,192.168.76.1 --dhcp-option=option:dns-server,192.168.76.53 \
    --dhcp-option=option:domain-search,ncpb.test \
    --enable-ra --dhcp-range=::,constructor:tap0,ra-only,2m --ra-param=tap0,10,600 \
    --dhcp-leasefile="$SHARE/dnsmasq.leases" --log-dhcp --log-facility="$SHARE/dnsmasq.log" \
    --pid-file="$RUN/dnsmasq.pid" &
fi

# Load beside the VM: NCPB_VM_LOAD=N processes that burn a CPU each for the whole run (a
# scenario with `# load: cpu` gets one in any case), so that a scenario is proven on a busy
# machine, not only on a quiet one.
LOAD=${NCPB_VM_LOAD:-0}
if [ "$LOAD" = 0 ] && grep -q '^# load: cpu' "$REPO/vagrant/scenarios/$SCENARIO"; then LOAD=1; fi
for _ in $(seq 1 "$LOAD"); do
  sh -c 'while :; do :; done' &
  HOGS="$HOGS $!"
done
[ "$LOAD" = 0 ] || echo "load: $LOAD CPU-burning process(es) beside the VM"

status=0
PHASES=$(sed -n 's/^# phases: *//p' "$REPO/vagrant/scenarios/$SCENARIO")
for phase in ${PHASES:-1 2}; do
  echo "$phase" > "$SHARE/phase"
  p0=$(date +%s)
  bash "$HERE/run-vm.sh" "$IMG" "$RUN/disk.qcow2" "$SHARE" "$RUN/serial.$phase.log" "$NS" 900 || true
  p1=$(date +%s)
  echo "== $SCENARIO phase $phase ($((p1 - p0)) s) =="
  cat "$SHARE/log.$phase" 2>/dev/null || { echo "no log: the guest did not run the scenario"; tail -30 "$RUN/serial.$phase.log"; }
  rc=$(cat "$SHARE/rc.$phase" 2>/dev/null || echo missing)
  echo "== $SCENARIO phase $phase exit: $rc =="
  if [ "$rc" != 0 ]; then status=1; break; fi
done
for f in ping-attach.txt peer-ping.txt; do
  [ -f "$SHARE/$f" ] || continue
  case $f in
    ping-attach.txt) echo "== kernel datapath: node pinging the peer every 10 ms during attach ==" ;;
    peer-ping.txt) echo "== kernel datapath: peer pinging the node every 10 ms during attach ==" ;;
  esac
  grep -i "no answer" "$SHARE/$f" | head -5 || true
  tail -2 "$SHARE/$f"
done
grep -h "uplink attached" "$SHARE"/ovs-run-*.log 2>/dev/null || true
echo "image $((t1 - t0)) s, total $(( $(date +%s) - t0 )) s"
# NCPB_KEEP_RUN=1 keeps the run directory (share, logs, disk) of a passing run too.
if [ "$status" = 0 ] && [ -z "${NCPB_KEEP_RUN:-}" ]; then
  rm -rf "$RUN"
else
  echo "run directory (kept): $RUN"
fi
exit $status
