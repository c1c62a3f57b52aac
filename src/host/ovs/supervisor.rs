//! Keeping OVS's daemons once `ovs run` has started them: an ovs-vswitchd that dies is started
//! again in place, a few times, with the bridge's flows restored; the bridge's flows saved for
//! the next start; the kernel datapath swept after each start of the switch; the daemons' logs
//! kept under their cap. The daemons stop with the supervisor (their guard); what the caller
//! must do or say goes through `Hooks`.

use super::flows::Keeper;
use super::{datapath, logs, Daemons, Ovs, OvsDirs};
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the supervisor says, and what it asks of its caller.
pub trait Hooks {
    fn info(&self, msg: &str);
    fn warn(&self, msg: &str);
    /// Before the first rotation makes the logs' copies: the caller records them.
    fn before_log_copies(&self, cap: logs::Cap) -> Result<()>;
}

/// How the keeping ended.
#[derive(Debug, PartialEq)]
pub enum Exit {
    /// SIGTERM or SIGINT: the flows are saved; the caller gives the uplink back if it is asked
    /// to, then stops the daemons.
    Signal,
    /// A daemon died (ovs-vswitchd beyond its restart budget): `ovs run` exits 1 and leaves
    /// further restarts to the container runtime or systemd.
    Died,
}

pub struct Supervisor {
    daemons: Daemons,
    dirs: OvsDirs,
    keeper: Option<Keeper>,
    sweep: DropSweep,
    budget: RestartBudget,
    log_cap: Option<LogCap>,
}

impl Supervisor {
    /// `sweep_uplink`: the uplink on a kernel datapath, whose drop flows are swept after each
    /// start of the switch (`None` on the userspace datapath or without an uplink).
    pub fn new(
        daemons: Daemons,
        dirs: OvsDirs,
        keeper: Option<Keeper>,
        sweep_uplink: Option<String>,
        log_cap: Option<logs::Cap>,
    ) -> Supervisor {
        Supervisor {
            daemons,
            dirs,
            keeper,
            sweep: DropSweep {
                uplink: sweep_uplink,
                due: Vec::new(),
            },
            budget: RestartBudget::new(SWITCH_RESTARTS, SWITCH_RESTART_WINDOW),
            log_cap: log_cap.map(|c| LogCap::new(c, Instant::now())),
        }
    }

    /// The switch started on a datapath that may already carry the uplink: sweep now and later.
    pub fn started_on_existing_datapath(&mut self, hooks: &dyn Hooks) {
        self.sweep.after_start(Instant::now());
        self.sweep.run_due(hooks, Instant::now());
    }

