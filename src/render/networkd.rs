//! systemd-networkd's files as text: its state and lease files read, the `.network` files of
//! the hand-off (the bridge's, made from the uplink's own; the uplink's, leaving it unmanaged)
//! written. Pure: `host::networkd` reads and writes them on the host.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// Why networkd's lease file is not used (it is private to networkd, so read defensively: a
/// lease not as expected is refused, never a guessed identity).
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum LeaseError {
    #[error("no {0}")]
    Missing(&'static str),
    #[error("ADDRESS: {0}")]
    Address(std::net::AddrParseError),
    #[error("CLIENTID {0:?} is not hex")]
    NotHex(String),
    #[error("CLIENTID {0} is neither a MAC nor an IAID+DUID")]
    NotAnIdentity(String),
}

/// Where a `.network` file is not as this parser reads them.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum UnitSyntax {
    #[error("line {0}: continued lines are not supported")]
    Continued(usize),
    #[error("line {0}: neither a section nor KEY=VALUE")]
    NotASetting(usize),
    #[error("line {0}: a setting before any section")]
    BeforeSection(usize),
}

/// Why the bridge's `.network` file cannot be made from the uplink's.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum BridgeNetworkError {
    #[error("{path}: {err}")]
    Syntax { path: String, err: UnitSyntax },
    #[error("{path} runs DHCPv4 on {uplink}, but networkd holds no lease for it")]
    NoLease { path: String, uplink: String },
}

/// Whether a `.network` file runs a DHCPv4 client (false for one this parser refuses).
pub fn runs_dhcp4(text: &str) -> bool {
    parse_unit(text).is_ok_and(|s| dhcp_families(&s).0)
}

/// `KEY=value` lines of networkd's state and lease files (comments and blank lines skipped).
pub fn fields(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect()
}

pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    fields(text)
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
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
pub fn parse_lease(text: &str) -> Result<Lease, LeaseError> {
    let address = field(text, "ADDRESS")
        .ok_or(LeaseError::Missing("ADDRESS"))?
        .parse::<Ipv4Addr>()
        .map_err(LeaseError::Address)?;
    let id = field(text, "CLIENTID").ok_or(LeaseError::Missing("CLIENTID"))?;
    let bytes = hex_bytes(id).ok_or_else(|| LeaseError::NotHex(id.into()))?;
    let client_id = match bytes.as_slice() {
        [1, _, _, _, _, _, _] => ClientId::Mac,
        [0xff, a, b, c, d, t0, t1, raw @ ..] if !raw.is_empty() => ClientId::Duid {
            iaid: u32::from_be_bytes([*a, *b, *c, *d]),
            kind: u16::from_be_bytes([*t0, *t1]),
            raw: raw.to_vec(),
        },
        _ => return Err(LeaseError::NotAnIdentity(id.into())),
    };
    let lifetime_s = field(text, "LIFETIME").and_then(|v| v.parse().ok());
    Ok(Lease {
        address,
        client_id,
        lifetime_s,
    })
}

/// One section of a systemd-style configuration file, its lines in order (keys repeat).
#[derive(Debug, Clone)]
struct Section {
    name: String,
    entries: Vec<(String, String)>,
}

/// Parses a .network file. Line continuations are refused rather than guessed at (netplan and
/// the distributions' files do not use them).
fn parse_unit(text: &str) -> Result<Vec<Section>, UnitSyntax> {
    let mut out: Vec<Section> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.ends_with('\\') {
            return Err(UnitSyntax::Continued(n + 1));
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push(Section {
                name: name.to_string(),
                entries: Vec::new(),
            });
            continue;
        }
        let (k, v) = line.split_once('=').ok_or(UnitSyntax::NotASetting(n + 1))?;
        let section = out.last_mut().ok_or(UnitSyntax::BeforeSection(n + 1))?;
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
) -> Result<String, BridgeNetworkError> {
    let mut sections = parse_unit(source).map_err(|err| BridgeNetworkError::Syntax {
        path: source_path.into(),
        err,
    })?;
    let (v4, v6) = dhcp_families(&sections);
    if v4 && lease.is_none() {
        return Err(BridgeNetworkError::NoLease {
            path: source_path.into(),
            uplink: uplink.into(),
        });
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
            assert!(e.to_string().contains(why), "{text:?}: {e}");
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
        assert!(matches!(e, BridgeNetworkError::NoLease { .. }), "{e}");
        assert!(e.to_string().contains("no lease"), "{e}");
        let e = bridge_network(
            "/f.network",
            "[Network]\nDHCP=yes \\\n",
            "eth1",
            "br-int",
            None,
        )
        .unwrap_err();
        assert_eq!(
            e,
            BridgeNetworkError::Syntax {
                path: "/f.network".into(),
                err: UnitSyntax::Continued(2)
            }
        );
        assert!(e.to_string().contains("/f.network: line 2"), "{e}");
        let e = bridge_network("/f.network", "DHCP=yes\n", "eth1", "br-int", None).unwrap_err();
        assert!(e.to_string().contains("before any section"), "{e}");
    }
}
