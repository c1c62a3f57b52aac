//! `cleanup`: undo every ledger entry in reverse order. Each undone entry is dropped from the
//! ledger at once, so a cleanup killed half way finishes on the next run; a failing entry does
//! not stop the others, and all failures are reported together.

use super::{Env, Outcome};
use crate::error::{precondition, Kind};
use crate::ledger::Ledger;
use crate::report::{Change, Report, Status, StepReport};
use crate::steps::lock_only;
use crate::undo;
use anyhow::Result;
use std::time::Instant;

pub fn run(
    env: &Env,
    legacy: bool,
    forget_missing_backups: bool,
    report: &mut Report,
) -> Result<Outcome> {
    if legacy {
        return legacy_cleanup(env, report);
    }
    let started = Instant::now();
    let mut step = StepReport::new("cleanup");
    let dry = env.cli.dry_run();
    // The ledger is read, undone entry by entry and pruned under one lock, so that an `install`
    // running at the same time either finishes before cleanup reads it or starts after.
    let _lock = if dry {
        None
    } else {
        Some(lock_only(&env.host)?)
    };
    let mut ledger = Ledger::load(&env.host)?;
    if ledger.is_empty() {
        step.notes.push("the ledger records nothing to undo".into());
        if !dry && env.host.exists(crate::host::paths::STATE_DIR)? {
            crate::ledger::prune_state(&env.host, &ledger.state_dirs)?;
        }
        step.notes.extend(config_file_note(env)?);
        report.steps.push(step);
        return Ok(Outcome::ok());
    }
    let mut failures = UndoFailures::default();
    if !dry {
        env.progress.info(&format!(
            "cleanup: undoing {} ledger entr{}",
            ledger.entries.len(),
            if ledger.entries.len() == 1 {
                "y"
            } else {
                "ies"
            }
        ));
    }
    for (n, entry) in ledger.entries.clone().iter().rev().enumerate() {
        crate::fault::fault(&format!("cleanup-{n}"));
        let outcome = undo::plan(&env.host, entry, forget_missing_backups).and_then(|action| {
            match dry {
                true => env
                    .progress
                    .debug(&format!("cleanup: planned: {}", action.describe())),
                false => env
                    .progress
                    .doing(&format!("cleanup: {}", action.describe())),
            }
            if !dry {
                undo::apply(&env.host, entry, &action)?;
                ledger.forget(&env.host, entry)?;
            }
            Ok(action)
        });
        match outcome {
            Ok(action) => {
                if action.is_warning() {
                    step.warnings.push(action.describe());
                }
                step.changes.push(Change {
                    action: action.describe(),
                    why: format!("recorded by step {}", entry.step()),
                    done: !dry,
                });
            }
            Err(e) => failures.0.push(UndoFailure {
                entry: format!("{} entry of step {}", entry_kind(entry), entry.step()),
                error: crate::error::render(&e),
            }),
        }
    }
    if !dry && ledger.is_empty() {
        if let Err(e) = crate::ledger::prune_state(&env.host, &ledger.state_dirs) {
            failures.0.push(UndoFailure {
                entry: "the state directory".into(),
                error: crate::error::render(&e),
            });
        }
    }
    step.status = if dry {
        Status::Planned
    } else {
        Status::Changed
    };
    step.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    if !failures.0.is_empty() {
        step.status = Status::Failed;
        report.steps.push(step);
        return Err(crate::error::classify(failures.into(), Kind::Apply));
    }
    step.notes.extend(config_file_note(env)?);
    report.steps.push(step);
    Ok(Outcome::ok())
}

/// The config file is the operator's settings, not a change to undo: it stays, and cleanup
/// says so, since `config set` may have created it.
fn config_file_note(env: &Env) -> Result<Option<String>> {
    if env.cli.config.is_some() || !env.host.exists(crate::host::paths::CONFIG_FILE)? {
        return Ok(None);
    }
    Ok(Some(format!(
        "left {}: it holds settings (from `config set` or written by hand), not a change to \
         undo; remove it to forget them",
        crate::host::paths::CONFIG_FILE
    )))
}

