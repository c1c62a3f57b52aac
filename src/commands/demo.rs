//! `demo`: a sandboxed run of the whole story (see demo.sh beside this file).

use super::{Env, Outcome};
use crate::error::{precondition, Error, Kind};
use anyhow::{Context, Result};
use std::path::Path;

const SCRIPT: &str = include_str!("demo.sh");
const CONFLIST: &str = include_str!("../../distro/cni/10-nsx.conflist");
const LOOPBACK_CONF: &str = include_str!("../../distro/cni/99-loopback.conf");
const PROFILE: &str = include_str!("../../distro/ubuntu/apparmor/ncp-apparmor");

fn write(path: &Path, text: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

pub fn run(_env: &Env) -> Result<Outcome> {
    if !nix::unistd::geteuid().is_root() {
        return Err(precondition(
            "the demo needs root: it creates network namespaces and runs OVS in one. Run \
             `sudo make demo` (or `sudo ncp-bootstrap demo`)",
        ));
    }
    for tool in [
        "ip",
        "ping",
        "ovsdb-server",
        "ovs-vswitchd",
        "ovs-vsctl",
        "ovsdb-tool",
        "bash",
    ] {
        crate::host::run::find_tool(tool, "run the demo")?;
    }
    let work = std::env::temp_dir().join(format!("ncp-bootstrap-demo-{}", std::process::id()));
    let bundle = work.join("bundle");
    write(
        &bundle.join("etc/cni/net.d/10-nsx.conflist"),
        CONFLIST.as_bytes(),
        0o644,
    )?;
    write(
        &bundle.join("etc/cni/net.d/99-loopback.conf"),
        LOOPBACK_CONF.as_bytes(),
        0o644,
    )?;
    write(
        &bundle.join("etc/apparmor.d/ncp-apparmor"),
        PROFILE.as_bytes(),
        0o644,
    )?;
    write(
        &bundle.join("opt/cni/bin/nsx"),
        b"#!/bin/sh\n# PLACEHOLDER for the NSX CNI plugin, which ships with NCP releases.\necho 'placeholder nsx plugin' >&2\nexit 1\n",
        0o755,
    )?;
    let loopback = std::fs::read("/usr/lib/cni/loopback").unwrap_or_else(|_| {
        b"#!/bin/sh\n# PLACEHOLDER: containernetworking-plugins is not installed\nexit 1\n".to_vec()
    });
    write(&bundle.join("opt/cni/bin/loopback"), &loopback, 0o755)?;
    let me = std::env::current_exe().context("finding this program's path")?;
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(SCRIPT)
        .env("WORK", &work)
        .env("BIN", &me)
        // Names of this run's namespaces: unique per demo, and known to whoever started it.
        .env("DEMO_ID", std::process::id().to_string())
        .status()
        .context("running the demo script")?;
    // The script removes $WORK itself; make sure, even if it was killed.
    let _ = std::fs::remove_dir_all(&work);
    if status.success() {
        Ok(Outcome::ok())
    } else {
        Err(Error::new(
            Kind::Apply,
            format!("the demo failed ({status}); everything it made was removed"),
        )
        .into())
    }
}
