//! Making the loaded `openvswitch` NSX's: loading, swapping when nothing uses the loaded one,
//! `ovs run`'s side of it, and the verdict `ovs health` and `status` show.

use super::{for_kernel, indexed, ForKernel};
use crate::error::precondition;
use crate::host::kmod::{self, InUse, Kmod, OVS_MODULE};
use crate::host::{sha256_hex, HostRoot};
use crate::steps::Ctx;
use anyhow::Result;
use std::path::Path;

pub(super) fn load_ours(kmod: &Kmod, host: &HostRoot, want: &ForKernel) -> Result<()> {
    kmod.load(OVS_MODULE)?;
    check_loaded(host, want)
}

/// The loaded module is the bundle's, by srcversion.
pub fn check_loaded(host: &HostRoot, want: &ForKernel) -> Result<()> {
    match kmod::loaded(host, OVS_MODULE)? {
        Some(l) if want.is_ours(&l) => Ok(()),
        Some(l) => Err(anyhow::anyhow!(
            "after loading, {OVS_MODULE} is {}, not the bundle's (srcversion {}): modprobe \
             found another file first (see `modinfo -k {} {OVS_MODULE}`)",
            l.describe(),
            want.srcversion,
            want.release
        )),
        None => Err(anyhow::anyhow!("{OVS_MODULE} is not loaded after modprobe")),
    }
}

/// Unloads the loaded `openvswitch` (and the vport modules of ours that hold it) and loads
/// ours, once nothing uses it; a user is a refusal that names it.
pub fn swap(host: &HostRoot, want: &ForKernel) -> Result<()> {
    let Some(loaded) = kmod::loaded(host, OVS_MODULE)? else {
        return load_ours(&Kmod::new(host), host, want);
    };
    if want.is_ours(&loaded) {
        return Ok(());
    }
    let users = kmod::users(host, &loaded, &want.names())?;
    if !users.is_empty() {
        return Err(precondition(format!(
            "the loaded {OVS_MODULE} module ({}) is in use: {}. ncp-bootstrap does not unload a \
             module in use: stop what uses it (a host OVS: `systemctl stop openvswitch-switch`), \
             or start `ovs run` (nsx-ovs, ncp-ovs.service), which swaps it after giving node-if \
             its addresses back",
            loaded.describe(),
            users
                .iter()
                .map(InUse::describe)
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    let kmod = Kmod::new(host);
    kmod.unload_ovs(&loaded)?;
    load_ours(&kmod, host, want)
}

/// What `ovs run` must do about the module before it runs OVS on it.
#[derive(Debug)]
pub enum AtStart {
    /// NSX's module is loaded: it was, or it is now (nothing was loaded, or an unused other
    /// module was swapped).
    Ready,
    /// Another module is loaded under the bridge that carries the node's addresses: give
    /// node-if its addresses back, stop the daemons, then `swap`.
    SwapAfterDetach(Box<ForKernel>),
}

/// `ovs run`'s side, with the key on and the kernel datapath: install must have put the
/// bundle's module on the host; an unused other module is swapped now, one under the node's
/// addresses is left to the caller (`AtStart::SwapAfterDetach`); anything else using it is
/// refused by name. A kernel the bundle does not cover is refused before OVS starts: never a
/// node that silently runs on a module it was told not to use.
pub fn at_start(ctx: &Ctx, bundle: &Path) -> Result<AtStart> {
    let want = for_kernel(ctx.host, bundle)?;
    let ovs_file = format!("{OVS_MODULE}.ko");
    let installed = kmod::installed_path(&want.release, &ovs_file);
    let same = match (
        ctx.host.file_state(&installed)?,
        want.modules.iter().find(|m| m.file == ovs_file),
    ) {
        (Some(s), Some(m)) => s.sha256 == sha256_hex(&m.bytes),
        _ => false,
    };
    if !same || !indexed(ctx.host, &want.release)? {
        return Err(precondition(format!(
            "ovs.nsx_kernel_module is on, but NSX's module for {} is not installed on this host              ({installed} is missing, differs from the bundle's, or is not indexed): run              `ncp-bootstrap install` (the nsx-ncp-bootstrap init container,              ncp-bootstrap.service) first",
            want.release
        )));
    }
    let kmod = Kmod::new(ctx.host);
    let Some(loaded) = kmod::loaded(ctx.host, OVS_MODULE)? else {
        load_ours(&kmod, ctx.host, &want)?;
        return Ok(AtStart::Ready);
    };
    if want.is_ours(&loaded) {
        return Ok(AtStart::Ready);
    }
    let users = kmod::users(ctx.host, &loaded, &want.names())?;
    if users.is_empty() {
        swap(ctx.host, &want)?;
        return Ok(AtStart::Ready);
    }
    if users.iter().all(|u| matches!(u, InUse::Addresses { .. })) {
        return Ok(AtStart::SwapAfterDetach(Box::new(want)));
    }
    Err(precondition(format!(
        "the loaded {OVS_MODULE} module ({}) is not NSX's and is in use: {}; stop what uses it          (a host OVS: `systemctl stop openvswitch-switch`), then start `ovs run` again",
        loaded.describe(),
        users.iter().map(InUse::describe).collect::<Vec<_>>().join("; ")
    )))
}

/// Which `openvswitch` is loaded, against what the settings ask for: `Ok` with a line to show,
/// or `Err` with why the node does not run the module it was told to use.
pub fn loaded_verdict(ctx: &Ctx) -> Result<String, String> {
    let loaded = kmod::loaded(ctx.host, OVS_MODULE).map_err(|e| format!("{e:#}"))?;
    if !ctx.settings.nsx_kernel_module {
        return Ok(match loaded {
            Some(l) => format!("{OVS_MODULE} loaded: {}", l.describe()),
            None => format!("{OVS_MODULE} is not loaded"),
        });
    }
    let want = for_kernel(ctx.host, &ctx.settings.bundle).map_err(|e| format!("{e:#}"))?;
    match loaded {
        Some(l) if want.is_ours(&l) => Ok(format!("NSX's {OVS_MODULE} loaded: {}", l.describe())),
        Some(l) => Err(format!(
            "ovs.nsx_kernel_module is on but the loaded {OVS_MODULE} is {}, not NSX's \
             (srcversion {}); `ovs run` swaps it at its start (restart nsx-ovs or ncp-ovs.service)",
            l.describe(),
            want.srcversion
        )),
        None => Err(format!(
            "ovs.nsx_kernel_module is on but no {OVS_MODULE} module is loaded"
        )),
    }
}
