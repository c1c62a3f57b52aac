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
//!   dropping them as foreign,
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
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

const NETWORK_DIR: &str = "/run/systemd/network";
const STATE_DIR: &str = "/run/systemd/netif";
/// Marks the hand-off (written before the files); names the bridge whose file we wrote.
const MARK_DIR: &str = "/run/ncp-bootstrap";

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

/// `KEY=value` lines of networkd's state and lease files (comments and blank lines skipped).
fn fields(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect()
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    fields(text)
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
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

/// The DHCPv4 client identifier of a lease, as networkd can be told to send it again.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientId {
    /// Type 1: the MAC (the bridge has the uplink's).
    Mac,
    /// RFC 4361: IAID and DUID (type and the bytes after it).
    Duid { iaid: u32, kind: u16, raw: Vec<u8> },
}

/// What networkd's lease file says: the leased address and the identity it was leased to.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub client_id: ClientId,
    pub lifetime_s: Option<u64>,
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.is_empty() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parses networkd's lease file (private to networkd, so read defensively: anything not as
/// expected is `Err` with the reason, never a guessed identity).
pub fn parse_lease(text: &str) -> std::result::Result<Lease, String> {
    let address = field(text, "ADDRESS")
        .ok_or("no ADDRESS")?
        .parse::<Ipv4Addr>()
        .map_err(|e| format!("ADDRESS: {e}"))?;
    let id = field(text, "CLIENTID").ok_or("no CLIENTID")?;
    let bytes = hex_bytes(id).ok_or_else(|| format!("CLIENTID {id:?} is not hex"))?;
    let client_id = match bytes.as_slice() {
        [1, _, _, _, _, _, _] => ClientId::Mac,
        [0xff, a, b, c, d, t0, t1, raw @ ..] if !raw.is_empty() => ClientId::Duid {
            iaid: u32::from_be_bytes([*a, *b, *c, *d]),
            kind: u16::from_be_bytes([*t0, *t1]),
            raw: raw.to_vec(),
        },
        _ => return Err(format!("CLIENTID {id} is neither a MAC nor an IAID+DUID")),
    };
    let lifetime_s = field(text, "LIFETIME").and_then(|v| v.parse().ok());
    Ok(Lease {
        address,
        client_id,
        lifetime_s,
    })
}

fn lease_path(index: u32) -> String {
    format!("{STATE_DIR}/leases/{index}")
}

/// One section of a systemd-style configuration file, its lines in order (keys repeat).
#[derive(Debug, Clone)]
struct Section {
    name: String,
    entries: Vec<(String, String)>,
}

/// Parses a .network file. Line continuations are refused rather than guessed at (netplan and
/// the distributions' files do not use them).
fn parse_unit(text: &str) -> std::result::Result<Vec<Section>, String> {
    let mut out: Vec<Section> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.ends_with('\\') {
            return Err(format!("line {}: continued lines are not supported", n + 1));
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push(Section {
                name: name.to_string(),
                entries: Vec::new(),
            });
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: neither a section nor KEY=VALUE", n + 1))?;
        let section = out
            .last_mut()
            .ok_or_else(|| format!("line {}: a setting before any section", n + 1))?;
        section
            .entries
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

/// Sections that configure addressing and name resolution: what the bridge takes over.
const CARRIED: [&str; 8] = [
    "Network",
    "Address",
    "Route",
    "RoutingPolicyRule",
    "DHCP",
    "DHCPv4",
    "DHCPv6",
    "IPv6AcceptRA",
];
/// `[Network]` keys that tie a link to another device, or that we set ourselves.
const NOT_CARRIED: [&str; 13] = [
    "Bond",
    "Bridge",
    "VRF",
    "VLAN",
    "MACVLAN",
    "MACVTAP",
    "IPVLAN",
    "IPVTAP",
    "VXLAN",
    "Tunnel",
    "MACsec",
    "BindCarrier",
    "KeepConfiguration",
];
/// DHCP client keys we set from the lease.
const IDENTITY: [&str; 6] = [
    "ClientIdentifier",
    "IAID",
    "DUIDType",
    "DUIDRawData",
    "SendRelease",
    "RequestAddress",
];

fn dhcp_families(sections: &[Section]) -> (bool, bool) {
    let v = sections
        .iter()
        .filter(|s| s.name == "Network")
        .flat_map(|s| s.entries.iter())
        .filter(|(k, _)| k == "DHCP")
        .map(|(_, v)| v.to_ascii_lowercase())
        .next_back()
        .unwrap_or_default();
    let on = matches!(v.as_str(), "yes" | "true" | "on" | "1" | "both");
    (on || v == "ipv4", on || v == "ipv6")
}

/// The first section named `name`, added at the end when there is none.
fn section<'a>(sections: &'a mut Vec<Section>, name: &str) -> &'a mut Section {
    let i = match sections.iter().position(|s| s.name == name) {
        Some(i) => i,
        None => {
            sections.push(Section {
                name: name.into(),
                entries: Vec::new(),
            });
            sections.len() - 1
        }
    };
    &mut sections[i]
}

