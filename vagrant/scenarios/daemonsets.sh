#!/bin/sh
# phases: 1 2
# needs: image
# ncp-bootstrap as it is deployed: the image of `make image`, and the pod templates of
# units/kubernetes run by podman (kube play; harness/kube-pods.py turned each DaemonSet into its Pod,
# and its containers.conf carries the fields podman 4.3 does not read: see vagrant/README.md).
# Phase 1: a node after NCP's manual procedure (its address in ifupdown's file, but moved by
#   hand to br-int of the host's OVS, which runs with node-if as port 1) -> the
#   ncp-bootstrap pod (init container: the address back on node-if, host OVS stopped and
#   disabled through the host's systemd, CNI installed, profile loaded in enforce mode) -> the node-agent pod (nsx-ovs with
#   the manifest's capabilities attaches the uplink on the kernel datapath while the peer
#   pings; nsx-node-agent confined by node-agent-apparmor) -> kill -9 of nsx-ovs: restarted,
#   attached again -> the node-agent pod removed: the bootstrap pod's monitor gives node-if its
#   address back -> the pod played again: attached -> both pods enabled at boot (podman-kube@)
#   -> reboot.
# Phase 2: the pods come back at boot, the init container converges, the uplink is attached ->
#   `status` from the monitor container as the README writes it -> the node retired as the
#   README says (nsx-ovs off, the monitor gives node-if its addresses back, the bootstrap pod
#   off, the retire pod's cleanup) -> the node is as before (the address on the host OVS's
#   br-int again, that OVS running and enabled).
set -u
PHASE=$1
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/pods.sh"
# Outside what the snapshot covers: the scenario's files, not the product's changes.
P=/srv/ncpb-pods
BOOT=ncp-bootstrap
INIT=nsx-ncp-bootstrap
MON=nsx-host-ovs-monitor
AGENT=ncp-bootstrap-node-agent
RETIRE=ncp-bootstrap-retire-$(hostname)
ovs_pid() { podman inspect --format '{{.State.Pid}}' $AGENT-nsx-ovs 2>/dev/null; }
addr_on_uplink() { ip -4 -o addr show dev $UP | grep -q 192.168.76.10/24; }
attached() { [ "$(ovs-vsctl --timeout=2 get Interface $UP ofport 2>/dev/null)" = 1 ] && ip -4 -o addr show dev br-int | grep -q 192.168.76.10/24; }
# ovs run's "start → uplink attached" line of the nsx-ovs container's current run.
attach_line() { podman logs $AGENT-nsx-ovs 2>&1 | grep 'uplink attached' | tail -n1; }

