//! Configuration: every key, its default, and where its effective value came from.
//!
//! Precedence, highest first: command-line flags, environment (`NCP_BOOTSTRAP_<SECTION>_<KEY>`),
//! the config file (TOML), ncp.ini (`ovs_uplink_port` in `[nsx_node_agent]` as NCP 3.x and later
//! write it, or in `[nsx_kube_proxy]` as NCP 2.x did; `[nsx_node_agent] ovs_bridge`), built-in
//! defaults.

mod keys;
pub mod ncp_ini;
mod settings;

pub use keys::*;
pub use settings::*;

use crate::error::input;
use crate::host::{paths, HostRoot};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
