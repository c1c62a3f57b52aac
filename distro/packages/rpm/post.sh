# ncp-bootstrap's %post: installing enables and starts nothing (the operator enables the units,
# as the README says); an upgrade ($1 = 2) restarts what runs onto the new binary, ncp-ovs the
# hitless way (ovs.keep_flows).
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || :
  if [ "$1" -ge 2 ]; then
    for unit in ncp-ovs.service ncp-bootstrap-monitor.service; do
      systemctl try-restart "$unit" ||
        echo "ncp-bootstrap: restarting $unit onto the new binary failed; see journalctl -u $unit" >&2
    done
  fi
fi
