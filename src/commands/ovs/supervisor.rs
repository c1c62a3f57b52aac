//! The supervisor behind `ovs run`: the database prepared, the daemons started and kept (an
//! ovs-vswitchd that dies is started again in place, a few times, with the bridge's flows
//! restored), the uplink attached through the uplink step, the datapath swept after a start,
//! the daemons' logs capped, and on a signal `ovs.on_exit` applied and the daemons stopped.

use super::NO_UPLINK;
use crate::error::{precondition, Error, Kind};
use crate::host::ovs::flows::Keeper;
use crate::host::ovs::{clean_stale, logs, prepare_db, Daemons, Ovs, OvsDirs};
use crate::host::run;
use crate::steps::{ovs_files, uplink, Ctx};
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// For the kernel datapath the openvswitch module must be there; say clearly when it cannot be.
fn ensure_module(ctx: &Ctx) -> Result<()> {
    if ctx.settings.datapath != crate::config::Datapath::System
        || ctx.host.exists("/sys/module/openvswitch")?
    {
        return Ok(());
    }
    let loaded = which::which("modprobe")
        .ok()
        .map(|m| run::run(&m, ["openvswitch"]).is_ok())
        .unwrap_or(false);
    if loaded || ctx.host.exists("/sys/module/openvswitch")? {
        return Ok(());
    }
    Err(precondition(
        "ovs.datapath_type = system needs the kernel's openvswitch module, which is not loaded and \
         `modprobe openvswitch` could not load it (is the host's /lib/modules mounted, and CAP_SYS_MODULE \
         granted?); load it on the host, or set ovs.datapath_type = netdev for the userspace datapath",
    ))
}

