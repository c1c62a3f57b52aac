//! Host files written through the ledger: each recorded (with a backup of what it replaces)
//! before it is written, its inverse (removed, or restored from the backup, unless someone
//! changed it since), and the state directory pruned once nothing is recorded.

use super::{backup_path, Backup, Before, Entry, FileCheck, Ledger};
use crate::host::{paths, sha256_hex, HostRoot};
use anyhow::{Context, Result};
use std::path::Path;

/// A host file's bytes and where its backup goes; nothing is written yet.
pub fn take_backup(host: &HostRoot, path: &str) -> Result<(Backup, Vec<u8>)> {
    let state = host
        .file_state(path)?
        .with_context(|| format!("{path} vanished before it could be backed up"))?;
    let bytes = host
        .read(path)?
        .with_context(|| format!("{path} vanished before it could be backed up"))?;
    if sha256_hex(&bytes) != state.sha256 {
        anyhow::bail!("{path} changed while it was being backed up; run again");
    }
    Ok((
        Backup {
            path: path.into(),
            backup: backup_path(path),
            sha256: state.sha256,
            mode: state.mode,
            owner: Some(super::Owner {
                uid: state.uid,
                gid: state.gid,
            }),
        },
        bytes,
    ))
}

pub fn write_backup(host: &HostRoot, b: &Backup, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = Path::new(&b.backup).parent() {
        host.create_dirs(&dir.to_string_lossy())?;
    }
    host.write_atomic(&b.backup, bytes, b.mode)
}

/// Writes one host file, recording it (and the backup of what it replaces) first.
pub fn install_file(
    host: &HostRoot,
    step: &str,
    path: &str,
    bytes: &[u8],
    mode: u32,
    ledger: &mut Ledger,
) -> Result<()> {
    let parent = Path::new(path)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    // Record the directories before creating them, so that a crash in between cannot leave one
    // unrecorded; undo removes only empty ones.
    let missing = host.missing_dirs(&parent)?;
    for d in &missing {
        ledger.record(
            host,
            Entry::DirCreated {
                step: step.into(),
                path: d.clone(),
            },
        )?;
    }
    host.create_dirs(&parent)?;
    let original = match host.file_state(path)? {
        None => None,
        Some(_) => {
            let (mut b, bytes) = take_backup(host, path)?;
            b.backup = match ledger.file(path) {
                // Recorded by an earlier (perhaps killed) run: its backup path stays.
                Some(Entry::File {
                    before: Before::Replaced { backup, .. },
                    ..
                }) => backup.clone(),
                Some(_) => b.backup,
                // Nothing recorded for the path, yet a backup may be there: the host's original
                // that a cleanup kept because the file had changed since we wrote it. It is
                // never overwritten; this backup goes beside it.
                None => free_backup_path(host, &b.backup)?,
            };
            Some((b, bytes))
        }
    };
    let before = match &original {
        None => Before::Absent,
        Some((b, _)) => Before::Replaced {
            backup: b.backup.clone(),
            sha256: b.sha256.clone(),
            mode: b.mode,
            owner: b.owner,
        },
    };
    ledger.record(
        host,
        Entry::File {
            step: step.into(),
            path: path.into(),
            sha256: sha256_hex(bytes),
            mode,
            before,
        },
    )?;
    // Only the host's original is backed up: a file written twice keeps its first `before`,
    // whose backup must not be overwritten with our own earlier copy.
    if let (Some((b, original)), Some(Entry::File { before, .. })) = (&original, ledger.file(path))
    {
        if matches!(before, Before::Replaced { sha256, .. } if *sha256 == b.sha256) {
            write_backup(host, b, original)?;
        }
    }
    host.write_atomic(path, bytes, mode)
}

/// The inverse of a recorded file, a directory made for one, or the backups of a removed
/// package. Undo never deletes a file that changed after we wrote it.
#[derive(Debug, Clone, PartialEq)]
pub enum FileUndo {
    Remove {
        path: String,
    },
    Restore {
        path: String,
        backup: String,
        /// The recorded hash of the original: a backup that does not match is not restored.
        sha256: String,
        mode: u32,
        owner: Option<super::Owner>,
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
    Gone {
        path: String,
    },
}

impl FileUndo {
    /// Plans the undo of a `file`, `dir_created` or `package_removed` entry (read only); `None`
    /// for any other entry. `forget_missing_backups`: a file whose backup is gone stays as it is.
    pub fn plan(
        host: &HostRoot,
        entry: &Entry,
        forget_missing_backups: bool,
    ) -> Result<Option<FileUndo>> {
        Ok(Some(match entry {
            Entry::DirCreated { path, .. } => FileUndo::RemoveDir { path: path.clone() },
            Entry::File {
                path,
                sha256,
                mode,
                before,
                ..
            } => plan_file(host, path, sha256, *mode, before, forget_missing_backups)?,
            Entry::PackageRemoved {
                package,
                version,
                backups,
                ..
            } => FileUndo::DropBackups {
                paths: backups.iter().map(|b| b.backup.clone()).collect(),
                note: format!(
                    "drop the backups of legacy package {package} {version}: it was removed on \
                     purpose and is not reinstalled"
                ),
            },
            _ => return Ok(None),
        }))
    }

