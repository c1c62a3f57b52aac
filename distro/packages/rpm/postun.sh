# ncp-bootstrap's %postun: systemd forgets removed units. The node's own state stays.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || :
fi
