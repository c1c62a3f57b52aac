//! NSX's OVS kernel module (ncp.ini `[nsx_node_agent] use_nsx_ovs_kernel_module`): the bundle's
//! `kmod/<kernel release>/*.ko` installed under `/lib/modules/<release>/updates/nsx-ovs/`
//! (files backed up and recorded as any other), the tree re-indexed with `depmod`, and the
//! `openvswitch` that is loaded made ours, checked by `srcversion`.
//!
//! The swap (unloading another `openvswitch` and loading ours) happens here only when nothing
//! uses the loaded module: no ovs-vswitchd runs (install has stopped a host OVS by then), no
//! port of its datapath carries addresses, and no module we do not ship depends on it. When
//! `ovs run` holds the OVS run directory, or the node's addresses are on a port of the datapath
//! (an `ovs run` stopped with the uplink kept attached: systemd restarts ncp-ovs after the
//! bootstrap unit it requires), the swap is left to `ovs run`'s next start (`commands::ovs`),
//! which gives the node's addresses back to node-if first. Anything else using the module is a
//! named refusal, never a forced unload.

mod bundle;
mod swap;
mod undo;

pub use bundle::{for_kernel, BundleModule, ForKernel};
use swap::load_ours;
pub use swap::{at_start, check_loaded, loaded_verdict, swap, AtStart};
use undo::plan_revert;
pub use undo::{ModuleUndo, Revert, Undo};

use super::{Action, Ctx, Plan, Step};
use crate::host::kmod::{self, Kmod, OVS_MODULE};
use crate::host::{sha256_hex, HostRoot};
use crate::ledger::{install_file, Entry, Ledger};
use anyhow::{Context, Result};
use std::path::PathBuf;

pub const NAME: &str = "kmod";

/// The bundle's directory of modules, one subdirectory per kernel release.
pub const BUNDLE_DIR: &str = "kmod";

pub struct KernelModule {
    pub bundle: PathBuf,
}

#[derive(Debug)]
pub enum KmodAction {
    InstallFile {
        release: String,
        file: String,
        replace: bool,
    },
    Depmod {
        release: String,
    },
    /// No `openvswitch` is loaded: load ours.
    Load,
    /// Another `openvswitch` is loaded and nothing uses it: unload it (with the vport modules
    /// that hold it) and load ours.
    Swap {
        from: String,
    },
    /// The key was turned off: one of our entries undone and forgotten, newest first, so that
    /// the distribution's module is the one modprobe finds (NCP's documented switch to the
    /// upstream module before a kernel upgrade).
    Revert {
        entry: Entry,
        undo: Revert,
    },
}

impl KernelModule {
    pub fn from_ctx(ctx: &Ctx) -> Self {
        KernelModule {
            bundle: ctx.settings.bundle.clone(),
        }
    }
}

impl Action for KmodAction {
    fn describe(&self) -> String {
        match self {
            KmodAction::InstallFile {
                release,
                file,
                replace,
            } => format!(
                "{} {} (mode 0644)",
                if *replace { "replace" } else { "install" },
                kmod::installed_path(release, file)
            ),
            KmodAction::Depmod { release } => format!("depmod {release}"),
            KmodAction::Load => format!("load NSX's {OVS_MODULE} module (modprobe)"),
            KmodAction::Swap { .. } => {
                format!("unload the loaded {OVS_MODULE} and load NSX's (rmmod, modprobe)")
            }
            KmodAction::Revert { undo, .. } => undo.describe(),
        }
    }

    fn why(&self) -> String {
        match self {
            KmodAction::InstallFile { replace: true, .. } => {
                "the host's file differs from the bundle's".into()
            }
            KmodAction::InstallFile { .. } => "the file is absent".into(),
            KmodAction::Depmod { .. } => "modprobe must find the installed module first".into(),
            KmodAction::Load => "no openvswitch module is loaded".into(),
            KmodAction::Swap { from } => {
                format!("the loaded openvswitch is {from}, not NSX's; nothing uses it")
            }
            KmodAction::Revert { .. } => {
                "ovs.nsx_kernel_module is off: the distribution's module is used again".into()
            }
        }
    }
}

/// Whether `modprobe openvswitch` would load our file now.
pub(super) fn indexed(host: &HostRoot, release: &str) -> Result<bool> {
    let ours = kmod::installed_path(release, &format!("{OVS_MODULE}.ko"));
    Ok(Kmod::new(host).resolves_to(release, OVS_MODULE)?.as_deref() == Some(ours.as_str()))
}

