# Sourced by every scenario: where things are, and the small helpers they share.
# The qemu harness shares /mnt/host and uses eth0 on qemu's user-mode network; the Vagrant run
# uploads to another directory and uses eth1 on a libvirt network (eth0 is Vagrant's).
S=${NCPB_SHARE:-/mnt/host}
B=$S/ncp-bootstrap
UP=${NCPB_UPLINK:-eth0}
GW=${NCPB_GATEWAY:-192.168.76.2}
export NCP_BOOTSTRAP_NODE_UPLINK=$UP NCP_BOOTSTRAP_PROBE_TIMEOUT_MS=10000
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }
wait_for() { # seconds, description, command...
  t=$1; d=$2; shift 2
  i=0
  while [ "$i" -lt $((t * 10)) ]; do "$@" >/dev/null 2>&1 && { ok "$d"; return 0; }; sleep 0.1; i=$((i + 1)); done
  fail "timed out: $d"
}
