//! Per-interface IPv6 settings (`/proc/sys/net/ipv6/conf/<dev>/<key>`), read and written in
//! the network namespace of this process: the host's, for a tool run with the host's network.
//!
//! The bridge takes over node-if's IPv6 addresses, and NCP's `enable_ipv6` gives pods IPv6: the
//! node side must carry it. A bridge that OVS creates takes the namespace's defaults, which a
//! hardened host may set to `disable_ipv6 = 1`, and with forwarding on the kernel ignores
//! router advertisements unless `accept_ra` is 2.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The keys this tool may change, and so the only ones a ledger may name.
pub const KEYS: [&str; 2] = ["disable_ipv6", "accept_ra"];

fn path(dev: &str, key: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/ipv6/conf/{dev}/{key}"))
}

/// A value; `None` when the interface has no IPv6 settings (IPv6 off in the kernel, or no
/// such interface).
pub fn read(dev: &str, key: &str) -> Result<Option<u8>> {
    let p = path(dev, key);
    match std::fs::read_to_string(&p) {
        Ok(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|v| u8::try_from(v.clamp(0, 2)).ok())
            .map(Some)
            .with_context(|| format!("{} holds {:?}, not a number", p.display(), s.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

pub fn write(dev: &str, key: &str, value: u8) -> Result<()> {
    let p = path(dev, key);
    std::fs::write(&p, format!("{value}\n")).with_context(|| {
        format!(
            "writing {value} to {}: a container needs a writable /proc/sys (privileged, as NCP's \
             nsx-ovs runs), or set it on the host",
            p.display()
        )
    })
}

/// Which end of the attach a setting belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    Uplink,
    Bridge,
}

/// One setting as it was before the attach changed it: what detach writes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Before {
    pub end: End,
    pub key: String,
    pub value: u8,
}

impl Before {
    /// A ledger entry is input: only the keys this tool changes, with values they take.
    pub fn problem(&self) -> Option<String> {
        (!KEYS.contains(&self.key.as_str()) || self.value > 2).then(|| {
            format!(
                "IPv6 setting {} = {} is not one ncp-bootstrap changes",
                self.key, self.value
            )
        })
    }
}

/// One setting to change: on which end, which key, to what.
pub type Change = (End, &'static str, u8);

/// An interface's IPv6 settings that matter here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Conf {
    pub disable_ipv6: Option<u8>,
    pub accept_ra: Option<u8>,
    pub forwarding: Option<u8>,
}

impl Conf {
    pub fn of(dev: &str) -> Result<Conf> {
        Ok(Conf {
            disable_ipv6: read(dev, "disable_ipv6")?,
            accept_ra: read(dev, "accept_ra")?,
            forwarding: read(dev, "forwarding")?,
        })
    }

    fn get(&self, key: &str) -> Option<u8> {
        match key {
            "disable_ipv6" => self.disable_ipv6,
            "accept_ra" => self.accept_ra,
            _ => None,
        }
    }
}

/// What the attach changes. Always: a bridge that is to carry node-if's IPv6 addresses gets
/// IPv6 on, and takes node-if's `accept_ra` of 2 (advertisements taken although forwarding).
/// With `node.enable_ipv6` (`enable`) besides: IPv6 on for node-if too, and on a bridge that
/// forwards, `accept_ra` 2 instead of 1. An `accept_ra` of 0 is left alone: then something else
/// (systemd-networkd) handles advertisements itself.
pub fn wanted(enable: bool, uplink_carries_v6: bool, uplink: &Conf, bridge: &Conf) -> Vec<Change> {
    let mut out = Vec::new();
    if enable && uplink.disable_ipv6 == Some(1) {
        out.push((End::Uplink, "disable_ipv6", 0));
    }
    if (enable || uplink_carries_v6) && bridge.disable_ipv6 == Some(1) {
        out.push((End::Bridge, "disable_ipv6", 0));
    }
    let forwards = enable && bridge.forwarding == Some(1);
    if bridge.accept_ra == Some(1) && (forwards || uplink.accept_ra == Some(2)) {
        out.push((End::Bridge, "accept_ra", 2));
    }
    out
}

/// The values `wanted` replaces, as they are now (for the ledger).
pub fn befores(changes: &[Change], uplink: &Conf, bridge: &Conf) -> Vec<Before> {
    changes
        .iter()
        .filter_map(|(end, key, _)| {
            let conf = match end {
                End::Uplink => uplink,
                End::Bridge => bridge,
            };
            conf.get(key).map(|value| Before {
                end: *end,
                key: key.to_string(),
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(disable: u8, ra: u8, fwd: u8) -> Conf {
        Conf {
            disable_ipv6: Some(disable),
            accept_ra: Some(ra),
            forwarding: Some(fwd),
        }
    }

    #[test]
    fn ipv6_goes_on_and_a_forwarding_bridge_takes_advertisements() {
        assert!(wanted(true, true, &conf(0, 1, 0), &conf(0, 1, 0)).is_empty());
        // Without the key: the bridge follows what node-if carries, node-if is left alone.
        assert!(wanted(false, false, &conf(1, 1, 1), &conf(1, 1, 1)).is_empty());
        assert_eq!(
            wanted(false, true, &conf(0, 2, 1), &conf(1, 1, 1)),
            [
                (End::Bridge, "disable_ipv6", 0),
                (End::Bridge, "accept_ra", 2)
            ]
        );
        assert_eq!(
            wanted(true, false, &conf(1, 1, 0), &conf(1, 1, 1)),
            [
                (End::Uplink, "disable_ipv6", 0),
                (End::Bridge, "disable_ipv6", 0),
                (End::Bridge, "accept_ra", 2)
            ]
        );
        // networkd handles advertisements itself (accept_ra 0): left alone.
        assert!(wanted(true, true, &conf(0, 0, 1), &conf(0, 0, 1)).is_empty());
        // No IPv6 in the kernel: nothing to change, nothing recorded.
        assert!(wanted(true, true, &Conf::default(), &Conf::default()).is_empty());
        let w = wanted(true, true, &conf(0, 1, 1), &conf(0, 1, 1));
        assert_eq!(
            befores(&w, &conf(0, 1, 1), &conf(0, 1, 1)),
            [Before {
                end: End::Bridge,
                key: "accept_ra".into(),
                value: 1
            }]
        );
    }

    #[test]
    fn a_ledger_naming_another_setting_is_refused() {
        let bad = Before {
            end: End::Uplink,
            key: "../../ipv4/ip_forward".into(),
            value: 1,
        };
        assert!(bad.problem().is_some());
        let ok = Before {
            end: End::Bridge,
            key: "accept_ra".into(),
            value: 2,
        };
        assert!(ok.problem().is_none());
    }
}
