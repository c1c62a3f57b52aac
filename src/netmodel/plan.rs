//! The make-before-break move of what a link carries to another link.

use super::*;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::AddressFamily;
use std::net::IpAddr;

/// What belongs to a link and moves with it.
#[derive(Debug, Clone, Default)]
pub struct Carried {
    pub addresses: Vec<AddressMessage>,
    pub routes: Vec<RouteMessage>,
    pub rules: Vec<RuleMessage>,
}

/// Collects, from full dumps, what link `index` (named `name`) carries and must move.
pub fn carried_by(
    index: u32,
    name: &str,
    addrs: &[AddressMessage],
    routes: &[RouteMessage],
    rules: &[RuleMessage],
) -> Carried {
    Carried {
        addresses: addrs
            .iter()
            .filter(|a| a.header.index == index && is_movable_address(a))
            .cloned()
            .collect(),
        routes: {
            let link_addrs: Vec<&AddressMessage> =
                addrs.iter().filter(|a| a.header.index == index).collect();
            routes
                .iter()
                .filter(|r| route_uses(r, index) && !kernel_remakes(r, &link_addrs))
                .cloned()
                .collect()
        },
        rules: rules
            .iter()
            .filter(|r| rule_names(r, name))
            .cloned()
            .collect(),
    }
}

impl Carried {
    /// The same addresses, routes and rules rewritten from link `from` onto link `to`.
    pub fn moved(&self, from: End, to: End) -> Carried {
        Carried {
            addresses: self
                .addresses
                .iter()
                .map(|a| address_on(a, to.index, from.name, to.name))
                .collect(),
            routes: self
                .routes
                .iter()
                .map(|r| route_on(r, from.index, to.index))
                .collect(),
            rules: self
                .rules
                .iter()
                .map(|r| rule_on(r, from.name, to.name))
                .collect(),
        }
    }
}

/// A link as the planner needs it.
#[derive(Debug, Clone, Copy)]
pub struct End<'a> {
    pub index: u32,
    pub name: &'a str,
}

/// The ordered operations that make `to` carry `what` (which is, or was, on `from`) and `from`
/// carry none of it, given the live dumps. Make-before-break: every address is on `to` before
/// any route moves, every route is swapped in one step (`NLM_F_REPLACE`), routes without a
/// gateway go before those that need one, rules are added before the old ones go, and the old
/// addresses leave last, IPv4 secondaries before their primary (deleting a primary first would
/// take its secondaries with it). Ops already satisfied by the live state are left out, so a
/// converged host yields an empty list and a crashed run resumes where it stopped.
pub fn plan_move(
    what: &Carried,
    from: End,
    to: End,
    live_addrs: &[AddressMessage],
    live_routes: &[RouteMessage],
    live_rules: &[RuleMessage],
) -> Vec<Op> {
    let mut ops = Vec::new();
    // IPv6 addresses go over without DAD; their own flags are put back once the old copies are
    // gone (a flag change does not start DAD).
    let mut reflag = Vec::new();
    let on_to: std::collections::HashMap<_, &AddressMessage> = live_addrs
        .iter()
        .filter(|l| l.header.index == to.index)
        .map(|l| (address_key(l), l))
        .collect();
    let deleted = deleted_meanwhile(what, from, to, live_addrs);
    for a in what
        .addresses
        .iter()
        .filter(|a| !deleted.contains(&address_key(a)))
    {
        let moved = address_on(a, to.index, from.name, to.name);
        let live = on_to.get(&address_key(a)).copied();
        let v6 = a.header.family == AddressFamily::Inet6 && !has_nodad(a);
        match live {
            None if v6 => {
                ops.push(Op::AddAddress(without_dad(&moved)));
                reflag.push(Op::AddAddress(moved));
            }
            None => ops.push(Op::AddAddress(moved)),
            Some(l) if v6 && has_nodad(l) => reflag.push(Op::AddAddress(moved)),
            Some(_) => {}
        }
    }
    // Keys of the routes already where they should be: one pass, so that 10 000 routes plan
    // in linear time.
    let done: std::collections::HashSet<_> = live_routes
        .iter()
        .filter(|l| route_uses(l, to.index) && !route_uses(l, from.index))
        .map(route_key)
        .collect();
    let mut routes: Vec<RouteMessage> = what
        .routes
        .iter()
        .map(|r| route_on(r, from.index, to.index))
        .filter(|r| !done.contains(&route_key(r)))
        .collect();
    // Stable: on-link routes first, then gateway routes, each in dump order.
    routes.sort_by_key(|r| route_gateway(r).is_some());
    ops.extend(routes.into_iter().map(Op::ReplaceRoute));
    // A route that is already on `to` while `from` still has its copy: put there by someone
    // else meanwhile (a network manager given the link back configures it again). A replace
    // would be refused (EEXIST: the kernel keeps both copies when one was appended), so the old
    // copy goes once the new one is in place.
    ops.extend(
        what.routes
            .iter()
            .filter(|r| done.contains(&route_key(&route_on(r, from.index, to.index))))
            .flat_map(|r| {
                live_routes
                    .iter()
                    .filter(|l| route_uses(l, from.index) && route_key(l) == route_key(r))
            })
            .cloned()
            .map(Op::DelRoute),
    );
    let live = |x: &RuleMessage| live_rules.iter().any(|l| rule_key(l) == rule_key(x));
    for r in &what.rules {
        let moved = rule_on(r, from.name, to.name);
        if !live(&moved) {
            ops.push(Op::AddRule(moved));
        }
        if live(r) {
            ops.push(Op::DelRule(r.clone()));
        }
    }
    let mut dels: Vec<&AddressMessage> = live_addrs
        .iter()
        .filter(|l| l.header.index == from.index)
        .filter(|l| {
            what.addresses
                .iter()
                .any(|a| address_key(a) == address_key(l))
        })
        .collect();
    dels.sort_by_key(|l| !is_secondary(l));
    ops.extend(dels.into_iter().cloned().map(Op::DelAddress));
    ops.extend(reflag);
    ops
}

