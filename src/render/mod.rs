//! Persistent network config for node-if: one model, built from the uplink's addresses and
//! routes, and one pure renderer per format (ifupdown, netplan, ifcfg, NetworkManager keyfile).
//! Renderers return file contents and write nothing; only the persist step writes.

pub mod ifcfg;
pub mod ifupdown;
pub mod netplan;
pub mod networkd;
pub mod nm_keyfile;
pub mod raw;

use crate::netmodel::{self, Carried};
use netlink_packet_route::route::{RouteProtocol, RouteScope};
use netlink_packet_route::AddressFamily;
use std::net::IpAddr;

/// The network configuration formats `persist` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ifupdown,
    Netplan,
    Ifcfg,
    NmKeyfile,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "ifupdown" => Some(Format::Ifupdown),
            "netplan" => Some(Format::Netplan),
            "ifcfg" => Some(Format::Ifcfg),
            "nm-keyfile" => Some(Format::NmKeyfile),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Ifupdown => "ifupdown",
            Format::Netplan => "netplan",
            Format::Ifcfg => "ifcfg",
            Format::NmKeyfile => "nm-keyfile",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// How a family gets its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// Not configured.
    None,
    Static(Vec<Addr>),
    /// IPv4: DHCP. IPv6: SLAAC/DHCPv6 (router advertisements decide).
    Dynamic,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `None` for the default route.
    pub dst: Option<Addr>,
    pub via: Option<IpAddr>,
    pub metric: Option<u32>,
    /// `None` for the main table.
    pub table: Option<u32>,
    /// On-link route (no gateway, link scope).
    pub on_link: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    pub method: Method,
    /// The default gateway (main table), if static.
    pub gateway: Option<IpAddr>,
    /// Other static routes.
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    pub iface: String,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub v4: Family,
    pub v6: Family,
}

impl NetConfig {
    pub fn family(&self, v6: bool) -> &Family {
        if v6 {
            &self.v6
        } else {
            &self.v4
        }
    }
}

/// Routes a DHCP client or router advertisements put there: persisted by persisting the
/// dynamic method, never as static routes.
fn is_dynamic_route(p: RouteProtocol) -> bool {
    matches!(p, RouteProtocol::Dhcp | RouteProtocol::Ra)
}

/// Builds the model from what the uplink carries (live, or the ledger's pre-state).
pub fn from_carried(iface: &str, mac: Option<String>, mtu: Option<u32>, c: &Carried) -> NetConfig {
    let family = |fam: AddressFamily| -> Family {
        let addrs: Vec<_> = c
            .addresses
            .iter()
            .filter(|a| a.header.family == fam)
            .collect();
        let dynamic = addrs.iter().any(|a| netmodel::is_dynamic(a));
        let method = if dynamic {
            Method::Dynamic
        } else if addrs.is_empty() {
            Method::None
        } else {
            Method::Static(
                addrs
                    .iter()
                    .filter_map(|a| {
                        Some(Addr {
                            ip: netmodel::address_ip(a)?,
                            prefix: a.header.prefix_len,
                        })
                    })
                    .collect(),
            )
        };
        let mut gateway = None;
        let mut routes = Vec::new();
        for r in c.routes.iter().filter(|r| r.header.address_family == fam) {
            if dynamic && is_dynamic_route(r.header.protocol) {
                continue;
            }
            // Prefix routes (the kernel's, or NetworkManager's for its `noprefixroute`
            // addresses) follow from the addresses in every format.
            if r.header.protocol == RouteProtocol::Kernel {
                continue;
            }
            let via: Option<IpAddr> = netmodel::route_gateway(r).and_then(|g| g.parse().ok());
            let table = netmodel::route_table(r);
            let dst = netmodel::route_dst(r);
            let metric = Some(netmodel::route_priority(r)).filter(|m| *m != 0);
            let is_default = r.header.destination_prefix_length == 0;
            // IPv6 routes carry the kernel's default metric 1024; leaving it out says the same.
            let metric = if fam == AddressFamily::Inet6 && metric == Some(1024) {
                None
            } else {
                metric
            };
            if is_default
                && table == crate::netmodel::RT_TABLE_MAIN
                && gateway.is_none()
                && metric.is_none()
            {
                gateway = via;
                continue;
            }
            routes.push(Route {
                dst: if is_default {
                    None
                } else {
                    dst.map(|ip| Addr {
                        ip,
                        prefix: r.header.destination_prefix_length,
                    })
                },
                via,
                metric,
                table: (table != crate::netmodel::RT_TABLE_MAIN).then_some(table),
                on_link: via.is_none() && r.header.scope == RouteScope::Link,
            });
        }
        Family {
            method,
            gateway,
            routes,
        }
    };
    NetConfig {
        iface: iface.to_string(),
        mac,
        mtu,
        v4: family(AddressFamily::Inet),
        v6: family(AddressFamily::Inet6),
    }
}

