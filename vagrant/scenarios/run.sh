#!/bin/sh
# Entry point inside the guest (systemd.run): runs the scenario phase named in /mnt/host/phase
# and leaves its exit code in /mnt/host/rc.<phase> and its output in /mnt/host/log.<phase>.
PHASE=$(cat /mnt/host/phase)
exec >"/mnt/host/log.$PHASE" 2>&1
# The kernel's clock since boot: how long the boot took, and the scenario after it.
t0=$(cut -d' ' -f1 /proc/uptime)
echo "guest: booted, scenario starts at ${t0} s after power-on"
# systemd.run replaces the default target: start the rest of the system without waiting on it.
systemctl start --no-block multi-user.target
sh "/mnt/host/$(cat /mnt/host/scenario)" "$PHASE"
rc=$?
echo "guest: scenario phase $PHASE took $(awk -v t0="$t0" '{printf "%.1f", $1 - t0}' /proc/uptime) s"
echo $rc >"/mnt/host/rc.$PHASE"
sync
