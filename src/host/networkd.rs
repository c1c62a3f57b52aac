//! Handing the attached uplink over from systemd-networkd (and so from netplan, which renders
//! to it), and back.
//!
//! networkd configures node-if from a .network file. Once node-if is an OVS port and its
//! addresses live on the bridge, networkd must stop configuring node-if: a carrier change, a
//! `networkctl reconfigure` or a DHCP renewal would put the addresses back on what is now a port.
//! And the bridge must get what networkd gave node-if: DHCP lease renewals, router
//! advertisements, and per-link DNS servers and search domains (which systemd-resolved drops
//! with the link that held them).
//!
//! Both are runtime .network files in /run/systemd/network whose names sort before netplan's and
//! the distribution's (networkd gives a link the first file that matches it, across all its
//! directories): one leaves node-if unmanaged, the other gives the bridge node-if's own file with
//! - its `[Match]` rewritten for the bridge (and `[Link]`, which could set a MAC, left out),
//! - the DHCPv4 client identity pinned to the one in node-if's lease (IAID and DUID, or the MAC,
//!   which the bridge shares with node-if), so the server renews the same lease for the bridge,
//! - `KeepConfiguration=yes`, so networkd adopts the moved addresses and routes instead of
//!   dropping them as foreign. (`static` alone keeps only static ones: a leased address and its
//!   routes it would drop and take back at its client's first ACK, seconds without them at the
//!   attach under load. `yes` also keeps a lease's address past the lease's end.)
//! - `SendRelease=no`, so stopping the bridge's client never releases the node's lease.
//!
//! /run is cleared at reboot, like the datapath: networkd then configures node-if from its own
//! file again, and the same lease comes back on node-if before `ovs run` attaches it.
//!
//! Giving back runs in the other order, so that networkd makes before we break: node-if is
//! networkd's again while the addresses are still on the bridge (a static configuration is put
//! on node-if at once; a DHCP client on node-if gets its answer once node-if leaves the bridge),
//! then the addresses move back, then the bridge's file goes.

use super::HostRoot;
use crate::render::networkd::{bridge_network, field, parse_lease, runs_dhcp4, uplink_network};
pub use crate::render::networkd::{ClientId, Lease};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// Marks the hand-off (written before the files); names the bridge whose file we wrote.
use super::paths::RUN_MARK_DIR as MARK_DIR;
use super::paths::{NETWORKD_RUNTIME_DIR as NETWORK_DIR, NETWORKD_STATE_DIR as STATE_DIR};

fn mark(uplink: &str) -> String {
    format!("{MARK_DIR}/networkd-{uplink}")
}

/// Our runtime files: `01-` sorts before netplan's `10-netplan-*` and any `*-default.network`.
pub fn network_file(link: &str) -> String {
    format!("{NETWORK_DIR}/01-ncp-bootstrap-{link}.network")
}

/// Only a host root whose /run holds networkd's state is considered: a temporary host root
/// never reaches this machine's own networkd.
pub fn running(host: &HostRoot) -> Result<bool> {
    Ok(host.is_dir(&format!("{STATE_DIR}/links"))?
        && super::proc::find(host, "systemd-networkd")?.is_some())
}

/// The .network file networkd configures link `index` with, when it manages it.
pub fn managing_file(host: &HostRoot, index: u32) -> Result<Option<String>> {
    let path = format!("{STATE_DIR}/links/{index}");
    let Some(bytes) = host.read(&path)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let managed = matches!(
        field(&text, "ADMIN_STATE"),
        Some("configured" | "configuring")
    );
    Ok(field(&text, "NETWORK_FILE")
        .filter(|f| managed && f.starts_with('/') && f.ends_with(".network"))
        .map(String::from))
}

fn lease_path(index: u32) -> String {
    format!("{STATE_DIR}/leases/{index}")
}

/// What the hand-off will write, prepared before the uplink moves so that a refusal changes
/// nothing.
#[derive(Debug, Clone)]
pub struct HandOff {
    pub uplink: String,
    pub bridge: String,
    /// The uplink's own .network file, which the bridge's is made from.
    pub source: String,
    pub bridge_text: String,
    /// The DHCPv4 lease the bridge renews, if any.
    pub lease: Option<Ipv4Addr>,
}

impl HandOff {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "tell systemd-networkd to leave {} unmanaged while attached and to configure {} from \
             {}'s {}",
            self.uplink, self.bridge, self.uplink, self.source
        );
        if let Some(a) = self.lease {
            let _ = write!(
                s,
                " (renewing the DHCP lease of {a} with {}'s identity)",
                self.uplink
            );
        }
        s
    }
}

/// The hand-off to make, when networkd runs and manages the uplink (`None` otherwise, or when
/// it is made already).
pub fn prepare(
    host: &HostRoot,
    uplink: &str,
    uplink_index: u32,
    bridge: &str,
) -> Result<Option<HandOff>> {
    if !running(host)? || host.exists(&mark(uplink))? {
        return Ok(None);
    }
    let Some(source) = managing_file(host, uplink_index)? else {
        return Ok(None);
    };
    let text = host
        .read(&source)?
        .with_context(|| format!("{source}, networkd's file for {uplink}, is missing"))?;
    let text = String::from_utf8(text).with_context(|| format!("{source} is not UTF-8"))?;
    let lease_file = lease_path(uplink_index);
    let lease = match host.read(&lease_file)? {
        Some(b) => Some(parse_lease(&String::from_utf8_lossy(&b)).map_err(|e| {
            crate::error::input(format!("{lease_file}, networkd's lease for {uplink}: {e}"))
        })?),
        None => None,
    };
    let bridge_text = bridge_network(&source, &text, uplink, bridge, lease.as_ref())
        .map_err(|e| crate::error::precondition(e.to_string()))?;
    // The hand-off names the lease only when DHCPv4 runs.
    let dhcp4 = runs_dhcp4(&text);
    Ok(Some(HandOff {
        uplink: uplink.into(),
        bridge: bridge.into(),
        source,
        lease: lease.filter(|_| dhcp4).map(|l| l.address),
        bridge_text,
    }))
}

