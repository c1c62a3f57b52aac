//! `ovs run`: the nsx-ovs container's entrypoint. Prepares the database, starts ovsdb-server and
//! ovs-vswitchd as supervised children (no `--detach`, so a dead daemon is noticed at once),
//! attaches the uplink, and stays in the foreground until a signal or a daemon's death.

use super::uplink;
use super::Ctx;
use crate::error::{precondition, Error, Kind};
use crate::host::{proc, run, HostRoot};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const DAEMONS: [&str; 2] = ["ovsdb-server", "ovs-vswitchd"];
const SCHEMA: &str = "vswitch.ovsschema";

/// The OVS directories as this process must use them. `OVS_RUNDIR`, `OVS_DBDIR` and
/// `OVS_LOGDIR` win, as they do for the OVS tools; otherwise config under the host root.
#[derive(Debug, Clone)]
pub struct OvsDirs {
    pub run: PathBuf,
    pub db: PathBuf,
    pub log: PathBuf,
}

impl OvsDirs {
    pub fn from_ctx(ctx: &Ctx) -> Result<OvsDirs> {
        let pick = |env: &str, key: &str, default: &str| -> Result<PathBuf> {
            match std::env::var_os(env) {
                Some(v) => Ok(PathBuf::from(v)),
                None => ctx.host.resolve(ctx.config.str(key).unwrap_or(default)),
            }
        };
        Ok(OvsDirs {
            run: pick("OVS_RUNDIR", "ovs.run_dir", "/var/run/openvswitch")?,
            db: pick("OVS_DBDIR", "ovs.db_dir", "/etc/openvswitch")?,
            log: pick("OVS_LOGDIR", "ovs.log_dir", "/var/log/openvswitch")?,
        })
    }

    pub fn pidfile(&self, daemon: &str) -> PathBuf {
        self.run.join(format!("{daemon}.pid"))
    }

    /// The database file, following a symlinked conf.db to the file it names.
    pub fn conf_db(&self) -> Result<PathBuf> {
        let p = self.db.join("conf.db");
        match std::fs::read_link(&p) {
            Ok(target) => Ok(if target.is_absolute() {
                target
            } else {
                self.db.join(target)
            }),
            Err(_) => Ok(p),
        }
    }
}

/// The live daemons that own a run dir: (name, pid).
pub fn live_daemons(host: &HostRoot, dirs: &OvsDirs) -> Result<Vec<(&'static str, u32)>> {
    let mut out = Vec::new();
    for d in DAEMONS {
        if let Some(pid) = proc::read_pidfile(&dirs.pidfile(d)) {
            if proc::runs(host, pid, d)? {
                out.push((d, pid));
            }
        }
    }
    Ok(out)
}

fn schema_path() -> PathBuf {
    let dir = std::env::var_os("OVS_PKGDATADIR")
        .map_or_else(|| PathBuf::from("/usr/share/openvswitch"), PathBuf::from);
    dir.join(SCHEMA)
}

/// Creates the database from the schema if absent; converts an old one after a backup.
/// Returns what it did, for the log.
pub fn prepare_db(dirs: &OvsDirs) -> Result<Option<String>> {
    let tool = run::find_tool("ovsdb-tool", "create or upgrade the OVS database")?;
    let schema = schema_path();
    let db = dirs.conf_db()?;
    if !db.exists() {
        if let Some(parent) = db.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        run::run(&tool, [Path::new("create"), &db, &schema])?;
        return Ok(Some(format!(
            "created {} from {}",
            db.display(),
            schema.display()
        )));
    }
    let needs = run::run(&tool, [Path::new("needs-conversion"), &db, &schema])?;
    if needs.stdout.trim() != "yes" {
        return Ok(None);
    }
    let version = run::run(&tool, [Path::new("db-version"), &db])?
        .stdout
        .trim()
        .to_string();
    let backup = db.with_file_name(format!("conf.db.backup-{version}"));
    std::fs::copy(&db, &backup)
        .with_context(|| format!("backing up {} to {}", db.display(), backup.display()))?;
    run::run(&tool, [Path::new("convert"), &db, &schema])?;
    Ok(Some(format!(
        "converted {} from schema {version} (backup {})",
        db.display(),
        backup.display()
    )))
}

