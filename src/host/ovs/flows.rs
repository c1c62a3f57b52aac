//! A bridge's OpenFlow state (TLV mappings, meters, groups, flows) kept across a restart of
//! ovs-vswitchd, the way `ovs-save` and `ovs-ctl restart` do it: saved while the switch runs,
//! put back while the new switch runs with `other_config:flow-restore-wait=true` (it neither
//! flushes nor changes the kernel datapath's flows meanwhile), then the wait is cleared.
//!
//! The copy is refreshed whenever the flow table changes (an `ovs-ofctl monitor` child reports
//! each change) and once more on SIGTERM, so that after a kill -9 the copy is at most one
//! refresh old. The datapath cannot be the source: it holds megaflows derived from the OpenFlow
//! tables, not the rules themselves.

use super::dirs::OvsDirs;
use crate::host::run;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What is saved, one `ovs-ofctl` line per entry, in the bridge's highest OpenFlow version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    pub bridge: String,
    pub protocol: String,
    pub tlv_map: Vec<String>,
    pub meters: Vec<String>,
    pub groups: Vec<String>,
    pub flows: Vec<String>,
}

/// What a restore put back, for the log.
#[derive(Debug, PartialEq)]
pub struct Restored {
    pub flows: usize,
    pub groups: usize,
    pub meters: usize,
    pub tlv: usize,
}

const PROTOCOLS: [&str; 6] = [
    "OpenFlow10",
    "OpenFlow11",
    "OpenFlow12",
    "OpenFlow13",
    "OpenFlow14",
    "OpenFlow15",
];

/// `ovs-ofctl` talking to one bridge's management socket in a run dir.
pub struct Ofctl {
    tool: PathBuf,
    target: String,
    protocol: String,
}

impl Ofctl {
    /// `protocols` is the bridge's `protocols` column as `ovs-vsctl get` prints it.
    pub fn new(dirs: &OvsDirs, bridge: &str, protocols: &str) -> Result<Ofctl> {
        Ok(Ofctl {
            tool: run::find_tool("ovs-ofctl", "save and restore OpenFlow flows")?,
            target: format!("unix:{}", dirs.run.join(format!("{bridge}.mgmt")).display()),
            protocol: highest_protocol(protocols).to_string(),
        })
    }

    fn ofctl(&self, args: &[&str]) -> Result<String> {
        self.ofctl_as(&self.protocol, args, None)
    }

    /// `ovs-ofctl -O PROTOCOL ARGS`, with `input` on its stdin.
    fn ofctl_as(&self, protocol: &str, args: &[&str], input: Option<&[u8]>) -> Result<String> {
        let mut a = vec!["-O", protocol];
        a.extend_from_slice(args);
        Ok(run::run_with_input(&self.tool, a, input)?.stdout)
    }

    /// The bridge's OpenFlow state now.
    pub fn dump(&self, bridge: &str) -> Result<Saved> {
        let t = self.target.as_str();
        Ok(Saved {
            bridge: bridge.to_string(),
            protocol: self.protocol.clone(),
            tlv_map: parse_tlv_map(&self.ofctl(&["dump-tlv-map", t])?),
            meters: if at_least(&self.protocol, "OpenFlow13") {
                parse_meters(&self.ofctl(&["dump-meters", t])?)
            } else {
                Vec::new()
            },
            groups: parse_groups(&self.ofctl(&["dump-groups", t])?),
            flows: parse_flows(&self.ofctl(&["dump-flows", "--no-names", "--no-stats", t])?),
        })
    }

    /// Puts `saved` back: mappings, meters and groups first (flows refer to them), then the
    /// flows in one bundle where the version has bundles, replacing whatever the new switch
    /// started with.
    pub fn restore(&self, saved: &Saved) -> Result<Restored> {
        let t = self.target.as_str();
        if !saved.tlv_map.is_empty() {
            self.ofctl(&["add-tlv-map", t, &saved.tlv_map.join(",")])?;
        }
        for m in &saved.meters {
            self.ofctl(&["add-meter", t, m])?;
        }
        let bundle = at_least(&saved.protocol, "OpenFlow14");
        let from_stdin = |verb: &str, lines: &[String]| -> Result<()> {
            let mut a = vec![verb, t, "-"];
            if bundle {
                a.push("--bundle");
            }
            let text = lines.join("\n") + "\n";
            self.ofctl_as(&saved.protocol, &a, Some(text.as_bytes()))
                .map(|_| ())
        };
        if !saved.groups.is_empty() {
            from_stdin("add-groups", &saved.groups)?;
        }
        from_stdin("replace-flows", &saved.flows)?;
        Ok(Restored {
            flows: saved.flows.len(),
            groups: saved.groups.len(),
            meters: saved.meters.len(),
            tlv: saved.tlv_map.len(),
        })
    }