/// What a link carries `now` beyond what was `recorded` for it (added after an attach, by an
/// operator or another tool): static addresses, routes and rules. What the kernel makes by
/// itself (addresses and routes from router advertisements, which expire) is left out: it makes
/// them again on whichever link it then serves.
pub fn added_since(recorded: &Carried, now: &Carried) -> Carried {
    let addr_keys: std::collections::HashSet<_> =
        recorded.addresses.iter().map(address_key).collect();
    let route_keys: std::collections::HashSet<_> = recorded.routes.iter().map(route_key).collect();
    let rule_keys: std::collections::HashSet<_> = recorded.rules.iter().map(rule_key).collect();
    Carried {
        addresses: now
            .addresses
            .iter()
            .filter(|a| !is_dynamic(a) && !addr_keys.contains(&address_key(a)))
            .cloned()
            .collect(),
        routes: now
            .routes
            .iter()
            .filter(|r| {
                r.header.protocol != netlink_packet_route::route::RouteProtocol::Ra
                    && !route_keys.contains(&route_key(r))
            })
            .cloned()
            .collect(),
        rules: now
            .rules
            .iter()
            .filter(|r| !rule_keys.contains(&rule_key(r)))
            .cloned()
            .collect(),
    }
}

impl Carried {
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.routes.is_empty() && self.rules.is_empty()
    }

    /// Everything of `self`, then everything of `more`.
    pub fn with(mut self, more: Carried) -> Carried {
        self.addresses.extend(more.addresses);
        self.routes.extend(more.routes);
        self.rules.extend(more.rules);
        self
    }

    /// One line per item, for plans and notes.
    pub fn describe(&self) -> Vec<String> {
        self.addresses
            .iter()
            .map(describe_address)
            .chain(self.routes.iter().map(describe_route))
            .chain(self.rules.iter().map(describe_rule))
            .collect()
    }
}

/// Whether the host's own network configuration put the uplink's addresses back on it since the
/// attach recorded `recorded` (as it was on the uplink), routing otherwise: after a reboot
/// (NetworkManager, systemd-networkd or ifupdown configure node-if before OVS runs) or after
/// the monitor gave the addresses back. Then the uplink's live set, `on_uplink`, is what moves,
/// not the record: NetworkManager makes its addresses `noprefixroute` with prefix routes of
/// metric 100 where a record taken from an address moved by hand had the kernel's, and a
/// record-driven move would leave the live prefix routes behind on node-if, where they shadow
/// the bridge's.
///
/// Not while the bridge holds any recorded address (a move under way: its record is the truth),
/// nor while the uplink holds no movable address (nothing configured it yet: the record is put
/// back), nor when the two route alike (`shape`).
pub fn configured_again(
    recorded: &Carried,
    bridge_index: u32,
    live_addrs: &[AddressMessage],
    on_uplink: &Carried,
) -> bool {
    let recorded_keys: std::collections::HashSet<_> =
        recorded.addresses.iter().map(address_key).collect();
    let on_bridge = live_addrs
        .iter()
        .any(|l| l.header.index == bridge_index && recorded_keys.contains(&address_key(l)));
    !on_bridge && !on_uplink.addresses.is_empty() && shape(on_uplink) != shape(recorded)
}

/// A carried set as the kernel routes by it: each address's identity and whether the kernel
/// makes its prefix route (`noprefixroute`), each route's and rule's identity. Equal shapes
/// move alike; what they leave out (lifetimes, labels, `nodad`, a route's `onlink`) is no
/// reason to set a record aside.
pub fn shape(c: &Carried) -> Vec<String> {
    let mut lines: Vec<String> = c
        .addresses
        .iter()
        .map(|a| format!("{:?} {}", address_key(a), has_noprefixroute(a)))
        .chain(c.routes.iter().map(|r| format!("{:?}", route_key(r))))
        .chain(c.rules.iter().map(rule_key))
        .collect();
    lines.sort();
    lines
}

/// The carried addresses someone deleted meanwhile: on neither link, while others of them are
/// on one. The move adds each address to `to` before it deletes it from `from`, so an address
/// is never on neither link because of us; one that is was deleted (during an attach, or from
/// the bridge while attached), and moving it would bring it back. When none is on either link
/// the links lost them all (a reboot, a userspace bridge gone with its switch): everything
/// recorded is put back.
pub fn deleted_meanwhile(
    what: &Carried,
    from: End,
    to: End,
    live_addrs: &[AddressMessage],
) -> Vec<(u8, Option<IpAddr>, u8)> {
    let on_either: std::collections::HashSet<_> = live_addrs
        .iter()
        .filter(|l| l.header.index == from.index || l.header.index == to.index)
        .map(address_key)
        .collect();
    let missing: Vec<_> = what
        .addresses
        .iter()
        .map(address_key)
        .filter(|k| !on_either.contains(k))
        .collect();
    if missing.len() == what.addresses.len() {
        Vec::new()
    } else {
        missing
    }
}

/// The default gateways of the carried routes (IPv4 first): what the `gateway` probe pings.
pub fn default_gateways(what: &Carried) -> Vec<IpAddr> {
    let mut gws: Vec<IpAddr> = what
        .routes
        .iter()
        .filter(|r| r.header.destination_prefix_length == 0 && route_table(r) == RT_TABLE_MAIN)
        .filter_map(|r| route_gateway(r)?.parse().ok())
        .collect();
    gws.sort_by_key(|g| g.is_ipv6());
    gws
}
