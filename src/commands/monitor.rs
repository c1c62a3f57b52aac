//! `monitor`, the bootstrap DaemonSet's main container (NCP's `nsx-host-ovs-monitor`, "to move
//! the IP from ovs_bridge to ovs_uplink_port"): when nsx-ovs is gone for longer than
//! `monitor.grace_seconds`, node-if gets its addresses, routes and rules back, so that the node
//! does not sit behind a bridge with no switch (on the kernel datapath new flows, an ARP
//! refresh among them, are dropped; on the userspace one the bridge and its addresses vanish).
//!
//! "Gone" is exact, so that the monitor never fights `ovs run`: an attach is recorded, no
//! process holds the OVS run directory's claim (every `ovs run` holds it from its first step to
//! its last, through in-place restarts of ovs-vswitchd), and no ovsdb-server or ovs-vswitchd
//! runs from that directory's pid files (a host OVS that serves the bridge). It is checked
//! again under the lock before anything changes; `ovs run` takes that lock before it starts
//! the daemons, so one that starts while the monitor acts waits for it and then attaches as
//! usual.

use super::{Env, Outcome};
use crate::host::ovs::OvsDirs;
use crate::ledger::{Entry, Ledger, UplinkPreState};
use crate::steps::Ctx;
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often the monitor looks: a `/proc/locks` read, two pid checks and the ledger's stat.
pub const POLL: Duration = Duration::from_secs(1);

/// What one look found.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// No attach is recorded: nothing to give back.
    NothingAttached,
    /// `ovs run` or OVS's daemons are there.
    Present(String),
    /// An attach is recorded and nothing serves it.
    Gone(Vec<UplinkPreState>),
}

pub fn observe(ctx: &Ctx, dirs: &OvsDirs) -> Result<Seen> {
    seen(ctx, dirs, &Ledger::load(ctx.host)?)
}

/// What a look finds, against a ledger already read.
fn seen(ctx: &Ctx, dirs: &OvsDirs, ledger: &Ledger) -> Result<Seen> {
    let attached: Vec<UplinkPreState> = ledger
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::UplinkAttached(p) => Some((**p).clone()),
            _ => None,
        })
        .collect();
    if attached.is_empty() {
        return Ok(Seen::NothingAttached);
    }
    if dirs.is_claimed() {
        return Ok(Seen::Present(format!(
            "`ovs run` holds {}",
            dirs.run.display()
        )));
    }
    if let Some((d, pid)) = crate::host::ovs::live_daemons(ctx.host, dirs)?.first() {
        return Ok(Seen::Present(format!("{d} (pid {pid}) runs")));
    }
    Ok(Seen::Gone(attached))
}

/// How long nsx-ovs has been gone, from the looks so far.
#[derive(Debug, Default)]
pub struct Absence {
    since: Option<Instant>,
}

impl Absence {
    /// Feeds one look; returns how long it has been gone when that is at least `grace`.
    pub fn update(&mut self, gone: bool, now: Instant, grace: Duration) -> Option<Duration> {
        if !gone {
            self.since = None;
            return None;
        }
        let since = *self.since.get_or_insert(now);
        let absent = now.saturating_duration_since(since);
        (absent >= grace).then_some(absent)
    }

    pub fn reset(&mut self) {
        self.since = None;
    }
}

pub fn run(env: &Env) -> Result<Outcome> {
    let ctx = env.ctx();
    let dirs = OvsDirs::resolve(ctx.host, ctx.settings.ovs_dirs())?;
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&term))?;
    }
    let grace = ctx.settings.monitor_grace;
    ctx.progress.info(&format!(
        "monitor: watching {} (node-if gets its addresses back once nsx-ovs is gone for {} s)",
        dirs.run.display(),
        grace.as_secs()
    ));
    let mut absence = Absence::default();
    let mut last = None;
    while !term.load(Ordering::Relaxed) {
        let seen = observe(&ctx, &dirs);
        let gone = matches!(seen, Ok(Seen::Gone(_)));
        let said = match &seen {
            Ok(Seen::Gone(_)) => "gone".to_string(),
            Ok(Seen::Present(why)) => format!("present: {why}"),
            Ok(Seen::NothingAttached) => "no uplink attached".to_string(),
            Err(e) => format!("cannot tell: {e:#}"),
        };
        // A change is logged once, not every second.
        if last.as_deref() != Some(said.as_str()) {
            ctx.progress.info(&format!("monitor: nsx-ovs {said}"));
            last = Some(said);
        }
        if let Some(absent) = absence.update(gone, Instant::now(), grace) {
            match release(&ctx, &dirs, absent) {
                Ok(done) => {
                    for d in done {
                        ctx.progress.info(&format!("monitor: {d}"));
                    }
                }
                Err(e) => ctx.progress.warn(&format!(
                    "monitor: giving node-if its addresses back failed: {}; trying again",
                    crate::error::render(&e)
                )),
            }
            absence.reset();
            last = None;
        }
        std::thread::sleep(POLL);
    }
    ctx.progress.info("monitor: signal received, stopping");
    Ok(Outcome::ok())
}

/// Under the lock, if nsx-ovs is still gone: every recorded attach undone from its pre-state
/// (make-before-break where the bridge still holds the addresses, straight onto node-if where
/// it vanished), the record of it kept for `status`.
fn release(ctx: &Ctx, dirs: &OvsDirs, absent: Duration) -> Result<Vec<String>> {
    let _lock = crate::steps::lock(ctx.host)?;
    let mut ledger = Ledger::load(ctx.host)?;
    let Seen::Gone(attached) = seen(ctx, dirs, &ledger)? else {
        return Ok(vec!["nsx-ovs came back; nothing to do".into()]);
    };
    let mut done = Vec::new();
    for pre in attached {
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let record = Entry::MonitorReleased {
            step: "monitor".into(),
            uplink: pre.uplink.clone(),
            bridge: pre.bridge.clone(),
            at,
            absent_s: absent.as_secs(),
        };
        // Recorded first: a monitor killed in the middle finds the attach still recorded and
        // nsx-ovs still gone, and finishes from the same pre-state.
        if !ledger.entries.contains(&record) {
            ledger.record(ctx.host, record)?;
        }
        crate::steps::uplink::undo(ctx.host, &pre)?;
        ledger.forget(ctx.host, &Entry::UplinkAttached(Box::new(pre.clone())))?;
        done.push(format!(
            "gave {} its addresses back from {}: nsx-ovs absent for {} s",
            pre.uplink,
            pre.bridge,
            absent.as_secs()
        ));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_counts_only_while_it_lasts() {
        let grace = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut a = Absence::default();
        assert_eq!(a.update(true, t0, grace), None);
        assert_eq!(a.update(true, t0 + Duration::from_secs(29), grace), None);
        // Back for one look (an `ovs run` restarting): the count starts again.
        assert_eq!(a.update(false, t0 + Duration::from_secs(29), grace), None);
        assert_eq!(a.update(true, t0 + Duration::from_secs(30), grace), None);
        assert_eq!(
            a.update(true, t0 + Duration::from_secs(61), grace),
            Some(Duration::from_secs(31))
        );
    }
}
