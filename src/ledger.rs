//! The ledger: what this tool changed on the host, so that `cleanup` can undo exactly that.
//!
//! On disk: `<host-root>/var/lib/ncp-bootstrap/ledger.json`, rewritten atomically (temp file,
//! fsync, rename) after every entry, *before* the change it describes is made. A crash therefore
//! leaves a ledger that may list a change that did not happen (undo copes: it checks the host)
//! but never misses one that did.
//!
//! ```json
//! { "format": 1,
//!   "entries": [
//!     { "kind": "dir_created",  "step": "cni", "path": "/etc/cni/net.d" },
//!     { "kind": "file",         "step": "cni", "path": "/opt/cni/bin/nsx",
//!       "sha256": "…", "mode": 493,
//!       "before": { "state": "absent" } },
//!     { "kind": "file",         "step": "cni", "path": "/etc/cni/net.d/10-nsx.conflist",
//!       "sha256": "…", "mode": 420,
//!       "before": { "state": "replaced", "backup": "/var/lib/ncp-bootstrap/backup/etc/cni/net.d/10-nsx.conflist",
//!                   "sha256": "…", "mode": 420 } },
//!     { "kind": "package_removed", "step": "cni", "manager": "dpkg", "package": "nsx-cni",
//!       "version": "3.0.1", "backups": [ { "path": "…", "backup": "…", "sha256": "…", "mode": 493 } ] },
//!     { "kind": "profile_loaded", "step": "apparmor", "name": "node-agent-apparmor",
//!       "was_loaded": false, "reload_from": null }
//!   ],
//!   "state_dirs": [ "/var/lib" ] }
//! ```
//! Paths are host paths (as the host sees them). Entries are undone in reverse order. A file
//! written twice keeps its first `before`, so the backup is always of the host's original.

use crate::host::{paths, HostRoot};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Ledger {
    pub format: u32,
    pub entries: Vec<Entry>,
    /// Directories above the state dir that the first run had to create (`/var/lib` on a bare
    /// host root); removed, if empty, with the state dir itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_dirs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    DirCreated {
        step: String,
        path: String,
    },
    File {
        step: String,
        path: String,
        sha256: String,
        mode: u32,
        before: Before,
    },
    PackageRemoved {
        step: String,
        manager: String,
        package: String,
        version: String,
        backups: Vec<Backup>,
    },
    /// An AppArmor profile we loaded. Undo unloads it, or, when an older copy was loaded before
    /// and its file was backed up, reloads that copy.
    ProfileLoaded {
        step: String,
        name: String,
        was_loaded: bool,
        reload_from: Option<String>,
    },
}

impl Entry {
    pub fn step(&self) -> &str {
        match self {
            Entry::DirCreated { step, .. }
            | Entry::File { step, .. }
            | Entry::PackageRemoved { step, .. }
            | Entry::ProfileLoaded { step, .. } => step,
        }
    }
}

/// What was at a path before we wrote it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Before {
    Absent,
    Replaced {
        backup: String,
        sha256: String,
        mode: u32,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Backup {
    pub path: String,
    pub backup: String,
    pub sha256: String,
    pub mode: u32,
}

impl Ledger {
    /// Loads the ledger; an absent one is empty. A corrupt one is an error naming the file:
    /// guessing would make cleanup undo the wrong things.
    pub fn load(host: &HostRoot) -> Result<Ledger> {
        let Some(bytes) = host.read(paths::LEDGER)? else {
            return Ok(Ledger {
                format: FORMAT,
                ..Ledger::default()
            });
        };
        let ledger: Ledger = serde_json::from_slice(&bytes).map_err(|e| {
            crate::error::input(format!(
                "ledger {} is not valid ({e}); it records what cleanup must undo, so it is not \
                 guessed at: restore it from a backup or remove it to forget what was recorded",
                paths::LEDGER
            ))
        })?;
        if ledger.format != FORMAT {
            return Err(crate::error::input(format!(
                "ledger {} has format {}, this build reads format {FORMAT}",
                paths::LEDGER,
                ledger.format
            )));
        }
        Ok(ledger)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file entry for a host path, if we wrote it.
    pub fn file(&self, path: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| matches!(e, Entry::File { path: p, .. } if p == path))
    }

    pub fn save(&self, host: &HostRoot) -> Result<()> {
        host.create_dirs(paths::STATE_DIR)?;
        let mut bytes = serde_json::to_vec_pretty(self).context("serialising the ledger")?;
        bytes.push(b'\n');
        host.write_atomic(paths::LEDGER, &bytes, 0o600)
            .with_context(|| format!("writing the ledger {}", paths::LEDGER))
    }

    /// Adds an entry (a file entry replaces the one for the same path, keeping its `before`)
    /// and makes it durable.
    pub fn record(&mut self, host: &HostRoot, entry: Entry) -> Result<()> {
        let entry = match entry {
            Entry::File {
                step,
                path,
                sha256,
                mode,
                before,
            } => {
                let before = match self.file(&path) {
                    Some(Entry::File { before: first, .. }) => first.clone(),
                    _ => before,
                };
                self.entries
                    .retain(|e| !matches!(e, Entry::File { path: p, .. } if *p == path));
                Entry::File {
                    step,
                    path,
                    sha256,
                    mode,
                    before,
                }
            }
            other => other,
        };
        self.entries.push(entry);
        self.save(host)
    }

    /// Drops an entry once it has been undone, and makes that durable.
    pub fn forget(&mut self, host: &HostRoot, entry: &Entry) -> Result<()> {
        if let Some(i) = self.entries.iter().rposition(|e| e == entry) {
            self.entries.remove(i);
        }
        self.save(host)
    }
}

/// Where the backup of a host path lives.
pub fn backup_path(host_path: &str) -> String {
    format!("{}{}", paths::BACKUP_DIR, host_path)
}
