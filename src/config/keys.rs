//! Every configuration key (`KEYS`: name, type, default, what it means), the values keys take,
//! and the rules a value must follow wherever it comes from.

use super::settings::{AppArmorMode, Choice, Datapath, OnExit, UplinkDhcp};
use crate::error::input;
use anyhow::Result;
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Str,
    Bool,
    Int,
    List,
    Choice(&'static [&'static str]),
}

pub struct KeyDef {
    pub name: &'static str,
    pub ty: Type,
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

/// Every configuration key. The README's table is checked against this list by a test.
pub const KEYS: &[KeyDef] = &[
    KeyDef { name: "node.uplink", ty: Type::Str, default: None,
        doc: "node-if: the NIC attached to the node's NSX logical switch (ncp.ini [nsx_node_agent] ovs_uplink_port; NCP 2.x: [nsx_kube_proxy])" },
    KeyDef { name: "node.bridge", ty: Type::Str, default: Some("br-int"),
        doc: "the OVS integration bridge (ncp.ini [nsx_node_agent] ovs_bridge)" },
    KeyDef { name: "node.allow_expiring_lease", ty: Type::Bool, default: Some("false"),
        doc: "attach an uplink whose DHCP/SLAAC addresses nothing renews on the bridge (they expire there); without it such an attach is refused, except under systemd-networkd, whose client is carried over (flag --allow-expiring-lease)" },
    KeyDef { name: "node.uplink_dhcp", ty: Type::Choice(UplinkDhcp::SPELLINGS), default: Some("auto"),
        doc: "whether node-if's addresses come from DHCP (ncp.ini [nsx_node_agent] is_dhcp_configured_on_ovs_uplink_port): auto looks at their lifetimes; true says a DHCP client renews them on the bridge (as node.allow_expiring_lease); false says they are static, and a dynamic address on node-if is refused by name" },
    KeyDef { name: "node.mtu", ty: Type::Int, default: Some("1500"),
        doc: "the MTU NSX CNI gives pods (ncp.ini [nsx_node_agent] mtu): `ovs run`, `uplink attach` and `status` warn when node-if's MTU is smaller, since pods' larger packets would be dropped" },
    KeyDef { name: "node.enable_ipv6", ty: Type::Bool, default: Some("false"),
        doc: "pods get IPv6 (ncp.ini [nsx_node_agent] enable_ipv6): the attach leaves IPv6 enabled on the bridge and node-if and sets the bridge's accept_ra to 2 where forwarding is on; both restored by detach" },
    KeyDef { name: "cni.enabled", ty: Type::Bool, default: Some("true"),
        doc: "whether `install` installs the CNI plugin" },
    KeyDef { name: "cni.force", ty: Type::Bool, default: Some("false"),
        doc: "install the bundle's CNI even over a newer one on the host: a rollback (flag --force)" },
    KeyDef { name: "cni.bundle", ty: Type::Str, default: Some("/usr/share/ncp-bootstrap/bundle"),
        doc: "directory that mirrors the host with the files to install (flag --bundle)" },
    KeyDef { name: "cni.portmap", ty: Type::Bool, default: Some("false"),
        doc: "install the bundle's portmap plugin as /opt/cni/bin/portmap (ncp.ini [nsx_node_agent] use_ncp_portmap): never over a portmap that is not ours; turning it off removes ours" },
    KeyDef { name: "cni.allow_demo_bundle", ty: Type::Bool, default: Some("false"),
        doc: "install the CNI from a demo bundle (an image built without the NCP release's plugin, marked by the bundle's DEMO-BUNDLE file): for test nodes only (flag --allow-demo-bundle)" },
    KeyDef { name: "apparmor.mode", ty: Type::Choice(AppArmorMode::SPELLINGS), default: Some("auto"),
        doc: "auto: load the profile where AppArmor is enabled; required: fail without it; off: skip" },
    KeyDef { name: "apparmor.profile", ty: Type::Str, default: Some("node-agent-apparmor"),
        doc: "name of the profile the shipped file defines and the DaemonSet annotation names" },
    KeyDef { name: "ovs.datapath_type", ty: Type::Choice(Datapath::SPELLINGS), default: Some("system"),
        doc: "datapath of the bridge: system (kernel module) or netdev (userspace)" },
    KeyDef { name: "ovs.run_dir", ty: Type::Str, default: Some("/var/run/openvswitch"),
        doc: "OVS run directory (pid files, control sockets) on the host" },
    KeyDef { name: "ovs.db_dir", ty: Type::Str, default: Some("/etc/openvswitch"),
        doc: "directory of the host's OVS database conf.db" },
    KeyDef { name: "ovs.log_dir", ty: Type::Str, default: Some("/var/log/openvswitch"),
        doc: "OVS log directory on the host; with log.dir set and this key left at its default, <log.dir>/openvswitch (NCP's nsx-ovs layout)" },
    KeyDef { name: "ovs.log_max_mb", ty: Type::Int, default: Some("100"),
        doc: "`ovs run` rotates an OVS daemon's log once it is larger than this many MiB (ncp.ini [DEFAULT] log_rotation_file_max_mb); 0: never" },
    KeyDef { name: "ovs.log_backups", ty: Type::Int, default: Some("5"),
        doc: "rotated OVS logs kept per daemon, `.log.1` newest (ncp.ini [DEFAULT] log_rotation_backup_count)" },
    KeyDef { name: "ovs.nsx_kernel_module", ty: Type::Bool, default: Some("false"),
        doc: "use NSX's OVS kernel module instead of the distribution's (ncp.ini [nsx_node_agent] use_nsx_ovs_kernel_module): `install` puts the bundle's kmod/<kernel release>/*.ko under /lib/modules/<release>/updates/nsx-ovs, runs depmod and loads it (swapping an unused openvswitch; `ovs run` swaps one under the node's addresses after giving them back to node-if); a kernel the bundle does not cover is refused; cleanup gives the distribution's module back" },
    KeyDef { name: "log.dir", ty: Type::Str, default: None,
        doc: "NCP's log directory (ncp.ini [DEFAULT] log_dir): the OVS daemons' logs go to <log.dir>/openvswitch unless ovs.log_dir is set" },
    KeyDef { name: "log.file", ty: Type::Str, default: None,
        doc: "NCP's log file (ncp.ini [DEFAULT] log_file): shown only; ncp-bootstrap logs to stderr, which the kubelet or journald keeps and rotates" },
    KeyDef { name: "ovs.on_exit", ty: Type::Choice(OnExit::SPELLINGS), default: Some("keep"),
        doc: "on SIGTERM, `ovs run` keeps the uplink on the bridge (fast restart) or restores it to node-if" },
    KeyDef { name: "ovs.keep_flows", ty: Type::Bool, default: Some("true"),
        doc: "`ovs run` saves the bridge's OpenFlow flows and restores them at its next start under flow-restore-wait, so a restart or upgrade does not flush the kernel datapath" },
    KeyDef { name: "monitor.grace_seconds", ty: Type::Int, default: Some("30"),
        doc: "`monitor` gives node-if its addresses back once nsx-ovs (`ovs run` and its daemons) has been gone this long" },
    KeyDef { name: "probe.targets", ty: Type::List, default: Some("gateway"),
        doc: "connectivity probes around an uplink move: IPs, host:port (TCP), or `gateway`" },
    KeyDef { name: "probe.timeout_ms", ty: Type::Int, default: Some("5000"),
        doc: "how long probes may take to answer after a move before it is rolled back" },
    KeyDef { name: "persist.enabled", ty: Type::Bool, default: Some("false"),
        doc: "whether `install` writes persistent network config for node-if" },
    KeyDef { name: "persist.take_over", ty: Type::Bool, default: Some("false"),
        doc: "netplan: when another file (cloud-init's) defines node-if, move that definition into ours and disable cloud-init's network rendering, both restored by cleanup (flag --take-over)" },
    KeyDef { name: "persist.format", ty: Type::Choice(&["auto", "ifupdown", "netplan", "ifcfg", "nm-keyfile"]), default: Some("auto"),
        doc: "which network config format `persist` writes" },
];

pub fn key_def(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name == name)
}

