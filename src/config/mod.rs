//! Configuration: every key, its default, and where its effective value came from.
//!
//! Precedence, highest first: command-line flags, environment (`NCP_BOOTSTRAP_<SECTION>_<KEY>`),
//! the config file (TOML), ncp.ini (`ovs_uplink_port` in `[nsx_node_agent]` as NCP 3.x and later
//! write it, or in `[nsx_kube_proxy]` as NCP 2.x did; `[nsx_node_agent] ovs_bridge`), built-in
//! defaults.

pub mod ncp_ini;

use crate::error::input;
use crate::host::{paths, HostRoot};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

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
    KeyDef { name: "node.uplink_dhcp", ty: Type::Choice(&["auto", "true", "false"]), default: Some("auto"),
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
    KeyDef { name: "apparmor.mode", ty: Type::Choice(&["auto", "required", "off"]), default: Some("auto"),
        doc: "auto: load the profile where AppArmor is enabled; required: fail without it; off: skip" },
    KeyDef { name: "apparmor.profile", ty: Type::Str, default: Some("node-agent-apparmor"),
        doc: "name of the profile the shipped file defines and the DaemonSet annotation names" },
    KeyDef { name: "ovs.datapath_type", ty: Type::Choice(&["system", "netdev"]), default: Some("system"),
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
        doc: "use NSX's OVS kernel module instead of the distribution's (ncp.ini [nsx_node_agent] use_nsx_ovs_kernel_module): read and shown; this version loads the distribution's module and warns while the key is on" },
    KeyDef { name: "log.dir", ty: Type::Str, default: None,
        doc: "NCP's log directory (ncp.ini [DEFAULT] log_dir): the OVS daemons' logs go to <log.dir>/openvswitch unless ovs.log_dir is set" },
    KeyDef { name: "log.file", ty: Type::Str, default: None,
        doc: "NCP's log file (ncp.ini [DEFAULT] log_file): shown only; ncp-bootstrap logs to stderr, which the kubelet or journald keeps and rotates" },
    KeyDef { name: "ovs.on_exit", ty: Type::Choice(&["keep", "restore"]), default: Some("keep"),
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
fn checked(def: &KeyDef, value: Value, origin: &str) -> Result<Value> {
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
const MTU_MIN: u64 = 68;
const MTU_MAX: u64 = 65535;

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

fn parse_typed(def: &KeyDef, text: &str, origin: &str) -> Result<Value> {
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
const BOOL_SPELLINGS: &str = "a boolean: true/false, yes/no, on/off or 1/0";
const WHOLE_NUMBER: &str = "a whole number of 0 or more (digits only)";

/// One set of boolean spellings for every source, case-insensitive.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_toml(def: &KeyDef, item: &toml_edit::Item, file: &str) -> Result<Value> {
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

/// Where the inputs come from; built by the CLI, or by tests.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// `--config FILE` (the process's own filesystem); otherwise the host root's default file.
    pub config_file: Option<PathBuf>,
    /// `--ncp-ini FILE`; otherwise `/etc/nsx-ujo/ncp.ini` when present.
    pub ncp_ini: Option<PathBuf>,
    /// Flag overrides: (key, flag name, value as text).
    pub flags: Vec<(&'static str, &'static str, String)>,
    pub env: BTreeMap<String, String>,
}

impl Inputs {
    pub fn from_process_env() -> BTreeMap<String, String> {
        std::env::vars().collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub values: BTreeMap<&'static str, Resolved>,
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// A config file's text; a FIFO or directory there is an error naming it, never a hang.
fn read_text(p: &Path) -> std::io::Result<String> {
    match crate::host::read_regular(p) {
        Ok(Some(b)) => String::from_utf8(b)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")),
        Ok(None) => Err(std::io::ErrorKind::NotFound.into()),
        Err(e) => Err(std::io::Error::other(format!("{e:#}"))),
    }
}

/// The config file `config set` and `load` use: the flag's, or the host root's default.
pub fn config_file_path(host: &HostRoot, inputs: &Inputs) -> Result<PathBuf> {
    match &inputs.config_file {
        Some(p) => Ok(p.clone()),
        None => host.resolve(paths::CONFIG_FILE),
    }
}

impl Config {
    pub fn load(host: &HostRoot, inputs: &Inputs) -> Result<Config> {
        let mut values: BTreeMap<&'static str, Resolved> = KEYS
            .iter()
            .map(|k| {
                let value = k.default.map(|d| {
                    parse_text(k, d, "built-in default").unwrap_or(Value::Str(d.to_string()))
                });
                (
                    k.name,
                    Resolved {
                        value,
                        source: Source::Default,
                    },
                )
            })
            .collect();
        let mut warnings = Vec::new();

        let ini_path = inputs
            .ncp_ini
            .clone()
            .unwrap_or_else(|| PathBuf::from(paths::NCP_INI));
        match read_text(&ini_path) {
            Ok(text) => {
                for v in ncp_ini_values(&text, &ini_path)? {
                    let origin = format!("ncp.ini {} {}", ini_path.display(), v.at);
                    let def = key_def(v.key)
                        .with_context(|| format!("ncp.ini maps to unknown key {}", v.key))?;
                    let value = parse_ini_value(def, &v.value, &origin)?;
                    values.insert(
                        v.key,
                        Resolved {
                            value: Some(value),
                            source: Source::NcpIni(format!("{} {}", ini_path.display(), v.at)),
                        },
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && inputs.ncp_ini.is_none() => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(input(format!(
                    "ncp.ini {} (--ncp-ini) does not exist: name the file NCP's \
                     nsx-node-agent-config ConfigMap is mounted as (/etc/nsx-ujo/ncp.ini in NCP's \
                     pods), or leave --ncp-ini out",
                    ini_path.display()
                )))
            }
            Err(e) => return Err(input(format!("ncp.ini {}: {e}", ini_path.display()))),
        }

        let file = config_file_path(host, inputs)?;
        match read_text(&file) {
            Ok(text) => {
                let shown = file.display().to_string();
                for (def, item) in toml_items(&text, &shown)? {
                    let value = parse_toml(def, &item, &shown)?;
                    // `config set` writes this file once; a later ncp.ini change (the ConfigMap)
                    // would otherwise be overridden without a word.
                    if let Some(Resolved {
                        value: Some(ini),
                        source: Source::NcpIni(ini_file),
                    }) = values.get(def.name)
                    {
                        if *ini != value {
                            warnings.push(format!(
                                "{}: config file {shown} says {value}, ncp.ini {ini_file} says \
                                 {ini}; the config file wins. Remove the key from the config \
                                 file to follow ncp.ini",
                                def.name
                            ));
                        }
                    }
                    values.insert(
                        def.name,
                        Resolved {
                            value: Some(value),
                            source: Source::File(shown.clone()),
                        },
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && inputs.config_file.is_none() => {}
            Err(e) => return Err(input(format!("config file {}: {e}", file.display()))),
        }

        for (var, text) in &inputs.env {
            if !var.starts_with("NCP_BOOTSTRAP_") {
                continue;
            }
            match KEYS.iter().find(|k| env_var(k.name) == *var) {
                // An empty variable (`value: ""` in a manifest) leaves the key unset.
                Some(_) if text.is_empty() => {}
                Some(def) => {
                    let value = parse_text(def, text, &format!("environment {var}"))?;
                    values.insert(
                        def.name,
                        Resolved {
                            value: Some(value),
                            source: Source::Env(var.clone()),
                        },
                    );
                }
                None => warnings.push(format!(
                    "environment {var} names no configuration key; ignored"
                )),
            }
        }

        for (key, flag, text) in &inputs.flags {
            let def =
                key_def(key).with_context(|| format!("flag {flag} maps to unknown key {key}"))?;
            let value = parse_text(def, text, &format!("flag {flag}"))?;
            values.insert(
                def.name,
                Resolved {
                    value: Some(value),
                    source: Source::Flag(flag.to_string()),
                },
            );
        }
        derive_ovs_log_dir(&mut values);
        if let Some(Resolved {
            value: Some(Value::Bool(true)),
            source,
        }) = values.get("ovs.nsx_kernel_module")
        {
            warnings.push(format!(
                "ovs.nsx_kernel_module is on ({source}), but this ncp-bootstrap does not install \
                 NSX's OVS kernel module: OVS runs on the distribution's openvswitch module. Set \
                 use_nsx_ovs_kernel_module = False to use it knowingly"
            ));
        }
        Ok(Config { values, warnings })
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key).and_then(|r| r.value.as_ref())
    }

    pub fn source(&self, key: &str) -> Option<&Source> {
        self.values.get(key).map(|r| &r.source)
    }

    fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn bool(&self, key: &str) -> bool {
        matches!(self.get(key), Some(Value::Bool(true)))
    }

    fn int(&self, key: &str) -> Option<u64> {
        match self.get(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    fn list(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Value::List(l)) => l.clone(),
            _ => Vec::new(),
        }
    }
}

/// NCP's nsx-ovs keeps OVS's logs under NCP's log directory (`<log_dir>/openvswitch`): with
/// `log.dir` set and `ovs.log_dir` left at its default, OVS's logs go there, and `config show`
/// names `log.dir`'s source for it.
fn derive_ovs_log_dir(values: &mut BTreeMap<&'static str, Resolved>) {
    let Some(Resolved {
        value: Some(Value::Str(dir)),
        source,
    }) = values.get("log.dir")
    else {
        return;
    };
    if !matches!(values.get("ovs.log_dir"), Some(r) if r.source == Source::Default) {
        return;
    }
    let derived = Resolved {
        value: Some(Value::Str(format!(
            "{}/openvswitch",
            dir.trim_end_matches('/')
        ))),
        source: source.clone(),
    };
    values.insert("ovs.log_dir", derived);
}

/// Every `[section] key` of a config file, each checked to be a known key.
fn toml_items(text: &str, file: &str) -> Result<Vec<(&'static KeyDef, toml_edit::Item)>> {
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| input(format!("config file {file} is not valid TOML: {e}")))?;
    let mut out = Vec::new();
    for (section, item) in doc.iter() {
        let table = item.as_table_like().ok_or_else(|| {
            input(format!(
                "config file {file}: `{section}` must be a [section] table"
            ))
        })?;
        for (key, item) in table.iter() {
            let name = format!("{section}.{key}");
            let def = key_def(&name).ok_or_else(|| {
                input(format!(
                    "config file {file}: unknown key `{name}`; known keys: {}",
                    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                ))
            })?;
            out.push((def, item.clone()));
        }
    }
    Ok(out)
}

/// An ncp.ini value the bootstrap takes: our key, the value, and where in the file it is
/// (`[section] key`, for `config show`).
#[derive(Debug, PartialEq)]
struct IniValue {
    key: &'static str,
    value: String,
    at: String,
}

/// The ncp.ini keys we take, each with the sections NCP has kept it in, newest first: NCP 3.x
/// and later read `ovs_uplink_port` in `[nsx_node_agent]`, NCP 2.x in `[nsx_kube_proxy]`.
/// `[DEFAULT]` keys are read through `DEFAULT` itself (every section sees them).
pub const NCP_INI_KEYS: &[(&str, &[&str], &str)] = &[
    (
        "node.uplink",
        &["nsx_node_agent", "nsx_kube_proxy"],
        "ovs_uplink_port",
    ),
    ("node.bridge", &["nsx_node_agent"], "ovs_bridge"),
    (
        "node.uplink_dhcp",
        &["nsx_node_agent"],
        "is_dhcp_configured_on_ovs_uplink_port",
    ),
    ("node.mtu", &["nsx_node_agent"], "mtu"),
    ("node.enable_ipv6", &["nsx_node_agent"], "enable_ipv6"),
    ("cni.portmap", &["nsx_node_agent"], "use_ncp_portmap"),
    (
        "ovs.nsx_kernel_module",
        &["nsx_node_agent"],
        "use_nsx_ovs_kernel_module",
    ),
    ("ovs.log_max_mb", &["DEFAULT"], "log_rotation_file_max_mb"),
    ("ovs.log_backups", &["DEFAULT"], "log_rotation_backup_count"),
    ("log.dir", &["DEFAULT"], "log_dir"),
    ("log.file", &["DEFAULT"], "log_file"),
];

/// An ncp.ini value as oslo.config reads it: a choice is matched without regard to case
/// (`is_dhcp_configured_on_ovs_uplink_port = True`), the rest as any text value.
fn parse_ini_value(def: &KeyDef, text: &str, origin: &str) -> Result<Value> {
    match def.ty {
        Type::Choice(choices) => {
            let lower = text.to_ascii_lowercase();
            match choices.iter().find(|c| **c == lower) {
                Some(c) => parse_text(def, c, origin),
                None => parse_text(def, text, origin),
            }
        }
        _ => parse_text(def, text, origin),
    }
}

/// The values we take from ncp.ini (`ncp_ini`: oslo.config's INI, as NCP reads it). A key set
/// in two of its sections to different values is refused, naming both.
fn ncp_ini_values(text: &str, path: &Path) -> Result<Vec<IniValue>> {
    let ini =
        ncp_ini::Ini::parse(text).map_err(|e| input(format!("ncp.ini {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (key, sections, name) in NCP_INI_KEYS {
        let found: Vec<ncp_ini::Found> = sections.iter().filter_map(|s| ini.get(s, name)).collect();
        let Some(first) = found.first() else { continue };
        if let Some(other) = found.iter().find(|f| f.value != first.value) {
            return Err(input(format!(
                "ncp.ini {}: `{name}` is `{}` in [{}] and `{}` in [{}]; NCP 3.x and later read \
                 [{}], NCP 2.x [{}]: set it in one section, or to the same value in both",
                path.display(),
                first.value,
                first.section,
                other.value,
                other.section,
                sections[0],
                sections[sections.len() - 1],
            )));
        }
        out.push(IniValue {
            key,
            value: first.value.clone(),
            at: format!("[{}] {name}", first.section),
        });
    }
    Ok(out)
}

/// Sets `key = value` in a config file's text, keeping its comments and layout.
pub fn set_in_text(text: &str, file: &str, key: &str, value_text: &str) -> Result<String> {
    let def = key_def(key).ok_or_else(|| {
        input(format!(
            "unknown key `{key}`; known keys: {}",
            KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let value = parse_text(def, value_text, "config set")?;
    // The file's byte order mark and CRLF line ends (an editor's on another system) are kept.
    let bom = text.starts_with('\u{feff}');
    let crlf = text.contains("\r\n");
    let body = text.trim_start_matches('\u{feff}').replace("\r\n", "\n");
    let mut doc: toml_edit::DocumentMut = body
        .parse()
        .map_err(|e| input(format!("config file {file} is not valid TOML: {e}")))?;
    let (section, name) = key.split_once('.').context("keys are section.name")?;
    if doc.get(section).is_none() {
        doc[section] = toml_edit::table();
    }
    let table = doc[section]
        .as_table_like_mut()
        .ok_or_else(|| input(format!("config file {file}: `{section}` is not a table")))?;
    let new = match value {
        Value::Str(s) => toml_edit::value(s),
        Value::Bool(b) => toml_edit::value(b),
        Value::Int(i) => toml_edit::value(
            i64::try_from(i).map_err(|_| input(format!("`{key}` = {i} is too large")))?,
        ),
        Value::List(l) => toml_edit::value(l.iter().collect::<toml_edit::Array>()),
    };
    match table.get_mut(name) {
        // Keep the key's own decoration (comments before it, spacing) by replacing only the value.
        Some(toml_edit::Item::Value(old)) => {
            let decor = old.decor().clone();
            if let toml_edit::Item::Value(mut v) = new {
                *v.decor_mut() = decor;
                *old = v;
            }
        }
        _ => {
            table.insert(name, new);
        }
    }
    let mut out = doc.to_string();
    if crlf {
        out = out.replace('\n', "\r\n");
    }
    if bom {
        out.insert(0, '\u{feff}');
    }
    Ok(out)
}

/// `apparmor.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppArmorMode {
    /// Load the profile where AppArmor is enabled, skip elsewhere.
    Auto,
    /// Fail on a host without AppArmor.
    Required,
    Off,
}

/// `ovs.datapath_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datapath {
    /// The kernel module.
    System,
    /// Userspace.
    Netdev,
}

impl Datapath {
    pub fn as_str(self) -> &'static str {
        match self {
            Datapath::System => "system",
            Datapath::Netdev => "netdev",
        }
    }
}

/// `node.uplink_dhcp` (ncp.ini `is_dhcp_configured_on_ovs_uplink_port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UplinkDhcp {
    /// Told by the addresses' lifetimes.
    Auto,
    /// Declared DHCP: its addresses may be moved, as with `node.allow_expiring_lease`.
    Dhcp,
    /// Declared static: a dynamic address on node-if contradicts it.
    Static,
}

/// `ovs.on_exit`: what `ovs run` does with the uplink on SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExit {
    Keep,
    Restore,
}

/// The configuration as typed values, built once per run from `Config` (whose `KEYS` table
/// holds every default) and carried in the step context. Code reads settings here, never by
/// string key.
#[derive(Debug, Clone)]
pub struct Settings {
    /// node-if; `None` when neither flag, environment, config file nor ncp.ini names it.
    pub uplink: Option<String>,
    pub bridge: String,
    pub cni_enabled: bool,
    pub cni_force: bool,
    /// `cni.allow_demo_bundle`.
    pub cni_allow_demo_bundle: bool,
    pub bundle: PathBuf,
    pub apparmor_mode: AppArmorMode,
    pub apparmor_profile: String,
    pub datapath: Datapath,
    /// Host paths (resolve them under the host root).
    pub ovs_run_dir: String,
    pub ovs_db_dir: String,
    pub ovs_log_dir: String,
    pub on_exit: OnExit,
    /// `ovs.keep_flows`.
    pub keep_flows: bool,
    /// `node.allow_expiring_lease`.
    pub allow_expiring_lease: bool,
    /// `node.uplink_dhcp`.
    pub uplink_dhcp: UplinkDhcp,
    /// `node.mtu`: what NSX CNI gives pods.
    pub pod_mtu: u32,
    /// `node.enable_ipv6`.
    pub enable_ipv6: bool,
    /// `cni.portmap`.
    pub cni_portmap: bool,
    /// `ovs.nsx_kernel_module`.
    pub nsx_kernel_module: bool,
    /// `ovs.log_max_mb` in bytes; `None`: never rotate.
    pub ovs_log_max_bytes: Option<u64>,
    /// `ovs.log_backups`.
    pub ovs_log_backups: u32,
    /// `monitor.grace_seconds`.
    pub monitor_grace: std::time::Duration,
    pub probe_targets: Vec<crate::host::probe::Target>,
    pub probe_timeout: std::time::Duration,
    pub persist_enabled: bool,
    /// `None`: detect the format from the host.
    pub persist_format: Option<crate::render::Format>,
    /// `persist.take_over`.
    pub persist_take_over: bool,
}

impl Settings {
    /// Checks what a type alone does not (probe targets), so that `--dry-run`, `config show`
    /// and the real run accept and refuse the same input, before anything is touched.
    pub fn from_config(c: &Config) -> Result<Settings> {
        let text = |k: &str| -> Result<String> {
            c.str(k)
                .map(String::from)
                .with_context(|| format!("configuration key {k} has no value"))
        };
        let targets = c
            .list("probe.targets")
            .iter()
            .map(|t| {
                crate::host::probe::parse_target(t).map_err(|e| {
                    let from = c
                        .source("probe.targets")
                        .map_or(String::new(), |s| format!(" (from {s})"));
                    input(format!("{e:#}{from}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Settings {
            uplink: c.str("node.uplink").map(String::from),
            bridge: text("node.bridge")?,
            cni_enabled: c.bool("cni.enabled"),
            cni_force: c.bool("cni.force"),
            cni_allow_demo_bundle: c.bool("cni.allow_demo_bundle"),
            bundle: PathBuf::from(text("cni.bundle")?),
            apparmor_mode: match text("apparmor.mode")?.as_str() {
                "required" => AppArmorMode::Required,
                "off" => AppArmorMode::Off,
                _ => AppArmorMode::Auto,
            },
            apparmor_profile: text("apparmor.profile")?,
            datapath: match text("ovs.datapath_type")?.as_str() {
                "netdev" => Datapath::Netdev,
                _ => Datapath::System,
            },
            ovs_run_dir: text("ovs.run_dir")?,
            ovs_db_dir: text("ovs.db_dir")?,
            ovs_log_dir: text("ovs.log_dir")?,
            on_exit: match text("ovs.on_exit")?.as_str() {
                "restore" => OnExit::Restore,
                _ => OnExit::Keep,
            },
            keep_flows: c.bool("ovs.keep_flows"),
            allow_expiring_lease: c.bool("node.allow_expiring_lease"),
            uplink_dhcp: match text("node.uplink_dhcp")?.as_str() {
                "true" => UplinkDhcp::Dhcp,
                "false" => UplinkDhcp::Static,
                _ => UplinkDhcp::Auto,
            },
            pod_mtu: u32::try_from(c.int("node.mtu").unwrap_or(1500)).unwrap_or(u32::MAX),
            enable_ipv6: c.bool("node.enable_ipv6"),
            cni_portmap: c.bool("cni.portmap"),
            nsx_kernel_module: c.bool("ovs.nsx_kernel_module"),
            ovs_log_max_bytes: match c.int("ovs.log_max_mb") {
                None | Some(0) => None,
                Some(mb) => Some(mb.saturating_mul(1024 * 1024)),
            },
            ovs_log_backups: u32::try_from(c.int("ovs.log_backups").unwrap_or(5))
                .unwrap_or(u32::MAX),
            monitor_grace: std::time::Duration::from_secs(
                c.int("monitor.grace_seconds").unwrap_or(30),
            ),
            probe_targets: targets,
            probe_timeout: std::time::Duration::from_millis(
                c.int("probe.timeout_ms")
                    .context("configuration key probe.timeout_ms has no value")?,
            ),
            persist_enabled: c.bool("persist.enabled"),
            persist_format: crate::render::Format::parse(&text("persist.format")?),
            persist_take_over: c.bool("persist.take_over"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        assert_eq!(env_var("node.uplink"), "NCP_BOOTSTRAP_NODE_UPLINK");
        assert_eq!(
            env_var("ovs.datapath_type"),
            "NCP_BOOTSTRAP_OVS_DATAPATH_TYPE"
        );
    }

    #[test]
    fn defaults_parse() {
        for k in KEYS {
            if let Some(d) = k.default {
                parse_text(k, d, "default").unwrap();
            }
        }
    }

    #[test]
    fn set_keeps_comments() {
        let text = "# site config\n[node]\n# the NSX NIC\nuplink = \"eth1\"  # trailing\n\n[ovs]\ndatapath_type = \"system\"\n";
        let out = set_in_text(text, "f", "node.uplink", "ens192").unwrap();
        assert_eq!(out, text.replace("\"eth1\"", "\"ens192\""));
        let out = set_in_text(text, "f", "probe.targets", "gateway,10.0.0.1:6443").unwrap();
        assert!(out.starts_with(text));
        assert!(
            out.contains("[probe]\ntargets = [\"gateway\", \"10.0.0.1:6443\"]"),
            "{out}"
        );
        assert!(set_in_text(text, "f", "ovs.datapath_type", "fast").is_err());
        assert!(set_in_text(text, "f", "node.nope", "x").is_err());
    }

    #[test]
    fn config_set_keeps_a_bom_and_crlf_and_refuses_what_commands_refuse() {
        let text = "\u{feff}# ours\r\n[node]\r\nuplink = \"eth1\"\r\n";
        let out = set_in_text(text, "f", "node.bridge", "br-nsx").unwrap();
        assert!(out.starts_with("\u{feff}# ours\r\n[node]\r\n"), "{out:?}");
        assert!(out.contains("bridge = \"br-nsx\"\r\n"), "{out:?}");
        assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
        for (key, value, why) in [
            ("probe.targets", "gateway,foo bar", "not a target"),
            ("node.uplink", "a-very-long-nic-name", "20 bytes long"),
            ("ovs.run_dir", "var/run/openvswitch", "not an absolute path"),
            ("node.bridge", "br int", "whitespace"),
        ] {
            let e = format!("{:#}", set_in_text(text, "f", key, value).unwrap_err());
            assert!(e.contains(why) && e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn ncp_ini_is_read() {
        let text = "[DEFAULT]\n# c\n[nsx_kube_proxy]\novs_uplink_port = ens224\n[nsx_node_agent]\novs_bridge=br-nsx\nother = 1\n";
        let v = ncp_ini_values(text, Path::new("ncp.ini")).unwrap();
        let got: Vec<(&str, &str, &str)> = v
            .iter()
            .map(|v| (v.key, v.value.as_str(), v.at.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("node.uplink", "ens224", "[nsx_kube_proxy] ovs_uplink_port"),
                ("node.bridge", "br-nsx", "[nsx_node_agent] ovs_bridge"),
            ]
        );
    }

    #[test]
    fn ncp_3_and_later_name_the_uplink_under_the_node_agent() {
        let text = "[nsx_node_agent]\novs_bridge = br-int\novs_uplink_port = ens192\n";
        let v = ncp_ini_values(text, Path::new("ncp.ini")).unwrap();
        assert_eq!(v[0].key, "node.uplink");
        assert_eq!(v[0].value, "ens192");
        assert_eq!(v[0].at, "[nsx_node_agent] ovs_uplink_port");
        // The same value in both sections is one value; different values are refused by name.
        let both = "[nsx_node_agent]\novs_uplink_port = ens192\n[nsx_kube_proxy]\novs_uplink_port = ens192\n";
        assert_eq!(
            ncp_ini_values(both, Path::new("ncp.ini")).unwrap()[0].value,
            "ens192"
        );
        let clash = "[nsx_node_agent]\novs_uplink_port = ens192\n[nsx_kube_proxy]\novs_uplink_port = ens224\n";
        let e = format!(
            "{:#}",
            ncp_ini_values(clash, Path::new("/etc/nsx-ujo/ncp.ini")).unwrap_err()
        );
        for want in [
            "/etc/nsx-ujo/ncp.ini",
            "[nsx_node_agent]",
            "[nsx_kube_proxy]",
            "ens192",
            "ens224",
        ] {
            assert!(e.contains(want), "{want} missing in {e}");
        }
    }
}
