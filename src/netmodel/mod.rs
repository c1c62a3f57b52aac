//! Pure logic over netlink messages: which addresses, routes and rules belong to a link, how to
//! describe them, how to store them in the ledger byte for byte, and the ordered list of
//! operations that moves them from one link to another make-before-break. No I/O: tested
//! without root.

mod attrs;
mod describe;
mod plan;
mod record;

pub use attrs::*;
pub use describe::*;
pub use plan::*;
pub use record::*;

use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::rule::RuleMessage;

/// The kernel's main route table (`ip route` without `table`).
pub const RT_TABLE_MAIN: u32 = 254;
/// The kernel's local table (addresses of this host; the kernel keeps it).
pub const RT_TABLE_LOCAL: u32 = 255;
/// Valid lifetime the kernel reports for a permanent address.
pub const FOREVER: u32 = u32::MAX;

/// An interface index no link has (the kernel counts from 1 and never reaches it): stands in
/// for a link that does not exist, so that a plan for it moves nothing from it.
pub const NO_LINK: u32 = u32::MAX;

/// Make before break: a planned move's ops split where the first removal is. The kernel handles
/// every message of a batch even after one fails, so the removals go in a second batch, sent
/// only when everything before them took effect: an address the bridge refused (IPv6 off on it)
/// is then never deleted from the uplink.
pub fn make_then_break(ops: &[Op]) -> (&[Op], &[Op]) {
    ops.split_at(ops.iter().position(Op::is_removal).unwrap_or(ops.len()))
}

/// One change to the kernel's addresses, routes or rules, sent as part of a batch.
#[derive(Debug, Clone)]
pub enum Op {
    AddAddress(AddressMessage),
    DelAddress(AddressMessage),
    /// Creates the route, or swaps the existing one with the same key in one step.
    ReplaceRoute(RouteMessage),
    DelRoute(RouteMessage),
    AddRule(RuleMessage),
    DelRule(RuleMessage),
}

impl Op {
    /// Whether the op takes something away (from the link being left).
    pub fn is_removal(&self) -> bool {
        matches!(self, Op::DelAddress(_) | Op::DelRoute(_) | Op::DelRule(_))
    }