fn duid_type(kind: u16) -> String {
    match kind {
        1 => "link-layer-time".into(),
        2 => "vendor".into(),
        3 => "link-layer".into(),
        4 => "uuid".into(),
        n => n.to_string(),
    }
}

fn identity_lines(lease: &Lease, v4: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match &lease.client_id {
        ClientId::Mac if v4 => out.push(("ClientIdentifier".into(), "mac".into())),
        ClientId::Mac => {}
        ClientId::Duid { iaid, kind, raw } => {
            if v4 {
                out.push(("ClientIdentifier".into(), "duid".into()));
            }
            out.push(("IAID".into(), format!("0x{iaid:08x}")));
            out.push(("DUIDType".into(), duid_type(*kind)));
            let raw: Vec<String> = raw.iter().map(|b| format!("{b:02x}")).collect();
            out.push(("DUIDRawData".into(), raw.join(":")));
        }
    }
    if v4 {
        out.push(("RequestAddress".into(), lease.address.to_string()));
    }
    out.push(("SendRelease".into(), "no".into()));
    out
}

/// The bridge's .network file: the uplink's (`source`, read from `source_path`) for the
/// bridge. A DHCPv4 uplink needs its lease; without one this is an error, not a new identity.
pub fn bridge_network(
    source_path: &str,
    source: &str,
    uplink: &str,
    bridge: &str,
    lease: Option<&Lease>,
) -> std::result::Result<String, String> {
    let mut sections = parse_unit(source).map_err(|e| format!("{source_path}: {e}"))?;
    let (v4, v6) = dhcp_families(&sections);
    if v4 && lease.is_none() {
        return Err(format!(
            "{source_path} runs DHCPv4 on {uplink}, but networkd holds no lease for it"
        ));
    }
    sections.retain(|s| CARRIED.contains(&s.name.as_str()));
    for s in &mut sections {
        match s.name.as_str() {
            "Network" => s
                .entries
                .retain(|(k, _)| !NOT_CARRIED.contains(&k.as_str())),
            "DHCP" | "DHCPv4" | "DHCPv6" => {
                s.entries.retain(|(k, _)| !IDENTITY.contains(&k.as_str()))
            }
            _ => {}
        }
    }
    section(&mut sections, "Network")
        .entries
        .push(("KeepConfiguration".into(), "yes".into()));
    if let Some(l) = lease {
        if v4 {
            section(&mut sections, "DHCPv4")
                .entries
                .extend(identity_lines(l, true));
        }
        if v6 && matches!(l.client_id, ClientId::Duid { .. }) {
            section(&mut sections, "DHCPv6")
                .entries
                .extend(identity_lines(l, false));
        }
    }
    let mut out = format!(
        "# Written by ncp-bootstrap while {uplink} is attached to {bridge}: {uplink}'s \
         configuration\n# (from {source_path}) for the bridge. Removed when {uplink} is \
         detached.\n[Match]\nName={bridge}\n"
    );
    for s in &sections {
        let _ = write!(out, "\n[{}]\n", s.name);
        for (k, v) in &s.entries {
            let _ = writeln!(out, "{k}={v}");
        }
    }
    Ok(out)
}