/// `ip route` arguments for a route (without the `ip route replace` verb), used by ifupdown
/// hooks and ifcfg route files.
pub fn ip_route_args(r: &Route, dev: &str) -> String {
    let mut s = r
        .dst
        .as_ref()
        .map_or("default".to_string(), |d| d.to_string());
    if let Some(v) = r.via {
        s.push_str(&format!(" via {v}"));
    }
    s.push_str(&format!(" dev {dev}"));
    if r.on_link {
        s.push_str(" scope link");
    }
    if let Some(m) = r.metric {
        s.push_str(&format!(" metric {m}"));
    }
    if let Some(t) = r.table {
        s.push_str(&format!(" table {t}"));
    }
    s
}

pub const HEADER: &str =
    "Written by ncp-bootstrap (persist): node-if keeps its addresses and routes after a reboot.";

#[cfg(test)]
pub mod fixtures {
    use super::*;

    pub fn addr(s: &str) -> Addr {
        let (ip, p) = s.split_once('/').unwrap();
        Addr {
            ip: ip.parse().unwrap(),
            prefix: p.parse().unwrap(),
        }
    }

    /// Static IPv4 with a secondary, static IPv6, a default gateway, a metric route, an
    /// on-link route, a route in table 100, an IPv6 route.
    pub fn static_dual() -> NetConfig {
        NetConfig {
            iface: "eth1".into(),
            mac: Some("52:54:00:aa:bb:01".into()),
            mtu: Some(1500),
            v4: Family {
                method: Method::Static(vec![addr("10.0.0.5/24"), addr("10.0.0.6/24")]),
                gateway: Some("10.0.0.1".parse().unwrap()),
                routes: vec![
                    Route {
                        dst: Some(addr("192.168.50.0/24")),
                        via: Some("10.0.0.1".parse().unwrap()),
                        metric: Some(50),
                        table: None,
                        on_link: false,
                    },
                    Route {
                        dst: Some(addr("172.16.9.0/24")),
                        via: None,
                        metric: None,
                        table: None,
                        on_link: true,
                    },
                    Route {
                        dst: Some(addr("192.168.60.0/24")),
                        via: Some("10.0.0.1".parse().unwrap()),
                        metric: None,
                        table: Some(100),
                        on_link: false,
                    },
                ],
            },
            v6: Family {
                method: Method::Static(vec![addr("fd00::5/64")]),
                gateway: None,
                routes: vec![Route {
                    dst: Some(addr("fd01::/64")),
                    via: Some("fd00::1".parse().unwrap()),
                    metric: None,
                    table: None,
                    on_link: false,
                }],
            },
        }
    }

    pub fn static_v4() -> NetConfig {
        let mut c = static_dual();
        c.v4.method = Method::Static(vec![addr("172.16.1.4/24")]);
        c.v4.gateway = Some("172.16.1.1".parse().unwrap());
        c.v4.routes = vec![Route {
            dst: Some(addr("172.16.2.0/24")),
            via: Some("172.16.1.1".parse().unwrap()),
            metric: None,
            table: None,
            on_link: false,
        }];
        c.v6 = Family {
            method: Method::None,
            gateway: None,
            routes: vec![],
        };
        c
    }

    /// DHCP for IPv4, SLAAC for IPv6: nothing static.
    pub fn dynamic() -> NetConfig {
        NetConfig {
            iface: "eth1".into(),
            mac: Some("52:54:00:aa:bb:01".into()),
            mtu: None,
            v4: Family {
                method: Method::Dynamic,
                gateway: None,
                routes: vec![],
            },
            v6: Family {
                method: Method::Dynamic,
                gateway: None,
                routes: vec![],
            },
        }
    }
}