    pub fn verb(&self) -> &'static str {
        match self {
            Op::AddAddress(_) => "add address",
            Op::DelAddress(_) => "delete address",
            Op::ReplaceRoute(_) => "replace route",
            Op::DelRoute(_) => "delete route",
            Op::AddRule(_) => "add rule",
            Op::DelRule(_) => "delete rule",
        }
    }

    /// What the op does, for people: `add address 10.0.0.5/24 dev#9`.
    pub fn describe(&self) -> String {
        let what = match self {
            Op::AddAddress(a) | Op::DelAddress(a) => describe_address(a),
            Op::ReplaceRoute(r) | Op::DelRoute(r) => describe_route(r),
            Op::AddRule(r) | Op::DelRule(r) => describe_rule(r),
        };
        format!("{} {what}", self.verb())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use netlink_packet_route::address::CacheInfo;
    use netlink_packet_route::address::{
        AddressAttribute, AddressFlags, AddressHeaderFlags, AddressScope,
    };
    use netlink_packet_route::route::RouteScope;
    use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol};
    use netlink_packet_route::AddressFamily;
    use std::net::IpAddr;
    use std::net::Ipv4Addr;

    pub(crate) fn addr(index: u32, ip: &str, len: u8, secondary: bool) -> AddressMessage {
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

    pub(crate) fn route(
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
        let kinds: Vec<String> = ops.iter().map(Op::describe).collect();
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
    fn a_route_someone_put_back_meanwhile_is_not_replaced_and_the_old_copy_goes() {
        let pre_addrs = vec![addr(2, "10.0.0.5", 24, false)];
        let pre_routes = vec![route(2, None, Some("10.0.0.1"), 254, 0)];
        let what = carried_by(2, "eth1", &pre_addrs, &pre_routes, &[]);
        // Attached, then a network manager configured the bridge's route on eth1 again: both
        // copies live. A replace would be refused (EEXIST); br-int's copy is deleted instead.
        let live_a = vec![addr(9, "10.0.0.5", 24, false)];
        let both = vec![
            route(9, None, Some("10.0.0.1"), 254, 0),
            route(2, None, Some("10.0.0.1"), 254, 0),
        ];
        let ops = plan_move(&what, ETH, BR, &live_a, &both, &[]);
        let kinds: Vec<String> = ops.iter().map(Op::describe).collect();
        assert_eq!(kinds.len(), 1, "{kinds:#?}");
        assert!(
            kinds[0].starts_with("delete route default via 10.0.0.1 dev#2"),
            "{kinds:#?}"
        );
        // Seen from the detach (bridge to uplink): the uplink's copy stays, the bridge's goes.
        let back = what.moved(ETH, BR);
        let ops = plan_move(&back, BR, ETH, &live_a, &both, &[]);
        let kinds: Vec<String> = ops.iter().map(Op::describe).collect();
        assert!(
            !kinds.iter().any(|k| k.starts_with("replace route")),
            "{kinds:#?}"
        );
        assert!(
            kinds
                .iter()
                .any(|k| k.starts_with("delete route default via 10.0.0.1 dev#9")),
            "{kinds:#?}"
        );
    }

    #[test]
    fn an_address_someone_deleted_meanwhile_stays_deleted_unless_all_are_gone() {
        let pre = vec![
            addr(2, "10.0.0.5", 24, false),
            addr(2, "10.0.0.6", 24, true),
        ];
        let what = carried_by(2, "eth1", &pre, &[], &[]);
        // 10.0.0.6 was deleted from eth1 while the attach worked: it is not re-created.
        let live = vec![addr(2, "10.0.0.5", 24, false)];
        let ops: Vec<String> = plan_move(&what, ETH, BR, &live, &[], &[])
            .iter()
            .map(Op::describe)
            .collect();
        assert!(!ops.iter().any(|o| o.contains("10.0.0.6")), "{ops:#?}");
        assert!(
            ops.iter()
                .any(|o| o.starts_with("add address 10.0.0.5/24 dev#9")),
            "{ops:#?}"
        );
        // Nothing on either link (after a reboot): everything recorded is put back.
        let ops = plan_move(&what, ETH, BR, &[], &[], &[]);
        assert_eq!(ops.len(), 2, "{ops:#?}");
    }

    #[test]
    fn the_uplink_configured_again_replaces_the_record_only_when_no_move_is_under_way() {
        let recorded = carried_by(2, "eth1", &[addr(2, "10.0.0.5", 24, false)], &[], &[]);
        let mut nm = addr(2, "10.0.0.5", 24, false);
        nm.attributes
            .push(AddressAttribute::Flags(AddressFlags::Noprefixroute));
        let now = carried_by(2, "eth1", std::slice::from_ref(&nm), &[], &[]);
        assert_ne!(
            shape(&recorded),
            shape(&now),
            "noprefixroute is configuration"
        );
        // After a reboot: the bridge holds nothing, the uplink its new configuration.
        assert!(configured_again(
            &recorded,
            9,
            std::slice::from_ref(&nm),
            &now
        ));
        // The uplink configured again as recorded: the record stays.
        let plain = [addr(2, "10.0.0.5", 24, false)];
        assert!(!configured_again(&recorded, 9, &plain, &recorded));
        // A move under way (the address on the bridge already): the record stays the truth.
        let on_bridge = [addr(9, "10.0.0.5", 24, false), nm.clone()];
        assert!(!configured_again(&recorded, 9, &on_bridge, &now));
        // Nothing configured on the uplink yet (DHCP pending): the record is put back.
        assert!(!configured_again(&recorded, 9, &[], &Carried::default()));
        // Neither is nodad, nor are lifetimes.
        let mut nodad = addr(2, "10.0.0.5", 24, false);
        nodad.header.flags.insert(AddressHeaderFlags::Nodad);
        assert_eq!(
            shape(&recorded),
            shape(&carried_by(2, "eth1", &[nodad], &[], &[]))
        );
        let with_valid = |valid: u32| {
            let mut a = addr(2, "10.0.0.5", 24, false);
            a.attributes
                .retain(|x| !matches!(x, AddressAttribute::CacheInfo(_)));
            let mut c = CacheInfo::default();
            c.ifa_preferred = 60;
            c.ifa_valid = valid;
            a.attributes.push(AddressAttribute::CacheInfo(c));
            carried_by(2, "eth1", &[a], &[], &[])
        };
        assert_eq!(shape(&with_valid(120)), shape(&with_valid(30)));
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