    /// An `ovs-ofctl monitor` child that sets `dirty` on every change to the flow table. It dies
    /// with us; when the switch goes away it exits, and `running` says so.
    pub fn watch(&self, dirty: Arc<AtomicBool>) -> Result<Watch> {
        let mut cmd = std::process::Command::new(&self.tool);
        cmd.args([
            "-O",
            &self.protocol,
            "monitor",
            &self.target,
            "watch:!initial",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        // ovs-ofctl prints the monitored messages on stderr.
        .stderr(std::process::Stdio::piped());
        let mut child = run::die_with_parent(&mut cmd)
            .spawn()
            .with_context(|| format!("starting {} monitor", self.tool.display()))?;
        let out = child.stderr.take().context("monitor's stderr")?;
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                match line {
                    Ok(l) if l.contains("event=") => dirty.store(true, Ordering::Relaxed),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        Ok(Watch { child })
    }
}

pub struct Watch {
    child: std::process::Child,
}

impl Watch {
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps one bridge's copy current while `ovs run` supervises the switch.
pub struct Keeper {
    ofctl: Ofctl,
    bridge: String,
    path: PathBuf,
    dirty: Arc<AtomicBool>,
    watch: Option<Watch>,
}

impl Keeper {
    pub fn new(dirs: &OvsDirs, bridge: &str, protocols: &str) -> Result<Keeper> {
        Ok(Keeper {
            ofctl: Ofctl::new(dirs, bridge, protocols)?,
            bridge: bridge.to_string(),
            path: store_path(dirs, bridge),
            // The first refresh saves the table as the switch starts with it.
            dirty: Arc::new(AtomicBool::new(true)),
            watch: None,
        })
    }

    /// Puts the saved copy back, if there is one. `None` when there was nothing to restore.
    pub fn restore(&self) -> Result<Option<Restored>> {
        let Some(saved) = load(&self.path, &self.bridge)? else {
            return Ok(None);
        };
        self.ofctl.restore(&saved).map(Some)
    }

    /// Saves the table when it changed since the last save (or unconditionally with `force`),
    /// and keeps the change monitor running.
    pub fn refresh(&mut self, force: bool) -> Result<()> {
        if !self.watch.as_mut().is_some_and(Watch::running) {
            self.watch = Some(self.ofctl.watch(Arc::clone(&self.dirty))?);
            // Changes between the old monitor's end and the new one's start went unseen.
            self.dirty.store(true, Ordering::Relaxed);
        }
        if self.dirty.swap(false, Ordering::Relaxed) || force {
            let saved = self.ofctl.dump(&self.bridge).inspect_err(|_| {
                self.dirty.store(true, Ordering::Relaxed);
            })?;
            save(&self.path, &saved)?;
        }
        Ok(())
    }
}

fn at_least(protocol: &str, min: &str) -> bool {
    let at = |p: &str| PROTOCOLS.iter().position(|k| *k == p);
    at(protocol) >= at(min)
}

fn highest_protocol(protocols: &str) -> &'static str {
    PROTOCOLS
        .iter()
        .rev()
        .find(|p| protocols.contains(*p))
        // An empty column enables every version this OVS knows, up to 1.5.
        .copied()
        .unwrap_or("OpenFlow15")
}

/// Reply lines carry a header ("OFPST_… reply", "NXST_…"); entries are the indented lines.
fn entries(dump: &str) -> impl Iterator<Item = &str> {
    dump.lines()
        .filter(|l| !l.is_empty() && !l.starts_with("OFPST_") && !l.starts_with("NXST_"))
        .map(str::trim)
}

fn parse_flows(dump: &str) -> Vec<String> {
    entries(dump)
        .map(|l| {
            // As ovs-save: ages are not settable, and igmp's match fields parse only by number.
            let mut f = strip_fields(l, &["idle_age", "hard_age"]);
            f = f
                .replace("igmp_type", "tp_src")
                .replace("igmp_code", "tp_dst");
            f.replace("igmp", "ip,nw_proto=2")
        })
        .collect()
}

fn strip_fields(flow: &str, names: &[&str]) -> String {
    flow.split(", ")
        .filter(|part| !names.iter().any(|n| part.starts_with(&format!("{n}="))))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_groups(dump: &str) -> Vec<String> {
    entries(dump)
        .filter(|l| l.starts_with("group_id="))
        .map(String::from)
        .collect()
}

/// `dump-meters` prints a meter over several lines ("meter=3 kbps burst bands=" then one
/// "type=…" line per band); `add-meter` takes it as one.
fn parse_meters(dump: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in entries(dump) {
        if l.starts_with("meter=") {
            out.push(l.to_string());
        } else if l.starts_with("type=") {
            if let Some(m) = out.last_mut() {
                if !m.ends_with('=') {
                    m.push(' ');
                }
                m.push_str(l);
            }
        }
    }
    out
}

/// The mapping table's rows ("0xffff  0x80  4  tun_metadata0") as `add-tlv-map` entries.
fn parse_tlv_map(dump: &str) -> Vec<String> {
    dump.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [class, ty, len, field] if class.starts_with("0x") => {
                    Some(format!("{{class={class},type={ty},len={len}}}->{field}"))
                }
                _ => None,
            }
        })
        .collect()
}

/// Where a bridge's copy lives: in OVS's run directory, which a container restart keeps and a
/// reboot empties, as it does the kernel datapath the flows belong with.
pub fn store_path(dirs: &OvsDirs, bridge: &str) -> PathBuf {
    dirs.run.join(format!("ncp-bootstrap.{bridge}.flows.json"))
}

pub fn save(path: &Path, saved: &Saved) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(saved).context("encoding saved flows")?;
    crate::host::write_atomic_at(path, &bytes, 0o600)
}