impl Step for KernelModule {
    type Action = KmodAction;

    fn name(&self) -> &'static str {
        NAME
    }

    fn plan(&self, ctx: &Ctx) -> Result<Plan<KmodAction>> {
        if !ctx.settings.nsx_kernel_module {
            let actions = plan_revert(ctx.host)?;
            if actions.is_empty() {
                return Ok(Plan::skip(
                    "ovs.nsx_kernel_module = false: OVS uses the distribution's openvswitch module",
                ));
            }
            return Ok(Plan {
                actions,
                ..Plan::new()
            });
        }
        if ctx.settings.datapath == crate::config::Datapath::Netdev {
            return Ok(Plan::skip(
                "ovs.datapath_type = netdev: the userspace datapath uses no kernel module",
            ));
        }
        let want = for_kernel(ctx.host, &self.bundle)?;
        let release = want.release.clone();
        let mut plan = Plan::new();
        for m in &want.modules {
            let path = kmod::installed_path(&release, &m.file);
            let on_host = ctx.host.file_state(&path)?;
            if on_host
                .as_ref()
                .is_some_and(|s| s.sha256 == sha256_hex(&m.bytes) && s.mode == 0o644)
            {
                continue;
            }
            plan.actions.push(KmodAction::InstallFile {
                release: release.clone(),
                file: m.file.clone(),
                replace: on_host.is_some(),
            });
        }
        if !plan.actions.is_empty() || !indexed(ctx.host, &release)? {
            plan.actions.push(KmodAction::Depmod {
                release: release.clone(),
            });
        }
        match kmod::loaded(ctx.host, OVS_MODULE)? {
            None => plan.actions.push(KmodAction::Load),
            Some(l) if want.is_ours(&l) => plan.notes.push(format!(
                "NSX's {OVS_MODULE} module is loaded ({})",
                l.describe()
            )),
            Some(l) => match swap_by(ctx, &l, &want)? {
                SwapBy::Us => plan.actions.push(KmodAction::Swap { from: l.describe() }),
                SwapBy::OvsRun(why) => plan.warnings.push(format!(
                    "the loaded {OVS_MODULE} module is {}, not NSX's (srcversion {}): {why}; \
                     `ovs run` swaps it at its next start (restart nsx-ovs or ncp-ovs.service), \
                     after giving node-if its addresses back",
                    l.describe(),
                    want.srcversion
                )),
            },
        }
        Ok(plan)
    }

    fn apply(
        &self,
        ctx: &Ctx,
        action: &KmodAction,
        ledger: &mut Ledger,
        _report: &mut crate::report::StepReport,
    ) -> Result<()> {
        if let KmodAction::Revert { entry, undo } = action {
            if let Entry::File { path, .. } = entry {
                ctx.host.sweep_temps(path)?;
            }
            match undo {
                Revert::File(u) => u.apply(ctx.host)?,
                Revert::Module(u) => u.apply(ctx.host)?,
            }
            return ledger.forget(ctx.host, entry);
        }
        let want = for_kernel(ctx.host, &self.bundle)?;
        record(ctx.host, &want, ledger)?;
        let kmod = Kmod::new(ctx.host);
        match action {
            KmodAction::Revert { .. } => Ok(()),
            KmodAction::InstallFile { file, .. } => {
                let m = want
                    .modules
                    .iter()
                    .find(|m| &m.file == file)
                    .with_context(|| format!("bundle module {file} vanished"))?;
                install_file(
                    ctx.host,
                    NAME,
                    &kmod::installed_path(&want.release, file),
                    &m.bytes,
                    0o644,
                    ledger,
                )
            }
            KmodAction::Depmod { .. } => kmod.depmod(&want.release),
            KmodAction::Load => load_ours(&kmod, ctx.host, &want),
            KmodAction::Swap { .. } => swap(ctx.host, &want),
        }
    }
}

/// Who swaps another loaded module for ours.
enum SwapBy {
    /// This step: nothing uses the module, or only OVS daemons that the host-OVS step before
    /// it stops (checked again when the swap is applied).
    Us,
    /// `ovs run`, and why: it runs OVS on the module now, or the node's addresses are on a
    /// port of its datapath (a stopped `ovs run` with the uplink kept attached), which only
    /// `ovs run` gives back to node-if before the swap.
    OvsRun(String),
}

