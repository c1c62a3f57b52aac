//! `status`: what is installed, and what drifted (exit 1 on drift).

use super::{Env, Outcome};
use crate::host::paths;
use crate::ledger::{Entry, Ledger};
use crate::report::Report;
use crate::steps::apparmor::{annotation, loaded_mode, module_enabled, AppArmor};
use crate::steps::cni::{host_conflist, Cni, HostConflist, FILES};
use crate::steps::legacy_pkg::{self, Detection};
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
    file: String,
    loaded: Option<String>,
    annotation: String,
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
    files: Vec<FileStatus>,
    pending: Vec<String>,
    drift: Vec<String>,
}

pub fn run(env: &Env, _report: &mut Report) -> Result<Outcome> {
    let ledger = Ledger::load(&env.host)?;
    let ctx = Ctx {
        host: &env.host,
        config: &env.config,
        dry_run: true,
        force: false,
        progress: env.progress,
    };
    let cni = Cni::from_ctx(&ctx);
    let (bundle_version, bundle_error) = match cni.bundle_version() {
        Ok(v) => (Some(v.to_string()), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let host = host_conflist(&env.host)?;
    let (host_version, host_desc) = match &host {
        HostConflist::Absent => (None, "absent".to_string()),
        HostConflist::Invalid(why) => (None, format!("invalid: {why}")),
        HostConflist::Version(v) => (Some(v.to_string()), format!("nsxBuildVersion {v}")),
    };
    let legacy = match legacy_pkg::detect(&env.host)? {
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
        let recorded = ledger.file(f.path);
        let drifted = match (recorded, &state) {
            (Some(Entry::File { sha256, mode, .. }), Some(s)) => {
                *sha256 != s.sha256 || *mode != s.mode
            }
            (Some(_), None) => true,
            _ => false,
        };
        if drifted {
            drift.push(format!("{} changed since ncp-bootstrap wrote it", f.path));
        }
        files.push(FileStatus {
            path: f.path.to_string(),
            present: state.is_some(),
            mode: state.as_ref().map(|s| format!("{:04o}", s.mode)),
            ours: recorded.is_some(),
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
    for p in &pending {
        drift.push(format!("not converged: {p}"));
    }
    let status = CniStatus {
        bundle_version,
        bundle_error,
        host_version,
        host_conflist: host_desc,
        legacy_package: legacy,
        files,
        pending,
        drift,
    };
    let mut text = render(&status, &ledger);
    let mut drift = status.drift.clone();
    let aa = apparmor_status(env, &ctx, &ledger)?;
    text.push_str(&render_apparmor(&aa));
    drift.extend(
        aa.pending
            .iter()
            .map(|p| format!("apparmor not converged: {p}")),
    );
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
    text.push_str(&render_drift(&drift));
    Ok(Outcome {
        code: if drift.is_empty() { 0 } else { 1 },
        text,
        details: Some(serde_json::json!({
            "cni": status,
            "apparmor": aa,
            "components": others,
            "drift": drift,
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
    let health = crate::steps::ovs_run::health(ctx);
    let attached = env.config.str("node.uplink").and_then(|u| ledger.uplink(u));
    out.push(match (&health, attached) {
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
        (Err(why), None) => line("ovs", "missing", why.clone()),
    });
    out.push(match attached {
        Some(pre) => match crate::steps::uplink::holds_no_address(&pre.uplink) {
            Ok(()) => match crate::host::nm::needs_hand_off(&env.host, &pre.uplink) {
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
                _ => line(
                    "uplink",
                    "ok",
                    format!(
                        "{} is attached to {}; its addresses are on the bridge{}",
                        pre.uplink,
                        pre.bridge,
                        if crate::host::nm::handed_off(&env.host, &pre.uplink).unwrap_or(false) {
                            "; NetworkManager leaves it unmanaged until detach"
                        } else {
                            ""
                        }
                    ),
                ),
            },
            Err(e) => line(
                "uplink",
                "drift",
                format!("recorded as attached, but {e:#}"),
            ),
        },
        None => line("uplink", "n/a", "not attached by ncp-bootstrap"),
    });
    for e in &ledger.entries {
        let Entry::File {
            step, path, sha256, ..
        } = e
        else {
            continue;
        };
        if step == "cni" || step == "apparmor" {
            continue; // reported above, file by file
        }
        let now = env.host.file_state(path).ok().flatten();
        out.push(match now {
            Some(s) if &s.sha256 == sha256 => {
                line("persist", "ok", format!("{path} is as written"))
            }
            Some(_) => line(
                "persist",
                "drift",
                format!("{path} changed since ncp-bootstrap wrote it"),
            ),
            None => line("persist", "drift", format!("{path} is gone")),
        });
    }
    out
}

fn apparmor_status(env: &Env, ctx: &Ctx, ledger: &Ledger) -> Result<AppArmorStatus> {
    let step = AppArmor::from_ctx(ctx);
    let file = match (
        env.host.file_state(paths::APPARMOR_PROFILE_FILE)?,
        ledger.file(paths::APPARMOR_PROFILE_FILE),
    ) {
        (None, _) => "absent".to_string(),
        (Some(s), Some(Entry::File { sha256, .. })) if *sha256 == s.sha256 => "ours".to_string(),
        (Some(_), Some(_)) => "ours, DRIFTED".to_string(),
        (Some(_), None) => "present (not ours)".to_string(),
    };
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
    Ok(AppArmorStatus {
        module_enabled: module_enabled(&env.host)?,
        loaded: loaded_mode(&env.host, &step.profile)?,
        annotation: annotation("<container>", &step.profile),
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
        a.loaded
            .as_deref()
            .map_or("not loaded".to_string(), |m| format!("loaded ({m})"))
    ));
    t.push_str(&format!("  annotation: {}\n", a.annotation));
    t
}

fn render_drift(drift: &[String]) -> String {
    if drift.is_empty() {
        return "no drift\n".into();
    }
    drift.iter().map(|d| format!("drift: {d}\n")).collect()
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
