#!/bin/sh
# Entry point inside the guest (systemd.run): runs the scenario phase named in /mnt/host/phase
# and leaves its exit code in /mnt/host/rc.<phase> and its output in /mnt/host/log.<phase>.
PHASE=$(cat /mnt/host/phase)
exec >"/mnt/host/log.$PHASE" 2>&1
# systemd.run replaces the default target: start the rest of the system without waiting on it.
systemctl start --no-block multi-user.target
sh "/mnt/host/$(cat /mnt/host/scenario)" "$PHASE"
echo $? >"/mnt/host/rc.$PHASE"
sync