/// The env var for a key: `node.uplink` → `NCP_BOOTSTRAP_NODE_UPLINK`.
pub fn env_var(name: &str) -> String {
    format!("NCP_BOOTSTRAP_{}", name.replace('.', "_").to_uppercase())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Str(String),
    Bool(bool),
    Int(u64),
    List(Vec<String>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::List(l) => write!(f, "{}", l.join(",")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Source {
    Flag(String),
    Env(String),
    File(String),
    NcpIni(String),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(n) => write!(f, "flag {n}"),
            Source::Env(n) => write!(f, "env {n}"),
            Source::File(p) => write!(f, "config file {p}"),
            Source::NcpIni(p) => write!(f, "ncp.ini {p}"),
            Source::Default => write!(f, "default"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    pub value: Option<Value>,
    pub source: Source,
}

/// Parses a value written as text (env, flag, `config set`) for a key.
pub fn parse_text(def: &KeyDef, text: &str, origin: &str) -> Result<Value> {
    let value = parse_typed(def, text, origin)?;
    checked(def, value, origin)
}

/// The value, if it is one every command can use: keys whose values name things have rules of
/// their own, checked wherever a value comes from (flag, environment, config file, ncp.ini,
/// `config set`), so that nothing is accepted that a later command refuses.
pub(super) fn checked(def: &KeyDef, value: Value, origin: &str) -> Result<Value> {
    let problem = match (def.name, &value) {
        ("node.uplink" | "node.bridge", Value::Str(s)) => interface_name_problem(s),
        (
            "ovs.run_dir" | "ovs.db_dir" | "ovs.log_dir" | "cni.bundle" | "log.dir",
            Value::Str(s),
        ) if !s.starts_with('/') => Some("is not an absolute path".to_string()),
        ("node.mtu", Value::Int(m)) if !(MTU_MIN..=MTU_MAX).contains(m) => Some(format!(
            "is not an MTU the kernel gives an Ethernet link ({MTU_MIN} to {MTU_MAX})"
        )),
        ("probe.targets", Value::List(l)) => l
            .iter()
            .find_map(|t| crate::host::probe::parse_target(t).err())
            .map(|e| format!("has an entry that is not a target ({e:#})")),
        _ => None,
    };
    match problem {
        Some(p) => Err(input(format!(
            "{origin}: `{}` = `{}` {p}",
            def.name,
            crate::error::visible(&value.to_string())
        ))),
        None => Ok(value),
    }
}

/// The MTU range of an Ethernet link: IPv4's minimum, the largest jumbo frame a NIC takes.
pub(super) const MTU_MIN: u64 = 68;
pub(super) const MTU_MAX: u64 = 65535;

/// What is wrong with an interface name, as the kernel sees it: 1 to 15 bytes, no `/` or `:`,
/// no whitespace or control characters, not `.` or `..`.
pub fn interface_name_problem(name: &str) -> Option<String> {
    const IFNAME_MAX: usize = 15;
    if name.is_empty() {
        Some("is empty; name the interface as `ip link` shows it".into())
    } else if name.len() > IFNAME_MAX {
        Some(format!(
            "is {} bytes long; the kernel allows {IFNAME_MAX} for an interface name",
            name.len()
        ))
    } else if name == "." || name == ".." || name.contains(['/', ':']) {
        Some("is not a name the kernel gives an interface".into())
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("contains whitespace or a control character".into())
    } else {
        None
    }
}

pub(super) fn parse_typed(def: &KeyDef, text: &str, origin: &str) -> Result<Value> {
    let bad = |what: &str| input(format!("{origin}: `{}` = `{text}` is not {what}", def.name));
    match def.ty {
        Type::Str => Ok(Value::Str(text.to_string())),
        Type::Bool => parse_bool(text)
            .map(Value::Bool)
            .ok_or_else(|| bad(BOOL_SPELLINGS)),
        Type::Int => text.parse().map(Value::Int).map_err(|_| bad(WHOLE_NUMBER)),
        Type::List => Ok(Value::List(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        )),
        Type::Choice(choices) if choices.contains(&text) => Ok(Value::Str(text.to_string())),
        Type::Choice(choices) => Err(bad(&format!("one of {}", choices.join(", ")))),
    }
}

/// What a boolean may be written as, everywhere (flags' env, environment, config file).
pub(super) const BOOL_SPELLINGS: &str = "a boolean: true/false, yes/no, on/off or 1/0";
pub(super) const WHOLE_NUMBER: &str = "a whole number of 0 or more (digits only)";

/// One set of boolean spellings for every source, case-insensitive.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

pub(super) fn parse_toml(def: &KeyDef, item: &toml_edit::Item, file: &str) -> Result<Value> {
    let bad = |what: &str| {
        input(format!(
            "config file {file}: `{}` = {} is not {what}",
            def.name,
            item.to_string().trim()
        ))
    };
    match def.ty {
        Type::Str | Type::Choice(_) => {
            let s = item.as_str().ok_or_else(|| bad("a string"))?;
            parse_text(def, s, &format!("config file {file}"))
        }
        Type::Bool => item
            .as_bool()
            .or_else(|| item.as_str().and_then(parse_bool))
            .map(Value::Bool)
            .ok_or_else(|| bad(BOOL_SPELLINGS)),
        Type::Int => item
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .map(Value::Int)
            .ok_or_else(|| bad(WHOLE_NUMBER)),
        Type::List => {
            let arr = item.as_array().ok_or_else(|| bad("a list of strings"))?;
            let list = arr
                .iter()
                .map(|v| v.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .map(Value::List)
                .ok_or_else(|| bad("a list of strings"))?;
            checked(def, list, &format!("config file {file}"))
        }
    }
}
