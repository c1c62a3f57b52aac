//! ifupdown (`/etc/network/interfaces` or a file in `interfaces.d/`): our stanzas for the
//! uplink replace its old ones in place, and every other line stays as it was.

use super::{ip_route_args, Method, NetConfig, HEADER};

const KEYWORDS: [&str; 5] = ["iface", "mapping", "auto", "source", "source-directory"];

fn is_keyword(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or("");
    KEYWORDS.contains(&first) || first.starts_with("allow-")
}

/// One family's stanza as we write it: the `iface` line, the address lines (address, gateway,
/// MTU, extra addresses) and the `up` lines that install routes and the MTU. Kept apart so a
/// merge can put the address lines where the old ones were and the route lines last, after
/// the operator's own hooks (an operator's `up route add` then runs before our idempotent
/// `replace` of the same route, not after it, where it would fail on an existing route).
struct Parts {
    iface: String,
    addr: Vec<String>,
    up: Vec<String>,
}

fn family_parts(cfg: &NetConfig, v6: bool) -> Option<Parts> {
    let fam = cfg.family(v6);
    let (inet, ip) = if v6 {
        ("inet6", "ip -6")
    } else {
        ("inet", "ip")
    };
    let dev = &cfg.iface;
    let mut addr = Vec::new();
    let mut up = Vec::new();
    let iface = match &fam.method {
        Method::None if fam.routes.is_empty() => return None,
        Method::None => format!("iface {dev} {inet} manual"),
        Method::Dynamic => format!("iface {dev} {inet} {}", if v6 { "auto" } else { "dhcp" }),
        Method::Static(addrs) => {
            if let Some(first) = addrs.first() {
                addr.push(format!("    address {first}"));
            }
            if let Some(gw) = fam.gateway {
                addr.push(format!("    gateway {gw}"));
            }
            if let (Some(mtu), false) = (cfg.mtu, v6) {
                addr.push(format!("    mtu {mtu}"));
            }
            for extra in addrs.iter().skip(1) {
                addr.push(format!("    up {ip} addr replace {extra} dev {dev}"));
            }
            format!("iface {dev} {inet} static")
        }
    };
    if let (Some(mtu), false, false) = (cfg.mtu, v6, matches!(fam.method, Method::Static(_))) {
        up.push(format!("    up ip link set dev {dev} mtu {mtu}"));
    }
    // `replace` is idempotent: an `ifup` after the route already exists does not fail.
    for r in &fam.routes {
        up.push(format!(
            "    up {ip} route replace {}",
            ip_route_args(r, dev)
        ));
    }
    Some(Parts { iface, addr, up })
}

/// Our stanzas, by family (false: inet, true: inet6).
fn all_parts(cfg: &NetConfig) -> Vec<(bool, Parts)> {
    let mut out: Vec<(bool, Parts)> = [false, true]
        .into_iter()
        .filter_map(|v6| family_parts(cfg, v6).map(|p| (v6, p)))
        .collect();
    if out.is_empty() {
        // No address and no route (NCP's manual install leaves node-if so): NCP's documented
        // stanza, so that `ifup` knows the interface and brings the link up.
        let dev = &cfg.iface;
        let mut up = vec![format!("    up ip link set {dev} up")];
        if let Some(mtu) = cfg.mtu {
            up.push(format!("    up ip link set dev {dev} mtu {mtu}"));
        }
        out.push((
            false,
            Parts {
                iface: format!("iface {dev} inet manual"),
                addr: Vec::new(),
                up,
            },
        ));
    }
    out
}

fn head(cfg: &NetConfig) -> Vec<String> {
    vec![format!("# {HEADER}"), format!("auto {}", cfg.iface)]
}

/// Our stanzas for the uplink.
pub fn stanzas(cfg: &NetConfig) -> String {
    let mut lines = head(cfg);
    for (_, p) in all_parts(cfg) {
        lines.push(p.iface);
        lines.extend(p.addr);
        lines.extend(p.up);
    }
    lines.join("\n") + "\n"
}

/// Whether a file defines a stanza for `iface`.
pub fn defines(text: &str, iface: &str) -> bool {
    text.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some("iface") && w.next() == Some(iface)
    })
}

