//! What must hold before and while node-if is attached: the refusals made before anything
//! changes, the warnings, and what forwarding needs once attached.

use super::*;

/// Addresses a DHCP client or SLAAC keeps alive, on an uplink whose renewals nothing here can
/// carry over to the bridge (networkd's are: see `host::networkd`). Moving them lets them
/// expire on the bridge, so the move is refused unless the operator accepts that.
pub(super) fn check_dynamic(
    ctx: &Ctx,
    names: &Names,
    c: &Carried,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let (uplink, bridge) = (&names.uplink, &names.bridge);
    let dynamic: Vec<String> = c
        .addresses
        .iter()
        .filter(|a| netmodel::is_dynamic(a))
        .map(|a| {
            let (valid, _) = netmodel::lifetimes(a);
            let ip = netmodel::address_ip(a).map_or("an address".into(), |i| i.to_string());
            format!("{ip} (valid for {valid} s more)")
        })
        .collect();
    if dynamic.is_empty() {
        return Ok(());
    }
    let renewer = client_pidfile(ctx, uplink)
        .map(|p| format!("the DHCP client of {p} renews them on {uplink} only"))
        .or_else(|| {
            crate::host::nm::running(ctx.host)
                .unwrap_or(false)
                .then(|| {
                    format!(
                        "NetworkManager renews them only while it manages {uplink}, and it must \
                     leave an attached uplink unmanaged"
                    )
                })
        })
        .unwrap_or_else(|| {
            format!("a DHCP client or router advertisements renew them on {uplink} only")
        });
    let what = format!(
        "{uplink} holds dynamic addresses: {}. {renewer}; on {bridge} they would expire",
        dynamic.join(", ")
    );
    use crate::config::UplinkDhcp;
    if ctx.settings.uplink_dhcp == UplinkDhcp::Static {
        return Err(precondition(format!(
            "{what}. node.uplink_dhcp is false (ncp.ini [nsx_node_agent] \
             is_dhcp_configured_on_ovs_uplink_port = False) and says {uplink}'s addresses are \
             static: set it to True (a DHCP client renews them on {bridge}) or auto, or give \
             {uplink} static addresses"
        )));
    }
    if ctx.settings.uplink_dhcp == UplinkDhcp::Dhcp {
        warnings.push(format!(
            "{what} (node.uplink_dhcp is true: ncp.ini is_dhcp_configured_on_ovs_uplink_port): \
             run a DHCP client for {bridge} with {uplink}'s client identity"
        ));
        return Ok(());
    }
    if !ctx.settings.allow_expiring_lease {
        return Err(precondition(format!(
            "{what}. Give {uplink} static addresses (the lease's, reserved on the DHCP server), or \
             let systemd-networkd run its DHCP client (it is carried over to the bridge), or set \
             node.allow_expiring_lease = true (flag --allow-expiring-lease) and run a DHCP client \
             for {bridge} with {uplink}'s client identity yourself"
        )));
    }
    warnings.push(format!(
        "{what} (node.allow_expiring_lease): run a DHCP client for {bridge} with {uplink}'s \
         client identity; `persist` writes {uplink}'s config for the next boot, not the bridge's"
    ));
    Ok(())
}

/// NSX CNI gives pods `node.mtu` (ncp.ini `[nsx_node_agent] mtu`); their packets leave through
/// node-if, so one with a smaller MTU drops what pods send at full size. The node's own network
/// is not at stake, so this is a warning, not a refusal: refusing would keep OVS, and with it
/// every pod on the node, down over a setting that hurts only large packets.
pub fn mtu_warning(uplink: &str, uplink_mtu: u32, pod_mtu: u32) -> Option<String> {
    (uplink_mtu < pod_mtu).then(|| {
        format!(
            "{uplink} has MTU {uplink_mtu}, smaller than the {pod_mtu} NSX CNI gives pods \
             (node.mtu, ncp.ini [nsx_node_agent] mtu): pods' packets larger than {uplink_mtu} \
             bytes are dropped on the way out. Raise {uplink}'s MTU (the NSX segment must carry \
             it too) or set mtu = {uplink_mtu}"
        )
    })
}

/// The pid file of a DHCP client (dhclient, dhcpcd) that runs for the uplink, if any.
pub(super) fn client_pidfile(ctx: &Ctx, uplink: &str) -> Option<String> {
    [
        format!("/run/dhclient-{uplink}.pid"),
        format!("/var/run/dhclient-{uplink}.pid"),
        format!("/run/dhclient.{uplink}.pid"),
        format!("/run/dhcpcd-{uplink}.pid"),
        format!("/run/dhcpcd/{uplink}.pid"),
    ]
    .into_iter()
    .find(|p| ctx.host.exists(p).unwrap_or(false))
}

/// The uplink must be a NIC that can be an OVS port and carry the node's addresses.
pub(super) fn check_uplink(names: &Names, l: &crate::host::netlink::Link) -> Result<()> {
    let why = if l.loopback {
        Some("is the loopback device".to_string())
    } else {
        match l.kind.as_deref() {
            Some(k @ ("bridge" | "openvswitch")) => Some(format!("is a {k} device, not a NIC")),
            _ => None,
        }
    };
    match why {
        Some(why) => Err(input(format!(
            "node.uplink = `{}` {why}; the uplink is node-if, the NIC that carries the node's \
             address (ncp.ini [nsx_node_agent] ovs_uplink_port, or --uplink)",
            names.uplink
        ))),
        None => Ok(()),
    }
}

/// The kernel's limit on an interface name, and so on an address label (IFNAMSIZ less the NUL).
pub(super) const IFNAME_MAX: usize = 15;

