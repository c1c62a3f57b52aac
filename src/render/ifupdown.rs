//! ifupdown (`/etc/network/interfaces` or a file in `interfaces.d/`): our stanzas for the
//! uplink replace its old ones in place, and every other line stays as it was.

use super::{ip_route_args, Method, NetConfig, HEADER};

const KEYWORDS: [&str; 5] = ["iface", "mapping", "auto", "source", "source-directory"];

fn is_keyword(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or("");
    KEYWORDS.contains(&first) || first.starts_with("allow-")
}

fn family_stanza(cfg: &NetConfig, v6: bool) -> Option<String> {
    let fam = cfg.family(v6);
    let (inet, ip) = if v6 {
        ("inet6", "ip -6")
    } else {
        ("inet", "ip")
    };
    let dev = &cfg.iface;
    let mut s = String::new();
    match &fam.method {
        Method::None if fam.routes.is_empty() => return None,
        Method::None => s.push_str(&format!("iface {dev} {inet} manual\n")),
        Method::Dynamic => s.push_str(&format!(
            "iface {dev} {inet} {}\n",
            if v6 { "auto" } else { "dhcp" }
        )),
        Method::Static(addrs) => {
            s.push_str(&format!("iface {dev} {inet} static\n"));
            if let Some(first) = addrs.first() {
                s.push_str(&format!("    address {first}\n"));
            }
            if let Some(gw) = fam.gateway {
                s.push_str(&format!("    gateway {gw}\n"));
            }
            if let (Some(mtu), false) = (cfg.mtu, v6) {
                s.push_str(&format!("    mtu {mtu}\n"));
            }
            for extra in addrs.iter().skip(1) {
                s.push_str(&format!("    up {ip} addr replace {extra} dev {dev}\n"));
            }
        }
    }
    if let (Some(mtu), false, false) = (cfg.mtu, v6, matches!(fam.method, Method::Static(_))) {
        s.push_str(&format!("    up ip link set dev {dev} mtu {mtu}\n"));
    }
    // `replace` is idempotent: an `ifup` after the route already exists does not fail.
    for r in &fam.routes {
        s.push_str(&format!(
            "    up {ip} route replace {}\n",
            ip_route_args(r, dev)
        ));
    }
    Some(s)
}

/// Our stanzas for the uplink.
pub fn stanzas(cfg: &NetConfig) -> String {
    let head = format!("# {HEADER}\nauto {}\n", cfg.iface);
    let mut s = head.clone();
    for v6 in [false, true] {
        if let Some(f) = family_stanza(cfg, v6) {
            s.push_str(&f);
        }
    }
    if s == head {
        // No address and no route (NCP's manual install leaves node-if so): NCP's documented
        // stanza, so that `ifup` knows the interface and brings the link up.
        let dev = &cfg.iface;
        s.push_str(&format!(
            "iface {dev} inet manual\n    up ip link set {dev} up\n"
        ));
        if let Some(mtu) = cfg.mtu {
            s.push_str(&format!("    up ip link set dev {dev} mtu {mtu}\n"));
        }
    }
    s
}

/// Whether a file defines a stanza for `iface`.
pub fn defines(text: &str, iface: &str) -> bool {
    text.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some("iface") && w.next() == Some(iface)
    })
}

/// `text` with the uplink's stanzas (and its `auto`/`allow-*` mentions) replaced by ours, at
/// the place of the first old stanza, or appended when there was none.
pub fn merge(text: &str, cfg: &NetConfig) -> String {
    let iface = cfg.iface.as_str();
    let mut out: Vec<String> = Vec::new();
    let mut inside = false;
    let mut at: Option<usize> = None;
    let ours = format!("# {HEADER}");
    for line in text.lines() {
        let trimmed = line.trim_start();
        // Our own header goes with the stanzas it heads.
        if trimmed == ours {
            at.get_or_insert(out.len());
            continue;
        }
        if is_keyword(trimmed) {
            inside = false;
            let mut words = trimmed.split_whitespace();
            let kw = words.next().unwrap_or("");
            if kw == "iface" && words.next() == Some(iface) {
                inside = true;
                at.get_or_insert(out.len());
                continue;
            }
            if kw == "auto" || kw.starts_with("allow-") {
                let rest: Vec<&str> = trimmed
                    .split_whitespace()
                    .skip(1)
                    .filter(|w| *w != iface)
                    .collect();
                if rest.len() + 1 != trimmed.split_whitespace().count() {
                    if !rest.is_empty() {
                        out.push(format!("{kw} {}", rest.join(" ")));
                    }
                    continue;
                }
            }
            out.push(line.to_string());
            continue;
        }
        // Option lines of the old stanza go; comments and blank lines stay where they are.
        if inside && !trimmed.is_empty() && !trimmed.starts_with('#') {
            continue;
        }
        if inside && trimmed.is_empty() {
            inside = false;
        }
        out.push(line.to_string());
    }
    let block: Vec<String> = stanzas(cfg).lines().map(String::from).collect();
    match at {
        Some(i) => {
            out.splice(i..i, block);
        }
        None => {
            if out.last().is_some_and(|l| !l.trim().is_empty()) {
                out.push(String::new());
            }
            out.extend(block);
        }
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn snapshots() {
        insta::assert_snapshot!("ifupdown_static_dual", stanzas(&static_dual()));
        insta::assert_snapshot!("ifupdown_static_v4", stanzas(&static_v4()));
        insta::assert_snapshot!("ifupdown_dynamic", stanzas(&dynamic()));
    }

    #[test]
    fn an_uplink_without_addresses_gets_ncps_manual_stanza() {
        let mut c = static_v4();
        c.v4 = c.v6.clone();
        insta::assert_snapshot!("ifupdown_no_address", stanzas(&c));
    }

    #[test]
    fn merge_replaces_only_the_uplink() {
        let text = "# The loopback network interface\nauto lo eth1\niface lo inet loopback\n\n# NSX uplink (old)\niface eth1 inet static\n    address 172.16.1.4/24\n    up route add -net 172.16.1.3/24 gw 172.16.1.1 dev eth1\n\nsource /etc/network/interfaces.d/*\n";
        let out = merge(text, &static_v4());
        insta::assert_snapshot!("ifupdown_merge", out);
        assert!(out.contains("auto lo\n"));
        assert!(out.contains("# NSX uplink (old)\n"));
        assert!(!out.contains("route add -net"));
        assert!(out.ends_with("source /etc/network/interfaces.d/*\n"));
        assert_eq!(
            merge(&out, &static_v4()),
            out,
            "merging twice changes nothing"
        );
    }
}