/// The whole entrypoint. Returns the exit code.
pub fn run(ctx: &Ctx) -> Result<i32> {
    let started = Instant::now();
    let dirs = OvsDirs::resolve(ctx.host, ctx.settings.ovs_dirs())?;
    ovs_files::record_own_files(ctx, &dirs)?;
    // Held until this function returns, after the daemons are stopped.
    let _claim = dirs.claim()?;
    // A monitor giving node-if its addresses back (`commands::monitor`) holds the lock while it
    // edits the database with a server of its own: wait for it before starting ours on it.
    drop(crate::steps::lock(ctx.host)?);
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&term))
            .context("installing signal handlers")?;
    }
    for f in clean_stale(ctx.host, &dirs)? {
        ctx.progress
            .info(&format!("ovs run: removed stale {}", f.display()));
    }
    ensure_module(ctx)?;
    if let Some(done) = prepare_db(&dirs)? {
        ctx.progress.info(&format!("ovs run: {done}"));
    }
    let bridge = ctx.settings.bridge.as_str();
    // Stopped by its guard on every way out below; the signal path stops them itself, with
    // more time, after the uplink is given back.
    let mut daemons = Daemons::start(&dirs, ctx.settings.keep_flows.then_some(bridge))
        .map_err(|e| Error::new(Kind::Apply, format!("starting OVS: {e:#}")))?;
    ctx.progress.info(&format!(
        "ovs run: daemons up after {:.0} ms{}",
        started.elapsed().as_secs_f64() * 1000.0,
        if daemons.restoring {
            " (flow-restore-wait: the datapath keeps forwarding)"
        } else {
            ""
        }
    ));
    let mut keeper = None;
    if daemons.restoring {
        let k = keeper_for(&dirs, bridge)?;
        restore_flows(ctx, &k);
        keeper = Some(k);
        // Never left set: a switch waiting for flows that do not come forwards nothing new.
        daemons.end_restore_wait().context("ovs run")?;
    }
    // NCP's default when ncp.ini names no uplink: the bridge's port with ofport 1.
    let found = match &ctx.settings.uplink {
        Some(_) => None,
        None => Ovs::new(dirs.run.clone())
            .and_then(|o| o.port_with_ofport_1(bridge))
            .unwrap_or_else(|e| {
                ctx.progress.warn(&format!(
                    "ovs run: the bridge's ofport 1 was not read: {e:#}"
                ));
                None
            }),
    };
    let with_found;
    let found_ctx;
    let ctx: &Ctx = match found {
        Some(port) => {
            ctx.progress.info(&format!(
                "ovs run: no uplink configured; {port} has ofport 1 on {bridge}, so it is the \
                 uplink (NCP's default)"
            ));
            with_found = crate::config::Settings {
                uplink: Some(port),
                ..ctx.settings.clone()
            };
            found_ctx = Ctx {
                settings: &with_found,
                ..*ctx
            };
            &found_ctx
        }
        None => ctx,
    };
    // A switch that starts on a database that already has the bridge starts on a kernel
    // datapath that already has the uplink as a port (a restart, an upgrade): that is where
    // its first packets can reach it before it maps the port. A first start creates the bridge
    // and the attach clears what the port's addition left.
    let started_on_existing_bridge = Ovs::new(dirs.run.clone())
        .and_then(|o| o.bridge_exists(bridge))
        .unwrap_or(false);
    let attach = if ctx.settings.uplink.is_some() {
        Some(uplink::attach(ctx))
    } else {
        ctx.progress.warn(&format!(
            "ovs run: no uplink, OVS runs without one and the readiness probe fails: {NO_UPLINK}"
        ));
        None
    };
    match attach {
        Some(Err(e)) => return Err(e.context("ovs run: attaching the uplink")),
        Some(Ok(report)) => {
            // The container's log says what moved (and whom it was taken from).
            for c in &report.changes {
                ctx.progress.info(&format!("ovs run: {}", c.action));
            }
            for n in &report.notes {
                ctx.progress.info(&format!("ovs run: {n}"));
            }
            for w in &report.warnings {
                ctx.progress.warn(w);
            }
            ctx.progress.info(&format!(
                "ovs run: uplink attached {:.0} ms after start; running",
                started.elapsed().as_secs_f64() * 1000.0
            ));
        }
        None => {}
    }
    let mut keeper = match keeper {
        Some(k) => Some(k),
        None if !ctx.settings.keep_flows => None,
        None => keeper_for(&dirs, bridge)
            .inspect_err(|e| {
                ctx.progress.warn(&format!(
                    "ovs run: flows of {bridge} are not kept across restarts: {e:#}"
                ))
            })
            .ok(),
    };
    let mut sweep = DropSweep::for_ctx(ctx);
    if started_on_existing_bridge {
        sweep.after_start(Instant::now());
        sweep.run_due(ctx, Instant::now());
    }
    let mut budget = RestartBudget::new(SWITCH_RESTARTS, SWITCH_RESTART_WINDOW);
    let mut log_cap = LogCap::for_ctx(ctx, Instant::now());
    loop {
        if term.load(Ordering::Relaxed) {
            ctx.progress.info("ovs run: signal received, stopping");
            keep_flows(ctx, &mut keeper, true);
            let mut code = 0;
            if ctx.settings.on_exit == crate::config::OnExit::Restore
                && ctx.settings.uplink.is_some()
            {
                if let Err(e) = uplink::detach(ctx) {
                    ctx.progress.warn(&format!(
                        "ovs run: restoring the uplink failed: {}",
                        crate::error::render(&e)
                    ));
                    code = 3;
                }
            }
            daemons.stop(Duration::from_secs(10));
            return Ok(code);
        }
        if let Some(death) = daemons.dead() {
            if death.name == "ovs-vswitchd" && budget.allow(Instant::now()) {
                ctx.progress.warn(&format!("ovs run: {death}"));
                restart_switch(ctx, &mut daemons, keeper.as_ref())
                    .context("ovs run: starting ovs-vswitchd again")?;
                sweep.after_start(Instant::now());
                sweep.run_due(ctx, Instant::now());
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
            return Ok(1);
        }
        if let Some(k) = keeper.as_mut() {
            if let Err(e) = k.refresh(false) {
                // A switch that died under the refresh is started again on the next turn, from
                // the copy as it was saved before.
                if daemons.dead().is_none() {
                    ctx.progress.warn(&format!(
                        "ovs run: flows are no longer saved for restarts: {e:#}"
                    ));
                    keeper = None;
                }
            }
        }
        sweep.run_due(ctx, Instant::now());
        if let Some(cap) = log_cap.as_mut() {
            cap.run_due(ctx, &dirs, &daemons, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The OVS daemons' logs kept under `ovs.log_max_mb` with `ovs.log_backups` copies
/// (`host::ovs::logs`). The copies are recorded in the ledger before the first rotation makes
/// them, so that cleanup removes them with the logs.
struct LogCap {
    cap: logs::Cap,
    schedule: logs::Schedule,
    recorded: bool,
}

impl LogCap {
    fn for_ctx(ctx: &Ctx, now: Instant) -> Option<LogCap> {
        Some(LogCap {
            cap: logs::Cap {
                max_bytes: ctx.settings.ovs_log_max_bytes?,
                backups: ctx.settings.ovs_log_backups,
            },
            schedule: logs::Schedule::new(now),
            recorded: false,
        })
    }

    fn run_due(&mut self, ctx: &Ctx, dirs: &OvsDirs, daemons: &Daemons, now: Instant) {
        if !self.schedule.take_due(now) {
            return;
        }
        for (name, pid, log) in daemons.running() {
            if let Err(e) = self.rotate_if_over(ctx, dirs, daemons, (name, pid, &log)) {
                ctx.progress.warn(&format!(
                    "ovs run: {} was not rotated: {e:#}",
                    log.display()
                ));
            }
        }
    }

    fn rotate_if_over(
        &mut self,
        ctx: &Ctx,
        dirs: &OvsDirs,
        daemons: &Daemons,
        (name, pid, log): (&str, u32, &std::path::Path),
    ) -> Result<()> {
        if !logs::is_over(log, self.cap)? {
            return Ok(());
        }
        if !self.recorded {
            ovs_files::record_log_copies(ctx, dirs, self.cap)?;
            self.recorded = true;
        }
        let size = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        logs::shift(log, self.cap)?;
        daemons.reopen_log(name, pid)?;
        logs::finish(log, self.cap)?;
        ctx.progress.info(&format!(
            "ovs run: rotated {} at {:.1} MiB (ovs.log_max_mb), keeping {} cop{}",
            log.display(),
            size as f64 / (1024.0 * 1024.0),
            self.cap.backups,
            if self.cap.backups == 1 { "y" } else { "ies" }
        ));
        let held = logs::open_deleted(pid, &dirs.log);
        if !held.is_empty() {
            ctx.progress.warn(&format!(
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
    fn for_ctx(ctx: &Ctx) -> DropSweep {
        let kernel = ctx.settings.datapath == crate::config::Datapath::System;
        DropSweep {
            uplink: ctx.settings.uplink.clone().filter(|_| kernel),
            due: Vec::new(),
        }
    }

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

    fn run_due(&mut self, ctx: &Ctx, now: Instant) {
        if !self.take_due(now) {
            return;
        }
        let Some(up) = self.uplink.as_deref() else {
            return;
        };
        match crate::host::ovs::datapath::clear_stale_drops(up) {
            Ok(0) => {}
            Ok(n) => ctx.progress.info(&format!(
                "ovs run: removed {n} datapath flow(s) that dropped what {up} received before \
                 ovs-vswitchd had mapped its port"
            )),
            Err(e) => ctx.progress.warn(&format!(
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
fn restart_switch(ctx: &Ctx, daemons: &mut Daemons, keeper: Option<&Keeper>) -> Result<()> {
    let t = Instant::now();
    daemons.start_switch(keeper.is_some())?;
    if let Some(k) = keeper {
        restore_flows(ctx, k);
        daemons.end_restore_wait()?;
    }
    ctx.progress.info(&format!(
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
fn keeper_for(dirs: &OvsDirs, bridge: &str) -> Result<Keeper> {
    let ovs = Ovs::new(dirs.run.clone())?;
    Keeper::new(dirs, bridge, &ovs.bridge_protocols(bridge)?)
}

fn restore_flows(ctx: &Ctx, keeper: &Keeper) {
    match keeper.restore() {
        Ok(Some(r)) => ctx.progress.info(&format!(
            "ovs run: restored {} flows, {} groups, {} meters, {} TLV mappings of the previous run",
            r.flows, r.groups, r.meters, r.tlv
        )),
        Ok(None) => ctx
            .progress
            .info("ovs run: no saved flows to restore; the switch starts with its defaults"),
        Err(e) => ctx.progress.warn(&format!(
            "ovs run: the saved flows could not be restored, the switch starts with its defaults: {e:#}"
        )),
    }
}

/// Refreshes the saved copy; a failure is reported once per run, not on every tick.
fn keep_flows(ctx: &Ctx, keeper: &mut Option<Keeper>, force: bool) {
    let Some(k) = keeper.as_mut() else { return };
    if let Err(e) = k.refresh(force) {
        ctx.progress.warn(&format!(
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
