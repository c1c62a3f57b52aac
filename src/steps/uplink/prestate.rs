//! The recorded pre-state: what the attach writes to the ledger before it changes anything,
//! and the IPv6 settings it changes and detach writes back.

use super::*;

/// A bridge's state before we touched it.
pub(super) struct BridgeBefore {
    pub(super) created: bool,
    pub(super) hwaddr: Option<String>,
    pub(super) mtu_request: Option<String>,
}

pub(super) fn pre_state(
    names: &Names,
    uplink: &crate::host::netlink::Link,
    ovs_run_dir: Option<String>,
    bridge: BridgeBefore,
    c: &Carried,
) -> UplinkPreState {
    let mut pre = UplinkPreState {
        step: NAME.into(),
        uplink: names.uplink.clone(),
        uplink_index: uplink.index,
        bridge: names.bridge.clone(),
        ovs_run_dir,
        bridge_created: bridge.created,
        bridge_hwaddr_before: bridge.hwaddr,
        bridge_mtu_request_before: bridge.mtu_request,
        uplink_was_up: uplink.up,
        uplink_promisc: Some(uplink.promisc),
        mac: mac_string(&uplink.mac),
        mtu: uplink.mtu,
        conf_db: None,
        addresses: Vec::new(),
        routes: Vec::new(),
        rules: Vec::new(),
        ipv6_before: Vec::new(),
    };
    pre.set_carried(c);
    pre
}

/// The recorded pre-state with the uplink's configuration as the host made it again (after a
/// reboot): the rest (the bridge as it was, the IPv6 settings, the database) stays as first
/// recorded, since that is what cleanup must put back.
pub(super) fn recarried(
    pre: &UplinkPreState,
    uplink: &crate::host::netlink::Link,
    c: &Carried,
) -> UplinkPreState {
    let mut p = UplinkPreState {
        uplink_index: uplink.index,
        ..pre.clone()
    };
    p.set_carried(c);
    p
}

/// The two ends' IPv6 settings as they are now (a bridge not there yet has none): read once
/// per plan, for the changes the move needs and for the values recorded before them.
pub(super) struct Ipv6Now {
    uplink: sysctl::Conf,
    bridge: sysctl::Conf,
}

impl Ipv6Now {
    pub(super) fn read(names: &Names) -> Result<Ipv6Now> {
        Ok(Ipv6Now {
            uplink: sysctl::Conf::of(&names.uplink)?,
            bridge: sysctl::Conf::of(&names.bridge)?,
        })
    }

    /// The settings to change for moving `carried` (`sysctl::wanted`).
    pub(super) fn changes(&self, ctx: &Ctx, carried: &Carried) -> Vec<sysctl::Change> {
        let carries_v6 = carried
            .addresses
            .iter()
            .any(|a| a.header.family == netlink_packet_route::AddressFamily::Inet6);
        sysctl::wanted(
            ctx.settings.enable_ipv6,
            carries_v6,
            &self.uplink,
            &self.bridge,
        )
    }

    /// The values `changes` replace, for the ledger.
    pub(super) fn befores(&self, changes: &[sysctl::Change]) -> Vec<sysctl::Before> {
        sysctl::befores(changes, &self.uplink, &self.bridge)
    }
}

/// The device a setting belongs to.
fn device<'a>(end: sysctl::End, uplink: &'a str, bridge: &'a str) -> &'a str {
    match end {
        sysctl::End::Uplink => uplink,
        sysctl::End::Bridge => bridge,
    }
}

pub(super) fn describe_ipv6(names: &Names, changes: &[sysctl::Change]) -> Vec<String> {
    changes
        .iter()
        .map(|(end, key, value)| {
            let dev = device(*end, &names.uplink, &names.bridge);
            format!("set net.ipv6.conf.{dev}.{key} = {value}")
        })
        .collect()
}

/// Writes the IPv6 settings the move needs, on links as they are now (a bridge OVS just made
/// has the namespace's defaults).
pub(super) fn apply_ipv6(ctx: &Ctx, names: &Names, carried: &Carried) -> Result<()> {
    for (end, key, value) in Ipv6Now::read(names)?.changes(ctx, carried) {
        sysctl::write(device(end, &names.uplink, &names.bridge), key, value)?;
    }
    Ok(())
}

/// Detach's half: the recorded IPv6 settings written back, after the addresses (an uplink that
/// had IPv6 off gets it off again, which takes its IPv6 addresses, as it had none).
pub(super) fn restore_ipv6(pre: &UplinkPreState, bridge_stays: bool) -> Result<()> {
    for b in &pre.ipv6_before {
        if let Some(p) = b.problem() {
            return Err(crate::error::input(format!(
                "the ledger's {p} (the ledger was altered): fix or remove that entry"
            )));
        }
        let dev = match b.end {
            sysctl::End::Uplink => &pre.uplink,
            sysctl::End::Bridge if bridge_stays => &pre.bridge,
            sysctl::End::Bridge => continue,
        };
        if sysctl::read(dev, &b.key)?.is_some_and(|now| now != b.value) {
            sysctl::write(dev, &b.key, b.value)?;
        }
    }
    Ok(())
}
