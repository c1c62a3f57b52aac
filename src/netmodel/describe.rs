//! One line per netlink object, for people (reports, errors, the ledger).

use super::*;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};

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
    if t != RT_TABLE_MAIN {
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