/// Reads a saved copy back, refusing one that does not look like what `save` writes: it is fed
/// to the switch, so a damaged or foreign file is reported, not restored.
pub fn load(path: &Path, bridge: &str) -> Result<Option<Saved>> {
    let Some(bytes) = crate::host::read_regular(path)? else {
        return Ok(None);
    };
    let saved: Saved = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a saved flow table", path.display()))?;
    validate(&saved, bridge).with_context(|| format!("refusing {}", path.display()))?;
    Ok(Some(saved))
}

fn validate(s: &Saved, bridge: &str) -> Result<()> {
    if s.bridge != bridge {
        bail!("it is for bridge {:?}, not {bridge:?}", s.bridge);
    }
    if !PROTOCOLS.contains(&s.protocol.as_str()) {
        bail!("protocol {:?} is not an OpenFlow version", s.protocol);
    }
    let lines = [
        ("tlv_map", &s.tlv_map, "{class="),
        ("meters", &s.meters, "meter="),
        ("groups", &s.groups, "group_id="),
        ("flows", &s.flows, ""),
    ];
    for (field, list, prefix) in lines {
        for l in list.iter() {
            if l.is_empty() || !l.starts_with(prefix) || l.chars().any(char::is_control) {
                bail!("{field} holds {l:?}, which ovs-ofctl did not print");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_parse_into_lines_ofctl_takes_back() {
        let flows = "OFPST_FLOW reply (OF1.5) (xid=0x2):\n priority=100,ip,nw_dst=10.1.2.3 actions=drop\n cookie=0x5, table=1, idle_age=3, priority=10,igmp,igmp_type=17 actions=meter:3,group:7\n";
        assert_eq!(
            parse_flows(flows),
            [
                "priority=100,ip,nw_dst=10.1.2.3 actions=drop",
                "cookie=0x5, table=1, priority=10,ip,nw_proto=2,tp_src=17 actions=meter:3,group:7"
            ]
        );
        let meters = "OFPST_METER_CONFIG reply (OF1.5) (xid=0x2):\nmeter=3 kbps burst bands=\ntype=drop rate=1000 burst_size=100\ntype=dscp_remark rate=2000 prec_level=1\nmeter=4 pktps bands=\ntype=drop rate=5\n";
        assert_eq!(
            parse_meters(meters),
            [
                "meter=3 kbps burst bands=type=drop rate=1000 burst_size=100 type=dscp_remark rate=2000 prec_level=1",
                "meter=4 pktps bands=type=drop rate=5"
            ]
        );
        let tlv = "NXT_TLV_TABLE_REPLY (OF1.5) (xid=0x2):\n max option space=256 max fields=64\n allocated option space=4\n\n mapping table:\n  class  type  length  match field\n ------  ----  ------  --------------\n  0xffff  0x80  4  tun_metadata0\n";
        assert_eq!(
            parse_tlv_map(tlv),
            ["{class=0xffff,type=0x80,len=4}->tun_metadata0"]
        );
        assert_eq!(highest_protocol("[OpenFlow10, OpenFlow13]"), "OpenFlow13");
        assert_eq!(highest_protocol("[]"), "OpenFlow15");
    }

    #[test]
    fn a_foreign_or_damaged_copy_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        let good = Saved {
            bridge: "br-int".into(),
            protocol: "OpenFlow15".into(),
            tlv_map: vec![],
            meters: vec!["meter=1 kbps bands=type=drop rate=1".into()],
            groups: vec![],
            flows: vec!["priority=0 actions=NORMAL".into()],
        };
        save(&p, &good).unwrap();
        assert_eq!(load(&p, "br-int").unwrap(), Some(good.clone()));
        assert!(load(&p, "br-ex").is_err());
        let mut bad = good.clone();
        bad.groups = vec!["priority=1 actions=drop\ngroup_id=1".into()];
        save(&p, &bad).unwrap();
        assert!(load(&p, "br-int").is_err());
        bad = good;
        bad.protocol = "--help".into();
        save(&p, &bad).unwrap();
        assert!(load(&p, "br-int").is_err());
        std::fs::write(&p, b"{").unwrap();
        assert!(load(&p, "br-int").is_err());
        assert_eq!(load(&dir.path().join("none"), "br-int").unwrap(), None);
    }
}
