//! The inverse of the step's entries: cleanup's (`kernel_module`, through `steps::undo`) and the
//! step's own when the key is turned off.

use super::{KmodAction, NAME};
use crate::host::kmod::{self, InUse, Kmod, OVS_MODULE};
use crate::host::HostRoot;
use crate::ledger::{Entry, Ledger};
use anyhow::Result;

/// The inverse of one of this step's entries.
#[derive(Debug, Clone, PartialEq)]
pub enum Revert {
    File(crate::ledger::FileUndo),
    Module(Undo),
}

impl Revert {
    pub fn describe(&self) -> String {
        match self {
            Revert::File(u) => u.describe(),
            Revert::Module(u) => u.describe(),
        }
    }
}

/// With the key off: our entries, newest first, each with its inverse.
pub(super) fn plan_revert(host: &HostRoot) -> Result<Vec<KmodAction>> {
    let ledger = Ledger::load(host)?;
    let mut actions = Vec::new();
    for entry in ledger.entries.iter().rev().filter(|e| e.step() == NAME) {
        let undo = match crate::ledger::FileUndo::plan(host, entry, false)? {
            Some(u) => Revert::File(u),
            None => match Undo::plan(host, entry)? {
                Some(u) => Revert::Module(u),
                None => continue,
            },
        };
        actions.push(KmodAction::Revert {
            entry: entry.clone(),
            undo,
        });
    }
    Ok(actions)
}

/// The inverse of a `kernel_module` entry, applied after the module's files are gone (they were
/// recorded after it): the tree is indexed again without them, and where ours is loaded, it is
/// unloaded and the distribution's loaded in its place if one was loaded before. Whether
/// anything uses ours is checked when it is applied, since the entries undone before it (the
/// uplink's detach) are what free it.
#[derive(Debug, Clone, PartialEq)]
pub struct Undo {
    pub release: String,
    pub module: ModuleUndo,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModuleUndo {
    /// Ours is loaded: unload it once nothing uses it (else a refusal naming the user, and the
    /// entry stays for the next cleanup), then load the distribution's again when `reload`.
    Unload { srcversion: String, reload: bool },
    /// Ours is not loaded: nothing to unload.
    NotLoaded,
}

impl Undo {
    pub fn plan(host: &HostRoot, entry: &Entry) -> Result<Option<Undo>> {
        let Entry::KernelModule {
            release,
            srcversion,
            was_loaded,
            ..
        } = entry
        else {
            return Ok(None);
        };
        if !kmod::valid_release(release) {
            anyhow::bail!("the ledger's kernel release {release:?} is not a valid one");
        }
        let module = match kmod::loaded(host, OVS_MODULE)? {
            Some(l) if l.srcversion.as_deref() == Some(srcversion.as_str()) => ModuleUndo::Unload {
                srcversion: srcversion.clone(),
                reload: *was_loaded,
            },
            _ => ModuleUndo::NotLoaded,
        };
        Ok(Some(Undo {
            release: release.clone(),
            module,
        }))
    }

    pub fn describe(&self) -> String {
        let index = format!("depmod {}", self.release);
        match &self.module {
            ModuleUndo::Unload { reload: true, .. } => format!(
                "{index}; unload NSX's {OVS_MODULE} module and load the distribution's again"
            ),
            ModuleUndo::Unload { .. } => format!("{index}; unload NSX's {OVS_MODULE} module"),
            ModuleUndo::NotLoaded => index,
        }
    }

    pub fn apply(&self, host: &HostRoot) -> Result<()> {
        let kmod = Kmod::new(host);
        kmod.depmod(&self.release)?;
        let ModuleUndo::Unload { srcversion, reload } = &self.module else {
            return Ok(());
        };
        let Some(loaded) = kmod::loaded(host, OVS_MODULE)? else {
            return Ok(());
        };
        if loaded.srcversion.as_deref() != Some(srcversion.as_str()) {
            return Ok(());
        }
        // Our vport modules hold it; they have the distribution's names.
        let users = kmod::users(host, &loaded, &loaded.holders)?;
        if !users.is_empty() {
            return Err(crate::error::precondition(format!(
                "NSX's {OVS_MODULE} module stays loaded, in use: {}. Its files are gone, so the \
                 next load (a reboot, a restart of OVS) is the distribution's; stop what uses it \
                 and run cleanup again to unload it now",
                users
                    .iter()
                    .map(InUse::describe)
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        kmod.unload_ovs(&loaded)?;
        if *reload {
            kmod.load(OVS_MODULE)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::KernelModule;
    use super::*;
    use crate::ledger::install_file;
    use crate::steps::testing::host;
    use crate::steps::{Action, Step};

    #[test]
    fn turning_the_key_off_reverts_our_entries_newest_first() {
        let h = host(&[]);
        crate::ledger::create_state_dir(&h.host).unwrap();
        let mut ledger = Ledger::load(&h.host).unwrap();
        let module = Entry::KernelModule {
            step: NAME.into(),
            release: "6.1.0-57-amd64".into(),
            srcversion: "AB12".into(),
            was_loaded: true,
            was_srcversion: None,
        };
        ledger.record(&h.host, module.clone()).unwrap();
        let path = kmod::installed_path("6.1.0-57-amd64", "openvswitch.ko");
        h.host.create_dirs("/lib/modules/6.1.0-57-amd64").unwrap();
        install_file(&h.host, NAME, &path, b"module bytes", 0o644, &mut ledger).unwrap();
        let plan = KernelModule::from_ctx(&h.ctx()).plan(&h.ctx()).unwrap();
        assert!(plan.skipped.is_none());
        let lines: Vec<String> = plan.actions.iter().map(|a| a.describe()).collect();
        // The file first, then the two directories it needed, then the index: our module is
        // not loaded here, so nothing is unloaded.
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].contains(&path), "{lines:?}");
        assert!(lines[1].contains("updates/nsx-ovs"), "{lines:?}");
        assert_eq!(lines[3], "depmod 6.1.0-57-amd64");
        assert!(matches!(
            &plan.actions[3],
            KmodAction::Revert { undo: Revert::Module(Undo { module: ModuleUndo::NotLoaded, .. }), entry } if *entry == module
        ));
    }

    #[test]
    fn a_ledger_release_that_would_escape_the_module_tree_is_refused() {
        let (_t, h) = crate::host::temp_root();
        let e = Entry::KernelModule {
            step: NAME.into(),
            release: "../../etc".into(),
            srcversion: "AB12".into(),
            was_loaded: false,
            was_srcversion: None,
        };
        assert!(Undo::plan(&h, &e).is_err());
    }
}