/// An alias label moves with its address, its uplink prefix replaced by the bridge's
/// (`eth1:web` becomes `br-int:web`); one that would then be longer than an interface name is
/// refused by the kernel (ERANGE) in the middle of the move, so it is refused here, before
/// anything changes.
pub(super) fn check_labels(names: &Names, carried: &Carried) -> Result<()> {
    for a in &carried.addresses {
        let Some(label) = netmodel::address_label(a) else {
            continue;
        };
        let Some(rest) = label.strip_prefix(names.uplink.as_str()) else {
            continue;
        };
        let moved = format!("{}{rest}", names.bridge);
        if moved.len() > IFNAME_MAX {
            return Err(input(format!(
                "address {} on {} has the label {label:?}, which on {} would be {moved:?} ({} \
                 bytes; the kernel allows {IFNAME_MAX}): give it a label of at most {} bytes \
                 after the colon (`ip addr change` cannot rename a label: delete and add the \
                 address again), or drop it",
                netmodel::describe_address(a),
                names.uplink,
                names.bridge,
                moved.len(),
                IFNAME_MAX.saturating_sub(names.bridge.len() + 1),
            )));
        }
    }
    Ok(())
}

/// Routes that point at a nexthop object (`ip route … nhid N`, as FRR 8 and systemd-networkd's
/// `[NextHop]` install them) take their device from the object, not from the route: a copy of
/// the route on the bridge would still leave through node-if, and the kernel refuses one that
/// names both the object and a device (EINVAL). Moving the objects is not done; such routes are
/// refused by name before anything changes.
pub(super) fn check_nexthop_objects(names: &Names, carried: &Carried) -> Result<()> {
    use netlink_packet_route::route::RouteAttribute;
    let via_objects: Vec<String> = carried
        .routes
        .iter()
        .filter_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::NhId(id) => {
                    Some(format!("{} (nexthop id {id})", netmodel::describe_route(r)))
                }
                _ => None,
            })
        })
        .collect();
    if via_objects.is_empty() {
        return Ok(());
    }
    Err(input(format!(
        "{} carries route(s) through nexthop objects, which ncp-bootstrap does not move to {}: \
         {}. Configure them as plain routes (`ip route add … via GATEWAY dev {}`; in \
         systemd-networkd a [Route] Gateway= instead of NextHop=; in FRR without nexthop \
         groups), then attach again",
        names.uplink,
        names.bridge,
        via_objects.join(", "),
        names.uplink
    )))
}

/// A bridge link that exists must be OVS's own: an `openvswitch` internal device (kernel
/// datapath) or the tap device the userspace datapath uses. Attaching onto a plain NIC or a
/// Linux bridge would hand it the node's addresses.
pub(super) fn check_bridge(names: &Names, l: &crate::host::netlink::Link) -> Result<()> {
    if matches!(l.kind.as_deref(), Some("openvswitch" | "tun")) {
        return Ok(());
    }
    Err(input(format!(
        "node.bridge = `{}` names an existing {} that is not an OVS bridge; set node.bridge (or \
         --bridge) to the OVS integration bridge, br-int, or to a name that does not exist yet",
        names.bridge,
        match l.kind.as_deref() {
            Some(k) => format!("{k} device"),
            None => "network interface".to_string(),
        }
    )))
}

/// For health and status: what forwarding through the attached uplink needs and a restart of
/// `ovs run` can give back. Fails when the uplink or the bridge is down or without carrier
/// (the gateway is out of reach, whatever OVS says), or when the uplink holds an address the
/// attach recorded and moved (the re-attach of a restart moves it again). An address added to
/// the uplink after the attach is none of these: no restart moves it, so it must not fail a
/// liveness probe (which would restart nsx-ovs in a loop); it comes back as a note.
pub fn check_forwarding(host: &HostRoot, uplink: &str, bridge: &str) -> Result<Vec<String>> {
    let mut nl = Netlink::open()?;
    let link = nl
        .link(uplink)?
        .with_context(|| format!("{uplink} does not exist"))?;
    if !link.up {
        return Err(anyhow!(
            "{uplink} is down: nothing reaches the gateway through {bridge}; `ip link set \
             {uplink} up` (ovs run brings it up when it attaches)"
        ));
    }
    if !link.carrier {
        return Err(anyhow!(
            "{uplink} has no carrier: nothing reaches the gateway through {bridge}"
        ));
    }
    match nl.link(bridge)? {
        Some(b) if b.up => {}
        Some(_) => {
            return Err(anyhow!(
                "{bridge} is down: the node's addresses on it are unreachable"
            ))
        }
        None => return Err(anyhow!("{bridge} has no device: OVS has not created it")),
    }
    let ledger = Ledger::load(host)?;
    let recorded: Vec<_> = match ledger.uplink(uplink) {
        Some(pre) => pre
            .carried()?
            .addresses
            .iter()
            .map(netmodel::address_key)
            .collect(),
        None => Vec::new(),
    };
    let here = [End {
        index: link.index,
        name: uplink,
    }];
    let (moved, added): (Vec<_>, Vec<_>) = nl
        .addresses()?
        .into_iter()
        .filter(|a| a.header.index == link.index && netmodel::is_movable_address(a))
        .partition(|a| recorded.contains(&netmodel::address_key(a)));
    if !moved.is_empty() {
        let left: Vec<String> = moved
            .iter()
            .map(|a| named(&netmodel::describe_address(a), &here))
            .collect();
        return Err(anyhow!(
            "{uplink} still holds {} (the attach moves it to {bridge})",
            left.join(", ")
        ));
    }
    Ok(added
        .iter()
        .map(|a| {
            format!(
                "{} was added to {uplink} after the attach and stays there (no attach moves \
                 it): move it to {bridge} by hand, or detach and attach again",
                named(&netmodel::describe_address(a), &here)
            )
        })
        .collect())
}
