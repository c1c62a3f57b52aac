//! Where an OVS keeps its database, pid files and logs, which daemons are alive there, and the
//! database's preparation (create, convert) and stale-file cleanup.

use crate::error::precondition;
use crate::host::{proc, run, HostRoot};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub const DAEMONS: [&str; 2] = ["ovsdb-server", "ovs-vswitchd"];

/// The run directory held by one `ovs run` (`OvsDirs::claim`); dropping it lets the next one in.
pub struct RunClaim {
    _dir: std::fs::File,
}
const SCHEMA: &str = "vswitch.ovsschema";

/// The OVS directories as this process must use them. `OVS_RUNDIR`, `OVS_DBDIR` and
/// `OVS_LOGDIR` win, as they do for the OVS tools; otherwise config under the host root.
#[derive(Debug, Clone)]
pub struct OvsDirs {
    pub run: PathBuf,
    pub db: PathBuf,
    pub log: PathBuf,
    /// Where the host's absolute symlinks point (see `conf_db`).
    host: HostRoot,
}

/// The configured OVS directories, as host paths (`ovs.run_dir`, `ovs.db_dir`, `ovs.log_dir`).
#[derive(Debug, Clone, Copy)]
pub struct HostDirs<'a> {
    pub run: &'a str,
    pub db: &'a str,
    pub log: &'a str,
}

impl OvsDirs {
    /// The configured directories resolved under the host root, unless the OVS tools'
    /// environment names others.
    pub fn resolve(host: &HostRoot, s: HostDirs) -> Result<OvsDirs> {
        let pick = |env: &str, host_dir: &str| -> Result<PathBuf> {
            match std::env::var_os(env) {
                Some(v) => Ok(PathBuf::from(v)),
                None => host.resolve(host_dir),
            }
        };
        Ok(OvsDirs {
            run: pick("OVS_RUNDIR", s.run)?,
            db: pick("OVS_DBDIR", s.db)?,
            log: pick("OVS_LOGDIR", s.log)?,
            host: host.clone(),
        })
    }

