# ncp-bootstrap's %preun: a removal ($1 = 0) stops and disables the units and never undoes the
# node by itself; while the ledger still records changes it is refused (a failing %preun stops
# the erase), because it would take away the tool that undoes them: decommission first.
LEDGER=/var/lib/ncp-bootstrap/ledger.json
UNITS="ncp-ovs.service ncp-bootstrap-monitor.service ncp-bootstrap.service ncp-bootstrap-cleanup.service"
if [ "$1" -eq 0 ]; then
  if [ -e "$LEDGER" ] && grep -q '"kind"' "$LEDGER" && [ "${NCP_BOOTSTRAP_REMOVE_PREPARED:-}" != yes ]; then
    echo "ncp-bootstrap: not removed: this node is still prepared ($LEDGER records what ncp-bootstrap changed). Decommission it first: systemctl start ncp-bootstrap-cleanup.service, then remove the package (or NCP_BOOTSTRAP_REMOVE_PREPARED=yes dnf remove ncp-bootstrap leaves the node as it is)" >&2
    exit 1
  fi
  if [ -d /run/systemd/system ]; then
    systemctl stop $UNITS || :
    systemctl disable $UNITS >/dev/null 2>&1 || :
  fi
fi
