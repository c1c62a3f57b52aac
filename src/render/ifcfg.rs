//! RHEL network-scripts: `ifcfg-<if>`, `route-<if>` and `route6-<if>` (ip-command format).

use super::{ip_route_args, Method, NetConfig, HEADER};

/// A UUID derived from the interface name: the same on every run and every node.
pub fn uuid_for(iface: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("ncp-bootstrap/ifcfg/{iface}").as_bytes(),
    )
    .to_string()
}

/// The files to write: (file name under network-scripts, contents). A route file is only
/// returned when there are routes for its family.
pub fn render(cfg: &NetConfig) -> Vec<(String, String)> {
    let dev = &cfg.iface;
    let mut s = format!("# {HEADER}\n");
    let mut kv = |k: &str, v: &str| s.push_str(&format!("{k}={v}\n"));
    kv("DEVICE", dev);
    kv("NAME", dev);
    kv("TYPE", "Ethernet");
    kv("UUID", &uuid_for(dev));
    if let Some(mac) = &cfg.mac {
        kv("HWADDR", mac);
    }
    kv("ONBOOT", "yes");
    kv("PROXY_METHOD", "none");
    kv("BROWSER_ONLY", "no");
    match &cfg.v4.method {
        Method::Dynamic => kv("BOOTPROTO", "dhcp"),
        Method::Static(addrs) => {
            kv("BOOTPROTO", "none");
            for (i, a) in addrs.iter().enumerate() {
                let n = if i == 0 { String::new() } else { i.to_string() };
                kv(&format!("IPADDR{n}"), &a.ip.to_string());
                kv(&format!("PREFIX{n}"), &a.prefix.to_string());
            }
        }
        Method::None => kv("BOOTPROTO", "none"),
    }
    if let Some(gw) = cfg.v4.gateway {
        kv("GATEWAY", &gw.to_string());
        kv("DEFROUTE", "yes");
    } else {
        kv("DEFROUTE", "no");
    }
    kv("IPV4_FAILURE_FATAL", "no");
    if let Some(mtu) = cfg.mtu {
        kv("MTU", &mtu.to_string());
    }
    match &cfg.v6.method {
        Method::None => kv("IPV6INIT", "no"),
        Method::Dynamic => {
            kv("IPV6INIT", "yes");
            kv("IPV6_AUTOCONF", "yes");
            kv("DHCPV6C", "yes");
        }
        Method::Static(addrs) => {
            kv("IPV6INIT", "yes");
            kv("IPV6_AUTOCONF", "no");
            if let Some(first) = addrs.first() {
                kv("IPV6ADDR", &first.to_string());
            }
            if addrs.len() > 1 {
                let rest: Vec<String> = addrs.iter().skip(1).map(|a| a.to_string()).collect();
                kv("IPV6ADDR_SECONDARIES", &format!("\"{}\"", rest.join(" ")));
            }
            if let Some(gw) = cfg.v6.gateway {
                kv("IPV6_DEFAULTGW", &gw.to_string());
            }
        }
    }
    let mut files = vec![(format!("ifcfg-{dev}"), s)];
    for (v6, name) in [
        (false, format!("route-{dev}")),
        (true, format!("route6-{dev}")),
    ] {
        let routes = &cfg.family(v6).routes;
        if !routes.is_empty() {
            let mut r = format!("# {HEADER}\n");
            for route in routes {
                r.push_str(&ip_route_args(route, dev));
                r.push('\n');
            }
            files.push((name, r));
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn snapshots() {
        for (name, text) in render(&static_dual()) {
            insta::assert_snapshot!(format!("ifcfg_static_dual_{name}"), text);
        }
        for (name, text) in render(&dynamic()) {
            insta::assert_snapshot!(format!("ifcfg_dynamic_{name}"), text);
        }
    }

    #[test]
    fn uuid_is_stable_and_per_interface() {
        assert_eq!(uuid_for("eth1"), uuid_for("eth1"));
        assert_ne!(uuid_for("eth1"), uuid_for("eth2"));
    }
}