    /// Claims the run directory for this `ovs run` for as long as the claim lives: a flock on
    /// the directory itself (nothing is created in it, so nothing is left to clean up). Two
    /// `ovs run` on one host (the systemd unit and the DaemonSet, or a rolling update with
    /// surge) would otherwise both start daemons on one database and pid files: exactly one
    /// wins, the other is refused before it touches anything, naming the winner.
    pub fn claim(&self) -> Result<RunClaim> {
        std::fs::create_dir_all(&self.run)
            .with_context(|| format!("creating {}", self.run.display()))?;
        let dir = std::fs::File::open(&self.run)
            .with_context(|| format!("opening {} to claim it", self.run.display()))?;
        match dir.try_lock() {
            Ok(()) => Ok(RunClaim { _dir: dir }),
            Err(std::fs::TryLockError::WouldBlock) => {
                use std::os::unix::fs::MetadataExt;
                let holder = dir
                    .metadata()
                    .ok()
                    .and_then(|m| proc::flock_holder(m.dev(), m.ino()))
                    .map_or("another process".into(), |p| format!("pid {p}"));
                Err(precondition(format!(
                    "another `ncp-bootstrap ovs run` ({holder}) already runs OVS at {}; this one \
                     changes nothing and exits. Run one of them: stop ncp-ovs.service on a node \
                     whose nsx-ovs container runs it, or the other way round",
                    self.run.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", self.run.display()))
            }
        }
    }

    /// Whether some process holds the run directory's claim (an `ovs run`), read from
    /// `/proc/locks` without taking it. A lock whose owner is in a pid namespace this process
    /// does not see still counts as held.
    pub fn is_claimed(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.run).is_ok_and(|m| proc::flock_held(m.dev(), m.ino()))
    }

    pub fn pidfile(&self, daemon: &str) -> PathBuf {
        self.run.join(format!("{daemon}.pid"))
    }

    /// The database file, following a symlinked conf.db to the file it names. An absolute
    /// link is the host's (Debian: `/etc/openvswitch/conf.db -> /var/lib/openvswitch/conf.db`):
    /// in a container it names a path under the host root, not in the container's own
    /// filesystem, so it is read there whenever its directory exists under the host root.
    pub fn conf_db(&self) -> Result<PathBuf> {
        let p = self.db.join("conf.db");
        let Ok(target) = std::fs::read_link(&p) else {
            return Ok(p);
        };
        if !target.is_absolute() {
            return Ok(self.db.join(target));
        }
        let under = self.host.resolve(&target.to_string_lossy())?;
        Ok(if under.parent().is_some_and(Path::is_dir) {
            under
        } else {
            target
        })
    }
}

/// How the ledger names a database of this process: its host path; or, for one no host path
/// names (an OVS whose directories lie outside the host root: tests, `OVS_DBDIR`), its own path,
/// unless that path under the host root is another file, which a reader of the record would
/// take for it (then nothing is recorded, and an undo that needs the database says so).
pub fn db_record(host: &HostRoot, db: &Path) -> Option<String> {
    if let Some(p) = host.host_path_of(db) {
        return Some(p);
    }
    let own = db.display().to_string();
    match host.resolve(&own) {
        Ok(under) if !under.exists() => Some(own),
        _ => None,
    }
}

/// A database path recorded in the ledger: a host path, read under the host root (following
/// the host's own links), or, for an OVS whose directories lie outside the host root (tests,
/// `OVS_DBDIR`), the path as recorded.
pub fn recorded_db(host: &HostRoot, recorded: &str) -> Result<PathBuf> {
    let under = host.resolve(recorded)?;
    Ok(if under.exists() {
        under
    } else {
        PathBuf::from(recorded)
    })
}

/// The live daemons that own a run dir: (name, pid).
pub fn live_daemons(host: &HostRoot, dirs: &OvsDirs) -> Result<Vec<(&'static str, u32)>> {
    live_at(host, &dirs.run)
}

/// The OVS daemons alive in a run directory named as a host path (a ledger's), for cleanup.
pub fn live_in(host: &HostRoot, run_dir: &str) -> Result<Vec<(&'static str, u32)>> {
    live_at(host, &host.resolve(run_dir)?)
}

/// The daemons whose pid files in `run` name a live process of that daemon.
fn live_at(host: &HostRoot, run: &Path) -> Result<Vec<(&'static str, u32)>> {
    let mut out = Vec::new();
    for d in DAEMONS {
        if let Some(pid) = proc::read_pidfile(&run.join(format!("{d}.pid"))) {
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

/// What `prepare_db` will do to the database.
#[derive(Debug, PartialEq)]
pub enum DbPlan {
    /// Nothing: the database is there with the image's schema.
    Ready,
    /// Create it from the schema.
    Create(PathBuf),
    /// Convert it after copying it to `backup`.
    Convert { db: PathBuf, backup: PathBuf },
}

/// What `prepare_db` would do, for the ledger before it does it.
pub fn db_plan(dirs: &OvsDirs) -> Result<DbPlan> {
    let db = dirs.conf_db()?;
    if !db.exists() {
        return Ok(DbPlan::Create(db));
    }
    let tool = run::find_tool("ovsdb-tool", "create or upgrade the OVS database")?;
    let needs = run::run(&tool, [Path::new("needs-conversion"), &db, &schema_path()])?;
    if needs.stdout.trim() != "yes" {
        return Ok(DbPlan::Ready);
    }
    let version = run::run(&tool, [Path::new("db-version"), &db])?
        .stdout
        .trim()
        .to_string();
    let backup = db.with_file_name(format!("conf.db.backup-{version}"));
    Ok(DbPlan::Convert { db, backup })
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
    // ovsdb-server locks beside the file it opens: the database a symlinked conf.db names.
    // A lock that is itself a link (Debian ships one beside its conf.db link) is the host's.
    if let Some(dir) = dirs.conf_db()?.parent() {
        let lock = dir.join(".conf.db.~lock~");
        if std::fs::symlink_metadata(&lock).is_ok_and(|m| m.is_file()) {
            candidates.push(lock);
        }
    }
    for c in candidates {
        if std::fs::remove_file(&c).is_ok() {
            removed.push(c);
        }
    }
    Ok(removed)
}
