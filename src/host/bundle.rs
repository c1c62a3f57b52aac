//! The bundle: the NCP release's files (CNI plugin, conflists, AppArmor profile) as the image or
//! the operator provides them. It is input: every file is checked before it is read.

use crate::error::input;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Reads one file of the bundle (`path` as the host will see it); `None` when absent. The
/// bundle is input: a FIFO, directory or device there is refused by name, and so is a symlink
/// that leads out of the bundle, which would install some other file onto every node.
pub fn read_bundle_file(bundle: &Path, path: &str) -> Result<Option<Vec<u8>>> {
    match check_bundle_file(bundle, path)? {
        None => Ok(None),
        Some(p) => crate::host::read_regular(&p).map_err(|e| input(format!("bundle file {e:#}"))),
    }
}

/// Where a bundle file is, after the checks `read_bundle_file` makes, without reading it;
/// `None` when absent.
pub fn check_bundle_file(bundle: &Path, path: &str) -> Result<Option<PathBuf>> {
    let p = bundle.join(path.trim_start_matches('/'));
    match std::fs::symlink_metadata(&p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("inspecting bundle file {}", p.display())),
        Ok(m) if m.file_type().is_symlink() => {
            let (Ok(real), Ok(top)) = (std::fs::canonicalize(&p), std::fs::canonicalize(bundle))
            else {
                return Err(input(format!(
                    "bundle file {} is a symlink that leads nowhere; put the file itself in the bundle",
                    p.display()
                )));
            };
            if !real.starts_with(&top) {
                return Err(input(format!(
                    "bundle file {} is a symlink to {}, outside the bundle {}; refusing to \
                     install a file from elsewhere: put the file itself in the bundle",
                    p.display(),
                    real.display(),
                    top.display()
                )));
            }
        }
        Ok(_) => {}
    }
    match std::fs::metadata(&p) {
        Ok(m) if m.is_file() => Ok(Some(p)),
        Ok(m) => Err(input(format!(
            "bundle file {} is {}, not a regular file; put the file itself in the bundle",
            p.display(),
            crate::host::file_kind(m.file_type())
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("inspecting bundle file {}", p.display())),
    }
}
