//! Cleanup's dispatch: each ledger entry is undone by the inverse its owner defines beside the
//! code that records it (`ledger::FileUndo` for files, directories and package backups,
//! `ovs_files`, `uplink`, `host_ovs`, `apparmor`, `kmod`). Undo is driven by the entries (data), so any
//! later process can undo what a run recorded; each is planned (read only, for `--dry-run`) and
//! then applied.

use super::{apparmor, host_ovs, kmod, ovs_files, uplink};
use crate::host::HostRoot;
use crate::ledger::{Entry, FileUndo};
use anyhow::{anyhow, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum UndoAction {
    File(FileUndo),
    OvsFile(ovs_files::Undo),
    Uplink(uplink::Undo),
    HostOvs(host_ovs::Undo),
    Profile(apparmor::Undo),
    Module(kmod::Undo),
    /// A record that asks for nothing (the monitor's release of an uplink).
    Nothing {
        why: String,
    },
}

impl UndoAction {
    pub fn describe(&self) -> String {
        match self {
            UndoAction::File(u) => u.describe(),
            UndoAction::OvsFile(u) => u.describe(),
            UndoAction::Uplink(u) => u.describe(),
            UndoAction::HostOvs(u) => u.describe(),
            UndoAction::Profile(u) => u.describe(),
            UndoAction::Module(u) => u.describe(),
            UndoAction::Nothing { why } => why.clone(),
        }
    }

    pub fn is_warning(&self) -> bool {
        match self {
            UndoAction::File(u) => u.is_warning(),
            UndoAction::Uplink(u) => u.is_warning(),
            _ => false,
        }
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

/// Plans the undo of one entry (read only), by its owner.
pub fn plan(host: &HostRoot, entry: &Entry, forget: Forget) -> Result<UndoAction> {
    if let Entry::MonitorReleased { uplink, .. } = entry {
        return Ok(UndoAction::Nothing {
            why: format!("a record of the monitor giving {uplink} its addresses back"),
        });
    }
    let planned = [
        FileUndo::plan(host, entry, forget.backups)?.map(UndoAction::File),
        ovs_files::Undo::plan(host, entry)?.map(UndoAction::OvsFile),
        uplink::Undo::plan(entry, forget.uplink)?.map(UndoAction::Uplink),
        host_ovs::Undo::plan(entry)?.map(UndoAction::HostOvs),
        apparmor::Undo::plan(host, entry)?.map(UndoAction::Profile),
        kmod::Undo::plan(host, entry)?.map(UndoAction::Module),
    ];
    planned
        .into_iter()
        .flatten()
        .next()
        .ok_or_else(|| anyhow!("no step owns the {} entry", entry.kind()))
}

/// Undoes one entry as planned. A run killed while writing the entry's file may have left its
/// temp file beside it: that goes too.
pub fn apply(host: &HostRoot, entry: &Entry, action: &UndoAction) -> Result<()> {
    if let Entry::File { path, .. } = entry {
        host.sweep_temps(path)?;
    }
    match action {
        UndoAction::File(u) => u.apply(host),
        UndoAction::OvsFile(u) => u.apply(host),
        UndoAction::Uplink(u) => u.apply(host),
        UndoAction::HostOvs(u) => u.apply(),
        UndoAction::Profile(u) => u.apply(host),
        UndoAction::Module(u) => u.apply(host),
        UndoAction::Nothing { .. } => Ok(()),
    }
}