/// Removes pid, control-socket and lock files a killed run left behind. Refuses when a live
/// daemon still owns the directory.
pub fn clean_stale(host: &HostRoot, dirs: &OvsDirs) -> Result<Vec<PathBuf>> {
    if let Some((d, pid)) = live_daemons(host, dirs)?.first() {
        return Err(precondition(format!(
            "a live {d} (pid {pid}) owns {}; stop the host's OVS first (`ncp-bootstrap install` does)",
            dirs.run.display()
        )));
    }
    let mut removed = Vec::new();
    let mut candidates = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dirs.run) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = DAEMONS
                .iter()
                .any(|d| name.starts_with(d) && (name.ends_with(".pid") || name.ends_with(".ctl")));
            if ours || name == "db.sock" {
                candidates.push(e.path());
            }
        }
    }
    candidates.push(dirs.db.join(".conf.db.~lock~"));
    for c in candidates {
        if std::fs::remove_file(&c).is_ok() {
            removed.push(c);
        }
    }
    Ok(removed)
}

/// For the kernel datapath the openvswitch module must be there; say clearly when it cannot be.
fn ensure_module(ctx: &Ctx) -> Result<()> {
    if ctx.config.str("ovs.datapath_type") != Some("system")
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

pub struct Daemons {
    children: Vec<(&'static str, Child)>,
    dirs: OvsDirs,
}

impl Daemons {
    fn spawn(dirs: &OvsDirs, name: &'static str, args: &[String]) -> Result<Child> {
        let tool = run::find_tool(name, "run Open vSwitch")?;
        let mut cmd = Command::new(&tool);
        cmd.args(args)
            .env("OVS_RUNDIR", &dirs.run)
            .env("OVS_DBDIR", &dirs.db)
            .env("OVS_LOGDIR", &dirs.log);
        // A supervisor killed with -9 must not leave daemons that hold conf.db and the pid
        // files, which would make the next `ovs run` refuse to start.
        run::die_with_parent(&mut cmd)
            .spawn()
            .with_context(|| format!("starting {}", tool.display()))
    }

    pub fn start(dirs: &OvsDirs) -> Result<Daemons> {
        for d in [&dirs.run, &dirs.log] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let db = dirs.conf_db()?;
        let sock = dirs.run.join("db.sock");
        let mut me = Daemons {
            children: Vec::new(),
            dirs: dirs.clone(),
        };
        let server = Self::spawn(
            dirs,
            "ovsdb-server",
            &[
                db.display().to_string(),
                format!("--remote=punix:{}", sock.display()),
                "--remote=db:Open_vSwitch,Open_vSwitch,manager_options".into(),
                "--pidfile".into(),
                "--log-file".into(),
                // Warnings and errors to the container log; everything to the log file.
                "-vconsole:warn".into(),
                "-vfile:info".into(),
            ],
        )?;
        me.children.push(("ovsdb-server", server));
        let vsctl = run::find_tool("ovs-vsctl", "talk to Open vSwitch")?;
        let db_arg = format!("--db=unix:{}", sock.display());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if run::run(
                &vsctl,
                [db_arg.as_str(), "--timeout=1", "--no-wait", "init"],
            )
            .is_ok()
            {
                break;
            }
            if let Some(exit) = me.dead() {
                return Err(anyhow::anyhow!("{exit}"));
            }
            if Instant::now() > deadline {
                return Err(anyhow::anyhow!(
                    "ovsdb-server did not answer on {} within 10 s",
                    sock.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let vswitchd = Self::spawn(
            dirs,
            "ovs-vswitchd",
            &[
                format!("unix:{}", sock.display()),
                "--pidfile".into(),
                "--log-file".into(),
                "-vconsole:warn".into(),
                "-vfile:info".into(),
            ],
        )?;
        me.children.push(("ovs-vswitchd", vswitchd));
        // ovs-vsctl waits for ovs-vswitchd to apply a change; a no-op change with waiting proves
        // the switch is up and reading the database.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if run::run(
                &vsctl,
                [
                    db_arg.as_str(),
                    "--timeout=2",
                    "set",
                    "Open_vSwitch",
                    ".",
                    "external-ids:ncp-bootstrap=running",
                ],
            )
            .is_ok()
            {
                break;
            }
            if let Some(exit) = me.dead() {
                return Err(anyhow::anyhow!("{exit}"));
            }
            if Instant::now() > deadline {
                return Err(anyhow::anyhow!("ovs-vswitchd did not come up within 20 s"));
            }
        }
        Ok(me)
    }

    /// A description of the first daemon that exited, with the last lines of its log.
    pub fn dead(&mut self) -> Option<String> {
        for (name, child) in self.children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = self.dirs.log.join(format!("{name}.log"));
                let tail = std::fs::read_to_string(&log)
                    .map(|t| {
                        t.lines()
                            .rev()
                            .take(10)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                return Some(format!(
                    "{name} exited ({status}); last lines of {}:\n{tail}",
                    log.display()
                ));
            }
        }
        None
    }

    /// SIGTERM to every daemon (ovs-vswitchd first), SIGKILL whatever is left after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        for (_, child) in self.children.iter().rev() {
            terminate(child.id());
        }
        let deadline = Instant::now() + grace;
        for (_, child) in self.children.iter_mut().rev() {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The whole entrypoint. Returns the exit code.
pub fn run(ctx: &Ctx) -> Result<i32> {
    let started = Instant::now();
    let dirs = OvsDirs::from_ctx(ctx)?;
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
    let mut daemons = Daemons::start(&dirs)
        .map_err(|e| Error::new(Kind::Apply, format!("starting OVS: {e:#}")))?;
    ctx.progress.info(&format!(
        "ovs run: daemons up after {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    ));
    let attach = if ctx.config.str("node.uplink").is_some() {
        Some(uplink::attach(ctx))
    } else {
        ctx.progress
            .warn("ovs run: no uplink configured (node.uplink); OVS runs without one");
        None
    };
    match attach {
        Some(Err(e)) => {
            daemons.stop(Duration::from_secs(5));
            return Err(e.context("ovs run: attaching the uplink"));
        }
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
    loop {
        if term.load(Ordering::Relaxed) {
            ctx.progress.info("ovs run: signal received, stopping");
            let mut code = 0;
            if ctx.config.str("ovs.on_exit") == Some("restore")
                && ctx.config.str("node.uplink").is_some()
            {
                if let Err(e) = uplink::detach(ctx) {
                    ctx.progress
                        .warn(&format!("ovs run: restoring the uplink failed: {e:#}"));
                    code = 3;
                }
            }
            daemons.stop(Duration::from_secs(10));
            return Ok(code);
        }
        if let Some(why) = daemons.dead() {
            eprintln!("error: {why}");
            daemons.stop(Duration::from_secs(5));
            return Ok(1);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `ovs health`: `Ok(())` when both daemons answer and the uplink is attached as configured.
pub fn health(ctx: &Ctx) -> Result<(), String> {
    let dirs = OvsDirs::from_ctx(ctx).map_err(|e| format!("{e:#}"))?;
    let live = live_daemons(ctx.host, &dirs).map_err(|e| format!("{e:#}"))?;
    for d in DAEMONS {
        if !live.iter().any(|(n, _)| *n == d) {
            return Err(format!(
                "{d} is not running (no live pid in {})",
                dirs.run.display()
            ));
        }
    }
    let ovs = crate::host::ovs::Ovs::new(dirs.run.clone()).map_err(|e| format!("{e:#}"))?;
    ovs.reachable().map_err(|e| format!("{e:#}"))?;
    let Some(up) = ctx.config.str("node.uplink") else {
        return Ok(());
    };
    let bridge = ctx.config.str("node.bridge").unwrap_or("br-int");
    let ports = ovs
        .ports(bridge)
        .map_err(|e| format!("bridge {bridge}: {e:#}"))?;
    if !ports.iter().any(|p| p == up) {
        return Err(format!("{up} is not a port of {bridge}"));
    }
    uplink::holds_no_address(up).map_err(|e| format!("{e:#}"))
}

/// SIGTERM: OVS daemons exit cleanly on it (ovs-vswitchd keeps the datapath flows).
pub fn terminate(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}