    /// Keeps the daemons until `term` is set or a daemon dies beyond the budget.
    pub fn keep(&mut self, term: &AtomicBool, hooks: &dyn Hooks) -> Result<Exit> {
        loop {
            if term.load(Ordering::Relaxed) {
                hooks.info("ovs run: signal received, stopping");
                keep_flows(hooks, &mut self.keeper, true);
                return Ok(Exit::Signal);
            }
            if let Some(death) = self.daemons.dead() {
                if death.name == "ovs-vswitchd" && self.budget.allow(Instant::now()) {
                    hooks.warn(&format!("ovs run: {death}"));
                    restart_switch(hooks, &mut self.daemons, self.keeper.as_ref())
                        .context("ovs run: starting ovs-vswitchd again")?;
                    self.started_on_existing_datapath(hooks);
                    continue;
                }
                eprintln!("error: {death}");
                if death.name == "ovs-vswitchd" {
                    eprintln!(
                        "error: ovs-vswitchd died {} times within {} s; ovs run exits and leaves \
                         further restarts to the container runtime or systemd",
                        SWITCH_RESTARTS + 1,
                        SWITCH_RESTART_WINDOW.as_secs()
                    );
                }
                return Ok(Exit::Died);
            }
            if let Some(k) = self.keeper.as_mut() {
                if let Err(e) = k.refresh(false) {
                    // A switch that died under the refresh is started again on the next turn,
                    // from the copy as it was saved before.
                    if self.daemons.dead().is_none() {
                        hooks.warn(&format!(
                            "ovs run: flows are no longer saved for restarts: {e:#}"
                        ));
                        self.keeper = None;
                    }
                }
            }
            self.sweep.run_due(hooks, Instant::now());
            if let Some(cap) = self.log_cap.as_mut() {
                cap.run_due(hooks, &self.dirs, &self.daemons, Instant::now());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the daemons (ovs-vswitchd first), allowing them `grace`.
    pub fn stop(&mut self, grace: Duration) {
        self.daemons.stop(grace);
    }
}

/// The OVS daemons' logs kept under `ovs.log_max_mb` with `ovs.log_backups` copies (`logs`).
/// The caller records the copies (`Hooks::before_log_copies`) before the first rotation makes
/// them, so that cleanup removes them with the logs.
struct LogCap {
    cap: logs::Cap,
    schedule: logs::Schedule,
    recorded: bool,
}

impl LogCap {
    fn new(cap: logs::Cap, now: Instant) -> LogCap {
        LogCap {
            cap,
            schedule: logs::Schedule::new(now),
            recorded: false,
        }
    }

    fn run_due(&mut self, hooks: &dyn Hooks, dirs: &OvsDirs, daemons: &Daemons, now: Instant) {
        if !self.schedule.take_due(now) {
            return;
        }
        for (name, pid, log) in daemons.running() {
            if let Err(e) = self.rotate_if_over(hooks, dirs, daemons, (name, pid, &log)) {
                hooks.warn(&format!(
                    "ovs run: {} was not rotated: {e:#}",
                    log.display()
                ));
            }
        }
    }

    fn rotate_if_over(
        &mut self,
        hooks: &dyn Hooks,
        dirs: &OvsDirs,
        daemons: &Daemons,
        (name, pid, log): (&str, u32, &std::path::Path),
    ) -> Result<()> {
        if !logs::is_over(log, self.cap)? {
            return Ok(());
        }
        if !self.recorded {
            hooks.before_log_copies(self.cap)?;
            self.recorded = true;
        }
        let size = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        logs::shift(log, self.cap)?;
        daemons.reopen_log(name, pid)?;
        logs::finish(log, self.cap)?;
        hooks.info(&format!(
            "ovs run: rotated {} at {:.1} MiB (ovs.log_max_mb), keeping {} cop{}",
            log.display(),
            size as f64 / (1024.0 * 1024.0),
            self.cap.backups,
            if self.cap.backups == 1 { "y" } else { "ies" }
        ));
        let held = logs::open_deleted(pid, &dirs.log);
        if !held.is_empty() {
            hooks.warn(&format!(
                "ovs run: {name} still holds deleted log files open: {}",
                held.join(", ")
            ));
        }
        Ok(())
    }
}

/// When, after ovs-vswitchd started, the kernel datapath is swept for the drop flows it
/// installs for packets of a port it had not mapped yet (`datapath::clear_stale_drops`). A
/// switch starting on a datapath that already has the uplink as a port (a restart, an upgrade,
/// a switch started again in place; all the more on a busy machine, where the mapping comes
/// late) gets the peer's packets before it knows the port, and the exact-match drop flow it
/// installs for them is never revalidated while they keep coming: the node stays cut off from
/// that peer while both daemons answer. Swept once the switch has read the database (the port
/// is mapped then), and again later for upcalls that were in flight.
const SWEEP_AFTER_START: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(2),
    Duration::from_secs(10),
];

/// The pending sweeps; none on the userspace datapath or without an uplink.
struct DropSweep {
    uplink: Option<String>,
    due: Vec<Instant>,
}

impl DropSweep {
    fn after_start(&mut self, now: Instant) {
        if self.uplink.is_some() {
            self.due = SWEEP_AFTER_START.iter().map(|d| now + *d).collect();
        }
    }

    /// Whether a sweep is due at `now` (those due are taken: several due at once make one).
    fn take_due(&mut self, now: Instant) -> bool {
        let before = self.due.len();
        self.due.retain(|t| *t > now);
        self.due.len() != before
    }

    fn run_due(&mut self, hooks: &dyn Hooks, now: Instant) {
        if !self.take_due(now) {
            return;
        }
        let Some(up) = self.uplink.as_deref() else {
            return;
        };
        match datapath::clear_stale_drops(up) {
            Ok(0) => {}
            Ok(n) => hooks.info(&format!(
                "ovs run: removed {n} datapath flow(s) that dropped what {up} received before \
                 ovs-vswitchd had mapped its port"
            )),
            Err(e) => hooks.warn(&format!(
                "ovs run: the datapath's drop flows for {up} were not checked: {e:#}"
            )),
        }
    }
}

/// A dead ovs-vswitchd is started again in place, at most this many times within the window;
/// after that `ovs run` exits and the kubelet's or systemd's back-off takes over, so that a
/// switch that cannot start does not loop here.
const SWITCH_RESTARTS: usize = 3;
const SWITCH_RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Restarts allowed within a sliding window.
struct RestartBudget {
    at: std::collections::VecDeque<Instant>,
    max: usize,
    window: Duration,
}

impl RestartBudget {
    fn new(max: usize, window: Duration) -> Self {
        RestartBudget {
            at: std::collections::VecDeque::new(),
            max,
            window,
        }
    }

    /// Whether one more restart at `now` is within the budget (and, if so, counts it).
    fn allow(&mut self, now: Instant) -> bool {
        while self
            .at
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.at.pop_front();
        }
        if self.at.len() >= self.max {
            return false;
        }
        self.at.push_back(now);
        true
    }
}

/// A crashed ovs-vswitchd started again without leaving the kernel datapath unmanaged for
/// longer than it takes: the datapath keeps its flows (and forwards established traffic) under
/// flow-restore-wait until the saved OpenFlow tables are back. Restarting here, rather than
/// exiting and waiting for the runtime's restart delay, keeps that window to the switch's own
/// start-up; new flows (an ARP refresh, a new connection) are dropped only within it.
fn restart_switch(hooks: &dyn Hooks, daemons: &mut Daemons, keeper: Option<&Keeper>) -> Result<()> {
    let t = Instant::now();
    daemons.start_switch(keeper.is_some())?;
    if let Some(k) = keeper {
        restore_flows(hooks, k);
        daemons.end_restore_wait()?;
    }
    hooks.info(&format!(
        "ovs run: ovs-vswitchd started again, forwarding {:.0} ms after its death was seen{}",
        t.elapsed().as_secs_f64() * 1000.0,
        if keeper.is_some() {
            " (flows restored)"
        } else {
            " (flows not kept: ovs.keep_flows = false)"
        }
    ));
    Ok(())
}

/// The flow copy of `bridge`; the bridge must exist (OVS has its management socket).
pub fn keeper_for(dirs: &OvsDirs, bridge: &str) -> Result<Keeper> {
    let ovs = Ovs::new(dirs.run.clone())?;
    Keeper::new(dirs, bridge, &ovs.bridge_protocols(bridge)?)
}

/// Puts the saved OpenFlow state back; a failure leaves the switch with its defaults, said.
pub fn restore_flows(hooks: &dyn Hooks, keeper: &Keeper) {
    match keeper.restore() {
        Ok(Some(r)) => hooks.info(&format!(
            "ovs run: restored {} flows, {} groups, {} meters, {} TLV mappings of the previous run",
            r.flows, r.groups, r.meters, r.tlv
        )),
        Ok(None) => hooks.info("ovs run: no saved flows to restore; the switch starts with its defaults"),
        Err(e) => hooks.warn(&format!(
            "ovs run: the saved flows could not be restored, the switch starts with its defaults: {e:#}"
        )),
    }
}

/// Refreshes the saved copy; a failure is reported once per run, not on every tick.
fn keep_flows(hooks: &dyn Hooks, keeper: &mut Option<Keeper>, force: bool) {
    let Some(k) = keeper.as_mut() else { return };
    if let Err(e) = k.refresh(force) {
        hooks.warn(&format!(
            "ovs run: flows are no longer saved for restarts: {e:#}"
        ));
        *keeper = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_datapath_is_swept_at_each_start_of_the_switch_and_after() {
        let mut s = DropSweep {
            uplink: Some("eth1".into()),
            due: Vec::new(),
        };
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!(!s.take_due(at(0)), "nothing before a start");
        s.after_start(t0);
        assert!(s.take_due(at(0)));
        assert!(!s.take_due(at(1_000)));
        assert!(s.take_due(at(2_000)));
        // A second start before the last sweep of the first schedules all three again.
        s.after_start(at(5_000));
        assert!(s.take_due(at(5_000)));
        assert!(
            s.take_due(at(15_000)),
            "the 2 s and 10 s sweeps, late, make one"
        );
        assert!(!s.take_due(at(60_000)));
        let mut none = DropSweep {
            uplink: None,
            due: Vec::new(),
        };
        none.after_start(t0);
        assert!(
            !none.take_due(at(0)),
            "no uplink (or userspace datapath): no sweep"
        );
    }

    #[test]
    fn the_restart_budget_slides_with_time() {
        let mut b = RestartBudget::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        assert!(b.allow(at(0)));
        assert!(b.allow(at(10)));
        assert!(b.allow(at(20)));
        assert!(!b.allow(at(30)), "a fourth death within a minute");
        assert!(!b.allow(at(59)));
        // The first restart has left the window; the refused ones were not counted.
        assert!(b.allow(at(60)));
        assert!(!b.allow(at(61)));
        assert!(b.allow(at(200)));
    }
}