    pub fn describe(&self) -> String {
        match self {
            FileUndo::Remove { path } => format!("remove {path}"),
            FileUndo::Restore {
                path, backup, mode, ..
            } => format!("restore {path} from {backup} (mode {mode:04o})"),
            FileUndo::ForgetMissingBackup { path, backup } => format!(
                "forget {path}: its backup {backup} is missing, so the host's original cannot be \
                 restored; {path} stays as it is now"
            ),
            FileUndo::KeepChanged { path, backup } => format!(
                "keep {path}: it changed after ncp-bootstrap wrote it{}",
                backup
                    .as_ref()
                    .map(|b| format!("; the original stays at {b}"))
                    .unwrap_or_default()
            ),
            FileUndo::RemoveDir { path } => format!("remove directory {path} if empty"),
            FileUndo::DropBackups { note, .. } => note.clone(),
            FileUndo::Gone { path } => format!("{path} is already gone"),
        }
    }

    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            FileUndo::KeepChanged { .. } | FileUndo::ForgetMissingBackup { .. }
        )
    }

    pub fn apply(&self, host: &HostRoot) -> Result<()> {
        match self {
            FileUndo::Remove { path } => host.remove_file(path).map(drop),
            FileUndo::Restore {
                path,
                backup,
                sha256,
                mode,
                owner,
            } => restore(host, path, backup, sha256, *mode, *owner),
            FileUndo::RemoveDir { path } => host.remove_empty_dir(path).map(drop),
            FileUndo::DropBackups { paths, .. } => {
                paths.iter().try_for_each(|p| host.remove_file(p).map(drop))
            }
            FileUndo::ForgetMissingBackup { .. }
            | FileUndo::KeepChanged { .. }
            | FileUndo::Gone { .. } => Ok(()),
        }
    }
}

fn plan_file(
    host: &HostRoot,
    path: &str,
    sha256: &str,
    mode: u32,
    before: &Before,
    forget_missing_backups: bool,
) -> Result<FileUndo> {
    let now = host.file_state(path)?;
    let ours = FileCheck::of(sha256, mode, now.as_ref()).content_ours();
    let path = path.to_string();
    Ok(match before {
        Before::Absent => match (&now, ours) {
            (None, _) => FileUndo::Gone { path },
            (Some(_), true) => FileUndo::Remove { path },
            (Some(_), false) => FileUndo::KeepChanged { path, backup: None },
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
                // A run killed after recording but before writing: the host still has its own
                // file; only the backup (if written) goes.
                FileUndo::DropBackups {
                    paths: vec![backup.clone()],
                    note: format!("{path} is still the host's original; drop its backup"),
                }
            } else if now.is_some() && !ours {
                FileUndo::KeepChanged {
                    path,
                    backup: Some(backup.clone()),
                }
            } else if forget_missing_backups && !host.exists(backup)? {
                FileUndo::ForgetMissingBackup {
                    path,
                    backup: backup.clone(),
                }
            } else {
                FileUndo::Restore {
                    path,
                    backup: backup.clone(),
                    sha256: original.clone(),
                    mode: *mode,
                    owner: *owner,
                }
            }
        }
    })
}

fn restore(
    host: &HostRoot,
    path: &str,
    backup: &str,
    sha256: &str,
    mode: u32,
    owner: Option<super::Owner>,
) -> Result<()> {
    let bytes = host.read(backup)?.with_context(|| {
        format!(
            "the backup {backup} of {path} is missing, so the host's original cannot be \
             restored; {path} is left as it is and stays in the ledger. Put the backup back, or \
             run `ncp-bootstrap cleanup --forget-missing-backups` to drop the entry and keep \
             {path} as it is now"
        )
    })?;
    // The backup is a file on the host like any other: restore only what was taken.
    let found = sha256_hex(&bytes);
    if found != sha256 {
        anyhow::bail!(
            "the backup {backup} of {path} is not the one taken (sha256 {found}, the ledger \
             recorded {sha256}): it was altered, so it is not restored; {path} is left as it is \
             and stays in the ledger. Put the original back at {backup}, or restore {path} by \
             hand and remove the backup"
        );
    }
    host.write_atomic(path, &bytes, mode)?;
    if let Some(o) = owner {
        host.set_owner(path, o.uid, o.gid)?;
    }
    host.remove_file(backup).map(drop)
}

/// `backup`, or the first of `backup.1`, `backup.2`… that is not taken.
fn free_backup_path(host: &HostRoot, backup: &str) -> Result<String> {
    if !host.exists(backup)? {
        return Ok(backup.to_string());
    }
    for n in 1..1000 {
        let candidate = format!("{backup}.{n}");
        if !host.exists(&candidate)? {
            return Ok(candidate);
        }
    }
    anyhow::bail!("{backup} and 999 numbered backups beside it exist; remove the old ones")
}

