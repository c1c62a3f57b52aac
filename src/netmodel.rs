//! Pure logic over netlink messages: which addresses, routes and rules belong to a link, how to
//! describe them, how to store them in the ledger byte for byte, and the ordered list of
//! operations that moves them from one link to another make-before-break. No I/O: tested
//! without root.

use crate::host::netlink::Op;
use netlink_packet_core::{Emitable, Parseable};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

pub const RT_TABLE_LOCAL: u32 = 255;
/// Valid lifetime the kernel reports for a permanent address.
pub const FOREVER: u32 = u32::MAX;

/// A netlink object as the ledger keeps it: its exact bytes (so that a restore preserves every
/// attribute, known to this build or not) and a line for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub summary: String,
    pub raw: String,
}

fn to_hex<T: Emitable>(m: &T) -> String {
    let mut buf = vec![0u8; m.buffer_len()];
    m.emit(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn record_address(a: &AddressMessage) -> Recorded {
    Recorded {
        summary: describe_address(a),
        raw: to_hex(a),
    }
}

pub fn record_route(r: &RouteMessage) -> Recorded {
    Recorded {
        summary: describe_route(r),
        raw: to_hex(r),
    }
}

pub fn record_rule(r: &RuleMessage) -> Recorded {
    Recorded {
        summary: describe_rule(r),
        raw: to_hex(r),
    }
}

pub fn restore_address(r: &Recorded) -> Option<AddressMessage> {
    AddressMessage::parse(&from_hex(&r.raw)?[..]).ok()
}

pub fn restore_route(r: &Recorded) -> Option<RouteMessage> {
    RouteMessage::parse(&from_hex(&r.raw)?[..]).ok()
}

pub fn restore_rule(r: &Recorded) -> Option<RuleMessage> {
    RuleMessage::parse(&from_hex(&r.raw)?[..]).ok()
}

// ---- addresses

pub fn address_ip(a: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS otherwise.
    a.attributes
        .iter()
        .find_map(|x| match x {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        })
        .or_else(|| {
            a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        })
}

pub fn address_label(a: &AddressMessage) -> Option<&str> {
    a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Label(l) => Some(l.as_str()),
        _ => None,
    })
}

/// Valid and preferred lifetime in seconds (`FOREVER` for permanent).
pub fn lifetimes(a: &AddressMessage) -> (u32, u32) {
    a.attributes
        .iter()
        .find_map(|x| match x {
            AddressAttribute::CacheInfo(c) => Some((c.ifa_valid, c.ifa_preferred)),
            _ => None,
        })
        .unwrap_or((FOREVER, FOREVER))
}

pub fn is_dynamic(a: &AddressMessage) -> bool {
    lifetimes(a).0 != FOREVER
}

/// Addresses we move: not link-local (fe80::/10 and other link-scope ones stay with the NIC).
pub fn is_movable_address(a: &AddressMessage) -> bool {
    a.header.scope != AddressScope::Link && a.header.scope != AddressScope::Host
}

fn has_nodad(a: &AddressMessage) -> bool {
    a.header.flags.contains(AddressHeaderFlags::Nodad)
        || a.attributes
            .iter()
            .any(|x| matches!(x, AddressAttribute::Flags(f) if f.contains(AddressFlags::Nodad)))
}

