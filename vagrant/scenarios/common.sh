# Sourced by every scenario: where things are, and the small helpers they share.
# The qemu harness shares /mnt/host; node-if is eth1, a tap whose other end (the peer,
# 192.168.76.1 and fd00:76::1) is in a network namespace on the host. The Vagrant run uploads to
# another directory, and its eth1 sits on a libvirt network (IPv4 only: NCPB_GATEWAY6 empty).
S=${NCPB_SHARE:-/mnt/host}
B=$S/ncp-bootstrap
UP=${NCPB_UPLINK:-eth1}
GW=${NCPB_GATEWAY:-192.168.76.1}
GW6=${NCPB_GATEWAY6-fd00:76::1}
export NCP_BOOTSTRAP_NODE_UPLINK=$UP NCP_BOOTSTRAP_PROBE_TIMEOUT_MS=10000
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }
try_for() { # seconds (wall clock, however slow the command), command...: succeeds once the command does
  end=$(( $(date +%s) + $1 )); shift
  while :; do
    "$@" >/dev/null 2>&1 && return 0
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.1
  done
}
wait_for() { # seconds, description, command...
  t=$1; d=$2; shift 2
  try_for "$t" "$@" && { ok "$d"; return 0; }
  fail "timed out: $d"
}
# Tells the harness's peer what to do through a file in the share. Creating a name the host has
# just removed can fail on the 9p share with ENOENT ("cannot create /mnt/host/peer-ping.go:
# Directory nonexistent", seen under load): try again, and fail loudly rather than measure a
# round that never ran.
to_peer() { # file in the share, [content]
  n=0
  until printf '%s\n' "${2:-}" 2>/dev/null > "$S/$1"; do
    n=$((n + 1))
    [ $n -lt 50 ] || fail "cannot write $S/$1 for the harness's peer"
    sleep 0.1
  done
}
# The harness's peer pings the node from outside (1500 probes, 10 ms apart) between these two
# calls; without a harness peer (Vagrant) both do nothing.
peer_ping_begin() { # [interval count]
  [ -e "$S/peer-watch" ] || return 0
  rm -f "$S/peer-ping.done"
  to_peer peer-ping.go "$*"
  # The round lasts interval x count (ping's default here: 10 ms, 1500) whatever the step it
  # measures took; peer_ping_end waits for its end, and 60 s more.
  PING_ENDS=$(awk -v i="${1:-0.01}" -v c="${2:-1500}" -v now="$(date +%s)" 'BEGIN { printf "%d", now + i * c + 1 }')
}
# Ends a round begun with a generous count once the step it measures is over. The probe in
# flight when ping stops would count as lost in ping's summary; the lost ones are counted from
# ping -O's per-probe lines instead: a probe with "no answer yet" and no reply after it.
peer_ping_stop() { # what: prints a ROW line with the round's counts
  [ -e "$S/peer-watch" ] || return 0
  to_peer peer-ping.stop
  wait_for 30 "the peer's ping round stopped" test -e "$S/peer-ping.done"
  sent=$(grep -o '^[0-9]* packets transmitted' $S/peer-ping.txt | grep -o '^[0-9]*')
  lost=$(awk '/no answer yet for icmp_seq=/ { sub(/.*icmp_seq=/, ""); miss[$1] = 1 }
              / bytes from .*icmp_seq=/ { s = $0; sub(/.*icmp_seq=/, "", s); sub(/ .*/, "", s); delete miss[s] }
              END { n = 0; for (k in miss) n++; print n }' $S/peer-ping.txt)
  [ -n "$sent" ] || fail "the peer's ping printed no summary"
  echo "ROW $1 $sent packets transmitted, $((sent - lost)) received"
}
peer_ping_end() { # [what: prints a ROW line with the round's counts]
  [ -e "$S/peer-watch" ] || return 0
  left=$(( ${PING_ENDS:-0} - $(date +%s) ))
  [ "$left" -gt 0 ] || left=0
  wait_for $((left + 60)) "the peer's ping round finished" test -e "$S/peer-ping.done"
  [ -z "${1:-}" ] || echo "ROW $1 $(grep -o '[0-9]* packets transmitted, [0-9]* received' $S/peer-ping.txt)"
}
# A TCP stream from the peer to the node for SECONDS: the peer sends every 2 ms, the node
# echoes (bash's /dev/tcp and cat), the peer reports the longest gap between echoes.
peer_tcp_begin() { # seconds
  [ -e "$S/peer-watch" ] || return 0
  rm -f "$S/peer-tcp.done" "$S/peer-tcp.txt"
  to_peer peer-tcp.go "$1"
  # Connect once the peer listens (it accepts one connection), then echo until it closes.
  bash -c "n=0; until exec 3<>/dev/tcp/$GW/5001; do n=\$((n + 1)); [ \$n -ge 300 ] && exit 1; sleep 0.1; done 2>/dev/null; exec cat <&3 >&3" &
}
peer_tcp_end() {
  [ -e "$S/peer-watch" ] || return 0
  wait_for 60 "the peer's TCP stream finished" test -e "$S/peer-tcp.done"
  cat "$S/peer-tcp.txt" 2>/dev/null || cat "$S/peer-tcp.err"
}
# The node before ncp-bootstrap: node-if's addresses and routes set by hand.
configure_node_if() {
  ip link set $UP up
  ip addr add 192.168.76.10/24 dev $UP
  # With a management NIC on DHCP (Vagrant) the default route of node-if gets a metric of its own.
  ip route add default via $GW dev $UP ${NCPB_DEFAULT_METRIC:+metric $NCPB_DEFAULT_METRIC}
  ip route add 10.99.0.0/16 via $GW dev $UP metric 50
  if [ -n "$GW6" ]; then
    ip -6 addr add fd00:76::10/64 dev $UP nodad
    ip -6 route add fd00:99::/48 via $GW6 dev $UP metric 50
  fi
}
# The node as NCP finds it, for one-boot scenarios: node-if configured by hand, the host's own
# OVS answering, the peer reachable.
node_with_host_ovs() {
  wait_for 60 "$UP is up" ip link show $UP up
  configure_node_if
  wait_for 90 "host OVS answers" ovs-vsctl --timeout=2 show
  wait_for 30 "the peer answers" peer_answers
}
# Stops ncp-ovs.service (keeping its log as ovs-run-N.log in the share); it must end cleanly.
stop_ncp_ovs() { # N
  systemctl stop ncp-ovs.service
  journalctl -u ncp-ovs --no-pager -o cat > $S/ovs-run-$1.log
  [ "$(systemctl show -p Result --value ncp-ovs.service)" = success ] && ok "ncp-ovs.service stopped cleanly" || fail "ncp-ovs.service result"
}
# What the node must reach through whichever device carries its addresses.
peer_answers() {
  ping -c1 -W1 $GW >/dev/null || return 1
  [ -z "$GW6" ] || ping -6 -c1 -W1 $GW6 >/dev/null
}
# The systemd units of units/systemd, as `make install-host` installs them, but under /run (gone
# at reboot, outside the snapshot) with the settings in drop-ins.
# A second argument installs them where they outlive a reboot instead (the scenario removes them).
install_units() { # extra environment, [unit directory]
  d=${2:-/run/systemd/system}
  install -m 0755 $B /usr/bin/ncp-bootstrap
  mkdir -p $d
  cp $S/units/*.service $d/
  for u in ncp-bootstrap ncp-ovs ncp-bootstrap-monitor ncp-bootstrap-cleanup; do
    mkdir -p $d/$u.service.d
    printf '[Service]\nEnvironment=NCP_BOOTSTRAP_NODE_UPLINK=%s NCP_BOOTSTRAP_CNI_BUNDLE=%s/bundle NCP_BOOTSTRAP_PROBE_TIMEOUT_MS=10000 %s\n' \
      "$UP" "$S" "$1" > $d/$u.service.d/test.conf
  done
  systemctl daemon-reload
}
# Installed for good with ncp-ovs.service enabled (as `make install-host` and an operator would;
# after a reboot it attaches at boot, after network-online.target; on_exit=restore), then the
# bootstrap unit run once: install.
install_enabled_units() {
  install_units NCP_BOOTSTRAP_OVS_ON_EXIT=restore /etc/systemd/system
  systemctl enable ncp-ovs.service >/dev/null 2>&1 || fail "enable ncp-ovs.service"
  systemctl start ncp-bootstrap.service || { journalctl -u ncp-bootstrap --no-pager | tail -30; fail "ncp-bootstrap.service (install)"; }
  ok "ncp-bootstrap.service ran install"
}
snapshot() { # what cleanup must give back
  {
    find /etc /opt /usr/share/ncp-bootstrap /var/lib/ncp-bootstrap -xdev \
      \( -path /etc/openvswitch -o -path /etc/apparmor.d/cache -o -path /etc/ld.so.cache -o -path /etc/machine-id \) -prune -o \
      -printf '%p %M %s\n' 2>/dev/null | sort
    find /etc /opt -xdev -type f \( -path '/etc/openvswitch/*' -o -path '/etc/apparmor.d/cache/*' -o -path /etc/ld.so.cache \) -prune -o -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum
    grep -c node-agent-apparmor /sys/kernel/security/apparmor/profiles
    echo "openvswitch-switch: $(systemctl is-enabled openvswitch-switch) $(systemctl is-active openvswitch-switch)"
    echo "bridges: $(ovs-vsctl --timeout=5 list-br | tr '\n' ' ')"
    ip -4 -o addr show dev $UP | awk '{print $4}'
    ip -6 -o addr show dev $UP scope global | awk '{print $4}'
    # Routes from router advertisements carry a countdown; their presence is what counts.
    ip -4 route show table all | grep -v -e '^local' -e '^broadcast' -e '^multicast' | sort
    ip -6 route show table all | grep -v -e '^local' -e '^multicast' -e 'fe80' -e '^ff00' | sed -E 's/ expires [0-9]+sec//' | sort
    ip rule show
  }
}
# The node's network from netplan on systemd-networkd, Ubuntu server's stack: ifupdown keeps
# only lo and the management NIC, netplan's file defines node-if, networkd and resolved run
# (and are enabled, so the next boot brings node-if up the same way).
use_networkd() { # netplan file, its text
  printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet manual\n' > /etc/network/interfaces
  ip -4 addr flush dev $UP; ip -6 addr flush dev $UP scope global
  printf '%s' "$2" > "$1"
  chmod 600 "$1"
  netplan generate || fail "netplan generate"
  systemctl enable systemd-networkd systemd-resolved >/dev/null 2>&1
  systemctl restart systemd-networkd systemd-resolved || fail "start systemd-networkd"
  wait_for 30 "networkd configured $UP" sh -c "networkctl list --no-legend --no-pager | grep -Eq \" $UP .* configured\""
}
# networkd's setup state of a link: configured, configuring, unmanaged...
networkd_setup() { # link
  networkctl list --no-legend --no-pager | awk -v l="$1" '$2 == l {print $5}'
}
# What systemd-resolved holds for a link: its DNS servers and search domains on one line.
link_dns() { # link
  echo "$(resolvectl dns "$1" 2>/dev/null | sed 's/^[^:]*: *//') / $(resolvectl domain "$1" 2>/dev/null | sed 's/^[^:]*: *//')"
}
# Seconds from the kernel's start to ovs run's "uplink attached" in this boot's journal.
boot_to_attached() {
  journalctl -b -u ncp-ovs -o short-monotonic --no-pager | grep -m1 'ovs run: uplink attached' | sed -E 's/^\[ *([0-9.]+)\].*/\1/'
}
networkd_setup_is() { [ "$(networkd_setup "$1")" = "$2" ]; }
dns_is() { [ "$(link_dns "$1")" = "$2" ]; }
# Cleanup through its unit.
run_cleanup_unit() {
  systemctl start ncp-bootstrap-cleanup.service || { journalctl -u ncp-bootstrap-cleanup --no-pager | tail -30; fail "ncp-bootstrap-cleanup.service"; }
  ok "ncp-bootstrap-cleanup.service ran cleanup"
}
# After cleanup: the host's OVS runs again, the units the scenario installed go (they are not the
# product's to remove), and the node must match its snapshot from before install (FILTER, a
# command, may normalize both snapshots first).
same_as_before() { # [filter]
  wait_for 90 "openvswitch-switch.service active again" systemctl is-active -q openvswitch-switch
  systemctl disable ncp-ovs.service >/dev/null 2>&1
  rm -rf /etc/systemd/system/ncp-*.service /etc/systemd/system/ncp-*.service.d
  systemctl daemon-reload
  snapshot > $S/after.txt
  ${1:-cat} $S/before.txt > $S/before.cmp
  ${1:-cat} $S/after.txt > $S/after.cmp
  if diff -u $S/before.cmp $S/after.cmp; then ok "node identical to its snapshot before install"; else fail "cleanup left differences"; fi
}
# The peer's dnsmasq lease (scenarios with `# peer: dnsmasq`; its log is $S/dnsmasq.log).
leased_on() { # link: the lease's address is there, with a finite lifetime
  ip -4 -o addr show dev "$1" | grep "192.168.76.10/24" | grep -q "valid_lft [0-9]*sec"
}
# networkd holds the lease on br-int (with KeepConfiguration=yes it gives the address an
# infinite lifetime in the kernel: networkd's view is the evidence, and dnsmasq's ACKs).
dhcp_on_br_int() {
  ip -4 -o addr show dev br-int | grep -q "192.168.76.10/24" && networkctl status br-int --no-pager | grep -q "192.168.76.10 (DHCP4"
}
acks() { grep -c "DHCPACK(tap0) 192.168.76.10 " $S/dnsmasq.log 2>/dev/null || echo 0; }
