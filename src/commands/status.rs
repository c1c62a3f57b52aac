//! `status`: what is installed, and what drifted (exit 1 on drift).

use super::{Env, Outcome};
use crate::host::apparmor::{loaded_mode, module_enabled};
use crate::host::packages::{self as legacy_pkg, Detection};
use crate::host::paths;
use crate::ledger::{Entry, FileCheck, Ledger};
use crate::report::Report;
use crate::steps::apparmor::{annotation, app_armor_profile, AppArmor};
use crate::steps::cni::{host_conflist, Cni, HostConflist, FILES};
use crate::steps::{Ctx, Step};
use anyhow::Result;
use serde::Serialize;

#[derive(Debug, Serialize)]
struct FileStatus {
    path: String,
    present: bool,
    mode: Option<String>,
    /// Written by ncp-bootstrap (recorded in the ledger).
    ours: bool,
    /// Ours, but changed or removed since.
    drifted: bool,
}

#[derive(Debug, Serialize)]
struct AppArmorStatus {
    module_enabled: bool,
    profile: String,
    /// The profile file, described (absent, ours, ours DRIFTED, present not ours).
    file: String,
    file_present: bool,
    file_ours: bool,
    loaded: bool,
    /// The mode the kernel lists it in (`enforce`, `complain`), when loaded.
    loaded_mode: Option<String>,
    annotation: String,
    app_armor_profile: String,
    skipped: Option<String>,
    pending: Vec<String>,
}

#[derive(Debug, Serialize)]
struct CniStatus {
    bundle_version: Option<String>,
    bundle_error: Option<String>,
    host_version: Option<String>,
    host_conflist: String,
    legacy_package: String,
    legacy_package_installed: bool,
    files: Vec<FileStatus>,
    pending: Vec<String>,
    drift: Vec<String>,
}