/// The same address with duplicate address detection off. An address that moves between two
/// links of one host is known to be ours; DAD would leave it tentative (unusable) on the new
/// link for a second or more, which is an outage for IPv6.
fn without_dad(a: &AddressMessage) -> AddressMessage {
    let mut m = a.clone();
    m.header.flags.insert(AddressHeaderFlags::Nodad);
    let mut found = false;
    for x in m.attributes.iter_mut() {
        if let AddressAttribute::Flags(f) = x {
            f.insert(AddressFlags::Nodad);
            found = true;
        }
    }
    if !found {
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    m
}

pub fn is_secondary(a: &AddressMessage) -> bool {
    a.header.flags.contains(AddressHeaderFlags::Secondary)
}

/// Identity of an address on a link: family, address, prefix length.
pub fn address_key(a: &AddressMessage) -> (u8, Option<IpAddr>, u8) {
    (
        u8::from(a.header.family),
        address_ip(a),
        a.header.prefix_len,
    )
}

pub fn describe_address(a: &AddressMessage) -> String {
    let ip = address_ip(a).map_or("?".to_string(), |i| i.to_string());
    let mut s = format!("{ip}/{} dev#{}", a.header.prefix_len, a.header.index);
    if let Some(l) = address_label(a) {
        s.push_str(&format!(" label {l}"));
    }
    if is_secondary(a) {
        s.push_str(" secondary");
    }
    let (valid, preferred) = lifetimes(a);
    if valid != FOREVER {
        s.push_str(&format!(" valid_lft {valid}s preferred_lft {preferred}s"));
    }
    s
}

/// The address as it must be sent to put it on another link: new index, and the label
/// renamed when it carried the old link's name (`eth1:0` → `br-int:0`), since the kernel
/// refuses a label that does not start with the link's name.
pub fn address_on(
    a: &AddressMessage,
    index: u32,
    from_name: &str,
    to_name: &str,
) -> AddressMessage {
    let mut m = a.clone();
    m.header.index = index;
    for attr in m.attributes.iter_mut() {
        if let AddressAttribute::Label(l) = attr {
            if let Some(rest) = l.strip_prefix(from_name) {
                *l = format!("{to_name}{rest}");
            }
        }
    }
    // Secondary is the kernel's verdict, not a request.
    m.header.flags.remove(AddressHeaderFlags::Secondary);
    m
}

// ---- routes

pub fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

pub fn route_oif(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

fn route_addr(
    r: &RouteMessage,
    pick: fn(&RouteAttribute) -> Option<&RouteAddress>,
) -> Option<String> {
    r.attributes.iter().find_map(pick).map(|a| match a {
        RouteAddress::Inet(v4) => v4.to_string(),
        RouteAddress::Inet6(v6) => v6.to_string(),
        other => format!("{other:?}"),
    })
}

pub fn route_gateway(r: &RouteMessage) -> Option<String> {
    route_addr(r, |a| match a {
        RouteAttribute::Gateway(g) => Some(g),
        _ => None,
    })
}

pub fn route_priority(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

/// Whether a route uses the link: as its output device or in any multipath hop.
pub fn route_uses(r: &RouteMessage, index: u32) -> bool {
    r.attributes.iter().any(|a| match a {
        RouteAttribute::Oif(i) => *i == index,
        RouteAttribute::MultiPath(hops) => hops.iter().any(|h| h.interface_index == index),
        _ => false,
    })
}

fn has_noprefixroute(a: &AddressMessage) -> bool {
    a.attributes
        .iter()
        .any(|x| matches!(x, AddressAttribute::Flags(f) if f.contains(AddressFlags::Noprefixroute)))
}

/// The destination of a route as an address (`None` for a default route).
pub fn route_dst(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })
}

fn network(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// Whether the kernel remakes this route on its own once the link's addresses are in place (then
/// it is not copied: adding the address to the new link creates it there):
/// the local table, IPv6 link-local prefixes (made per link), and the prefix route of an address
/// added without `noprefixroute`. NetworkManager adds its addresses with `noprefixroute` and the
/// prefix routes itself (protocol kernel, metric 100): those the kernel never remakes, so they
/// move like any other route, or the bridge would carry an address whose subnet it cannot reach.
fn kernel_remakes(r: &RouteMessage, link_addrs: &[&AddressMessage]) -> bool {
    if route_table(r) == RT_TABLE_LOCAL {
        return true;
    }
    if r.header.protocol != RouteProtocol::Kernel {
        return false;
    }
    let len = r.header.destination_prefix_length;
    let Some(dst) = route_dst(r) else {
        return false;
    };
    if let IpAddr::V6(v6) = dst {
        if len == 64 && v6.segments()[0] == 0xfe80 {
            return true;
        }
    }
    link_addrs.iter().any(|a| {
        a.header.prefix_len == len
            && !has_noprefixroute(a)
            && address_ip(a).is_some_and(|ip| network(ip, len) == dst)
    })
}

/// Identity of a route in the kernel's eyes: what `NLM_F_REPLACE` matches on.
pub fn route_key(r: &RouteMessage) -> (u8, u32, Option<String>, u8, u8, u32) {
    let dst = route_addr(r, |a| match a {
        RouteAttribute::Destination(d) => Some(d),
        _ => None,
    });
    (
        u8::from(r.header.address_family),
        route_table(r),
        dst,
        r.header.destination_prefix_length,
        r.header.tos,
        route_priority(r),
    )
}

pub fn describe_route(r: &RouteMessage) -> String {
    let dst = route_addr(r, |a| match a {
        RouteAttribute::Destination(d) => Some(d),
        _ => None,
    })
    .map_or("default".to_string(), |d| {
        format!("{d}/{}", r.header.destination_prefix_length)
    });
    let mut s = dst;
    if let Some(g) = route_gateway(r) {
        s.push_str(&format!(" via {g}"));
    }
    if let Some(o) = route_oif(r) {
        s.push_str(&format!(" dev#{o}"));
    }
    for a in &r.attributes {
        if let RouteAttribute::MultiPath(hops) = a {
            let h: Vec<String> = hops
                .iter()
                .map(|h| format!("dev#{}", h.interface_index))
                .collect();
            s.push_str(&format!(" nexthops [{}]", h.join(" ")));
        }
    }
    if let Some(src) = route_addr(r, |a| match a {
        RouteAttribute::PrefSource(p) => Some(p),
        _ => None,
    }) {
        s.push_str(&format!(" src {src}"));
    }
    let t = route_table(r);
    if t != 254 {
        s.push_str(&format!(" table {t}"));
    }
    let p = route_priority(r);
    if p != 0 {
        s.push_str(&format!(" metric {p}"));
    }
    s.push_str(
        &format!(" proto {:?} scope {:?}", r.header.protocol, r.header.scope).to_lowercase(),
    );
    s
}

/// The route with every use of link `from` replaced by `to`. Attributes the kernel reports
/// but refuses or ignores on input (cache info, expiry of a cloned entry) are dropped.
pub fn route_on(r: &RouteMessage, from: u32, to: u32) -> RouteMessage {
    let mut m = r.clone();
    m.attributes
        .retain(|a| !matches!(a, RouteAttribute::CacheInfo(_)));
    for a in m.attributes.iter_mut() {
        match a {
            RouteAttribute::Oif(i) if *i == from => *i = to,
            RouteAttribute::MultiPath(hops) => {
                for h in hops.iter_mut().filter(|h| h.interface_index == from) {
                    h.interface_index = to;
                }
            }
            _ => {}
        }
    }
    m
}

// ---- rules

pub fn rule_names(r: &RuleMessage, name: &str) -> bool {
    r.attributes.iter().any(|a| match a {
        RuleAttribute::Iifname(n) | RuleAttribute::Oifname(n) => n == name,
        _ => false,
    })
}

pub fn rule_on(r: &RuleMessage, from: &str, to: &str) -> RuleMessage {
    let mut m = r.clone();
    for a in m.attributes.iter_mut() {
        match a {
            RuleAttribute::Iifname(n) | RuleAttribute::Oifname(n) if n == from => {
                *n = to.to_string()
            }
            _ => {}
        }
    }
    m
}

pub fn describe_rule(r: &RuleMessage) -> String {
    let mut parts = vec![format!("{:?}", r.header.family).to_lowercase()];
    for a in &r.attributes {
        match a {
            RuleAttribute::Priority(p) => parts.push(format!("pref {p}")),
            RuleAttribute::Iifname(n) => parts.push(format!("iif {n}")),
            RuleAttribute::Oifname(n) => parts.push(format!("oif {n}")),
            RuleAttribute::Source(s) => parts.push(format!("from {s}/{}", r.header.src_len)),
            RuleAttribute::Destination(d) => parts.push(format!("to {d}/{}", r.header.dst_len)),
            RuleAttribute::Table(t) => parts.push(format!("lookup {t}")),
            _ => {}
        }
    }
    parts.join(" ")
}

fn rule_key(r: &RuleMessage) -> String {
    let mut m = r.clone();
    m.attributes.sort_by_key(|a| format!("{a:?}"));
    format!("{:?}{:?}", m.header, m.attributes)
}

// ---- the move

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
    for a in &what.addresses {
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

/// The default gateways of the carried routes (IPv4 first): what the `gateway` probe pings.
pub fn default_gateways(what: &Carried) -> Vec<IpAddr> {
    let mut gws: Vec<IpAddr> = what
        .routes
        .iter()
        .filter(|r| r.header.destination_prefix_length == 0 && route_table(r) == 254)
        .filter_map(|r| route_gateway(r)?.parse().ok())
        .collect();
    gws.sort_by_key(|g| g.is_ipv6());
    gws
}

pub fn family_name(f: AddressFamily) -> &'static str {
    match f {
        AddressFamily::Inet => "inet",
        AddressFamily::Inet6 => "inet6",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::address::CacheInfo;
    use netlink_packet_route::route::RouteScope;
    use std::net::Ipv4Addr;

    fn addr(index: u32, ip: &str, len: u8, secondary: bool) -> AddressMessage {
        let mut a = AddressMessage::default();
        let ip: IpAddr = ip.parse().unwrap();
        a.header.family = if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        a.header.index = index;
        a.header.prefix_len = len;
        a.header.scope = AddressScope::Universe;
        if secondary {
            a.header.flags = AddressHeaderFlags::Secondary;
        }
        a.attributes.push(AddressAttribute::Address(ip));
        a.attributes.push(AddressAttribute::Local(ip));
        a.attributes.push(AddressAttribute::Label("eth1:0".into()));
        let mut c = CacheInfo::default();
        c.ifa_preferred = FOREVER;
        c.ifa_valid = FOREVER;
        a.attributes.push(AddressAttribute::CacheInfo(c));
        a
    }

    fn route(
        oif: u32,
        dst: Option<(&str, u8)>,
        gw: Option<&str>,
        table: u32,
        metric: u32,
    ) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.table = if table < 256 { table as u8 } else { 252 };
        r.header.protocol = RouteProtocol::Static;
        r.header.scope = if gw.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if let Some((d, l)) = dst {
            r.header.destination_prefix_length = l;
            r.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(
                    d.parse::<Ipv4Addr>().unwrap(),
                )));
        }
        if let Some(g) = gw {
            r.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(
                    g.parse().unwrap(),
                )));
        }
        r.attributes.push(RouteAttribute::Table(table));
        if metric > 0 {
            r.attributes.push(RouteAttribute::Priority(metric));
        }
        r.attributes.push(RouteAttribute::Oif(oif));
        r
    }

    const ETH: End = End {
        index: 2,
        name: "eth1",
    };
    const BR: End = End {
        index: 9,
        name: "br-int",
    };

    #[test]
    fn attach_order_is_make_before_break() {
        let addrs = vec![
            addr(2, "10.0.0.5", 24, false),
            addr(2, "10.0.0.6", 24, true),
        ];
        let routes = vec![
            route(2, None, Some("10.0.0.1"), 254, 0),
            route(2, Some(("172.16.9.0", 24)), None, 254, 0),
            route(2, Some(("192.168.50.0", 24)), Some("10.0.0.1"), 100, 50),
        ];
        let what = carried_by(2, "eth1", &addrs, &routes, &[]);
        let ops = plan_move(&what, ETH, BR, &addrs, &routes, &[]);
        let kinds: Vec<String> = ops
            .iter()
            .map(|o| format!("{} {}", o.verb(), crate::host::netlink::describe_op(o)))
            .collect();
        assert_eq!(kinds.len(), 7, "{kinds:#?}");
        assert!(
            kinds[0].starts_with("add address 10.0.0.5/24 dev#9 label br-int:0"),
            "{kinds:#?}"
        );
        assert!(kinds[1].starts_with("add address 10.0.0.6/24 dev#9"));
        assert!(
            kinds[2].starts_with("replace route 172.16.9.0/24 dev#9"),
            "on-link first: {kinds:#?}"
        );
        assert!(kinds[3].starts_with("replace route default via 10.0.0.1 dev#9"));
        assert!(kinds[4].contains("table 100 metric 50"));
        assert!(
            kinds[5].starts_with("delete address 10.0.0.6/24 dev#2"),
            "secondary first: {kinds:#?}"
        );
        assert!(kinds[6].starts_with("delete address 10.0.0.5/24 dev#2"));
    }

    #[test]
    fn converged_state_plans_nothing_and_a_half_move_resumes() {
        let pre_addrs = vec![addr(2, "10.0.0.5", 24, false)];
        let pre_routes = vec![route(2, None, Some("10.0.0.1"), 254, 0)];
        let what = carried_by(2, "eth1", &pre_addrs, &pre_routes, &[]);
        // Done: everything on the bridge.
        let live_a = vec![addr(9, "10.0.0.5", 24, false)];
        let live_r = vec![route(9, None, Some("10.0.0.1"), 254, 0)];
        assert!(plan_move(&what, ETH, BR, &live_a, &live_r, &[]).is_empty());
        // Crashed after the addresses were added: the route and the delete remain.
        let live_a = vec![
            addr(2, "10.0.0.5", 24, false),
            addr(9, "10.0.0.5", 24, false),
        ];
        let ops = plan_move(&what, ETH, BR, &live_a, &pre_routes, &[]);
        assert_eq!(ops.len(), 2);
        assert!(matches!(ops[0], Op::ReplaceRoute(_)));
        assert!(matches!(ops[1], Op::DelAddress(_)));
    }

    #[test]
    fn kernel_routes_and_link_local_addresses_stay() {
        let mut ll = addr(2, "fe80::1", 64, false);
        ll.header.scope = AddressScope::Link;
        let mut prefix = route(2, Some(("10.0.0.0", 24)), None, 254, 0);
        prefix.header.protocol = RouteProtocol::Kernel;
        let local = route(2, Some(("10.0.0.5", 32)), None, RT_TABLE_LOCAL, 0);
        let what = carried_by(
            2,
            "eth1",
            &[ll.clone()],
            &[prefix.clone(), local.clone()],
            &[],
        );
        // No address makes the prefix route here, yet it is the kernel's: it still moves only
        // when an address it belongs to is `noprefixroute` (below).
        assert!(what.addresses.is_empty() && what.routes.len() == 1);
        let v4 = addr(2, "10.0.0.5", 24, false);
        let what = carried_by(2, "eth1", &[ll, v4], &[prefix, local], &[]);
        assert!(what.routes.is_empty());
        let mut ll6 = route(2, None, None, 254, 256);
        ll6.header.address_family = AddressFamily::Inet6;
        ll6.header.protocol = RouteProtocol::Kernel;
        ll6.header.destination_prefix_length = 64;
        ll6.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet6(
                "fe80::".parse().unwrap(),
            )));
        assert!(carried_by(2, "eth1", &[], &[ll6], &[]).routes.is_empty());
    }

    #[test]
    fn prefix_routes_of_noprefixroute_addresses_move() {
        // NetworkManager's way: the address without a kernel prefix route, the route its own.
        let mut a = addr(2, "192.168.76.10", 24, false);
        a.attributes.push(AddressAttribute::Flags(
            AddressFlags::Permanent | AddressFlags::Noprefixroute,
        ));
        let mut prefix = route(2, Some(("192.168.76.0", 24)), None, 254, 100);
        prefix.header.protocol = RouteProtocol::Kernel;
        let what = carried_by(2, "eth1", &[a], &[prefix], &[]);
        assert_eq!(what.routes.len(), 1);
        assert_eq!(route_priority(&what.routes[0]), 100);
    }

    #[test]
    fn ipv6_moves_without_dad_then_gets_its_flags_back() {
        let mut v6 = addr(2, "fd00::5", 64, false);
        v6.attributes
            .retain(|a| !matches!(a, AddressAttribute::Label(_)));
        let what = carried_by(2, "eth1", &[v6.clone()], &[], &[]);
        let ops = plan_move(&what, ETH, BR, &[v6.clone()], &[], &[]);
        assert_eq!(ops.len(), 3);
        assert!(matches!(&ops[0], Op::AddAddress(m) if has_nodad(m)));
        assert!(matches!(&ops[1], Op::DelAddress(_)));
        assert!(matches!(&ops[2], Op::AddAddress(m) if !has_nodad(m) && m.header.index == 9));
        // Crashed before the flags came back: only that is left.
        let on_br = without_dad(&address_on(&v6, 9, "eth1", "br-int"));
        let ops = plan_move(&what, ETH, BR, &[on_br], &[], &[]);
        assert_eq!(ops.len(), 1);
        assert!(matches!(&ops[0], Op::AddAddress(m) if !has_nodad(m)));
    }

    #[test]
    fn records_round_trip_byte_for_byte() {
        let a = addr(2, "fd00::5", 64, false);
        assert_eq!(restore_address(&record_address(&a)).unwrap(), a);
        let r = route(2, Some(("192.168.50.0", 24)), Some("10.0.0.1"), 100, 50);
        assert_eq!(restore_route(&record_route(&r)).unwrap(), r);
        assert!(restore_route(&Recorded {
            summary: String::new(),
            raw: "zz".into()
        })
        .is_none());
    }

    #[test]
    fn gateway_probe_targets() {
        let routes = vec![
            route(2, None, Some("10.0.0.1"), 254, 0),
            route(2, None, Some("10.9.9.9"), 100, 0),
        ];
        let what = carried_by(2, "eth1", &[], &routes, &[]);
        assert_eq!(
            default_gateways(&what),
            vec!["10.0.0.1".parse::<IpAddr>().unwrap()]
        );
    }
}