/// The backups left in the backup tree (host paths), temp files of killed runs aside: the
/// host's originals that a cleanup kept because their file had changed since we wrote it.
pub fn kept_backups(host: &HostRoot) -> Result<Vec<String>> {
    fn walk(dir: &Path, host_dir: &str, out: &mut Vec<String>) -> Result<()> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for e in rd {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let t = e.file_type()?;
            let host_path = format!("{host_dir}/{name}");
            if t.is_dir() {
                walk(&e.path(), &host_path, out)?;
            } else if !crate::host::is_temp_name(&name) {
                out.push(host_path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(
        &host.resolve(paths::BACKUP_DIR)?,
        paths::BACKUP_DIR,
        &mut out,
    )?;
    out.sort();
    Ok(out)
}

/// Once the ledger is empty: remove it, the lock, the (empty) backup tree, the state dir, and
/// the directories above it that the first run created.
pub fn prune_state(host: &HostRoot, state_dirs: &[String]) -> Result<()> {
    crate::host::ovs::clear_leftover(host)?;
    let backup = host.resolve(paths::BACKUP_DIR)?;
    if backup.is_dir() {
        remove_empty_tree(&backup)?;
    }
    host.sweep_temps(paths::LEDGER)?;
    host.remove_file(paths::LEDGER)?;
    // A state directory that is a symlink (an operator's move of it to other storage) names a
    // directory that is the operator's: emptied of ours, it and the link stay.
    if !host.is_symlink(paths::STATE_DIR)? {
        host.remove_empty_dir(paths::STATE_DIR)?;
    }
    for d in state_dirs.iter().rev() {
        if d != paths::STATE_DIR {
            host.remove_empty_dir(d)?;
        }
    }
    Ok(())
}

/// Removes empty directories bottom-up, and the temp files killed runs left in them; stops at
/// anything that still holds another file.
fn remove_empty_tree(dir: &std::path::Path) -> Result<bool> {
    let mut empty = true;
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            empty &= remove_empty_tree(&e.path())?;
        } else if t.is_file() && crate::host::is_temp_name(&e.file_name().to_string_lossy()) {
            std::fs::remove_file(e.path())
                .with_context(|| format!("removing stale {}", e.path().display()))?;
        } else {
            empty = false;
        }
    }
    if empty {
        std::fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(empty)
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn plan(h: &HostRoot, e: &Entry, forget_missing_backups: bool) -> FileUndo {
        FileUndo::plan(h, e, forget_missing_backups)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_file_we_created_goes_unless_someone_changed_it() {
        let (_t, h) = root();
        let e = file("/etc/x", b"ours", Before::Absent);
        assert_eq!(
            plan(&h, &e, false),
            FileUndo::Gone {
                path: "/etc/x".into()
            }
        );
        put(&h, "/etc/x", b"ours");
        assert_eq!(
            plan(&h, &e, false),
            FileUndo::Remove {
                path: "/etc/x".into()
            }
        );
        put(&h, "/etc/x", b"theirs");
        assert!(plan(&h, &e, false).is_warning());
    }

    #[test]
    fn a_replaced_file_is_restored_from_its_backup_or_its_backup_dropped() {
        let (_t, h) = root();
        let e = file("/etc/x", b"ours", replaced("/etc/x", b"original"));
        put(&h, "/etc/x", b"ours");
        assert!(matches!(
            plan(&h, &e, false),
            FileUndo::Restore { ref backup, .. } if *backup == backup_path("/etc/x")
        ));
        // Killed between the record and the write: the host still has its original.
        put(&h, "/etc/x", b"original");
        assert!(matches!(plan(&h, &e, false), FileUndo::DropBackups { .. }));
        // Ours, with the backup gone: an error at apply, or forgotten when asked.
        put(&h, "/etc/x", b"ours");
        assert!(plan(&h, &e, false).apply(&h).is_err());
        assert_eq!(
            plan(&h, &e, true),
            FileUndo::ForgetMissingBackup {
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
        let err = plan(&h, &e, false).apply(&h).unwrap_err();
        assert!(format!("{err:#}").contains("altered"), "{err:#}");
        assert_eq!(h.read("/etc/x").unwrap().unwrap(), b"ours");
        put(&h, &backup_path("/etc/x"), b"original");
        plan(&h, &e, false).apply(&h).unwrap();
        assert_eq!(h.read("/etc/x").unwrap().unwrap(), b"original");
        assert!(!h.exists(&backup_path("/etc/x")).unwrap());
    }

    #[test]
    fn entries_of_other_owners_are_not_planned_here() {
        let (_t, h) = root();
        let e = Entry::ProfileLoaded {
            step: "apparmor".into(),
            name: "node-agent-apparmor".into(),
            was_loaded: false,
            reload_from: None,
        };
        assert_eq!(FileUndo::plan(&h, &e, false).unwrap(), None);
    }
}
