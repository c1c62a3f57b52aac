//! Attributes of addresses, routes and rules: what they are, whom they belong to, and the
//! same object rewritten for another link.

use super::*;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use std::net::IpAddr;

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

pub(super) fn has_nodad(a: &AddressMessage) -> bool {
    a.header.flags.contains(AddressHeaderFlags::Nodad)
        || a.attributes
            .iter()
            .any(|x| matches!(x, AddressAttribute::Flags(f) if f.contains(AddressFlags::Nodad)))
}

/// The same address with duplicate address detection off. An address that moves between two
/// links of one host is known to be ours; DAD would leave it tentative (unusable) on the new
/// link for a second or more, which is an outage for IPv6.
pub(super) fn without_dad(a: &AddressMessage) -> AddressMessage {
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

pub(super) fn route_addr(
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

pub(super) fn has_noprefixroute(a: &AddressMessage) -> bool {
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

pub(super) fn network(ip: IpAddr, len: u8) -> IpAddr {
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
pub(super) fn kernel_remakes(r: &RouteMessage, link_addrs: &[&AddressMessage]) -> bool {
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

pub(super) fn rule_key(r: &RuleMessage) -> String {
    let mut m = r.clone();
    m.attributes.sort_by_key(|a| format!("{a:?}"));
    format!("{:?}{:?}", m.header, m.attributes)
}
