# Sourced by the scenarios that play Kubernetes pods with podman (kube play of the Pods that
# vagrant/harness/kube-pods.py made, in directory $P): playing, stopping and inspecting them.
play() { # pod, then the containers kube-pods.py made podman runs of
  CONTAINERS_CONF=$P/$1.conf podman kube play $P/$1.yaml >$S/play-$1.txt 2>&1 || { cat $S/play-$1.txt; fail "podman kube play $1"; }
  CONTAINERS_CONF=$P/$1.conf sh $P/$1.run >>$S/play-$1.txt 2>&1 || { cat $S/play-$1.txt; fail "$1.run"; }
}
down() { # pod
  CONTAINERS_CONF=$P/$1.conf podman kube down $P/$1.yaml >/dev/null 2>&1 || fail "podman kube down $1"
}
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
unit() { echo "podman-kube@$(systemd-escape $P/$1.yaml).service"; }
pod_running() { [ "$(podman pod inspect --format '{{.State}}' $1 2>/dev/null)" = Running ]; }
init_done() { # pod container: the init container exited 0
  [ "$(podman inspect --format '{{.State.Status}} {{.State.ExitCode}}' $1-$2 2>/dev/null)" = "exited 0" ]
}
# Retiring the node as the README says, each step of the label as the DaemonSet controller would
# take it: the pod's boot unit stopped and removed (the pod goes).
retire_step() { # pod
  systemctl stop $(unit $1) || fail "stop $(unit $1)"
  rm -f /etc/systemd/system/multi-user.target.wants/$(unit $1)
  rm -rf /etc/systemd/system/$(unit $1).d
}
# At boot as on a node: podman-kube@ plays each pod file (with its containers.conf). The
# host directories in HOSTPATH_DIRS are made first, as the container runtime makes a missing
# hostPath without a type on a node (those under /run are gone after a reboot).
enable_at_boot() { # pod...
  for pod in "$@"; do
    mkdir -p /etc/systemd/system/$(unit $pod).d
    {
      printf '[Service]\nEnvironment=CONTAINERS_CONF=%s/%s.conf\nExecStartPost=/bin/sh %s/%s.run\n' $P $pod $P $pod
      [ -z "${HOSTPATH_DIRS:-}" ] || printf 'ExecStartPre=/bin/mkdir -p %s\n' "$HOSTPATH_DIRS"
    } > /etc/systemd/system/$(unit $pod).d/conf.conf
    systemctl add-wants multi-user.target $(unit $pod) >/dev/null 2>&1 || fail "enable $(unit $pod)"
  done
  systemctl daemon-reload
}
# The node retired as the README says: the label's first step takes the node-agent pod off,
# the bootstrap pod's monitor gives node-if its addresses back (then CHECK, a command, must
# hold), the second step takes the bootstrap pod off, the retire pod runs cleanup.
retire_node() { # check
  retire_step $AGENT
  t_gone=$(date +%s.%N)
  wait_for 90 "the monitor gave node-if its addresses back" sh -c "podman logs $BOOT-$MON 2>&1 | grep -q 'gave'"
  echo "ROW retire, nsx-ovs gone -> monitor gave node-if back: $(since $t_gone) s (grace 10 s)"
  wait_for 60 "node-if configured again ($1)" $1
  wait_for 10 "the peer answers through node-if" peer_answers
  retire_step $BOOT
  systemctl daemon-reload
  play $RETIRE
  try_for 180 init_done $RETIRE cleanup || {
    podman ps -a; podman logs $RETIRE-cleanup; ip -o addr; ip route; ip -6 route
    ovs-vsctl --timeout=5 show; fail "the retire pod's cleanup did not finish"
  }
  ok "the retire pod's cleanup finished"
  podman logs $RETIRE-cleanup
  down $RETIRE
  rm -rf $P
}
