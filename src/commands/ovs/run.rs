//! `ovs run` from start to exit: its own files recorded, the run directory claimed, the
//! database prepared, the daemons started (the flows of a previous run restored), the uplink
//! attached through the uplink step; then `host::ovs::supervisor` keeps the daemons, and on a
//! signal `ovs.on_exit` is applied and they are stopped.

use super::NO_UPLINK;
use crate::error::{precondition, Error, Kind};
use crate::host::ovs::supervisor::{keeper_for, restore_flows, Exit, Hooks, Supervisor};
use crate::host::ovs::{clean_stale, logs, prepare_db, Daemons, Ovs, OvsDirs};
use crate::host::run;
use crate::steps::{kmod, ovs_files, uplink, Ctx};
use anyhow::{Context, Result};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn kernel_datapath(ctx: &Ctx) -> bool {
    ctx.settings.datapath == crate::config::Datapath::System
}

/// For the kernel datapath the openvswitch module must be there; say clearly when it cannot be.
fn ensure_module(ctx: &Ctx) -> Result<()> {
    if !kernel_datapath(ctx) || ctx.host.exists("/sys/module/openvswitch")? {
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
    let hooks = Says { ctx, dirs: &dirs };
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
    let swap_after_detach = match ctx.settings.nsx_kernel_module && kernel_datapath(ctx) {
        true => match kmod::at_start(ctx, &ctx.settings.bundle)? {
            kmod::AtStart::Ready => None,
            kmod::AtStart::SwapAfterDetach(want) => Some(want),
        },
        false => {
            ensure_module(ctx)?;
            None
        }
    };
    if let Some(l) = crate::host::kmod::loaded(ctx.host, crate::host::kmod::OVS_MODULE)? {
        ctx.progress.info(&format!(
            "ovs run: kernel module {}: {}",
            crate::host::kmod::OVS_MODULE,
            l.describe()
        ));
    }
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
        restore_flows(&hooks, &k);
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
    if let Some(want) = swap_after_detach {
        daemons = swap_module(ctx, &dirs, daemons, &want)?;
        keeper = None;
    }
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
    let keeper = match keeper {
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
    let kernel = ctx.settings.datapath == crate::config::Datapath::System;
    let log_cap = ctx.settings.ovs_log_max_bytes.map(|max_bytes| logs::Cap {
        max_bytes,
        backups: ctx.settings.ovs_log_backups,
    });
    let mut supervisor = Supervisor::new(
        daemons,
        dirs.clone(),
        keeper,
        ctx.settings.uplink.clone().filter(|_| kernel),
        log_cap,
    );
    if started_on_existing_bridge {
        supervisor.started_on_existing_datapath(&hooks);
    }
    match supervisor.keep(&term, &hooks)? {
        Exit::Died => Ok(1),
        Exit::Signal => {
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
            supervisor.stop(Duration::from_secs(10));
            Ok(code)
        }
    }
}

/// Swaps NSX's module in under a bridge that carries the node's addresses, make-before-break:
/// the addresses go back to node-if (as a stop with `ovs.on_exit = restore` gives them), the
/// daemons stop, the module is swapped, fresh daemons start on the new (empty) datapath; the
/// attach that follows moves the addresses onto the bridge again.
fn swap_module(
    ctx: &Ctx,
    dirs: &OvsDirs,
    mut daemons: Daemons,
    want: &kmod::ForKernel,
) -> Result<Daemons> {
    let t = Instant::now();
    ctx.progress.info(&format!(
        "ovs run: the loaded {} module is not NSX's (srcversion {}) and the bridge carries the \
         node's addresses: giving them back to node-if, then swapping the module",
        crate::host::kmod::OVS_MODULE,
        want.srcversion
    ));
    if ctx.settings.uplink.is_some() {
        uplink::detach(ctx)
            .context("ovs run: giving node-if its addresses back before the swap")?;
    }
    daemons.stop(Duration::from_secs(10));
    {
        let _lock = crate::steps::lock(ctx.host)?;
        kmod::swap(ctx.host, want).context("ovs run: swapping the kernel module")?;
    }
    let daemons = Daemons::start(dirs, None)
        .map_err(|e| Error::new(Kind::Apply, format!("starting OVS after the swap: {e:#}")))?;
    ctx.progress.info(&format!(
        "ovs run: NSX's module (srcversion {}) loaded; addresses back, module swapped and daemons \
         up in {:.0} ms",
        want.srcversion,
        t.elapsed().as_secs_f64() * 1000.0
    ));
    Ok(daemons)
}

/// What the supervisor says goes to the progress log; the log copies it is about to make are
/// recorded in the ledger first (`steps::ovs_files`).
struct Says<'a, 'c> {
    ctx: &'a Ctx<'c>,
    dirs: &'a OvsDirs,
}

impl Hooks for Says<'_, '_> {
    fn info(&self, msg: &str) {
        self.ctx.progress.info(msg);
    }

    fn warn(&self, msg: &str) {
        self.ctx.progress.warn(msg);
    }

    fn before_log_copies(&self, cap: logs::Cap) -> Result<()> {
        ovs_files::record_log_copies(self.ctx, self.dirs, cap)
    }
}
