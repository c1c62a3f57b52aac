#!/usr/bin/env bash
# The VM test of record: builds (or reuses) the guest image, then runs a scenario's phases as
# separate boots of one disk (so phase 2 runs after a real reboot). Prints each phase's log and
# exits non-zero when any phase fails.
# Usage: vm-test.sh [SCENARIO] [WORK_DIR]    (root; qemu-system-x86, mmdebstrap)
# A scenario names its phases in a `# phases:` line (default: 1 2).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SCENARIO=${1:-lifecycle.sh}
WORK=${2:-$REPO/target/vm}
mkdir -p "$WORK"
IMG=$WORK/image
t0=$(date +%s)
bash "$HERE/build-image.sh" "$IMG"
t1=$(date +%s)
RUN=$(mktemp -d "$WORK/run.XXXXXX")
SHARE=$RUN/share
bash "$HERE/make-share.sh" "$SHARE"
echo "$SCENARIO" > "$SHARE/scenario"
status=0
PHASES=$(sed -n 's/^# phases: *//p' "$REPO/vagrant/scenarios/$SCENARIO")
for phase in ${PHASES:-1 2}; do
  echo "$phase" > "$SHARE/phase"
  p0=$(date +%s)
  bash "$HERE/run-vm.sh" "$IMG" "$RUN/disk.qcow2" "$SHARE" "$RUN/serial.$phase.log" 900 || true
  p1=$(date +%s)
  echo "== phase $phase ($((p1 - p0)) s) =="
  cat "$SHARE/log.$phase" 2>/dev/null || { echo "no log: the guest did not run the scenario"; tail -30 "$RUN/serial.$phase.log"; }
  rc=$(cat "$SHARE/rc.$phase" 2>/dev/null || echo missing)
  echo "== phase $phase exit: $rc =="
  if [ "$rc" != 0 ]; then status=1; break; fi
done
if [ -f "$SHARE/ping-attach.txt" ]; then
  echo "== kernel datapath: node pinging its gateway every 10 ms during attach =="
  grep -i "no answer" "$SHARE/ping-attach.txt" | head -5 || true
  tail -2 "$SHARE/ping-attach.txt"
  grep -h "uplink attached" "$SHARE"/ovs-run-*.log 2>/dev/null || true
fi
echo "image $((t1 - t0)) s, total $(( $(date +%s) - t0 )) s"
[ "$status" = 0 ] && rm -rf "$RUN"
exit $status
