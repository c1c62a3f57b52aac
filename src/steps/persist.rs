//! `persist`: write the uplink's addresses and routes into the host's own network config, in
//! the format the host uses, so that the node reaches its cluster after a reboot before the
//! nsx-ovs container runs.

use super::{Action, Ctx, Plan, Step};
use crate::error::{input, precondition};
use crate::host::netlink::Netlink;
use crate::host::ovs::mac_string;
use crate::host::{sha256_hex, HostRoot};
use crate::ledger::install_file;
use crate::ledger::Ledger;
use crate::netmodel;
use crate::render::{self, ifcfg, ifupdown, netplan, nm_keyfile, Format, NetConfig};
use crate::report::StepReport;
use anyhow::{Context, Result};

pub const NAME: &str = "persist";
use crate::host::paths::{
    IFCFG_DIR as NETWORK_SCRIPTS, IFUPDOWN_INTERFACES as INTERFACES,
    IFUPDOWN_INTERFACES_D as INTERFACES_D,
};
const NETPLAN_DIRS: [&str; 3] = ["/etc/netplan", "/run/netplan", "/lib/netplan"];

/// Files of a host directory (host paths), sorted; empty when it does not exist.
fn list(host: &HostRoot, dir: &str, suffix: &str) -> Result<Vec<String>> {
    let real = host.resolve(dir)?;
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&real) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(suffix) && e.path().is_file() {
                out.push(format!("{dir}/{name}"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A host config file as text, its bytes that are not UTF-8 kept (`render::raw`).
fn text(host: &HostRoot, path: &str) -> Result<String> {
    let bytes = host.read(path)?.unwrap_or_default();
    crate::render::raw::decode(&bytes).ok_or_else(|| {
        crate::error::input(format!(
            "{path} uses characters of the private range U+10FF00..U+10FFFF, which persist \
             needs to keep its non-UTF-8 bytes apart; remove them and run again"
        ))
    })
}

/// The ifupdown file that defines the uplink, if any.
fn ifupdown_file(host: &HostRoot, iface: &str) -> Result<Option<String>> {
    let mut files = vec![INTERFACES.to_string()];
    files.extend(list(host, INTERFACES_D, "")?);
    for f in files {
        if ifupdown::defines(&text(host, &f)?, iface) {
            return Ok(Some(f));
        }
    }
    Ok(None)
}

/// NetworkManager keyfiles that bind the uplink by name.
fn nm_connections(host: &HostRoot, iface: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in list(host, nm_keyfile::CONN_DIR, ".nmconnection")? {
        if nm_keyfile::binds(&text(host, &f)?, iface) {
            out.push(f);
        }
    }
    Ok(out)
}

fn has_any(host: &HostRoot, paths: &[&str]) -> Result<bool> {
    for p in paths {
        if host.exists(p)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Picks the format from what the host root holds, and says why.
pub fn detect(host: &HostRoot, iface: &str) -> Result<(Format, String)> {
    let yamls = list(host, "/etc/netplan", ".yaml")?;
    if !yamls.is_empty() {
        return Ok((
            Format::Netplan,
            format!("netplan configuration found ({})", yamls.join(", ")),
        ));
    }
    if let Some(f) = ifupdown_file(host, iface)? {
        return Ok((Format::Ifupdown, format!("{f} defines {iface}")));
    }
    let ifcfg_file = format!("{NETWORK_SCRIPTS}/ifcfg-{iface}");
    if host.exists(&ifcfg_file)? {
        return Ok((Format::Ifcfg, format!("{ifcfg_file} exists")));
    }
    if let Some(f) = nm_connections(host, iface)?.first() {
        return Ok((
            Format::NmKeyfile,
            format!("{f} is NetworkManager's connection for {iface}"),
        ));
    }
    let mut found = Vec::new();
    if host.exists(INTERFACES)? && has_any(host, &["/sbin/ifup", "/usr/sbin/ifup"])? {
        found.push((
            Format::Ifupdown,
            format!("{INTERFACES} with ifupdown installed"),
        ));
    }
    let ifcfgs: Vec<String> = list(host, NETWORK_SCRIPTS, "")?
        .into_iter()
        .filter(|f| {
            f.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("ifcfg-") && n != "ifcfg-lo")
        })
        .collect();
    if !ifcfgs.is_empty() {
        found.push((
            Format::Ifcfg,
            format!("network-scripts in use ({})", ifcfgs.join(", ")),
        ));
    }
    if host.is_dir(nm_keyfile::CONN_DIR)?
        && has_any(host, &["/usr/sbin/NetworkManager", "/run/NetworkManager"])?
    {
        found.push((
            Format::NmKeyfile,
            format!("NetworkManager with {}", nm_keyfile::CONN_DIR),
        ));
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(input(format!(
            "cannot tell how this host configures its network: no netplan YAML, no ifupdown \
             {INTERFACES} with ifup, no ifcfg files in {NETWORK_SCRIPTS}, no NetworkManager \
             keyfile directory; pass --format ifupdown|netplan|ifcfg|nm-keyfile"
        ))),
        _ => Err(input(format!(
            "more than one network configuration system is in use: {}; pass --format to choose",
            found
                .iter()
                .map(|(f, why)| format!("{} ({why})", f.name()))
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

/// The model: from the ledger's pre-state when the uplink is attached, otherwise live.
pub fn model(ctx: &Ctx, iface: &str) -> Result<(NetConfig, &'static str)> {
    let ledger = Ledger::load(ctx.host)?;
    if let Some(pre) = ledger.uplink(iface) {
        let c = pre.carried()?;
        let cfg = render::from_carried(iface, Some(pre.mac.clone()), Some(pre.mtu), &c);
        return Ok((cfg, "the pre-state recorded when the uplink was attached"));
    }
    let mut nl = Netlink::open()?;
    let link = nl
        .link(iface)?
        .ok_or_else(|| precondition(format!("the uplink `{iface}` does not exist on this host")))?;
    let c = netmodel::carried_by(link.index, iface, &nl.addresses()?, &nl.routes()?, &[]);
    let cfg = render::from_carried(iface, Some(mac_string(&link.mac)), Some(link.mtu), &c);
    Ok((cfg, "the uplink's live addresses and routes"))
}

/// (host path, contents, mode) of every file the format needs.
fn files(
    ctx: &Ctx,
    format: Format,
    cfg: &NetConfig,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, String, u32)>> {
    let iface = cfg.iface.as_str();
    Ok(match format {
        Format::Ifupdown => {
            let target = ifupdown_file(ctx.host, iface)?.unwrap_or_else(|| INTERFACES.to_string());
            let mode = ctx.host.file_state(&target)?.map_or(0o644, |s| s.mode);
            vec![(
                target.clone(),
                ifupdown::merge(&text(ctx.host, &target)?, cfg),
                mode,
            )]
        }
        Format::Netplan => {
            let mut out = Vec::new();
            // Our own file keeps what an earlier take-over carried into it.
            let mut kept = netplan::kept(&text(ctx.host, netplan::FILE)?, iface);
            for dir in NETPLAN_DIRS {
                for f in list(ctx.host, dir, ".yaml")? {
                    let t = text(ctx.host, &f)?;
                    if f == netplan::FILE || !netplan::defines(&t, iface) {
                        continue;
                    }
                    out.push(take_over(ctx, &f, &t, iface)?);
                    kept.extend(netplan::kept(&t, iface));
                }
            }
            let cloud_init =
                ctx.host.exists("/etc/cloud/cloud.cfg")? && !cloud_init_network_disabled(ctx.host)?;
            if cloud_init && !out.is_empty() {
                // cloud-init would write node-if back into its file at the next boot.
                out.push((
                    CLOUD_INIT_OFF.to_string(),
                    "# Written by ncp-bootstrap (persist --take-over): node-if's netplan \
                     definition moved to 60-ncp-bootstrap.yaml.\nnetwork: {config: disabled}\n"
                        .to_string(),
                    0o644,
                ));
            } else if cloud_init {
                warnings.push(format!(
                    "cloud-init is installed and may regenerate netplan on boot; to keep it off \
                     the network config, write `network: {{config: disabled}}` to \
                     {CLOUD_INIT_OFF}"
                ));
            }
            let ours = netplan::render_keeping(cfg, &kept).map_err(|e| {
                input(format!(
                    "carrying {iface}'s other netplan settings over: {e}"
                ))
            })?;
            out.push((netplan::FILE.to_string(), ours, 0o600));
            out
        }
        Format::Ifcfg => ifcfg::render(cfg)
            .into_iter()
            .map(|(name, text)| (format!("{NETWORK_SCRIPTS}/{name}"), text, 0o644))
            .collect(),
        Format::NmKeyfile => nm_files(ctx, cfg)?,
    })
}

/// The keyfile and the unmanaged-bridge drop-in. An existing connection for the uplink is
/// updated in place (its IP sections replaced, everything else kept, a backup taken), so that
/// NetworkManager never holds two connections for node-if that compete at boot.
fn nm_files(ctx: &Ctx, cfg: &NetConfig) -> Result<Vec<(String, String, u32)>> {
    let bridge = ctx.settings.bridge.as_str();
    let existing = nm_connections(ctx.host, &cfg.iface)?;
    if existing.len() > 1 {
        return Err(input(format!(
            "more than one NetworkManager connection binds {}: {}; NetworkManager would pick one \
             of them at boot. Delete all but one (`nmcli connection delete ID`) and run persist \
             again, or pass another --format",
            cfg.iface,
            existing.join(", ")
        )));
    }
    let mut out = Vec::new();
    for (path, content) in nm_keyfile::render(cfg, bridge)? {
        if !path.starts_with(nm_keyfile::CONN_DIR) {
            out.push((path, content, 0o644));
            continue;
        }
        match existing.first() {
            Some(f) => {
                let mode = ctx.host.file_state(f)?.map_or(0o600, |s| s.mode);
                out.push((
                    f.clone(),
                    nm_keyfile::merge(&text(ctx.host, f)?, &content),
                    mode,
                ));
            }
            // In the key order a later merge gives, so that re-planning finds it as written.
            None => out.push((path, nm_keyfile::merge(&content, &content), 0o600)),
        }
    }
    Ok(out)
}

/// cloud-init's documented switch for its network rendering.
use crate::host::paths::CLOUD_INIT_NETWORK_OFF as CLOUD_INIT_OFF;

/// Another netplan file `f` (text `t`) defines the uplink. With `persist.take_over`, the file
/// without that definition (the definition is ours from now on); without it, an error that
/// names the option. The file keeps its mode; its original is backed up when it is written.
fn take_over(ctx: &Ctx, f: &str, t: &str, iface: &str) -> Result<(String, String, u32)> {
    if !ctx.settings.persist_take_over {
        return Err(input(format!(
            "{f} also defines {iface}; netplan merges such definitions and would keep its \
             addresses and DHCP settings beside ours. Let ncp-bootstrap take {iface} over: \
             `persist --take-over` (persist.take_over = true) moves its definition into {} and \
             turns cloud-init's network rendering off ({CLOUD_INIT_OFF}), both undone by \
             cleanup; or remove {iface} from {f} yourself",
            netplan::FILE
        )));
    }
    if !f.starts_with("/etc/netplan/") {
        return Err(input(format!(
            "{f} also defines {iface}, outside /etc/netplan (a package's or the runtime's file, \
             not edited); shadow it with a file of the same name in /etc/netplan that leaves \
             {iface} out, then run persist again"
        )));
    }
    let rest = netplan::without(t, iface).map_err(|why| {
        input(format!(
            "{f} defines {iface} in a way ncp-bootstrap does not edit ({why}); remove {iface} \
             from {f} by hand and run persist again"
        ))
    })?;
    let mode = ctx.host.file_state(f)?.map_or(0o600, |s| s.mode);
    Ok((f.to_string(), rest, mode))
}

fn cloud_init_network_disabled(host: &HostRoot) -> Result<bool> {
    for f in list(host, "/etc/cloud/cloud.cfg.d", ".cfg")? {
        let t = text(host, &f)?;
        if t.contains("config: disabled") || t.contains("config: \"disabled\"") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The persist step: the uplink's config files, each written through the ledger.
pub struct Persist;

/// One file of the host's network config.
pub struct WriteFile {
    path: String,
    content: String,
    mode: u32,
    why: String,
}

impl Action for WriteFile {
    fn describe(&self) -> String {
        format!("write {} (mode {:04o})", self.path, self.mode)
    }

    fn why(&self) -> String {
        self.why.clone()
    }
}

fn uplink(ctx: &Ctx) -> Result<String> {
    ctx.settings
        .uplink
        .clone()
        .ok_or_else(|| precondition("no uplink configured: pass --uplink IF or set node.uplink"))
}

/// The format to write, and why: `persist.format` (or `--format`), otherwise detected.
fn format(ctx: &Ctx, iface: &str) -> Result<(Format, String)> {
    Ok(match ctx.settings.persist_format {
        None => detect(ctx.host, iface)?,
        Some(f) => (f, format!("persist.format = {} (--format)", f.name())),
    })
}

impl Step for Persist {
    type Action = WriteFile;

    fn name(&self) -> &'static str {
        NAME
    }

    fn plan(&self, ctx: &Ctx) -> Result<Plan<WriteFile>> {
        let mut plan = Plan::new();
        let iface = uplink(ctx)?;
        let (format, why) = format(ctx, &iface)?;
        plan.notes.push(format!("format {}: {why}", format.name()));
        let (cfg, source) = model(ctx, &iface)?;
        plan.notes.push(format!("source: {source}"));
        for (path, content, mode) in files(ctx, format, &cfg, &mut plan.warnings)? {
            let same = ctx.host.file_state(&path)?.is_some_and(|s| {
                s.sha256 == sha256_hex(&crate::render::raw::encode(&content)) && s.mode == mode
            });
            if !same {
                plan.actions.push(WriteFile {
                    path,
                    content,
                    mode,
                    why: format!("{} config for {iface}", format.name()),
                });
            }
        }
        Ok(plan)
    }

    fn apply(
        &self,
        ctx: &Ctx,
        f: &WriteFile,
        ledger: &mut Ledger,
        _report: &mut StepReport,
    ) -> Result<()> {
        install_file(
            ctx.host,
            NAME,
            &f.path,
            &crate::render::raw::encode(&f.content),
            f.mode,
            ledger,
        )
        .with_context(|| format!("writing {}", f.path))
    }
}

/// `--apply` after files were written: what is reloaded, and what is deliberately not.
pub fn apply_note(ctx: &Ctx) -> Result<String> {
    let iface = uplink(ctx)?;
    let (format, _) = format(ctx, &iface)?;
    Ok(reload(&Ledger::load(ctx.host)?, &iface, format))
}

/// What is reloaded, and what is deliberately not.
fn reload(ledger: &Ledger, iface: &str, format: Format) -> String {
    if ledger.uplink(iface).is_some() {
        return format!(
            "--apply: {iface} is attached to the OVS bridge; re-activating it now would take the \
             node's address off the bridge, so nothing is reloaded (the files take effect at the \
             next boot, or after `uplink detach`)"
        );
    }
    // Reloads that only re-read files; none of them re-activates a device.
    let cmds: Vec<(&str, Vec<&str>)> = match format {
        Format::Netplan => vec![("netplan", vec!["generate"])],
        // conf.d (the unmanaged bridge) needs a config reload, the keyfile a connection reload.
        Format::NmKeyfile => vec![
            ("nmcli", vec!["general", "reload", "conf"]),
            ("nmcli", vec!["connection", "reload"]),
        ],
        Format::Ifcfg => vec![("nmcli", vec!["connection", "reload"])],
        Format::Ifupdown => vec![("ifquery", vec![iface])],
    };
    let mut done = Vec::new();
    for (tool, args) in &cmds {
        let shown = format!("{tool} {}", args.join(" "));
        match which::which(tool) {
            Ok(t) => match crate::host::run::run(&t, args.clone()) {
                Ok(_) => done.push(format!("ran `{shown}`")),
                Err(e) => return format!("--apply: `{shown}` failed: {e:#}"),
            },
            Err(_) => return format!("--apply: `{tool}` is not available here; nothing reloaded"),
        }
    }
    format!(
        "--apply: {}; {iface} itself is not re-activated (that would interrupt it)",
        done.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Entry, UplinkPreState};
    use crate::netmodel::tests::{addr, route};
    use crate::steps::testing::host;

    /// A node whose uplink is attached: the model comes from the recorded pre-state, so the
    /// plan needs no netlink.
    fn attached(h: &crate::steps::testing::TestHost) {
        let pre = UplinkPreState {
            step: "uplink".into(),
            uplink: "eth1".into(),
            uplink_index: 2,
            bridge: "br-int".into(),
            ovs_run_dir: Some("/var/run/openvswitch".into()),
            bridge_created: true,
            bridge_hwaddr_before: None,
            bridge_mtu_request_before: None,
            uplink_was_up: true,
            uplink_promisc: Some(false),
            mac: "52:54:00:aa:bb:01".into(),
            mtu: 1500,
            conf_db: None,
            addresses: vec![netmodel::record_address(&addr(2, "10.0.0.5", 24, false))],
            routes: vec![netmodel::record_route(&route(
                2,
                None,
                Some("10.0.0.1"),
                254,
                0,
            ))],
            rules: vec![],
            ipv6_before: vec![],
        };
        let mut l = Ledger::load(&h.host).unwrap();
        l.record(&h.host, Entry::UplinkAttached(Box::new(pre)))
            .unwrap();
    }

    #[test]
    fn an_ifupdown_node_plans_its_interfaces_file_from_the_recorded_pre_state() {
        let h = host(&[("NCP_BOOTSTRAP_NODE_UPLINK", "eth1")]);
        h.write(
            INTERFACES,
            b"auto lo\niface lo inet loopback\n\nauto eth1\niface eth1 inet dhcp\n",
        );
        attached(&h);
        let plan = Persist.plan(&h.ctx()).unwrap();
        assert!(
            plan.notes[0].starts_with("format ifupdown"),
            "{:?}",
            plan.notes
        );
        assert!(plan.notes[1].contains("pre-state"), "{:?}", plan.notes);
        let [w] = plan.actions.as_slice() else {
            panic!("one file: {:?}", plan.actions.len())
        };
        assert_eq!(w.path, INTERFACES);
        assert!(
            w.content.contains("address 10.0.0.5/24") && w.content.contains("gateway 10.0.0.1")
        );
    }

    #[test]
    fn a_host_with_no_known_format_is_refused_naming_the_choice() {
        let h = host(&[("NCP_BOOTSTRAP_NODE_UPLINK", "eth1")]);
        let e = Persist.plan(&h.ctx()).map(|_| ()).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(crate::error::Kind::Input));
        assert!(format!("{e:#}").contains("--format"), "{e:#}");
        let h = host(&[]);
        assert!(Persist.plan(&h.ctx()).is_err(), "no uplink configured");
    }

    #[test]
    fn a_netplan_file_that_also_defines_the_uplink_is_named() {
        let h = host(&[
            ("NCP_BOOTSTRAP_NODE_UPLINK", "eth1"),
            ("NCP_BOOTSTRAP_PERSIST_FORMAT", "netplan"),
        ]);
        h.write(
            "/etc/netplan/50-cloud-init.yaml",
            b"network:\n  version: 2\n  ethernets:\n    eth1:\n      dhcp4: true\n",
        );
        attached(&h);
        let e = Persist.plan(&h.ctx()).map(|_| ()).unwrap_err();
        assert!(
            format!("{e:#}").contains("50-cloud-init.yaml also defines eth1"),
            "{e:#}"
        );
    }
}
