//! The files `ovs run` makes for OVS on the host (its database, the database's lock, the
//! daemons' logs and their rotated copies, the directories for them), recorded before they are
//! made, and their inverse: cleanup removes them, or puts back the database from before its
//! conversion, once no daemon of that run directory is alive.

use super::Ctx;
use crate::host::ovs::{logs, OvsDirs, DAEMONS};
use crate::host::HostRoot;
use crate::ledger::Entry;
use anyhow::{Context, Result};

/// Records, before it makes them, the files `ovs run` makes for OVS on the host: the database
/// (and its lock) when it creates one, the database's conversion to the image's schema, the
/// daemons' logs. Cleanup undoes exactly these. Paths outside the host root (a directory
/// mounted elsewhere) are not the host's to record.
pub fn record_own_files(ctx: &Ctx, dirs: &OvsDirs) -> Result<()> {
    let Some(run_dir) = ctx.host.host_path_of(&dirs.run) else {
        return Ok(());
    };
    let created = |p: &std::path::Path| {
        ctx.host.host_path_of(p).map(|path| Entry::OvsFileCreated {
            step: "ovs".into(),
            path,
            run_dir: run_dir.clone(),
        })
    };
    let mut entries = Vec::new();
    // The directories first (undone last, once empty).
    let db_dir = dirs.conf_db()?.parent().map(std::path::Path::to_path_buf);
    for dir in [Some(dirs.run.clone()), db_dir, Some(dirs.log.clone())]
        .into_iter()
        .flatten()
    {
        if let Some(d) = ctx.host.host_path_of(&dir) {
            for path in ctx.host.missing_dirs(&d)? {
                let e = Entry::DirCreated {
                    step: "ovs".into(),
                    path,
                };
                if !entries.contains(&e) {
                    entries.push(e);
                }
            }
        }
    }
    match crate::host::ovs::db_plan(dirs)? {
        crate::host::ovs::DbPlan::Ready => {}
        crate::host::ovs::DbPlan::Create(db) => {
            entries.extend(created(&db));
            entries.extend(created(&db.with_file_name(".conf.db.~lock~")));
        }
        crate::host::ovs::DbPlan::Convert { db, backup } => {
            if let (Some(path), Some(backup)) =
                (ctx.host.host_path_of(&db), ctx.host.host_path_of(&backup))
            {
                entries.push(Entry::OvsDbConverted {
                    step: "ovs".into(),
                    path,
                    backup,
                    run_dir: run_dir.clone(),
                });
            }
        }
    }
    for d in DAEMONS {
        let log = dirs.log.join(format!("{d}.log"));
        if !log.exists() {
            entries.extend(created(&log));
        }
    }
    record_new(ctx, entries)
}

/// Records, under the lock, the entries the ledger does not hold yet.
fn record_new(ctx: &Ctx, entries: Vec<Entry>) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let _lock = crate::steps::lock(ctx.host)?;
    crate::ledger::create_state_dir(ctx.host)?;
    let mut ledger = crate::ledger::Ledger::load(ctx.host)?;
    for e in entries {
        if !ledger.entries.contains(&e) {
            ledger.record(ctx.host, e)?;
        }
    }
    Ok(())
}

/// Records the rotated copies the logs can get (those not there yet), as files `ovs run` made.
pub fn record_log_copies(ctx: &Ctx, dirs: &OvsDirs, cap: logs::Cap) -> Result<()> {
    let Some(run_dir) = ctx.host.host_path_of(&dirs.run) else {
        return Ok(());
    };
    let entries: Vec<Entry> = DAEMONS
        .iter()
        .flat_map(|d| logs::backup_paths(&dirs.log.join(format!("{d}.log")), cap.backups))
        .filter(|p| !p.exists())
        .filter_map(|p| ctx.host.host_path_of(&p))
        .map(|path| Entry::OvsFileCreated {
            step: "ovs".into(),
            path,
            run_dir: run_dir.clone(),
        })
        .collect();
    record_new(ctx, entries)
}

/// The inverse of one recorded file of `ovs run`'s.
#[derive(Debug, Clone, PartialEq)]
pub enum Undo {
    /// A file `ovs run` made for OVS goes, once no daemon of its run directory is alive.
    Remove {
        path: String,
        run_dir: String,
    },
    /// The database `ovs run` converted: its copy from before goes back.
    RestoreDb {
        path: String,
        backup: String,
        run_dir: String,
    },
    Gone {
        path: String,
    },
    /// The copy from before the conversion is gone: the database keeps the newer schema.
    CopyGone {
        path: String,
        backup: String,
    },
}

