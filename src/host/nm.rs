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
use super::paths::RUN_MARK_DIR as MARK_DIR;

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
pub fn hand_off(host: &HostRoot, uplink: &str, bridge: &str) -> Result<Option<String>> {
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
    // Read before letting go: an unmanaged device has no DNS in NetworkManager.
    let dns = if resolved_running(host)? {
        Some(uplink_dns(uplink))
    } else {
        None
    };
    nmcli(&["device", "set", uplink, "managed", "no"])
        .with_context(|| format!("telling NetworkManager to leave {uplink} alone"))?;
    let mut note = format!(
        "NetworkManager leaves {uplink} unmanaged while it is attached (it was {})",
        state.trim()
    );
    match dns {
        Some(Ok(d)) if !d.is_empty() => match carry_dns(host, bridge, &d) {
            Ok(()) => note.push_str(&format!(
                "; systemd-resolved keeps {uplink}'s DNS on {bridge} ({})",
                d.describe()
            )),
            Err(e) => note.push_str(&format!(
                "; {uplink}'s DNS ({}) could not be put on {bridge} in systemd-resolved: {e:#}",
                d.describe()
            )),
        },
        Some(Err(e)) => note.push_str(&format!(
            "; {uplink}'s DNS servers could not be read from systemd-resolved ({e:#}), so \
             it may have none for the node while it is attached"
        )),
        _ => {}
    }
    Ok(Some(note))
}

/// DNS servers and search domains of a link.
#[derive(Debug, Default, PartialEq)]
pub struct Dns {
    pub servers: Vec<std::net::IpAddr>,
    pub domains: Vec<String>,
}

impl Dns {
    fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.domains.is_empty()
    }

    fn describe(&self) -> String {
        let s: Vec<String> = self.servers.iter().map(|s| s.to_string()).collect();
        let mut parts = Vec::new();
        if !s.is_empty() {
            parts.push(format!("servers {}", s.join(" ")));
        }
        if !self.domains.is_empty() {
            parts.push(format!("search {}", self.domains.join(" ")));
        }
        parts.join("; ")
    }
}

/// Where the host runs systemd-resolved, NetworkManager keeps each device's DNS there per link.
/// Once the uplink is unmanaged nothing maintains its entry (NetworkManager may drop it; Antrea's
/// users lost the node's DNS that way), and the uplink carries no address to reach the servers:
/// the bridge carries them, as resolved's runtime per-link settings, until detach.
fn resolved_running(host: &HostRoot) -> Result<bool> {
    Ok(host.is_dir("/run/systemd/resolve")?
        && super::proc::find(host, "systemd-resolved")?.is_some())
}

fn dns_mark(bridge: &str) -> String {
    format!("{MARK_DIR}/resolved-{bridge}")
}

/// The uplink's DNS as resolved holds it for the link (NetworkManager's per-link settings, read
/// before NetworkManager lets go of the link).
fn uplink_dns(uplink: &str) -> Result<Dns> {
    let servers = super::run::host_tool("resolvectl", &["dns", uplink])?.stdout;
    let domains = super::run::host_tool("resolvectl", &["domain", uplink])?.stdout;
    parse_resolvectl(&servers, &domains)
}

/// `resolvectl dns|domain LINK` print `Link 3 (eth1): VALUE VALUE`. Anything that is not an
/// address (servers) or a domain name (domains, `~` for routing-only ones) is refused, not
/// passed on.
pub fn parse_resolvectl(servers: &str, domains: &str) -> Result<Dns> {
    let values = |out: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.split_once(": ").map(|(_, v)| v))
            .flat_map(|v| v.split_whitespace())
            .map(String::from)
            .collect()
    };
    let mut d = Dns::default();
    for v in values(servers) {
        d.servers.push(
            v.parse()
                .map_err(|_| anyhow::anyhow!("resolvectl printed {v:?} as a DNS server"))?,
        );
    }
    for v in values(domains) {
        let name = v.strip_prefix('~').unwrap_or(&v);
        if v.len() > 254
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            anyhow::bail!("resolvectl printed {v:?} as a search domain");
        }
        d.domains.push(v);
    }
    Ok(d)
}

fn carry_dns(host: &HostRoot, bridge: &str, d: &Dns) -> Result<()> {
    host.write_atomic(&dns_mark(bridge), d.describe().as_bytes(), 0o644)?;
    let servers: Vec<String> = d.servers.iter().map(|s| s.to_string()).collect();
    let mut args = vec!["dns", bridge];
    args.extend(servers.iter().map(String::as_str));
    super::run::host_tool("resolvectl", &args)?;
    let mut args = vec!["domain", bridge];
    args.extend(d.domains.iter().map(String::as_str));
    super::run::host_tool("resolvectl", &args)?;
    Ok(())
}

/// Gives the uplink back to NetworkManager, once its addresses are back on it.
pub fn take_back(host: &HostRoot, uplink: &str, bridge: &str) -> Result<Option<String>> {
    let Some(found) = host.read(&mark(uplink))? else {
        return Ok(None);
    };
    // NetworkManager puts the uplink's DNS back in resolved when it manages it again.
    if host.exists(&dns_mark(bridge))? {
        if resolved_running(host)? {
            super::run::host_tool("resolvectl", &["revert", bridge])
                .with_context(|| format!("removing the uplink's DNS from {bridge} in resolved"))?;
        }
        host.remove_file(&dns_mark(bridge))?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_link_dns_is_parsed_and_anything_else_refused() {
        let d = parse_resolvectl(
            "Link 3 (eth1): 192.168.76.53 fd00:76::53\n",
            "Link 3 (eth1): ncpb.test ~corp.example\n",
        )
        .unwrap();
        assert_eq!(
            d.servers,
            ["192.168.76.53", "fd00:76::53"].map(|s| s.parse::<std::net::IpAddr>().unwrap())
        );
        assert_eq!(d.domains, ["ncpb.test", "~corp.example"]);
        assert!(parse_resolvectl("Link 3 (eth1):\n", "").unwrap().is_empty());
        let e = parse_resolvectl("Link 3 (eth1): 10.0.0.53;reboot\n", "").unwrap_err();
        assert!(format!("{e}").contains("as a DNS server"), "{e}");
        let e = parse_resolvectl("", "Link 3 (eth1): a/b\n").unwrap_err();
        assert!(format!("{e}").contains("as a search domain"), "{e}");
    }
}
