//! Files on the host, below `HostRoot`'s path resolution: regular-file reads that never block
//! on a FIFO or device, atomic writes (temp file, mode, fsync, rename, fsync of the directory),
//! the temp-file names a killed run leaves and their sweeping, directory chains, hashing.

use crate::error::input;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The temp file `write_atomic` renames into `name`. Every writer of a host file holds the lock
/// (see `steps::lock`), so a temp file of this shape that another writer left is one a kill
/// interrupted, and the next write or cleanup removes it.
pub fn temp_name(name: &str, pid: u32) -> String {
    format!(".{name}.ncp-bootstrap-{pid}.tmp")
}

/// Whether a file name is one of our temp files (of any target).
pub fn is_temp_name(file_name: &str) -> bool {
    file_name.starts_with('.')
        && file_name.ends_with(".tmp")
        && file_name
            .rsplit_once(".ncp-bootstrap-")
            .is_some_and(|(_, pid)| {
                let pid = pid.trim_end_matches(".tmp");
                !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
            })
}

/// Removes the temporary directory chains (`temp_name` of a directory) that a run killed while
/// creating the state directory left in `dir`.
pub fn sweep_temp_dirs(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if is_temp_name(&name.to_string_lossy()) && e.file_type().is_ok_and(|t| t.is_dir()) {
            let p = e.path();
            fs::remove_dir_all(&p).with_context(|| format!("removing stale {}", p.display()))?;
        }
    }
    Ok(())
}

/// Creates `top` and the directories down to `inner` (mode 0755), and `inner/file` with
/// `bytes`, each made durable.
pub fn build_dir_chain(
    top: &Path,
    inner: &Path,
    file: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<()> {
    fs::create_dir_all(inner).with_context(|| format!("creating {}", inner.display()))?;
    let mut d = Some(inner);
    while let Some(dir) = d {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("setting mode of {}", dir.display()))?;
        if dir == top {
            break;
        }
        d = dir.parent();
    }
    write_then_rename(
        &inner.join(format!(".{file}.new")),
        &inner.join(file),
        bytes,
        mode,
    )?;
    let mut d = Some(inner);
    while let Some(dir) = d {
        fsync_dir(dir)?;
        if dir == top {
            break;
        }
        d = dir.parent();
    }
    Ok(())
}

pub(super) fn sweep_temps_of(dir: &Path, name: &str) -> Result<()> {
    let prefix = format!(".{name}.ncp-bootstrap-");
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let f = e.file_name();
        let f = f.to_string_lossy();
        if f.starts_with(&prefix) && is_temp_name(&f) && e.file_type().is_ok_and(|t| t.is_file()) {
            let p = e.path();
            fs::remove_file(&p).with_context(|| format!("removing stale {}", p.display()))?;
        }
    }
    Ok(())
}

/// What a non-regular file is, for the message that refuses it.
pub fn file_kind(t: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_symlink() {
        "a symlink"
    } else {
        "not a regular file"
    }
}

/// Refuses, by name, a path that exists but is not a regular file.
fn not_regular(p: &Path, t: fs::FileType) -> anyhow::Error {
    input(format!(
        "{} is {}, not a regular file; ncp-bootstrap reads it as a file and will not guess: \
         remove it or put the file there",
        p.display(),
        file_kind(t)
    ))
}

/// Reads a regular file; `None` when absent. The type is checked before opening, and the
/// open does not block, so a FIFO or device put where a file belongs is an error, not a hang.
pub fn read_regular(p: &Path) -> Result<Option<Vec<u8>>> {
    Ok(read_regular_with_meta(p)?.map(|(_, b)| b))
}

pub(super) fn read_regular_with_meta(p: &Path) -> Result<Option<(fs::Metadata, Vec<u8>)>> {
    use std::io::Read;
    let meta = match fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", p.display())),
    };
    if !meta.is_file() {
        return Err(not_regular(p, meta.file_type()));
    }
    let mut f = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(p)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    // Swapped for something else between the look and the open.
    let meta = f
        .metadata()
        .with_context(|| format!("inspecting {}", p.display()))?;
    if !meta.is_file() {
        return Err(not_regular(p, meta.file_type()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", p.display()))?;
    Ok(Some((meta, bytes)))
}

/// `HostRoot::write_atomic` for a path already resolved (OVS's own directories).
pub fn write_atomic_at(target: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = target
        .parent()
        .with_context(|| format!("{} has no parent directory", target.display()))?;
    let name = target
        .file_name()
        .with_context(|| format!("{} has no file name", target.display()))?;
    sweep_temps_of(dir, &name.to_string_lossy())?;
    let tmp = dir.join(temp_name(&name.to_string_lossy(), std::process::id()));
    let result = write_then_rename(&tmp, target, bytes, mode);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    fsync_dir(dir)
}

fn write_then_rename(tmp: &Path, target: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    // The umask may have narrowed the mode given to open().
    f.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode of {}", tmp.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    fs::rename(tmp, target).with_context(|| format!("renaming into {}", target.display()))
}

pub fn fsync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// The SHA-256 of `bytes`, in hex: what the ledger records of a file.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(digest)
}