/// NCP's documented node cleanup, for a node prepared without our ledger: the CNI files, the
/// AppArmor profile, and the node's addresses back from the bridge to node-if. It lists every
/// path first and touches nothing else.
fn legacy_cleanup(env: &Env, report: &mut Report) -> Result<Outcome> {
    use crate::host::paths;
    let started = Instant::now();
    let host = &env.host;
    if !Ledger::load(host)?.is_empty() {
        return Err(precondition(format!(
            "{} records what ncp-bootstrap did here: run `cleanup` without --legacy",
            paths::LEDGER
        )));
    }
    let rhel = host
        .read(paths::OS_RELEASE)?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .is_some_and(|t| {
            t.lines().any(|l| {
                (l.starts_with("ID=") || l.starts_with("ID_LIKE="))
                    && ["rhel", "fedora", "centos"].iter().any(|d| l.contains(d))
            })
        });
    let mut files = vec![
        "/etc/cni/net.d/10-nsx.conflist",
        "/etc/cni/net.d/10-nsx.conf",
        paths::LOOPBACK_CONF,
        paths::NSX_PLUGIN,
    ];
    // NCP removes the loopback plugin only on RHEL, where its own package put it.
    if rhel {
        files.push(paths::LOOPBACK_PLUGIN);
    }
    let mut step = StepReport::new("cleanup --legacy");
    let mut present = Vec::new();
    for f in files {
        if host.exists(f)? {
            present.push(f);
        }
    }
    let profile_file = host.exists(paths::APPARMOR_PROFILE_FILE)?;
    let profile = env.settings.apparmor_profile.as_str();
    let loaded = crate::host::apparmor::loaded_mode(host, profile)?.is_some();
    let why = "NCP's documented node cleanup (no ledger)".to_string();
    let mut planned: Vec<String> = present.iter().map(|f| format!("remove {f}")).collect();
    if loaded {
        planned.push(format!("unload AppArmor profile {profile}"));
    }
    if profile_file {
        planned.push(format!("remove {}", paths::APPARMOR_PROFILE_FILE));
    }
    let bridge = env.settings.bridge.as_str();
    let uplink = env.settings.uplink.is_some()
        && crate::host::netlink::Netlink::open()?
            .link(bridge)?
            .is_some();
    if uplink {
        planned.push("move the node's addresses and routes from the bridge back to node-if".into());
    }
    for p in &planned {
        env.progress.debug(&format!(
            "cleanup --legacy: {}{p}",
            if env.cli.dry_run() { "planned: " } else { "" }
        ));
    }
    let dry = env.cli.dry_run();
    if !dry {
        if uplink {
            crate::steps::execute(&env.ctx(), &crate::steps::uplink::Detach)?;
        }
        if loaded {
            crate::host::apparmor::Parser::find(host)?.unload(profile)?;
        }
        if profile_file {
            host.remove_file(paths::APPARMOR_PROFILE_FILE)?;
        }
        for f in &present {
            host.remove_file(f)?;
        }
    }
    step.status = if planned.is_empty() {
        Status::Converged
    } else if dry {
        Status::Planned
    } else {
        Status::Changed
    };
    step.changes = planned
        .into_iter()
        .map(|action| Change {
            action,
            why: why.clone(),
            done: !dry,
        })
        .collect();
    step.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    report.steps.push(step);
    Ok(Outcome::ok())
}

/// What cleanup could not undo, each failure with its entry; the rest was undone.
#[derive(Debug, Default, thiserror::Error)]
pub struct UndoFailures(pub Vec<UndoFailure>);

#[derive(Debug)]
pub struct UndoFailure {
    pub entry: String,
    pub error: String,
}

impl std::fmt::Display for UndoFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "cleanup could not undo {n} entr{}: {}; the rest was undone, and the failed entries \
             stay in the ledger for the next `cleanup`",
            if n == 1 { "y" } else { "ies" },
            self.0
                .iter()
                .map(|u| format!("{} ({})", u.error, u.entry))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}

fn entry_kind(e: &crate::ledger::Entry) -> &'static str {
    use crate::ledger::Entry;
    match e {
        Entry::DirCreated { .. } => "dir_created",
        Entry::File { .. } => "file",
        Entry::PackageRemoved { .. } => "package_removed",
        Entry::ProfileLoaded { .. } => "profile_loaded",
        Entry::UplinkAttached(_) => "uplink_attached",
        Entry::HostOvsStopped { .. } => "host_ovs_stopped",
    }
}