fn networkctl_reload() -> Result<()> {
    super::run::host_tool("networkctl", &["reload"]).map(|_| ())
}

/// Makes the hand-off: mark, both files, one reload.
pub fn hand_off(host: &HostRoot, h: &HandOff) -> Result<String> {
    host.create_dirs(MARK_DIR)?;
    host.write_atomic(
        &mark(&h.uplink),
        format!("{}\n", h.bridge).as_bytes(),
        0o644,
    )?;
    host.create_dirs(NETWORK_DIR)?;
    host.write_atomic(&network_file(&h.bridge), h.bridge_text.as_bytes(), 0o644)?;
    host.write_atomic(
        &network_file(&h.uplink),
        uplink_network(&h.uplink, &h.bridge).as_bytes(),
        0o644,
    )?;
    networkctl_reload().context("asking systemd-networkd to reload its files")?;
    Ok(format!(
        "systemd-networkd leaves {} unmanaged while it is attached and configures {} from {}{}",
        h.uplink,
        h.bridge,
        h.source,
        h.lease
            .map(|a| format!(
                "; the DHCP lease of {a} is renewed on {} with {}'s client identity",
                h.bridge, h.uplink
            ))
            .unwrap_or_default()
    ))
}

/// The bridge named in the hand-off mark, when the uplink is handed off. A mark that names no
/// plausible link is reported, not acted on.
pub fn handed_off(host: &HostRoot, uplink: &str) -> Result<Option<String>> {
    let Some(b) = host.read(&mark(uplink))? else {
        return Ok(None);
    };
    let bridge = String::from_utf8_lossy(&b).trim().to_string();
    if bridge.is_empty()
        || bridge.len() > 15
        || !bridge
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        anyhow::bail!("{} does not name a bridge: {bridge:?}", mark(uplink));
    }
    Ok(Some(bridge))
}

/// First half of giving back, before the addresses move back: node-if is networkd's again.
pub fn release_uplink(host: &HostRoot, uplink: &str) -> Result<Option<String>> {
    if handed_off(host, uplink)?.is_none() {
        return Ok(None);
    }
    if host.remove_file(&network_file(uplink))? && running(host)? {
        networkctl_reload().with_context(|| format!("giving {uplink} back to systemd-networkd"))?;
    }
    Ok(Some(format!("{uplink} is systemd-networkd's again")))
}

/// Second half, once the addresses are back on node-if: the bridge's file goes.
pub fn release_bridge(host: &HostRoot, uplink: &str) -> Result<()> {
    let Some(bridge) = handed_off(host, uplink)? else {
        return Ok(());
    };
    // The uplink's file goes here too, for a give-back that stopped half way.
    let a = host.remove_file(&network_file(uplink))?;
    let b = host.remove_file(&network_file(&bridge))?;
    if (a || b) && running(host)? {
        networkctl_reload().context("asking systemd-networkd to drop the bridge's file")?;
    }
    host.remove_file(&mark(uplink))?;
    host.remove_empty_dir(MARK_DIR)?;
    Ok(())
}

/// For `status`: the bridge's DHCP lease as networkd holds it. `None` without a lease on the
/// bridge.
///
/// The file says what was leased, not when: systemd rewrites it only when its content changes
/// (`conservative_rename`), so a renewal that brings the same T1 and T2 leaves the file, and its
/// modification time, as they were.
pub fn bridge_lease(host: &HostRoot, bridge_index: u32) -> Result<Option<Lease>> {
    let path = lease_path(bridge_index);
    let Some(bytes) = host.read(&path)? else {
        return Ok(None);
    };
    parse_lease(&String::from_utf8_lossy(&bytes))
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{path}: {e}"))
}

/// Seconds since networkd last renewed a lease of `lifetime_s`, from the valid lifetime
/// (`valid_s`) it gave the leased address in the kernel: it sets the lease's remaining lifetime
/// at each renewal, and the kernel counts it down. `None` for a permanent address (networkd keeps
/// DHCP configuration with `KeepConfiguration=yes` and gives it no lifetime) or an unknown lease
/// lifetime.
pub fn since_renewal(lifetime_s: Option<u64>, valid_s: u32) -> Option<u64> {
    let life = lifetime_s.filter(|l| *l > 0)?;
    (valid_s != crate::netmodel::FOREVER).then(|| life.saturating_sub(u64::from(valid_s)))
}

#[cfg(test)]
mod tests {
    use super::since_renewal;
    use crate::netmodel::FOREVER;

    #[test]
    fn the_time_since_a_renewal_is_the_lifetime_the_kernel_has_counted_down() {
        // Just renewed: networkd gave the address the lease's remaining lifetime.
        assert_eq!(since_renewal(Some(120), 119), Some(1));
        // Past the rebinding time of a 2-minute lease (105 s): 10 s of validity left.
        assert_eq!(since_renewal(Some(120), 10), Some(110));
        // Expired in the kernel's count, however long ago.
        assert_eq!(since_renewal(Some(120), 0), Some(120));
        // KeepConfiguration=yes: no lifetime, so nothing to tell.
        assert_eq!(since_renewal(Some(120), FOREVER), None);
        // A lease without a lifetime (or zero) gives no clock either.
        assert_eq!(since_renewal(None, 60), None);
        assert_eq!(since_renewal(Some(0), 60), None);
    }
}
