//! Host files written through the ledger: each recorded (with a backup of what it replaces)
//! before it is written, and the state directory pruned once nothing is recorded.

use super::{backup_path, Backup, Before, Entry, Ledger};
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