pub fn uplink_network(uplink: &str, bridge: &str) -> String {
    format!(
        "# Written by ncp-bootstrap: {uplink} is a port of the OVS bridge {bridge}, which \
         carries its\n# addresses. Removed when {uplink} is detached.\n[Match]\nName={uplink}\n\n\
         [Link]\nUnmanaged=yes\n"
    )
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
        .map_err(crate::error::precondition)?;
    // bridge_network parsed the file already; it names the lease only when DHCPv4 runs.
    let dhcp4 = parse_unit(&text).is_ok_and(|s| dhcp_families(&s).0);
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

/// For `status`: the bridge's DHCP lease as networkd holds it, and how long ago it was written
/// (networkd rewrites it at each renewal). `None` without a lease on the bridge.
pub fn bridge_lease(host: &HostRoot, bridge_index: u32) -> Result<Option<(Lease, u64)>> {
    let path = lease_path(bridge_index);
    let Some(bytes) = host.read(&path)? else {
        return Ok(None);
    };
    let lease = parse_lease(&String::from_utf8_lossy(&bytes))
        .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let age = std::fs::metadata(host.resolve(&path)?)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or(0, |d| d.as_secs());
    Ok(Some((lease, age)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETPLAN_DHCP: &str = "[Match]\nName=eth1\n\n[Link]\nRequiredForOnline=yes\n\n\
        [Network]\nDHCP=ipv4\nLinkLocalAddressing=ipv6\nIPv6AcceptRA=yes\nDNS=10.1.1.53\n\
        Domains=corp.example\n\n[DHCP]\nRouteMetric=100\nUseMTU=true\n";

    const LEASE: &str = "# This is private data. Do not parse.\nADDRESS=192.168.76.10\n\
        NETMASK=255.255.255.0\nLIFETIME=120\nCLIENTID=ff6b4d51d300020000ab11a1b2c3d4e5f60718\n";

    #[test]
    fn a_lease_gives_the_iaid_and_duid_it_was_leased_to() {
        let l = parse_lease(LEASE).unwrap();
        assert_eq!(l.address, Ipv4Addr::new(192, 168, 76, 10));
        assert_eq!(l.lifetime_s, Some(120));
        assert_eq!(
            l.client_id,
            ClientId::Duid {
                iaid: 0x6b4d51d3,
                kind: 2,
                raw: vec![0x00, 0x00, 0xab, 0x11, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18],
            }
        );
        let mac = parse_lease("ADDRESS=10.0.0.5\nCLIENTID=01525400aabb01\n").unwrap();
        assert_eq!(mac.client_id, ClientId::Mac);
    }

    #[test]
    fn a_lease_that_is_not_as_expected_is_refused_with_the_reason() {
        for (text, why) in [
            ("CLIENTID=01525400aabb01\n", "no ADDRESS"),
            ("ADDRESS=10.0.0.5\n", "no CLIENTID"),
            ("ADDRESS=10.0.0.5\nCLIENTID=zz\n", "not hex"),
            ("ADDRESS=10.0.0.5\nCLIENTID=02aa\n", "neither a MAC"),
            ("ADDRESS=10.0.0.500\nCLIENTID=01525400aabb01\n", "ADDRESS"),
        ] {
            let e = parse_lease(text).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_bridge_gets_the_uplinks_configuration_with_its_lease_identity() {
        let lease = parse_lease(LEASE).unwrap();
        let out = bridge_network(
            "/run/systemd/network/10-netplan-eth1.network",
            NETPLAN_DHCP,
            "eth1",
            "br-int",
            Some(&lease),
        )
        .unwrap();
        insta::assert_snapshot!("networkd_bridge_dhcp", out);
        assert!(!out.contains("Name=eth1") && !out.contains("RequiredForOnline"));
    }

    #[test]
    fn a_static_uplink_keeps_its_addresses_routes_and_dns_on_the_bridge() {
        let src = "[Match]\nName=eth1\n\n[Network]\nLinkLocalAddressing=ipv6\n\
            Address=192.168.76.10/24\nIPv6AcceptRA=no\nDNS=10.1.1.53\nKeepConfiguration=no\n\n\
            [Route]\nDestination=0.0.0.0/0\nGateway=192.168.76.1\n";
        let out = bridge_network("/f.network", src, "eth1", "br-int", None).unwrap();
        insta::assert_snapshot!("networkd_bridge_static", out);
        assert_eq!(out.matches("KeepConfiguration").count(), 1, "{out}");
    }

    #[test]
    fn dhcp_without_a_lease_or_an_unreadable_file_is_refused() {
        let e = bridge_network("/f.network", NETPLAN_DHCP, "eth1", "br-int", None).unwrap_err();
        assert!(e.contains("no lease"), "{e}");
        let e = bridge_network(
            "/f.network",
            "[Network]\nDHCP=yes \\\n",
            "eth1",
            "br-int",
            None,
        )
        .unwrap_err();
        assert!(e.contains("/f.network: line 2"), "{e}");
        let e = bridge_network("/f.network", "DHCP=yes\n", "eth1", "br-int", None).unwrap_err();
        assert!(e.contains("before any section"), "{e}");
    }
}
