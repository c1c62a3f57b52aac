//! The configuration as typed values (`Settings`), built once per run from `Config`.

use super::Config;
use crate::error::input;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// The enum of a choice key: its spellings, in the order of its values, are what `KEYS`
/// accepts for the key, so the two cannot drift apart.
pub trait Choice: Copy + 'static {
    const SPELLINGS: &'static [&'static str];
    const VALUES: &'static [Self];
}

/// The typed value of a choice key; a spelling the enum lacks is an error, never a default.
fn choice<T: Choice>(c: &Config, key: &str) -> Result<T> {
    let text = c
        .str(key)
        .with_context(|| format!("configuration key {key} has no value"))?;
    T::SPELLINGS
        .iter()
        .position(|s| *s == text)
        .and_then(|i| T::VALUES.get(i).copied())
        .with_context(|| {
            format!(
                "configuration key {key} = {text} is not one of {}",
                T::SPELLINGS.join(", ")
            )
        })
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

impl Choice for AppArmorMode {
    const SPELLINGS: &'static [&'static str] = &["auto", "required", "off"];
    const VALUES: &'static [Self] = &[
        AppArmorMode::Auto,
        AppArmorMode::Required,
        AppArmorMode::Off,
    ];
}

impl Choice for Datapath {
    const SPELLINGS: &'static [&'static str] = &["system", "netdev"];
    const VALUES: &'static [Self] = &[Datapath::System, Datapath::Netdev];
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

impl Choice for UplinkDhcp {
    const SPELLINGS: &'static [&'static str] = &["auto", "true", "false"];
    const VALUES: &'static [Self] = &[UplinkDhcp::Auto, UplinkDhcp::Dhcp, UplinkDhcp::Static];
}

/// `ovs.on_exit`: what `ovs run` does with the uplink on SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExit {
    Keep,
    Restore,
}

impl Choice for OnExit {
    const SPELLINGS: &'static [&'static str] = &["keep", "restore"];
    const VALUES: &'static [Self] = &[OnExit::Keep, OnExit::Restore];
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
    /// The configured OVS directories (host paths).
    pub fn ovs_dirs(&self) -> crate::host::ovs::HostDirs<'_> {
        crate::host::ovs::HostDirs {
            run: &self.ovs_run_dir,
            db: &self.ovs_db_dir,
            log: &self.ovs_log_dir,
        }
    }

    /// Checks what a type alone does not (probe targets), so that `--dry-run`, `config show`
    /// and the real run accept and refuse the same input, before anything is touched.
    pub fn from_config(c: &Config) -> Result<Settings> {
        // Every key has its default in `KEYS`: a key without a value is a defect of that table,
        // said as such, never a second default here.
        let text = |k: &str| -> Result<String> {
            c.str(k)
                .map(String::from)
                .with_context(|| format!("configuration key {k} has no value"))
        };
        let int = |k: &str| -> Result<u64> {
            c.int(k)
                .with_context(|| format!("configuration key {k} has no value"))
        };
        let small = |k: &str| -> Result<u32> {
            let v = int(k)?;
            u32::try_from(v).map_err(|_| input(format!("{k} = {v} is larger than {}", u32::MAX)))
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
            apparmor_mode: choice(c, "apparmor.mode")?,
            apparmor_profile: text("apparmor.profile")?,
            datapath: choice(c, "ovs.datapath_type")?,
            ovs_run_dir: text("ovs.run_dir")?,
            ovs_db_dir: text("ovs.db_dir")?,
            ovs_log_dir: text("ovs.log_dir")?,
            on_exit: choice(c, "ovs.on_exit")?,
            keep_flows: c.bool("ovs.keep_flows"),
            allow_expiring_lease: c.bool("node.allow_expiring_lease"),
            uplink_dhcp: choice(c, "node.uplink_dhcp")?,
            pod_mtu: small("node.mtu")?,
            enable_ipv6: c.bool("node.enable_ipv6"),
            cni_portmap: c.bool("cni.portmap"),
            nsx_kernel_module: c.bool("ovs.nsx_kernel_module"),
            ovs_log_max_bytes: match int("ovs.log_max_mb")? {
                0 => None,
                mb => Some(mb.saturating_mul(1024 * 1024)),
            },
            ovs_log_backups: small("ovs.log_backups")?,
            monitor_grace: std::time::Duration::from_secs(int("monitor.grace_seconds")?),
            probe_targets: targets,
            probe_timeout: std::time::Duration::from_millis(int("probe.timeout_ms")?),
            persist_enabled: c.bool("persist.enabled"),
            persist_format: crate::render::Format::parse(&text("persist.format")?),
            persist_take_over: c.bool("persist.take_over"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paired<T: Choice>() -> bool {
        T::SPELLINGS.len() == T::VALUES.len()
    }

    #[test]
    fn every_spelling_has_its_value() {
        assert!(paired::<AppArmorMode>());
        assert!(paired::<Datapath>());
        assert!(paired::<UplinkDhcp>());
        assert!(paired::<OnExit>());
        assert_eq!(Datapath::VALUES[1].as_str(), Datapath::SPELLINGS[1]);
    }
}