impl Undo {
    /// Plans the undo of an `ovs_file_created` or `ovs_db_converted` entry (read only); `None`
    /// for any other entry.
    pub fn plan(host: &HostRoot, entry: &Entry) -> Result<Option<Undo>> {
        Ok(Some(match entry {
            Entry::OvsFileCreated { path, run_dir, .. } => {
                check_ovs_paths(path, None, run_dir)?;
                if host.exists(path)? {
                    Undo::Remove {
                        path: path.clone(),
                        run_dir: run_dir.clone(),
                    }
                } else {
                    Undo::Gone { path: path.clone() }
                }
            }
            Entry::OvsDbConverted {
                path,
                backup,
                run_dir,
                ..
            } => {
                check_ovs_paths(path, Some(backup), run_dir)?;
                if host.exists(backup)? {
                    Undo::RestoreDb {
                        path: path.clone(),
                        backup: backup.clone(),
                        run_dir: run_dir.clone(),
                    }
                } else {
                    Undo::CopyGone {
                        path: path.clone(),
                        backup: backup.clone(),
                    }
                }
            }
            _ => return Ok(None),
        }))
    }

    pub fn describe(&self) -> String {
        match self {
            Undo::Remove { path, .. } => format!("remove {path} (made by ovs run)"),
            Undo::RestoreDb { path, backup, .. } => format!(
                "put back {path} as it was before ovs run converted it to its schema, from {backup}"
            ),
            Undo::Gone { path } => format!("{path} is already gone"),
            Undo::CopyGone { path, backup } => format!(
                "the copy {backup} of {path} from before its conversion is gone; {path} keeps \
                 the newer schema"
            ),
        }
    }

    pub fn apply(&self, host: &HostRoot) -> Result<()> {
        match self {
            Undo::Remove { path, run_dir } => {
                no_live_ovs(host, run_dir, path)?;
                host.remove_file(path).map(drop)
            }
            Undo::RestoreDb {
                path,
                backup,
                run_dir,
            } => {
                no_live_ovs(host, run_dir, path)?;
                let bytes = host
                    .read(backup)?
                    .with_context(|| format!("{backup} vanished"))?;
                let mode = host.file_state(backup)?.map_or(0o644, |s| s.mode);
                host.write_atomic(path, &bytes, mode)?;
                host.remove_file(backup).map(drop)
            }
            Undo::Gone { .. } | Undo::CopyGone { .. } => Ok(()),
        }
    }
}

/// The ledger names these paths and cleanup removes or overwrites them: only OVS's own files
/// in one directory are accepted (the ledger is input; an altered one must not make cleanup
/// remove something else).
fn check_ovs_paths(path: &str, backup: Option<&str>, run_dir: &str) -> Result<()> {
    let p = std::path::Path::new(path);
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
    let ours = matches!(name.as_deref(), Some("conf.db" | ".conf.db.~lock~"))
        || name.as_deref().is_some_and(|n| {
            crate::host::ovs::DAEMONS.iter().any(|d| {
                // The log, or one of its rotated copies (`X.log.N`).
                n.strip_prefix(&format!("{d}.log")).is_some_and(|rest| {
                    rest.is_empty()
                        || rest.strip_prefix('.').is_some_and(|num| {
                            !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit())
                        })
                })
            })
        });
    let backup_ok = backup.is_none_or(|b| {
        let b = std::path::Path::new(b);
        b.parent() == p.parent()
            && b.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("conf.db.backup-"))
    });
    let plain = |s: &str| s.starts_with('/') && !s.split('/').any(|c| c == "..");
    if ours && backup_ok && plain(path) && plain(run_dir) && backup.is_none_or(plain) {
        return Ok(());
    }
    Err(crate::error::input(format!(
        "the ledger names {path}{} as a file of OVS's, which it is not (the ledger was \
         altered): fix or remove that entry",
        backup.map_or(String::new(), |b| format!(" (copy {b})"))
    )))
}

/// Refuses while an OVS daemon still runs on the files.
fn no_live_ovs(host: &HostRoot, run_dir: &str, path: &str) -> Result<()> {
    match crate::host::ovs::live_in(host, run_dir)?.first() {
        Some((d, pid)) => anyhow::bail!(
            "{d} (pid {pid}) still runs in {run_dir}, so {path} stays; stop nsx-ovs (`ovs run`) \
             and run cleanup again"
        ),
        None => Ok(()),
    }
}