wait_for 60 "$UP is up" ip link show $UP up
if [ "$PHASE" = 1 ]; then
  # The node before ncp-bootstrap: node-if configured by ifupdown, the host's OVS running.
  ifdown $UP >/dev/null 2>&1
  printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet manual\n\nauto %s\niface %s inet static\n    address 192.168.76.10/24\n    gateway %s\n\niface %s inet6 static\n    address fd00:76::10/64\n    dad-attempts 0\n' \
    $UP $UP $GW $UP > /etc/network/interfaces
  ifup $UP || fail "ifup $UP"
  wait_for 90 "openvswitch-switch.service active" systemctl is-active -q openvswitch-switch
  wait_for 30 "the peer answers" peer_answers
  # NCP's manual procedure: br-int with node-if as port 1, the node's addresses and default
  # route moved by hand onto br-int.
  ovs-vsctl --may-exist add-br br-int -- --may-exist add-port br-int $UP -- set Interface $UP ofport_request=1 || fail "add-port"
  ip link set br-int up
  ip addr del 192.168.76.10/24 dev $UP && ip addr add 192.168.76.10/24 dev br-int
  ip -6 addr del fd00:76::10/64 dev $UP && ip -6 addr add fd00:76::10/64 dev br-int nodad
  ip route add default via $GW dev br-int
  wait_for 30 "the peer answers through the host OVS's br-int" peer_answers
  t_load=$(date +%s.%N)
  podman load -q -i $S/ncp-bootstrap.oci.tar >/dev/null || fail "podman load"
  image=$(cat $S/pods/image)
  podman image exists $image || fail "the image is not $image"
  ok "image loaded ($image, $(podman image inspect --format '{{.Size}}' $image | awk '{printf "%d MiB", $1/1048576}')) in $(since $t_load) s"
  mkdir -p $P && cp $S/pods/*.yaml $S/pods/*.conf $S/pods/*.run $S/pods/*.capeff $P/
  # podman's own CNI configs appear at its first network use and at its first kube play (the
  # default kube network): made before the snapshot, they are not in what cleanup must undo.
  podman network ls >/dev/null
  podman network exists podman-default-kube-network || podman network create podman-default-kube-network >/dev/null
  snapshot > $S/before.txt

  play $BOOT
  try_for 180 init_done $BOOT $INIT || { podman ps -a; podman logs $BOOT-$INIT; fail "the $INIT init container did not finish"; }
  ok "the $BOOT pod's init container finished"
  wait_for 30 "the $BOOT pod is Running" pod_running $BOOT
  podman logs $BOOT-$INIT > $S/init-1.txt 2>&1
  cat $S/init-1.txt
  ip -4 -o addr show dev $UP | grep -q 192.168.76.10/24 && ok "the address is back on $UP" || fail "address not on $UP"
  wait_for 30 "the peer answers through $UP" peer_answers
  [ "$(systemctl is-enabled openvswitch-switch)" = disabled ] && ok "host OVS disabled (through the host's systemd)" || fail "host OVS still enabled"
  systemctl is-active -q openvswitch-switch && fail "host OVS still active"
  grep -q '^node-agent-apparmor (enforce)' /sys/kernel/security/apparmor/profiles && ok "profile loaded in enforce mode" || fail "profile not loaded"
  [ -x /opt/cni/bin/nsx ] && [ -f /etc/cni/net.d/10-nsx.conflist ] && [ -x /opt/cni/bin/loopback ] && ok "CNI installed on the host" || fail "CNI files"

  peer_ping_begin
  sleep 2
  t_play=$(date +%s.%N)
  play $AGENT
  wait_for 120 "uplink attached (ofport 1, address on br-int)" attached
  echo "ROW pod start to attached: $(since $t_play) s (podman kube play to ofport 1 and address seen)"
  echo "ROW ovs run: $(attach_line)"
  peer_ping_end "node-agent pod start, 10 ms"
  [ "$(podman inspect --format '{{.HostConfig.Privileged}}' $AGENT-nsx-ovs)" = false ] && ok "nsx-ovs is not privileged" || fail "nsx-ovs privileged"
  # The effective capabilities: exactly the manifest's list (kube-pods.py computed the mask).
  want=$(awk '$1 == "nsx-ovs" {print $2}' $P/$AGENT.capeff)
  have=$(awk '/^CapEff:/ {print $2}' /proc/$(ovs_pid)/status)
  [ -n "$want" ] && [ "$have" = "$want" ] && ok "nsx-ovs has exactly the manifest's capabilities (CapEff $have)" || fail "nsx-ovs CapEff $have, manifest $want"
  ovs-dpctl show | grep -q "port [0-9]*: $UP\$" && ok "$UP is a port of the kernel datapath" || { ovs-dpctl show; fail "kernel datapath"; }
  podman healthcheck run $AGENT-nsx-ovs && ok "liveness probe (ovs health) passes" || fail "liveness probe"
  agent=$(podman inspect --format '{{.State.Pid}}' $AGENT-nsx-node-agent)
  label=$(cat /proc/$agent/attr/current)
  [ "$label" = "node-agent-apparmor (enforce)" ] && ok "nsx-node-agent confined: $label" || fail "nsx-node-agent runs as '$label'"

  old=$(ovs_pid)
  peer_ping_begin
  sleep 2
  # `podman kill` marks a container stopped by the user, which podman (unlike the kubelet)
  # never restarts: the container's process is killed instead, as an OOM kill would.
  kill -9 $old || fail "kill -9 of nsx-ovs"
  wait_for 120 "nsx-ovs restarted" sh -c "p=\$(podman inspect --format '{{.State.Pid}}' $AGENT-nsx-ovs); [ -n \"\$p\" ] && [ \"\$p\" != 0 ] && [ \"\$p\" != $old ]"
  wait_for 120 "uplink attached again" sh -c "podman logs $AGENT-nsx-ovs 2>&1 | grep -c 'uplink attached' | grep -qv '^1\$'"
  attached || fail "not attached after the restart"
  peer_ping_end "kill -9 of nsx-ovs, 10 ms"
  echo "ROW ovs run after kill: $(attach_line)"

  # The node-agent pod removed (nsx-ovs gone, the uplink left on br-int): the bootstrap pod's
  # monitor (grace 10 s here, 30 s in the manifest) gives node-if its address back.
  podman logs $BOOT-$MON 2>&1 | grep -q 'nsx-ovs present' && ok "the $BOOT pod's monitor sees nsx-ovs" || { podman logs $BOOT-$MON 2>&1 | tail -5; fail "monitor"; }
  t_down=$(date +%s.%N)
  down $AGENT
  wait_for 15 "the address back on $UP (monitor grace 10 s + 5 s)" sh -c "ip -4 -o addr show dev $UP | grep -q 192.168.76.10/24"
  echo "ROW node-agent pod removed -> address on $UP: $(since $t_down) s (monitor grace 10 s)"
  wait_for 10 "the peer answers through $UP" peer_answers
  podman logs $BOOT-$MON 2>&1 | grep 'gave'
  play $AGENT
  wait_for 120 "uplink attached again by the new node-agent pod" attached

  enable_at_boot $BOOT $AGENT
  exit 0
fi

# Phase 2: after the reboot.
wait_for 180 "the $BOOT pod is Running again" pod_running $BOOT
wait_for 120 "the $INIT init container ran again" init_done $BOOT $INIT
podman logs $BOOT-$INIT > $S/init-2.txt 2>&1
cat $S/init-2.txt
grep -q ': changed' $S/init-2.txt && fail "install changed something after the reboot"
grep -q 'cni: converged' $S/init-2.txt && ok "install converged after the reboot" || fail "install did not report convergence"
wait_for 180 "uplink attached again at boot" attached
echo "ROW boot to attached: $(awk '{print $1}' /proc/uptime) s after power-on (seen)"
wait_for 10 "the peer answers through br-int" peer_answers

# Retiring the node (README, "Decommission"). The label's first step takes the node-agent pod
# off the node; the bootstrap pod's monitor gives node-if its addresses back; the second step
# takes the bootstrap pod off; then the retire pod runs cleanup. The README's check of the
# node's verdict first, as written (kubectl exec there, podman exec here).
podman exec $BOOT-$MON ncp-bootstrap --host-root /host status > $S/status-before-retire.txt 2>&1 \
  && grep -q "^node: ready" $S/status-before-retire.txt && ok "status from the monitor container: node ready" \
  || { cat $S/status-before-retire.txt; fail "the README's status command"; }
retire_node addr_on_uplink
wait_for 60 "the address is on the host OVS's br-int again" sh -c "ip -4 -o addr show dev br-int | grep -q 192.168.76.10/24"
wait_for 30 "the peer answers through br-int" peer_answers
same_as_before
exit 0