fn swap_by(ctx: &Ctx, loaded: &kmod::Loaded, want: &ForKernel) -> Result<SwapBy> {
    let dirs = crate::host::ovs::OvsDirs::resolve(ctx.host, ctx.settings.ovs_dirs())?;
    if dirs.is_claimed() {
        return Ok(SwapBy::OvsRun("`ovs run` runs OVS on it".into()));
    }
    let users = kmod::users(ctx.host, loaded, &want.names())?;
    let addresses: Vec<String> = users
        .iter()
        .filter(|u| matches!(u, kmod::InUse::Addresses { .. }))
        .map(kmod::InUse::describe)
        .collect();
    Ok(match addresses.is_empty() {
        true => SwapBy::Us,
        false => SwapBy::OvsRun(addresses.join("; ")),
    })
}

/// Records the module before its files, once: what was loaded before the first run.
fn record(host: &HostRoot, want: &ForKernel, ledger: &mut Ledger) -> Result<()> {
    let already = ledger
        .entries
        .iter()
        .any(|e| matches!(e, Entry::KernelModule { release, .. } if *release == want.release));
    if already {
        return Ok(());
    }
    let before = kmod::loaded(host, OVS_MODULE)?;
    ledger.record(
        host,
        Entry::KernelModule {
            step: NAME.into(),
            release: want.release.clone(),
            srcversion: want.srcversion.clone(),
            was_loaded: before.is_some(),
            was_srcversion: before.and_then(|l| l.srcversion),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::testing::host;
    use std::path::Path;

    /// A stand-in module file: a real ELF (a copy of `true`) given a `.modinfo` section with
    /// objcopy. It is never loaded; the plan only reads it.
    fn module_file(dir: &Path, file: &str, modinfo: &str) {
        let info = dir.join(format!("{file}.modinfo"));
        std::fs::write(&info, modinfo.replace(';', "\0")).unwrap();
        let out = dir.join(file);
        let ok = std::process::Command::new("objcopy")
            .arg("--add-section")
            .arg(format!(".modinfo={}", info.display()))
            .arg("/bin/true")
            .arg(&out)
            .status()
            .unwrap()
            .success();
        assert!(ok, "objcopy failed");
        std::fs::remove_file(info).unwrap();
    }

    fn bundle_for(h: &crate::steps::testing::TestHost, release: &str) -> PathBuf {
        let dir = h.settings.bundle.join(BUNDLE_DIR).join(release);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A host with the key on and a bundle of its own (kept by the returned directory).
    fn on() -> (tempfile::TempDir, crate::steps::testing::TestHost) {
        let bundle = tempfile::tempdir().unwrap();
        let h = host(&[
            ("NCP_BOOTSTRAP_OVS_NSX_KERNEL_MODULE", "true"),
            ("NCP_BOOTSTRAP_CNI_BUNDLE", bundle.path().to_str().unwrap()),
        ]);
        (bundle, h)
    }

    #[test]
    fn off_and_netdev_are_skipped() {
        let h = host(&[]);
        let plan = KernelModule::from_ctx(&h.ctx()).plan(&h.ctx()).unwrap();
        assert!(plan.skipped.unwrap().contains("nsx_kernel_module = false"));
        let h = host(&[
            ("NCP_BOOTSTRAP_OVS_NSX_KERNEL_MODULE", "true"),
            ("NCP_BOOTSTRAP_OVS_DATAPATH_TYPE", "netdev"),
        ]);
        let plan = KernelModule::from_ctx(&h.ctx()).plan(&h.ctx()).unwrap();
        assert!(plan.skipped.unwrap().contains("netdev"));
    }

    #[test]
    fn a_kernel_the_bundle_does_not_cover_is_refused_naming_both() {
        let (_b, h) = on();
        h.write("/proc/sys/kernel/osrelease", b"6.1.0-99-amd64\n");
        bundle_for(&h, "6.1.0-57-amd64");
        let e = crate::steps::testing::plan_err(&KernelModule::from_ctx(&h.ctx()), &h);
        assert_eq!(
            crate::error::kind_of(&e),
            Some(crate::error::Kind::Precondition)
        );
        let msg = format!("{e:#}");
        for want in [
            "6.1.0-99-amd64",
            "covers 6.1.0-57-amd64",
            "use_nsx_ovs_kernel_module = False",
        ] {
            assert!(msg.contains(want), "{want}: {msg}");
        }
    }

    #[test]
    fn modules_for_another_kernel_or_without_srcversion_are_bad_input() {
        let (_b, h) = on();
        h.write("/proc/sys/kernel/osrelease", b"6.1.0-57-amd64\n");
        let dir = bundle_for(&h, "6.1.0-57-amd64");
        let plan_err = || {
            let e = crate::steps::testing::plan_err(&KernelModule::from_ctx(&h.ctx()), &h);
            assert_eq!(crate::error::kind_of(&e), Some(crate::error::Kind::Input));
            format!("{e:#}")
        };
        module_file(
            &dir,
            "openvswitch.ko",
            "name=openvswitch;vermagic=6.1.0-58-amd64 SMP ;srcversion=AB",
        );
        assert!(plan_err().contains("built for the kernel 6.1.0-58-amd64"));
        module_file(
            &dir,
            "openvswitch.ko",
            "name=openvswitch;vermagic=6.1.0-57-amd64 SMP ",
        );
        assert!(plan_err().contains("no srcversion"));
        std::fs::write(dir.join("openvswitch.ko"), b"not a module").unwrap();
        assert!(plan_err().contains("not a kernel module"));
    }

    #[test]
    fn a_fresh_host_installs_indexes_and_loads() {
        let (_b, h) = on();
        h.write("/proc/sys/kernel/osrelease", b"6.1.0-57-amd64\n");
        let dir = bundle_for(&h, "6.1.0-57-amd64");
        module_file(
            &dir,
            "openvswitch.ko",
            "name=openvswitch;vermagic=6.1.0-57-amd64 SMP ;srcversion=AB12",
        );
        module_file(
            &dir,
            "vport-geneve.ko",
            "name=vport_geneve;vermagic=6.1.0-57-amd64 SMP ",
        );
        let plan = KernelModule::from_ctx(&h.ctx()).plan(&h.ctx()).unwrap();
        let lines: Vec<String> = plan.actions.iter().map(|a| a.describe()).collect();
        assert_eq!(
            lines,
            [
                "install /lib/modules/6.1.0-57-amd64/updates/nsx-ovs/openvswitch.ko (mode 0644)",
                "install /lib/modules/6.1.0-57-amd64/updates/nsx-ovs/vport-geneve.ko (mode 0644)",
                "depmod 6.1.0-57-amd64",
                "load NSX's openvswitch module (modprobe)",
            ]
        );
        // Ours loaded, files in place and indexed: nothing to do.
        for f in ["openvswitch.ko", "vport-geneve.ko"] {
            let p = kmod::installed_path("6.1.0-57-amd64", f);
            h.host.create_dirs(&p[..p.rfind('/').unwrap()]).unwrap();
            h.host
                .write_atomic(&p, &std::fs::read(dir.join(f)).unwrap(), 0o644)
                .unwrap();
        }
        // A modules.dep that names ours proves nothing (a depmod killed before its .bin
        // files): the index is read as modprobe reads it.
        h.write(
            "/lib/modules/6.1.0-57-amd64/modules.dep",
            b"updates/nsx-ovs/openvswitch.ko:\n",
        );
        h.write("/sys/module/openvswitch/srcversion", b"AB12\n");
        let plan = KernelModule::from_ctx(&h.ctx()).plan(&h.ctx()).unwrap();
        assert!(
            matches!(&plan.actions[..], [KmodAction::Depmod { .. }]),
            "{:?}",
            plan.actions
        );
        // The real depmod on these stand-ins (ELF files with a .modinfo) indexes them.
        Kmod::new(&h.host).depmod("6.1.0-57-amd64").unwrap();
        h.write("/sys/module/openvswitch/srcversion", b"AB12\n");
        let plan = KernelModule::from_ctx(&h.ctx()).plan(&h.ctx()).unwrap();
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        // Another module loaded: a swap, planned (who uses it is checked when it is applied).
        h.write("/sys/module/openvswitch/srcversion", b"");
        let plan = KernelModule::from_ctx(&h.ctx()).plan(&h.ctx()).unwrap();
        assert!(
            matches!(&plan.actions[..], [KmodAction::Swap { from }] if from.contains("distribution's")),
            "{:?}",
            plan.actions
        );
    }
}
