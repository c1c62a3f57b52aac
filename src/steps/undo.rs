//! Undo, driven by ledger entries (data), so any later process can undo what a run recorded.
//! Each entry is planned (read only, for `--dry-run`) and then applied; undo never deletes a file
//! that changed after we wrote it.

use crate::host::apparmor::{loaded_mode, Parser};
use crate::host::HostRoot;
use crate::ledger::{Before, Entry, FileCheck};
use anyhow::{Context, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum UndoAction {
    RemoveFile {
        path: String,
    },
    UnloadProfile {
        name: String,
    },
    DetachUplink(Box<crate::ledger::UplinkPreState>),
    ReattachUplink(Box<crate::ledger::UplinkPreState>),
    StartHostOvs {
        daemons: Vec<crate::ledger::StoppedDaemon>,
        units: Vec<String>,
        started: Vec<String>,
    },
    ReloadProfile {
        name: String,
        from: String,
    },
    Restore {
        path: String,
        backup: String,
        /// The recorded hash of the original: a backup that does not match is not restored.
        sha256: String,
        mode: u32,
        owner: Option<crate::ledger::Owner>,
    },
    /// A file `ovs run` made for OVS goes, once no daemon of its run directory is alive.
    RemoveOvsFile {
        path: String,
        run_dir: String,
    },
    /// The database `ovs run` converted: its copy from before goes back.
    RestoreOvsDb {
        path: String,
        backup: String,
        run_dir: String,
    },
    /// `--forget-missing-uplink`: the uplink is gone; the record goes, nothing is moved.
    ForgetMissingUplink {
        uplink: String,
        bridge: String,
        addresses: Vec<String>,
    },
    /// `--forget-missing-backups`: the backup is gone, the file stays as it is.
    ForgetMissingBackup {
        path: String,
        backup: String,
    },
    /// Someone changed the file after we wrote it: it is theirs now.
    KeepChanged {
        path: String,
        backup: Option<String>,
    },
    RemoveDir {
        path: String,
    },
    DropBackups {
        paths: Vec<String>,
        note: String,
    },
    Nothing {
        why: String,
    },
}

impl UndoAction {
    pub fn describe(&self) -> String {
        match self {
            UndoAction::RemoveFile { path } => format!("remove {path}"),
            UndoAction::Restore {
                path, backup, mode, ..
            } => format!("restore {path} from {backup} (mode {mode:04o})"),
            UndoAction::RemoveOvsFile { path, .. } => format!("remove {path} (made by ovs run)"),
            UndoAction::RestoreOvsDb { path, backup, .. } => format!(
                "put back {path} as it was before ovs run converted it to its schema, from {backup}"
            ),
            UndoAction::ForgetMissingUplink {
                uplink,
                bridge,
                addresses,
            } => format!(
                "forget the attach of {uplink}: it no longer exists, so {} cannot be put back on \
                 it; {bridge} stays in OVS (`ovs-vsctl del-br {bridge}` removes it)",
                if addresses.is_empty() {
                    "nothing".to_string()
                } else {
                    addresses.join(", ")
                }
            ),
            UndoAction::ForgetMissingBackup { path, backup } => format!(
                "forget {path}: its backup {backup} is missing, so the host's original cannot be \
                 restored; {path} stays as it is now"
            ),
            UndoAction::KeepChanged { path, backup } => format!(
                "keep {path}: it changed after ncp-bootstrap wrote it{}",
                backup
                    .as_ref()
                    .map(|b| format!("; the original stays at {b}"))
                    .unwrap_or_default()
            ),
            UndoAction::RemoveDir { path } => format!("remove directory {path} if empty"),
            UndoAction::DropBackups { note, .. } => note.clone(),
            UndoAction::StartHostOvs {
                daemons,
                units,
                started,
            } => match (units.is_empty(), started.is_empty()) {
                (true, true) => format!(
                    "start the host's OVS again as it ran: {}",
                    daemons
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (false, true) => format!("enable and start {}", units.join(", ")),
                (true, false) => format!("start {} (not enabled)", started.join(", ")),
                (false, false) => format!(
                    "enable and start {}, start {}",
                    units.join(", "),
                    started.join(", ")
                ),
            },
            UndoAction::ReattachUplink(p) => format!(
                "put {} back into the host's OVS bridge {} with its addresses and routes, as \
                 before install",
                p.uplink, p.bridge
            ),
            UndoAction::DetachUplink(p) => format!(
                "move {}'s addresses and routes back from {} and remove the port{}",
                p.uplink,
                p.bridge,
                if p.bridge_created {
                    " and the bridge"
                } else {
                    ""
                }
            ),
            UndoAction::UnloadProfile { name } => {
                format!("unload AppArmor profile {name} (apparmor_parser -R)")
            }
            UndoAction::ReloadProfile { name, from } => {
                format!("reload the host's earlier AppArmor profile {name} from {from}")
            }
            UndoAction::Nothing { why } => why.clone(),
        }
    }

    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            UndoAction::KeepChanged { .. }
                | UndoAction::ForgetMissingBackup { .. }
                | UndoAction::ForgetMissingUplink { .. }
        )
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

/// What cleanup may forget instead of failing on it every time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forget {
    /// `--forget-missing-backups`: a file whose backup is gone stays as it is now.
    pub backups: bool,
    /// `--forget-missing-uplink`: an attach whose uplink no longer exists is forgotten.
    pub uplink: bool,
}

/// Plans the undo of one entry (read only).
pub fn plan(host: &HostRoot, entry: &Entry, forget: Forget) -> Result<UndoAction> {
    let forget_missing_backups = forget.backups;
    Ok(match entry {
        Entry::DirCreated { path, .. } => UndoAction::RemoveDir { path: path.clone() },
        Entry::File {
            path,
            sha256,
            mode,
            before,
            ..
        } => {
            let now = host.file_state(path)?;
            let ours = FileCheck::of(sha256, *mode, now.as_ref()).content_ours();
            match before {
                Before::Absent => match (&now, ours) {
                    (None, _) => UndoAction::Nothing {
                        why: format!("{path} is already gone"),
                    },
                    (Some(_), true) => UndoAction::RemoveFile { path: path.clone() },
                    (Some(_), false) => UndoAction::KeepChanged {
                        path: path.clone(),
                        backup: None,
                    },
                },
                Before::Replaced {
                    backup,
                    sha256: original,
                    mode,
                    owner,
                } => {
                    let is_original = now
                        .as_ref()
                        .is_some_and(|s| &s.sha256 == original && s.mode == *mode);
                    if is_original {
                        // A run killed after recording but before writing: the host still has
                        // its own file; only the backup (if written) goes.
                        UndoAction::DropBackups {
                            paths: vec![backup.clone()],
                            note: format!("{path} is still the host's original; drop its backup"),
                        }
                    } else if now.is_some() && !ours {
                        UndoAction::KeepChanged {
                            path: path.clone(),
                            backup: Some(backup.clone()),
                        }
                    } else if forget_missing_backups && !host.exists(backup)? {
                        UndoAction::ForgetMissingBackup {
                            path: path.clone(),
                            backup: backup.clone(),
                        }
                    } else {
                        UndoAction::Restore {
                            path: path.clone(),
                            backup: backup.clone(),
                            sha256: original.clone(),
                            mode: *mode,
                            owner: *owner,
                        }
                    }
                }
            }
        }
        Entry::PackageRemoved {
            package,
            version,
            backups,
            ..
        } => UndoAction::DropBackups {
            paths: backups.iter().map(|b| b.backup.clone()).collect(),
            note: format!(
                "drop the backups of legacy package {package} {version}: it was removed on \
                 purpose and is not reinstalled"
            ),
        },
        Entry::OvsFileCreated { path, run_dir, .. } => {
            check_ovs_paths(path, None, run_dir)?;
            if host.exists(path)? {
                UndoAction::RemoveOvsFile {
                    path: path.clone(),
                    run_dir: run_dir.clone(),
                }
            } else {
                UndoAction::Nothing {
                    why: format!("{path} is already gone"),
                }
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
                UndoAction::RestoreOvsDb {
                    path: path.clone(),
                    backup: backup.clone(),
                    run_dir: run_dir.clone(),
                }
            } else {
                UndoAction::Nothing {
                    why: format!(
                        "the copy {backup} of {path} from before its conversion is gone; {path} \
                         keeps the newer schema"
                    ),
                }
            }
        }
        Entry::UplinkAttached(p) => {
            if crate::host::netlink::Netlink::open()?
                .link(&p.uplink)?
                .is_some()
            {
                UndoAction::DetachUplink(p.clone())
            } else if forget.uplink {
                UndoAction::ForgetMissingUplink {
                    uplink: p.uplink.clone(),
                    bridge: p.bridge.clone(),
                    addresses: p.addresses.iter().map(|a| a.summary.clone()).collect(),
                }
            } else {
                return Err(crate::error::precondition(format!(
                    "the recorded uplink {} does not exist any more (the NIC was renamed or \
                     removed), so its addresses and routes cannot be put back on it. Bring it \
                     back under that name and run cleanup again; or run `ncp-bootstrap cleanup \
                     --forget-missing-uplink` to drop the record (the addresses it held, {}, \
                     stay wherever they are now, and {} stays in OVS)",
                    p.uplink,
                    p.addresses
                        .iter()
                        .map(|a| a.summary.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    p.bridge
                )));
            }
        }
        Entry::UplinkReleased(p) => UndoAction::ReattachUplink(p.clone()),
        Entry::MonitorReleased { uplink, .. } => UndoAction::Nothing {
            why: format!("a record of the monitor giving {uplink} its addresses back"),
        },
        Entry::HostOvsStopped {
            daemons,
            units,
            started,
            ..
        } => {
            crate::steps::host_ovs::validate(daemons, units, started)?;
            UndoAction::StartHostOvs {
                daemons: daemons.clone(),
                units: units.clone(),
                started: started.clone(),
            }
        }
        Entry::ProfileLoaded {
            name,
            was_loaded,
            reload_from,
            ..
        } => match (was_loaded, reload_from) {
            (_, Some(from)) => UndoAction::ReloadProfile {
                name: name.clone(),
                from: from.clone(),
            },
            (true, None) => UndoAction::Nothing {
                why: format!(
                    "AppArmor profile {name} was loaded before ncp-bootstrap; left loaded"
                ),
            },
            (false, None) if loaded_mode(host, name)?.is_none() => UndoAction::Nothing {
                why: format!("AppArmor profile {name} is not loaded"),
            },
            (false, None) => UndoAction::UnloadProfile { name: name.clone() },
        },
    })
}

/// Undoes one entry as planned. A run killed while writing the entry's file may have left its
/// temp file beside it: that goes too.
pub fn apply(host: &HostRoot, entry: &Entry, action: &UndoAction) -> Result<()> {
    if let Entry::File { path, .. } = entry {
        host.sweep_temps(path)?;
    }
    apply_action(host, action)
}

fn apply_action(host: &HostRoot, action: &UndoAction) -> Result<()> {
    match action {
        UndoAction::RemoveFile { path } => {
            host.remove_file(path)?;
        }
        UndoAction::Restore {
            path,
            backup,
            sha256,
            mode,
            owner,
        } => {
            let bytes = host.read(backup)?.with_context(|| {
                format!(
                    "the backup {backup} of {path} is missing, so the host's original cannot be \
                     restored; {path} is left as it is and stays in the ledger. Put the backup \
                     back, or run `ncp-bootstrap cleanup --forget-missing-backups` to drop the \
                     entry and keep {path} as it is now"
                )
            })?;
            // The backup is a file on the host like any other: restore only what was taken.
            let found = crate::host::sha256_hex(&bytes);
            if &found != sha256 {
                anyhow::bail!(
                    "the backup {backup} of {path} is not the one taken (sha256 {found}, the \
                     ledger recorded {sha256}): it was altered, so it is not restored; {path} is \
                     left as it is and stays in the ledger. Put the original back at {backup}, or \
                     restore {path} by hand and remove the backup"
                );
            }
            host.write_atomic(path, &bytes, *mode)?;
            if let Some(o) = owner {
                host.set_owner(path, o.uid, o.gid)?;
            }
            host.remove_file(backup)?;
        }
        UndoAction::ForgetMissingBackup { .. } | UndoAction::ForgetMissingUplink { .. } => {}
        UndoAction::RemoveOvsFile { path, run_dir } => {
            no_live_ovs(host, run_dir, path)?;
            host.remove_file(path)?;
        }
        UndoAction::RestoreOvsDb {
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
            host.remove_file(backup)?;
        }
        UndoAction::RemoveDir { path } => {
            host.remove_empty_dir(path)?;
        }
        UndoAction::DropBackups { paths, .. } => {
            for p in paths {
                host.remove_file(p)?;
            }
        }
        UndoAction::UnloadProfile { name } => Parser::find(host)?.unload(name)?,
        UndoAction::DetachUplink(p) => crate::steps::uplink::undo(host, p)?,
        UndoAction::ReattachUplink(p) => crate::steps::uplink::reattach(p)?,
        UndoAction::StartHostOvs {
            daemons,
            units,
            started,
        } => crate::steps::host_ovs::undo(daemons, units, started)?,
        UndoAction::ReloadProfile { from, .. } => {
            Parser::find(host)?.load(&host.resolve(from)?)?;
        }
        UndoAction::KeepChanged { .. } | UndoAction::Nothing { .. } => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::sha256_hex;
    use crate::ledger::backup_path;

    use crate::host::temp_root as root;

    fn put(h: &HostRoot, path: &str, bytes: &[u8]) {
        let dir = std::path::Path::new(path).parent().unwrap();
        h.create_dirs(&dir.to_string_lossy()).unwrap();
        h.write_atomic(path, bytes, 0o644).unwrap();
    }

    fn file(path: &str, ours: &[u8], before: Before) -> Entry {
        Entry::File {
            step: "cni".into(),
            path: path.into(),
            sha256: sha256_hex(ours),
            mode: 0o644,
            before,
        }
    }

    fn replaced(path: &str, original: &[u8]) -> Before {
        Before::Replaced {
            backup: backup_path(path),
            sha256: sha256_hex(original),
            mode: 0o644,
            owner: None,
        }
    }

    #[test]
    fn a_file_we_created_goes_unless_someone_changed_it() {
        let (_t, h) = root();
        let e = file("/etc/x", b"ours", Before::Absent);
        assert_eq!(
            plan(&h, &e, Forget::default()).unwrap(),
            UndoAction::Nothing {
                why: "/etc/x is already gone".into()
            }
        );
        put(&h, "/etc/x", b"ours");
        assert_eq!(
            plan(&h, &e, Forget::default()).unwrap(),
            UndoAction::RemoveFile {
                path: "/etc/x".into()
            }
        );
        put(&h, "/etc/x", b"theirs");
        assert!(plan(&h, &e, Forget::default()).unwrap().is_warning());
    }

    #[test]
    fn a_replaced_file_is_restored_from_its_backup_or_its_backup_dropped() {
        let (_t, h) = root();
        let e = file("/etc/x", b"ours", replaced("/etc/x", b"original"));
        put(&h, "/etc/x", b"ours");
        assert!(matches!(
            plan(&h, &e, Forget::default()).unwrap(),
            UndoAction::Restore { ref backup, .. } if *backup == backup_path("/etc/x")
        ));
        // Killed between the record and the write: the host still has its original.
        put(&h, "/etc/x", b"original");
        assert!(matches!(
            plan(&h, &e, Forget::default()).unwrap(),
            UndoAction::DropBackups { .. }
        ));
        // Ours, with the backup gone: an error at apply, or forgotten when asked.
        put(&h, "/etc/x", b"ours");
        assert!(apply(&h, &e, &plan(&h, &e, Forget::default()).unwrap()).is_err());
        assert_eq!(
            plan(
                &h,
                &e,
                Forget {
                    backups: true,
                    uplink: false
                }
            )
            .unwrap(),
            UndoAction::ForgetMissingBackup {
                path: "/etc/x".into(),
                backup: backup_path("/etc/x")
            }
        );
    }

    #[test]
    fn an_altered_backup_is_refused_and_the_file_left() {
        let (_t, h) = root();
        let e = file("/etc/x", b"ours", replaced("/etc/x", b"original"));
        put(&h, "/etc/x", b"ours");
        put(&h, &backup_path("/etc/x"), b"altered");
        let err = apply(&h, &e, &plan(&h, &e, Forget::default()).unwrap()).unwrap_err();
        assert!(format!("{err:#}").contains("altered"), "{err:#}");
        assert_eq!(h.read("/etc/x").unwrap().unwrap(), b"ours");
        put(&h, &backup_path("/etc/x"), b"original");
        apply(&h, &e, &plan(&h, &e, Forget::default()).unwrap()).unwrap();
        assert_eq!(h.read("/etc/x").unwrap().unwrap(), b"original");
        assert!(!h.exists(&backup_path("/etc/x")).unwrap());
    }

    #[test]
    fn a_profile_is_unloaded_only_when_we_loaded_it_and_it_is_loaded() {
        let (_t, h) = root();
        let e = |was_loaded| Entry::ProfileLoaded {
            step: "apparmor".into(),
            name: "node-agent-apparmor".into(),
            was_loaded,
            reload_from: None,
        };
        assert!(matches!(
            plan(&h, &e(false), Forget::default()).unwrap(),
            UndoAction::Nothing { .. }
        ));
        put(
            &h,
            crate::host::apparmor::PROFILES,
            b"node-agent-apparmor (enforce)\n",
        );
        assert!(matches!(
            plan(&h, &e(false), Forget::default()).unwrap(),
            UndoAction::UnloadProfile { .. }
        ));
        assert!(matches!(
            plan(&h, &e(true), Forget::default()).unwrap(),
            UndoAction::Nothing { .. }
        ));
    }
}