pub fn run(env: &Env, _report: &mut Report) -> Result<Outcome> {
    let ledger = Ledger::load(&env.host)?;
    let ctx = Ctx {
        dry_run: true,
        ..env.ctx()
    };
    // Nothing recorded and no NSX conflist: a node never prepared, or cleaned up. What is
    // missing then is "not installed", not drift.
    let installed = !ledger.is_empty() || env.host.exists(paths::NSX_CONFLIST)?;
    let cni = Cni::from_ctx(&ctx);
    let bundle = cni.bundle_version(true);
    let (bundle_version, bundle_error) = match &bundle {
        Ok(v) => (Some(v.to_string()), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let host = host_conflist(&env.host)?;
    let (host_version, host_desc) = match &host {
        HostConflist::Absent => (None, "absent".to_string()),
        HostConflist::Invalid(why) => (None, format!("invalid: {why}")),
        HostConflist::Version(v) => (Some(v.to_string()), format!("nsxBuildVersion {v}")),
    };
    let detection = legacy_pkg::detect(&env.host)?;
    let legacy_installed = matches!(detection, Detection::Found(_));
    let legacy = match detection {
        Detection::Absent => "not installed".to_string(),
        Detection::Found(p) => format!(
            "{} {} installed ({})",
            legacy_pkg::PACKAGE,
            p.version,
            p.manager
        ),
        Detection::CannotAct(why) => why,
    };
    let mut drift = Vec::new();
    let mut files = Vec::new();
    for f in FILES {
        let state = env.host.file_state(f.path)?;
        let check = ledger.check_file(&env.host, f.path)?;
        let drifted = check.drifted();
        if drifted {
            drift.push(format!("{} changed since ncp-bootstrap wrote it", f.path));
        }
        files.push(FileStatus {
            path: f.path.to_string(),
            present: state.is_some(),
            mode: state.as_ref().map(|s| format!("{:04o}", s.mode)),
            ours: check != FileCheck::NotRecorded,
            drifted,
        });
    }
    let pending = match bundle_error {
        Some(_) => Vec::new(),
        None => cni
            .plan(&ctx)?
            .actions
            .iter()
            .map(crate::steps::Action::describe)
            .collect(),
    };
    // On a node that was never installed (or was cleaned up) nothing of ours can have drifted:
    // an unusable bundle is what stops the next install, said as such.
    let mut install_blocked = Vec::new();
    if let Some(e) = &bundle_error {
        let why = format!("the bundle is unusable, so install cannot run: {e}");
        if installed {
            drift.push(why);
        } else {
            install_blocked.push(why);
        }
    }
    if installed {
        for p in &pending {
            drift.push(format!("not converged: {p}"));
        }
    }
    if let (Ok(b), HostConflist::Version(h)) = (&bundle, &host) {
        if h > b && !ctx.settings.cni_force {
            drift.push(crate::steps::cni::downgrade_refused(h, b));
        }
    }
    let before = crate::steps::cni::configs_before_ours(&env.host)?;
    if !before.is_empty() {
        drift.push(crate::steps::cni::shadowed_warning(&before));
    }
    let status = CniStatus {
        bundle_version,
        bundle_error,
        host_version,
        host_conflist: host_desc,
        legacy_package: legacy,
        legacy_package_installed: legacy_installed,
        files,
        pending,
        drift,
    };
    let mut text = render(&status, &ledger);
    let mut drift = status.drift.clone();
    let aa = apparmor_status(env, &ctx, &ledger)?;
    text.push_str(&render_apparmor(&aa));
    if installed {
        drift.extend(
            aa.pending
                .iter()
                .map(|p| format!("apparmor not converged: {p}")),
        );
    }
    let others = component_lines(env, &ctx, &ledger);
    for c in &others {
        text.push_str(&format!(
            "{:<10} {:<8} {}\n",
            c.component, c.state, c.reason
        ));
        if c.state == "drift" {
            drift.push(format!("{}: {}", c.component, c.reason));
        }
    }
    // The node can run NSX pods only once the containerized OVS has the uplink.
    let not_ready: Vec<String> = others
        .iter()
        .filter(|c| c.component == "ovs" && installed)
        .filter_map(|c| match c.state {
            "missing" if env.settings.uplink.is_some() => Some(format!(
                "the containerized OVS is not running ({}); the nsx-ovs container (`ovs run`) \
                 starts it and attaches the uplink",
                c.reason
            )),
            "no uplink" => Some(format!("no uplink: {}", super::ovs::NO_UPLINK)),
            _ => None,
        })
        .collect();
    let node = match (installed, drift.is_empty(), not_ready.is_empty()) {
        (_, false, _) => "drift",
        (false, true, _) => "not installed",
        (true, true, false) => "not ready",
        (true, true, true) => "ready",
    };
    text.push_str(&render_verdict(node, &drift, &not_ready));
    for b in &install_blocked {
        text.push_str(&format!("install would fail: {b}\n"));
    }
    Ok(Outcome {
        // Automation asks "is this node usable?": drift and not ready are both no.
        code: if drift.is_empty() && not_ready.is_empty() {
            0
        } else {
            1
        },
        text,
        details: Some(serde_json::json!({
            "node": node,
            "not_ready": not_ready,
            "cni": status,
            "apparmor": aa,
            "components": others,
            "drift": drift,
            "install_blocked": install_blocked,
            "ledger_entries": ledger.entries.len(),
        })),
    })
}

#[derive(Debug, Serialize)]
struct Component {
    component: &'static str,
    /// ok, drift, missing, or n/a.
    state: &'static str,
    reason: String,
}

fn line(component: &'static str, state: &'static str, reason: impl Into<String>) -> Component {
    Component {
        component,
        state,
        reason: reason.into(),
    }
}

/// Host OVS, containerized OVS, uplink, persisted config, and every other file the ledger
/// records, each checked against what the ledger says we did.
/// The uplink as `ovs run` takes it: configured, or the bridge's port with ofport 1 when OVS
/// answers (NCP's default).
fn known_uplink(ctx: &Ctx) -> Option<String> {
    if let Some(u) = &ctx.settings.uplink {
        return Some(u.clone());
    }
    let dirs = crate::host::ovs::OvsDirs::resolve(ctx.host, ctx.settings.ovs_dirs()).ok()?;
    let ovs = crate::host::ovs::Ovs::new(dirs.run).ok()?;
    super::ovs::uplink_of(ctx, &ovs).ok().flatten()
}

/// node-if's MTU against the pods' (`node.mtu`): a warning, neither drift nor "not ready".
fn mtu_line(uplink: &str, pod_mtu: u32) -> Option<Component> {
    let link = crate::host::netlink::Netlink::open()
        .and_then(|mut nl| nl.link(uplink))
        .ok()??;
    crate::steps::uplink::mtu_warning(uplink, link.mtu, pod_mtu).map(|w| line("mtu", "warning", w))
}

fn component_lines(env: &Env, ctx: &Ctx, ledger: &Ledger) -> Vec<Component> {
    let mut out = Vec::new();
    let stopped = ledger.entries.iter().find_map(|e| match e {
        Entry::HostOvsStopped { daemons, units, .. } => Some((daemons.len(), units.clone())),
        _ => None,
    });
    out.push(match stopped {
        Some((n, units)) if units.is_empty() => line(
            "host-ovs",
            "ok",
            format!("{n} host OVS daemon(s) stopped by install"),
        ),
        Some((_, units)) => line(
            "host-ovs",
            "ok",
            format!("stopped and disabled by install: {}", units.join(", ")),
        ),
        None => line("host-ovs", "n/a", "install stopped no host OVS"),
    });
    for e in &ledger.entries {
        if let Entry::UplinkReleased(p) = e {
            out.push(line(
                "host-ovs",
                "ok",
                format!(
                    "install took {} from the host's OVS bridge {} (NCP's manual attach); \
                     cleanup gives it back",
                    p.uplink, p.bridge
                ),
            ));
        }
    }
    for e in &ledger.entries {
        if let Entry::MonitorReleased {
            uplink,
            bridge,
            at,
            absent_s,
            ..
        } = e
        {
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(*at);
            out.push(line(
                "monitor",
                "released",
                format!(
                    "gave {uplink} its addresses back from {bridge} at {}: nsx-ovs absent for \
                     {absent_s} s; `ovs run` attaches it again when it is back",
                    humantime::format_rfc3339_seconds(when)
                ),
            ));
        }
    }
    if ctx.settings.datapath == crate::config::Datapath::System {
        out.push(match crate::steps::kmod::loaded_verdict(ctx) {
            Ok(what) if ctx.settings.nsx_kernel_module => line("kmod", "ok", what),
            Ok(what) => line(
                "kmod",
                "n/a",
                format!("{what} (ovs.nsx_kernel_module = false)"),
            ),
            Err(why) => line("kmod", "drift", why),
        });
    }
    let health = super::ovs::health(ctx, false);
    let uplink = known_uplink(ctx);
    if let Some(w) = uplink
        .as_deref()
        .and_then(|u| mtu_line(u, ctx.settings.pod_mtu))
    {
        out.push(w);
    }
    let attached = uplink.as_deref().and_then(|u| ledger.uplink(u));
    out.push(match (&health, attached) {
        (Ok(()), _) if uplink.is_none() => line(
            "ovs",
            "no uplink",
            format!(
                "ovsdb-server and ovs-vswitchd answer, but no uplink is attached: {}",
                super::ovs::NO_UPLINK
            ),
        ),
        (Ok(()), _) => line(
            "ovs",
            "ok",
            "ovsdb-server and ovs-vswitchd answer, the uplink is attached",
        ),
        (Err(why), Some(_)) => line(
            "ovs",
            "drift",
            format!("the uplink was attached but OVS is not healthy: {why}"),
        ),
        (Err(why), None) => line("ovs", "missing", why.0.clone()),
    });
    out.push(match attached {
        Some(pre) => {
            match crate::steps::uplink::check_forwarding(&env.host, &pre.uplink, &pre.bridge) {
                Ok(notes) if !notes.is_empty() => line(
                    "uplink",
                    "drift",
                    format!(
                        "{} is attached to {}, but {}",
                        pre.uplink,
                        pre.bridge,
                        notes.join("; ")
                    ),
                ),
                Ok(_) => match crate::host::nm::needs_hand_off(&env.host, &pre.uplink) {
                    Ok(true) => line(
                        "uplink",
                        "drift",
                        format!(
                            "{} is attached to {}, but NetworkManager runs and still manages it: \
                         a restart of NetworkManager would put the addresses back on it; run \
                         `ncp-bootstrap uplink attach` to hand it off",
                            pre.uplink, pre.bridge
                        ),
                    ),
                    _ => match networkd_status(&env.host, pre) {
                        Networkd::Drift(why) => line(
                            "uplink",
                            "drift",
                            format!("{} is attached to {}, but {why}", pre.uplink, pre.bridge),
                        ),
                        Networkd::Fine(nd) => line(
                            "uplink",
                            "ok",
                            format!(
                                "{} is attached to {}; its addresses are on the bridge{}{nd}",
                                pre.uplink,
                                pre.bridge,
                                if crate::host::nm::handed_off(&env.host, &pre.uplink)
                                    .unwrap_or(false)
                                {
                                    "; NetworkManager leaves it unmanaged until detach"
                                } else {
                                    ""
                                }
                            ),
                        ),
                    },
                },
                Err(e) => line(
                    "uplink",
                    "drift",
                    format!("recorded as attached, but {e:#}"),
                ),
            }
        }
        None => line("uplink", "n/a", "not attached by ncp-bootstrap"),
    });
    for e in &ledger.entries {
        let Entry::File { step, path, .. } = e else {
            continue;
        };
        if step == "cni" || step == "apparmor" {
            continue; // reported above, file by file
        }
        // Each file under the step that wrote it (persist's network config, the kernel
        // module's files).
        let component = match step.as_str() {
            crate::steps::kmod::NAME => crate::steps::kmod::NAME,
            _ => "persist",
        };
        out.push(match e.check(&env.host) {
            Ok(c) if c.content_ours() => line(component, "ok", format!("{path} is as written")),
            Ok(FileCheck::Gone) => line(component, "drift", format!("{path} is gone")),
            Ok(_) => line(
                component,
                "drift",
                format!("{path} changed since ncp-bootstrap wrote it"),
            ),
            Err(err) => line(component, "drift", format!("{path}: {err:#}")),
        });
    }
    out
}

fn apparmor_status(env: &Env, ctx: &Ctx, ledger: &Ledger) -> Result<AppArmorStatus> {
    let step = AppArmor::from_ctx(ctx);
    let file_present = env.host.exists(paths::APPARMOR_PROFILE_FILE)?;
    let check = ledger.check_file(&env.host, paths::APPARMOR_PROFILE_FILE)?;
    let file_ours = check != FileCheck::NotRecorded;
    let file = match (file_present, check) {
        (false, _) => "absent",
        (true, FileCheck::NotRecorded) => "present (not ours)",
        (true, c) if c.content_ours() => "ours",
        (true, _) => "ours, DRIFTED",
    }
    .to_string();
    // A bundle or parser problem is reported, not fatal: status must work on a bare host.
    let (skipped, pending) = match step.plan(ctx) {
        Ok(p) => (
            p.skipped,
            p.actions
                .iter()
                .map(crate::steps::Action::describe)
                .collect(),
        ),
        Err(e) => (None, vec![format!("cannot plan: {e:#}")]),
    };
    let loaded_mode = loaded_mode(&env.host, &step.profile)?;
    Ok(AppArmorStatus {
        module_enabled: module_enabled(&env.host)?,
        loaded: loaded_mode.is_some(),
        loaded_mode,
        file_present,
        file_ours,
        annotation: annotation("<container>", &step.profile),
        app_armor_profile: app_armor_profile(&step.profile),
        profile: step.profile,
        file,
        skipped,
        pending,
    })
}

fn render_apparmor(a: &AppArmorStatus) -> String {
    let mut t = String::from("apparmor:\n");
    t.push_str(&format!(
        "  module:  {}\n",
        if a.module_enabled {
            "enabled"
        } else {
            "not enabled"
        }
    ));
    if let Some(why) = &a.skipped {
        t.push_str(&format!("  skipped: {why}\n"));
    }
    t.push_str(&format!(
        "  {:<34} {}\n",
        paths::APPARMOR_PROFILE_FILE,
        a.file
    ));
    t.push_str(&format!(
        "  profile {}: {}\n",
        a.profile,
        a.loaded_mode
            .as_deref()
            .map_or("not loaded".to_string(), |m| format!("loaded ({m})"))
    ));
    t.push_str(&format!(
        "  field (Kubernetes 1.30+): {}\n",
        a.app_armor_profile
    ));
    t.push_str(&format!("  annotation (older): {}\n", a.annotation));
    t
}

/// The last lines: one verdict for the node, then what stands in its way.
fn render_verdict(node: &str, drift: &[String], not_ready: &[String]) -> String {
    let mut t = match node {
        "not installed" => {
            "node: not installed (nothing recorded, no NSX CNI config)\n".to_string()
        }
        "ready" => "node: ready, no drift\n".to_string(),
        other => format!("node: {other}\n"),
    };
    for d in drift {
        t.push_str(&format!("drift: {d}\n"));
    }
    for n in not_ready {
        t.push_str(&format!("not ready: {n}\n"));
    }
    t
}

fn render(s: &CniStatus, ledger: &Ledger) -> String {
    let mut t = String::from("cni:\n");
    match (&s.bundle_version, &s.bundle_error) {
        (Some(v), _) => t.push_str(&format!("  bundle:  nsxBuildVersion {v}\n")),
        (None, Some(e)) => t.push_str(&format!("  bundle:  unusable: {e}\n")),
        _ => {}
    }
    t.push_str(&format!("  host:    {}\n", s.host_conflist));
    t.push_str(&format!("  legacy:  {}\n", s.legacy_package));
    for f in &s.files {
        let state = match (&f.mode, f.ours, f.drifted) {
            (_, true, true) => "ours, DRIFTED".to_string(),
            (Some(m), true, false) => format!("ours, mode {m}"),
            (Some(m), false, _) => format!("present (not ours), mode {m}"),
            (None, false, _) => "absent".to_string(),
            (None, true, false) => "absent".to_string(),
        };
        t.push_str(&format!("  {:<34} {state}\n", f.path));
    }
    t.push_str(&format!(
        "ledger: {} entr{}\n",
        ledger.entries.len(),
        if ledger.entries.len() == 1 {
            "y"
        } else {
            "ies"
        }
    ));
    t
}

/// What systemd-networkd does for the attached uplink, as the uplink's status line says it.
enum Networkd {
    /// All is well: a clause to add to the line (empty when networkd has no part in it).
    Fine(String),
    /// Drift: the lease cannot be read, or is past its rebinding time.
    Drift(String),
}

/// What systemd-networkd does for the attached uplink: `Fine` with a clause to add, `Drift` when
/// the DHCP lease it renews on the bridge is past its rebinding time (7/8 of the lifetime, RFC
/// 2131), or its address is gone from the bridge.
/// The time since the last renewal is read from the kernel: networkd gives the leased address
/// the lease's remaining lifetime at each renewal (`networkd::since_renewal`). Its lease file is
/// no clock: systemd rewrites it only when its content changes.
fn networkd_status(host: &crate::host::HostRoot, pre: &crate::ledger::UplinkPreState) -> Networkd {
    use crate::host::networkd;
    let Ok(Some(bridge)) = networkd::handed_off(host, &pre.uplink) else {
        return Networkd::Fine(String::new());
    };
    let mut s =
        format!("; systemd-networkd leaves it unmanaged and configures {bridge} from its file");
    let Ok(mut nl) = crate::host::netlink::Netlink::open() else {
        return Networkd::Fine(s);
    };
    let Ok(Some(link)) = nl.link(&bridge) else {
        return Networkd::Fine(s);
    };
    let lease = match networkd::bridge_lease(host, link.index) {
        Ok(Some(l)) => l,
        Ok(None) => return Networkd::Fine(s),
        Err(e) => return Networkd::Drift(format!("{e:#}")),
    };
    let held = nl.addresses().map(|all| {
        all.into_iter().find(|a| {
            a.header.index == link.index
                && crate::netmodel::address_ip(a) == Some(std::net::IpAddr::V4(lease.address))
        })
    });
    let valid = match held {
        Ok(Some(a)) => crate::netmodel::lifetimes(&a).0,
        Ok(None) => {
            return Networkd::Drift(format!(
                "networkd holds a DHCP lease of {} for {bridge}, but {bridge} does not have that \
                 address: check `networkctl status {bridge}`",
                lease.address
            ))
        }
        Err(_) => return Networkd::Fine(s),
    };
    let Some(since) = networkd::since_renewal(lease.lifetime_s, valid) else {
        s.push_str(&format!(
            "; networkd holds its DHCP lease of {} there (with KeepConfiguration=yes it \
             keeps the address without a lifetime, so renewals do not show here: the DHCP \
             server's log has them)",
            lease.address
        ));
        return Networkd::Fine(s);
    };
    let life = lease.lifetime_s.unwrap_or(0);
    if since > life / 8 * 7 {
        return Networkd::Drift(format!(
            "networkd last renewed the DHCP lease of {} on {bridge} {since} s ago, past its \
             rebinding time ({} s of {life} s): check `networkctl status {bridge}`",
            lease.address,
            life / 8 * 7
        ));
    }
    s.push_str(&format!(
        "; networkd renews its DHCP lease of {} there (last {since} s ago, lifetime {life} s)",
        lease.address
    ));
    Networkd::Fine(s)
}
