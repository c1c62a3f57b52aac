//! Handing the attached uplink over from NetworkManager, and back.
//!
//! NetworkManager tolerates node-if's addresses moving to the bridge while it runs, but when it
//! restarts (a package upgrade, an operator) it activates node-if's connection again and puts
//! the addresses back on what is now an OVS port: the node then owns its addresses twice and
//! the bridge loses its traffic. So while the uplink is attached, NetworkManager is told to
//! leave it unmanaged, the way `nmcli device set IF managed no` does: that keeps the link and
//! its (by then empty) configuration as they are, survives a restart of NetworkManager (its
//! runtime device state), and is forgotten at reboot, when NetworkManager must bring node-if up
//! from its connection before `ovs run` attaches it again.
//!
//! Measured in the VM (vagrant/scenarios): the other ways fail. An `unmanaged-devices` drop-in
//! plus a configuration reload takes the link down (NetworkManager deconfigures a device it
//! managed), and a drop-in without a reload waits for the next reload to do the same.

use super::HostRoot;
use anyhow::{Context, Result};

/// Marks the hand-off (recorded before it is made); in /run like NetworkManager's own runtime
/// device state, so both end at reboot.
const MARK_DIR: &str = "/run/ncp-bootstrap";

fn mark(uplink: &str) -> String {
    format!("{MARK_DIR}/nm-unmanaged-{uplink}")
}

/// Only a host root whose /run holds NetworkManager's directory is considered: a temporary host
/// root never reaches this machine's own NetworkManager.
pub fn running(host: &HostRoot) -> Result<bool> {
    Ok(host.is_dir("/run/NetworkManager")? && super::proc::find(host, "NetworkManager")?.is_some())
}

fn nmcli(args: &[&str]) -> Result<String> {
    Ok(super::run::host_tool("nmcli", args)?.stdout)
}

/// Whether the uplink is handed off by this tool (not unmanaged by the operator already).
pub fn handed_off(host: &HostRoot, uplink: &str) -> Result<bool> {
    Ok(host
        .read(&mark(uplink))?
        .is_some_and(|m| !was_unmanaged(&String::from_utf8_lossy(&m))))
}

/// Whether NetworkManager runs and the uplink is not yet handed off.
pub fn needs_hand_off(host: &HostRoot, uplink: &str) -> Result<bool> {
    Ok(running(host)? && !host.exists(&mark(uplink))?)
}

/// Makes NetworkManager leave the attached uplink alone; says what was done, if anything.
pub fn hand_off(host: &HostRoot, uplink: &str) -> Result<Option<String>> {
    if !needs_hand_off(host, uplink)? {
        return Ok(None);
    }
    // A device NetworkManager does not know, or leaves alone already, needs nothing. Any other
    // failure (no nmcli, no system bus) is the caller's warning: NM runs and may fight.
    let state = match nmcli(&["-t", "-g", "GENERAL.STATE", "device", "show", uplink]) {
        Ok(s) => s,
        Err(e) if format!("{e:#}").contains("not found") => return Ok(None),
        Err(e) => return Err(e.context("asking NetworkManager for the uplink's state")),
    };
    // The mark holds the state found, so that detach gives back only what it took.
    host.create_dirs(MARK_DIR)?;
    host.write_atomic(&mark(uplink), state.as_bytes(), 0o644)?;
    if was_unmanaged(&state) {
        return Ok(None);
    }
    nmcli(&["device", "set", uplink, "managed", "no"])
        .with_context(|| format!("telling NetworkManager to leave {uplink} alone"))?;
    Ok(Some(format!(
        "NetworkManager leaves {uplink} unmanaged while it is attached (it was {})",
        state.trim()
    )))
}

/// Gives the uplink back to NetworkManager, once its addresses are back on it.
pub fn take_back(host: &HostRoot, uplink: &str) -> Result<Option<String>> {
    let Some(found) = host.read(&mark(uplink))? else {
        return Ok(None);
    };
    let note = if was_unmanaged(&String::from_utf8_lossy(&found)) {
        None
    } else if running(host)? {
        nmcli(&["device", "set", uplink, "managed", "yes"])
            .with_context(|| format!("giving {uplink} back to NetworkManager"))?;
        Some(format!("{uplink} is NetworkManager's again"))
    } else {
        Some(format!(
            "NetworkManager does not run; {uplink} is its again when it starts"
        ))
    };
    host.remove_file(&mark(uplink))?;
    host.remove_empty_dir(MARK_DIR)?;
    Ok(note)
}

/// `GENERAL.STATE` 10 is "unmanaged": the operator's choice, not ours to undo.
fn was_unmanaged(state: &str) -> bool {
    state.trim().starts_with("10 ")
}
