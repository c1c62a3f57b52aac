//! netplan: our own drop-in, `etc/netplan/60-ncp-bootstrap.yaml` (0600, as netplan wants),
//! defining the uplink under `ethernets`.

use super::{Method, NetConfig, Route, HEADER};

pub const FILE: &str = "/etc/netplan/60-ncp-bootstrap.yaml";

fn route_yaml(r: &Route, out: &mut String) {
    let to = r
        .dst
        .as_ref()
        .map_or("default".to_string(), |d| d.to_string());
    out.push_str(&format!("        - to: \"{to}\"\n"));
    if let Some(v) = r.via {
        out.push_str(&format!("          via: \"{v}\"\n"));
    }
    if r.on_link {
        out.push_str("          scope: link\n");
    }
    if let Some(m) = r.metric {
        out.push_str(&format!("          metric: {m}\n"));
    }
    if let Some(t) = r.table {
        out.push_str(&format!("          table: {t}\n"));
    }
}

pub fn render(cfg: &NetConfig) -> String {
    let mut s = format!(
        "# {HEADER}\nnetwork:\n  version: 2\n  ethernets:\n    {}:\n",
        cfg.iface
    );
    s.push_str(&format!(
        "      dhcp4: {}\n",
        cfg.v4.method == Method::Dynamic
    ));
    s.push_str(&format!(
        "      dhcp6: {}\n",
        cfg.v6.method == Method::Dynamic
    ));
    if cfg.v6.method != Method::Dynamic {
        s.push_str("      accept-ra: false\n");
    }
    let addrs: Vec<String> = [&cfg.v4.method, &cfg.v6.method]
        .iter()
        .filter_map(|m| match m {
            Method::Static(a) => Some(a.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    if !addrs.is_empty() {
        s.push_str(&format!("      addresses: [{}]\n", addrs.join(", ")));
    }
    if let Some(mtu) = cfg.mtu {
        s.push_str(&format!("      mtu: {mtu}\n"));
    }
    let mut routes: Vec<Route> = Vec::new();
    for fam in [&cfg.v4, &cfg.v6] {
        if let Some(gw) = fam.gateway {
            routes.push(Route {
                dst: None,
                via: Some(gw),
                metric: None,
                table: None,
                on_link: false,
            });
        }
        routes.extend(fam.routes.iter().cloned());
    }
    if !routes.is_empty() {
        s.push_str("      routes:\n");
        for r in &routes {
            route_yaml(r, &mut s);
        }
    }
    s
}

/// Where another netplan file defines the same interface: the files and whether they do.
pub fn defines(text: &str, iface: &str) -> bool {
    let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
        return false;
    };
    ["ethernets", "bonds", "bridges", "vlans"]
        .iter()
        .any(|kind| {
            doc.get("network")
                .and_then(|n| n.get(*kind))
                .and_then(|e| e.get(iface))
                .is_some()
        })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn snapshots() {
        insta::assert_snapshot!("netplan_static_dual", render(&static_dual()));
        insta::assert_snapshot!("netplan_dynamic", render(&dynamic()));
    }

    #[test]
    fn finds_other_definitions() {
        let other = "network:\n  version: 2\n  ethernets:\n    eth1:\n      dhcp4: true\n";
        assert!(defines(other, "eth1"));
        assert!(!defines(other, "eth0"));
        assert!(defines(&render(&static_dual()), "eth1"));
    }
}
