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

/// Keys of a definition that `render` owns: addressing and routing, from the live model.
const OWNED: [&str; 10] = [
    "addresses",
    "gateway4",
    "gateway6",
    "routes",
    "routing-policy",
    "dhcp4",
    "dhcp6",
    "accept-ra",
    "mtu",
    "link-local",
];

/// What the operator's (or cloud-init's) definition of `iface` says beyond what `render` owns:
/// name servers, `match`/`set-name`, DHCP overrides, `critical`... Carried into our file when
/// the definition is taken over, so the node keeps its DNS, its interface name and its DHCP
/// route metrics.
pub fn kept(text: &str, iface: &str) -> serde_yaml::Mapping {
    let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
        return serde_yaml::Mapping::new();
    };
    let Some(entry) = doc
        .get("network")
        .and_then(|n| n.get("ethernets"))
        .and_then(|e| e.get(iface))
        .and_then(|e| e.as_mapping())
    else {
        return serde_yaml::Mapping::new();
    };
    entry
        .iter()
        .filter(|(k, _)| k.as_str().is_some_and(|k| !OWNED.contains(&k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `render`, with `extra` (from `kept`) after our keys, in block style.
pub fn render_keeping(
    cfg: &NetConfig,
    extra: &serde_yaml::Mapping,
) -> Result<String, serde_yaml::Error> {
    let mut s = render(cfg);
    if extra.is_empty() {
        return Ok(s);
    }
    let text = serde_yaml::to_string(extra)?;
    for line in text.lines() {
        s.push_str("      ");
        s.push_str(line);
        s.push('\n');
    }
    Ok(s)
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

const KINDS: [&str; 4] = ["ethernets", "bonds", "bridges", "vlans"];

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_filler(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// Why another netplan file is not edited as text.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("no block-style `{0}:` entry under ethernets, bonds, bridges or vlans")]
    NoEntry(String),
    #[error("removing `{0}` as text would change more than its definition")]
    MoreThanTheEntry(String),
    #[error("{0}")]
    Yaml(serde_yaml::Error),
}

/// `text` (another netplan file, such as cloud-init's 50-cloud-init.yaml) without `iface`'s
/// definition, every other byte kept; a device kind left empty goes too. Block-style YAML is
/// edited as text, and the result is checked to mean exactly the original minus that
/// definition: anything else (flow style, anchors) is an error rather than a guess.
pub fn without(text: &str, iface: &str) -> Result<String, EditError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<&str> = lines.clone();
    let key = |l: &str| {
        let t = l.trim();
        [
            format!("{iface}:"),
            format!("\"{iface}\":"),
            format!("'{iface}':"),
        ]
        .iter()
        .any(|k| t == k.as_str())
    };
    // The entry's parent, the nearest line above with less indentation, must be a device kind.
    let parent = |i: usize| {
        (0..i)
            .rev()
            .find(|p| !is_filler(lines[*p]) && indent(lines[*p]) < indent(lines[i]))
    };
    let under_kind = |p: usize| KINDS.iter().any(|k| lines[p].trim() == format!("{k}:"));
    let Some(at) = (0..lines.len()).find(|i| key(lines[*i]) && parent(*i).is_some_and(under_kind))
    else {
        return Err(EditError::NoEntry(iface.into()));
    };
    let me = indent(lines[at]);
    let mut end = at + 1;
    while end < lines.len() && (is_filler(lines[end]) || indent(lines[end]) > me) {
        end += 1;
    }
    // Comments and blank lines at the end of the block belong to what follows.
    while end > at + 1 && is_filler(lines[end - 1]) {
        end -= 1;
    }
    let mut cut = at..end;
    if let Some(p) = parent(at) {
        let siblings_before = lines[p + 1..at].iter().any(|l| !is_filler(l));
        let siblings_after = lines[end..]
            .iter()
            .find(|l| !is_filler(l))
            .is_some_and(|l| indent(l) >= me);
        if !siblings_before && !siblings_after {
            cut = p..end;
        }
    }
    out.drain(cut);
    let mut result = out.join("\n");
    if text.ends_with('\n') {
        result.push('\n');
    }
    check_without(text, &result, iface)?;
    Ok(result)
}

/// `after` must parse to `before` with `iface` removed from its device kind (and the kind, if
/// that left it empty).
fn check_without(before: &str, after: &str, iface: &str) -> Result<(), EditError> {
    use serde_yaml::Value;
    let parse = |t: &str| serde_yaml::from_str::<Value>(t).map_err(EditError::Yaml);
    let mut want = parse(before)?;
    let got = parse(after)?;
    if let Some(net) = want.get_mut("network").and_then(Value::as_mapping_mut) {
        for kind in KINDS {
            let emptied = match net.get_mut(kind).and_then(Value::as_mapping_mut) {
                Some(devs) => {
                    devs.remove(iface);
                    devs.is_empty()
                }
                None => false,
            };
            if emptied {
                net.remove(kind);
            }
        }
    }
    if got == want && !defines(after, iface) {
        Ok(())
    } else {
        Err(EditError::MoreThanTheEntry(iface.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn a_taken_over_definition_keeps_its_dns_name_and_dhcp_overrides() {
        let ci = "network:\n  version: 2\n  ethernets:\n    eth1:\n      match:\n        \
                  macaddress: \"52:54:00:aa:bb:01\"\n      set-name: eth1\n      addresses: \
                  [10.0.0.5/24]\n      nameservers:\n        addresses: [10.0.0.53]\n        \
                  search: [corp.example]\n      dhcp4-overrides: {route-metric: 200}\n      \
                  routes:\n        - to: default\n          via: 10.0.0.1\n";
        let k = kept(ci, "eth1");
        let keys: Vec<&str> = k.keys().filter_map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            ["match", "set-name", "nameservers", "dhcp4-overrides"]
        );
        let out = render_keeping(&static_dual(), &k).unwrap();
        insta::assert_snapshot!("netplan_keeping", out);
        let doc: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
        let e = &doc["network"]["ethernets"]["eth1"];
        assert_eq!(e["nameservers"]["search"][0], "corp.example");
        assert_eq!(e["set-name"], "eth1");
        assert_eq!(e["dhcp4-overrides"]["route-metric"], 200);
        assert!(e["addresses"].as_sequence().is_some_and(|a| !a.is_empty()));
    }

    #[test]
    fn snapshots() {
        insta::assert_snapshot!("netplan_static_dual", render(&static_dual()));
        insta::assert_snapshot!("netplan_dynamic", render(&dynamic()));
    }

    #[test]
    fn takes_one_definition_out_and_keeps_every_other_byte() {
        // As cloud-init writes it, with a second NIC and a comment.
        let ci = "# This file is generated from information provided by the datasource.\nnetwork:\n    ethernets:\n        eth0:\n            dhcp4: true\n            set-name: eth0\n        eth1:\n            addresses:\n            - 10.0.0.5/24\n            match:\n                macaddress: 52:54:00:aa:bb:01\n            set-name: eth1\n    version: 2\n";
        let out = without(ci, "eth1").unwrap();
        assert_eq!(
            out,
            "# This file is generated from information provided by the datasource.\nnetwork:\n    ethernets:\n        eth0:\n            dhcp4: true\n            set-name: eth0\n    version: 2\n"
        );
        // The only NIC: `ethernets` goes with it, `version` stays.
        let only = "network:\n  version: 2\n  ethernets:\n    eth1:\n      dhcp4: true\n";
        assert_eq!(without(only, "eth1").unwrap(), "network:\n  version: 2\n");
        // A file that does not define it, flow style, or an eth1 key elsewhere: refused.
        assert!(without("network:\n  version: 2\n", "eth1").is_err());
        assert!(without(
            "network: {version: 2, ethernets: {eth1: {dhcp4: true}}}\n",
            "eth1"
        )
        .is_err());
        assert!(without("network:\n  bridges:\n    br0:\n      interfaces: [eth1]\n      parameters:\n        eth1:\n          x: 1\n", "eth1").is_err());
    }

    #[test]
    fn finds_other_definitions() {
        let other = "network:\n  version: 2\n  ethernets:\n    eth1:\n      dhcp4: true\n";
        assert!(defines(other, "eth1"));
        assert!(!defines(other, "eth0"));
        assert!(defines(&render(&static_dual()), "eth1"));
    }
}
