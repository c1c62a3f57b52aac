//! The bundle's modules for the running kernel (`kmod/<release>/*.ko`), read and checked before
//! anything is installed.

use super::BUNDLE_DIR;
use crate::error::{input, precondition};
use crate::host::kmod::{self, Loaded, ModInfo, OVS_MODULE};
use crate::host::HostRoot;
use anyhow::{Context, Result};
use std::path::Path;

/// One module file of the bundle, checked.
#[derive(Debug, Clone)]
pub struct BundleModule {
    pub file: String,
    pub bytes: Vec<u8>,
    pub info: ModInfo,
}

/// The bundle's modules for the running kernel.
#[derive(Debug, Clone)]
pub struct ForKernel {
    pub release: String,
    pub modules: Vec<BundleModule>,
    /// The bundle's `openvswitch.ko`'s srcversion: what the loaded module must show.
    pub srcversion: String,
}

impl ForKernel {
    /// The kernel names of every module we ship (the holders we unload with `openvswitch`).
    pub fn names(&self) -> Vec<String> {
        self.modules
            .iter()
            .map(|m| kmod::module_name(&m.file))
            .collect()
    }

    pub fn is_ours(&self, loaded: &Loaded) -> bool {
        loaded.srcversion.as_deref() == Some(self.srcversion.as_str())
    }
}

/// Reads and checks the bundle's modules for the running kernel. A kernel the bundle does not
/// cover is a refusal that names it, what the bundle covers, and the way out.
pub fn for_kernel(host: &HostRoot, bundle: &Path) -> Result<ForKernel> {
    let release = kmod::kernel_release(host)?;
    let root = bundle.join(BUNDLE_DIR);
    let dir = root.join(&release);
    if !dir.is_dir() {
        let covered = covered_releases(&root);
        return Err(precondition(format!(
            "ovs.nsx_kernel_module is on, but the bundle has no NSX OVS kernel module for the \
             running kernel {release} ({} does not exist; the bundle covers {}). Boot a kernel \
             the NCP release supports, or set use_nsx_ovs_kernel_module = False in ncp.ini \
             (ovs.nsx_kernel_module = false) to use the distribution's openvswitch module",
            dir.display(),
            if covered.is_empty() {
                "no kernel".to_string()
            } else {
                covered.join(", ")
            }
        )));
    }
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ko"))
        .collect();
    files.sort();
    let mut modules = Vec::new();
    for file in files {
        let path = dir.join(&file);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let info = kmod::modinfo(&bytes).map_err(|e| {
            input(format!(
                "bundle file {} is not a kernel module: {e}; the bundle's {BUNDLE_DIR}/{release}/ \
                 must hold only the NCP release's .ko files",
                path.display()
            ))
        })?;
        if info.release() != Some(release.as_str()) {
            return Err(input(format!(
                "bundle file {} was built for the kernel {} (its vermagic), not for {release}, \
                 the directory it is in and the running kernel; the bundle is damaged",
                path.display(),
                info.release().unwrap_or("(none)")
            )));
        }
        modules.push(BundleModule { file, bytes, info });
    }
    let ovs_file = format!("{OVS_MODULE}.ko");
    let srcversion = modules
        .iter()
        .find(|m| m.file == ovs_file)
        .ok_or_else(|| {
            input(format!(
                "the bundle's {} has no {ovs_file}; the NCP release's modules for {release} \
                 are incomplete",
                dir.display()
            ))
        })?
        .info
        .srcversion
        .clone()
        .ok_or_else(|| {
            input(format!(
                "bundle file {} has no srcversion, so the loaded module could not be told \
                 apart from the distribution's; it is not NSX's module",
                dir.join(&ovs_file).display()
            ))
        })?;
    Ok(ForKernel {
        release,
        modules,
        srcversion,
    })
}

fn covered_releases(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