/// Whether an option line of the uplink's stanza is one we write (and so replace): the address
/// options, and `up` commands of the shapes `family_parts` renders.
fn is_ours(option: &str, dev: &str) -> bool {
    let w: Vec<&str> = option.split_whitespace().collect();
    match w.as_slice() {
        [kw, ..]
            if [
                "address",
                "netmask",
                "gateway",
                "broadcast",
                "network",
                "mtu",
            ]
            .contains(kw) =>
        {
            true
        }
        ["up", "ip", "addr" | "route", "replace", ..] => true,
        ["up", "ip", "-6", "addr" | "route", "replace", ..] => true,
        ["up", "ip", "link", "set", "dev", d, "mtu", _] => *d == dev,
        ["up", "ip", "link", "set", d, "up"] => *d == dev,
        _ => false,
    }
}

/// One old stanza of the uplink: its family and the option lines (and comments among them)
/// that are not ours, which the merge keeps, in their order.
struct Old {
    v6: bool,
    foreign: Vec<String>,
    /// Index in `foreign` where the first of our lines stood (where ours go back).
    ours_at: Option<usize>,
}

/// `text` with the uplink's stanzas merged with ours, at the place of the first old stanza, or
/// appended when there was none. Of an old stanza only the lines we write are replaced; every
/// other option (dns-*, bond-*, vlan-raw-device, hooks, the operator's own route commands)
/// stays, in its order, in the stanza of its family. The uplink's `auto`/`allow-*` mentions
/// become our one `auto` line.
pub fn merge(text: &str, cfg: &NetConfig) -> String {
    let iface = cfg.iface.as_str();
    let mut out: Vec<String> = Vec::new();
    let mut at: Option<usize> = None;
    let mut olds: Vec<Old> = Vec::new();
    // Lines after the current old stanza's header, until the next keyword.
    let mut pending: Option<Vec<String>> = None;
    let ours = format!("# {HEADER}");
    let finish = |pending: &mut Option<Vec<String>>, olds: &mut Vec<Old>, out: &mut Vec<String>| {
        let Some(mut lines) = pending.take() else {
            return;
        };
        // Blank lines and comments after the last option belong to what follows.
        let keep = lines
            .iter()
            .rposition(|l| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#')
            })
            .map_or(0, |i| i + 1);
        let trailing = lines.split_off(keep);
        if let Some(old) = olds.last_mut() {
            for l in lines {
                if is_ours(l.trim(), iface) {
                    old.ours_at.get_or_insert(old.foreign.len());
                } else {
                    old.foreign.push(l);
                }
            }
        }
        out.extend(trailing);
    };
    for line in text.lines() {
        let trimmed = line.trim_start();
        // Our own header goes with the stanzas it heads.
        if trimmed == ours {
            finish(&mut pending, &mut olds, &mut out);
            at.get_or_insert(out.len());
            continue;
        }
        if !is_keyword(trimmed) {
            match pending.as_mut() {
                Some(p) => p.push(line.to_string()),
                None => out.push(line.to_string()),
            }
            continue;
        }
        finish(&mut pending, &mut olds, &mut out);
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        match words.as_slice() {
            ["iface", name, family, ..] if *name == iface => {
                at.get_or_insert(out.len());
                olds.push(Old {
                    v6: *family == "inet6",
                    foreign: Vec::new(),
                    ours_at: None,
                });
                pending = Some(Vec::new());
            }
            [kw, rest @ ..] if *kw == "auto" || kw.starts_with("allow-") => {
                let others: Vec<&str> = rest.iter().copied().filter(|w| *w != iface).collect();
                if others.len() == rest.len() {
                    out.push(line.to_string());
                } else if !others.is_empty() {
                    out.push(format!("{kw} {}", others.join(" ")));
                }
            }
            _ => out.push(line.to_string()),
        }
    }
    finish(&mut pending, &mut olds, &mut out);

    let mut block = head(cfg);
    let mut parts = all_parts(cfg);
    // An old family we no longer configure keeps its foreign lines under a manual stanza.
    for v6 in [false, true] {
        let has_foreign = olds.iter().any(|o| o.v6 == v6 && !o.foreign.is_empty());
        if has_foreign && !parts.iter().any(|(f, _)| *f == v6) {
            let inet = if v6 { "inet6" } else { "inet" };
            parts.push((
                v6,
                Parts {
                    iface: format!("iface {iface} {inet} manual"),
                    addr: Vec::new(),
                    up: Vec::new(),
                },
            ));
        }
    }
    parts.sort_by_key(|(v6, _)| *v6);
    for (v6, p) in parts {
        block.push(p.iface);
        let mut addr = Some(p.addr);
        for old in olds.iter().filter(|o| o.v6 == v6) {
            for (i, l) in old.foreign.iter().enumerate() {
                if old.ours_at == Some(i) {
                    block.extend(addr.take().unwrap_or_default());
                }
                block.push(l.clone());
            }
        }
        block.extend(addr.take().unwrap_or_default());
        block.extend(p.up);
    }
    match at {
        Some(i) => {
            let end = i + block.len();
            out.splice(i..i, block);
            // Two old stanzas leave two separating blank lines behind the merged block.
            while out.len() > end + 1
                && out[end].trim().is_empty()
                && out[end + 1].trim().is_empty()
            {
                out.remove(end);
            }
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
        // The operator's own route command stays, before our idempotent `replace`s.
        let theirs = out
            .find("    up route add -net 172.16.1.3/24")
            .expect("kept");
        assert!(theirs < out.find("    up ip route replace").expect("ours"));
        // Our address line replaced the old one; it is not there twice.
        assert_eq!(out.matches("address 172.16.1.4/24").count(), 1, "{out}");
        assert!(out.ends_with("source /etc/network/interfaces.d/*\n"));
        assert_eq!(
            merge(&out, &static_v4()),
            out,
            "merging twice changes nothing"
        );
    }

    /// Every kind of line an operator's stanza carries besides what we write.
    const RICH: &str = "auto lo\niface lo inet loopback\n\nallow-hotplug eth1\niface eth1 inet dhcp\n    # bonding and VLAN options of the site\n    bond-mode active-backup\n    bond-miimon 100\n    vlan-raw-device eth0\n    pre-up /usr/local/sbin/nic-tune eth1\n    address 10.1.1.9/24\n    gateway 10.1.1.1\n    dns-nameservers 10.1.1.53 10.1.1.54\n    dns-search corp.example\n    up route add -net 10.50.0.0/16 gw 10.1.1.1 dev eth1\n    post-up /usr/local/sbin/announce eth1\n    pre-down /usr/local/sbin/drain eth1\n\niface eth1 inet6 static\n    address fd00:1::9/64\n    dns-nameservers fd00:1::53\n    up ip -6 route replace fd00:99::/48 via fd00:1::1 dev eth1\n\nsource /etc/network/interfaces.d/*\n";

    #[test]
    fn merge_keeps_every_line_it_does_not_write_in_place() {
        let out = merge(RICH, &static_dual());
        insta::assert_snapshot!("ifupdown_merge_rich", out);
        let foreign = [
            "    # bonding and VLAN options of the site",
            "    bond-mode active-backup",
            "    bond-miimon 100",
            "    vlan-raw-device eth0",
            "    pre-up /usr/local/sbin/nic-tune eth1",
            "    dns-nameservers 10.1.1.53 10.1.1.54",
            "    dns-search corp.example",
            "    up route add -net 10.50.0.0/16 gw 10.1.1.1 dev eth1",
            "    post-up /usr/local/sbin/announce eth1",
            "    pre-down /usr/local/sbin/drain eth1",
            "    dns-nameservers fd00:1::53",
        ];
        // Each stays, once, in the order it had.
        let at: Vec<usize> = foreign
            .iter()
            .map(|l| {
                assert_eq!(out.matches(&format!("{l}\n")).count(), 1, "{l}\n{out}");
                out.find(&format!("{l}\n")).unwrap_or(0)
            })
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{out}");
        // The inet options stay in the inet stanza, the inet6 one in the inet6 stanza.
        let inet6 = out.find("iface eth1 inet6").expect("inet6 stanza");
        assert!(at[9] < inet6 && at[10] > inet6, "{out}");
        // What we write replaced the old address lines and our old route line.
        assert!(!out.contains("10.1.1.9/24") && !out.contains("fd00:1::9/64"));
        assert_eq!(out.matches("fd00:99::/48").count(), 0, "{out}");
        assert_eq!(
            merge(&out, &static_dual()),
            out,
            "merging twice changes nothing"
        );
    }
}
