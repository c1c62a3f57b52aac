//! `cleanup` as steps. `Cleanup` undoes every ledger entry in reverse order; each undone entry
//! leaves the ledger at once, so a cleanup killed half way finishes on the next run, and a
//! failing entry does not stop the others. `LegacyCleanup` follows NCP's documented node cleanup
//! on a node prepared without our ledger.

use super::{Action, Ctx, Plan, Step};
use crate::error::precondition;
use crate::host::paths;
use crate::ledger::{Entry, Ledger};
use crate::report::StepReport;
use crate::steps::undo::{self, UndoAction};
use anyhow::Result;

pub struct Cleanup {
    /// `--forget-missing-backups`, `--forget-missing-uplink`.
    pub forget: undo::Forget,
}

pub enum CleanupAction {
    /// One ledger entry and how it is undone; `n` counts from the last entry (the crash tests'
    /// abort points are named after it).
    Undo {
        n: usize,
        entry: Box<Entry>,
        undo: Box<UndoAction>,
    },
    /// Nothing recorded, but the state directory is there (a run killed before recording).
    PruneState,
    /// The bridge's flow table that `ovs run` keeps for its next start, in OVS's run directory.
    ForgetFlows(std::path::PathBuf),
}

impl Action for CleanupAction {
    fn describe(&self) -> String {
        match self {
            CleanupAction::Undo { undo, .. } => undo.describe(),
            CleanupAction::PruneState => format!(
                "remove the state directory {} (nothing is recorded)",
                paths::STATE_DIR
            ),
            CleanupAction::ForgetFlows(p) => format!("remove {}", p.display()),
        }
    }

    fn why(&self) -> String {
        match self {
            CleanupAction::Undo { entry, .. } => format!("recorded by step {}", entry.step()),
            CleanupAction::PruneState => "ncp-bootstrap's own state".into(),
            CleanupAction::ForgetFlows(_) => {
                "the flows `ovs run` saved for its next start; nothing will start it again".into()
            }
        }
    }
}

impl Step for Cleanup {
    type Action = CleanupAction;

    fn name(&self) -> &'static str {
        "cleanup"
    }

    fn keep_going(&self) -> bool {
        true
    }

    fn plan(&self, ctx: &Ctx) -> Result<Plan<CleanupAction>> {
        let mut plan = Plan::new();
        let ledger = Ledger::load(ctx.host)?;
        if ledger.is_empty() {
            plan.notes.push("the ledger records nothing to undo".into());
            let kept = crate::ledger::kept_backups(ctx.host)?;
            if !kept.is_empty() {
                // What an earlier cleanup kept (the host's originals of files changed after we
                // wrote them) is the operator's to take: the state directory stays with it.
                plan.notes.push(format!(
                    "{} stays: it holds the host's original(s) that a cleanup kept: {}",
                    paths::STATE_DIR,
                    kept.join(", ")
                ));
            } else if state_left(ctx.host)? {
                plan.actions.push(CleanupAction::PruneState);
            }
        }
        // An entry that cannot be undone as recorded (a `host_ovs_stopped` entry naming
        // something other than OVS, say) means the ledger was altered: nothing is undone then,
        // and the error names the entry.
        for (n, entry) in ledger.entries.iter().rev().enumerate() {
            let undo = undo::plan(ctx.host, entry, self.forget).map_err(|e| {
                e.context(format!(
                    "the {} entry of step {} in {}",
                    entry.kind(),
                    entry.step(),
                    paths::LEDGER
                ))
            })?;
            if undo.is_warning() {
                plan.warnings.push(undo.describe());
            }
            plan.actions.push(CleanupAction::Undo {
                n,
                entry: Box::new(entry.clone()),
                undo: Box::new(undo),
            });
        }
        let dirs = crate::host::ovs::OvsDirs::resolve(ctx.host, ctx.settings.ovs_dirs())?;
        let flows = crate::host::ovs::flows::store_path(&dirs, &ctx.settings.bridge);
        if flows.exists() {
            // First: it sits in the run directory, which an undo below may remove once empty.
            plan.actions.insert(0, CleanupAction::ForgetFlows(flows));
        }
        plan.notes.extend(config_file_note(ctx)?);
        Ok(plan)
    }

    fn apply(
        &self,
        ctx: &Ctx,
        action: &CleanupAction,
        ledger: &mut Ledger,
        _report: &mut StepReport,
    ) -> Result<()> {
        match action {
            CleanupAction::Undo { n, entry, undo } => {
                crate::fault::fault(&format!("cleanup-{n}"));
                undo::apply(ctx.host, entry, undo)?;
                ledger.forget(ctx.host, entry)
            }
            // The skeleton prunes the state directory once the ledger is empty.
            CleanupAction::PruneState => Ok(()),
            CleanupAction::ForgetFlows(p) => match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(anyhow::Error::new(e).context(format!("removing {}", p.display())))
                }
                _ => Ok(()),
            },
        }
    }
}

/// Whether anything of the state directory is left to remove: the directory itself, or, when
/// it is a symlink to a directory of the operator's (which stays), anything in it.
fn state_left(host: &crate::host::HostRoot) -> Result<bool> {
    if !host.exists(paths::STATE_DIR)? {
        return Ok(false);
    }
    if !host.is_symlink(paths::STATE_DIR)? {
        return Ok(true);
    }
    let dir = host.resolve(paths::STATE_DIR)?;
    Ok(std::fs::read_dir(&dir)
        .map_err(|e| anyhow::anyhow!("listing {}: {e}", dir.display()))?
        .next()
        .is_some())
}

/// The config file is the operator's settings, not a change to undo: it stays, and cleanup
/// says so, since `config set` may have created it.
fn config_file_note(ctx: &Ctx) -> Result<Option<String>> {
    if !ctx.host.exists(paths::CONFIG_FILE)? {
        return Ok(None);
    }
    Ok(Some(format!(
        "left {}: it holds settings (from `config set` or written by hand), not a change to \
         undo; remove it to forget them",
        paths::CONFIG_FILE
    )))
}

/// NCP's documented node cleanup, for a node prepared without our ledger: the CNI files, the
/// AppArmor profile, and the node's addresses back from the bridge to node-if. Nothing else is
/// touched.
pub struct LegacyCleanup;

pub enum LegacyAction {
    DetachUplink,
    UnloadProfile(String),
    Remove(&'static str),
}

impl Action for LegacyAction {
    fn describe(&self) -> String {
        match self {
            LegacyAction::DetachUplink => {
                "move the node's addresses and routes from the bridge back to node-if".into()
            }
            LegacyAction::UnloadProfile(p) => format!("unload AppArmor profile {p}"),
            LegacyAction::Remove(f) => format!("remove {f}"),
        }
    }

    fn why(&self) -> String {
        "NCP's documented node cleanup (no ledger)".into()
    }
}

impl Step for LegacyCleanup {
    type Action = LegacyAction;

    fn name(&self) -> &'static str {
        "cleanup --legacy"
    }

    fn plan(&self, ctx: &Ctx) -> Result<Plan<LegacyAction>> {
        let host = ctx.host;
        if !Ledger::load(host)?.is_empty() {
            return Err(precondition(format!(
                "{} records what ncp-bootstrap did here: run `cleanup` without --legacy",
                paths::LEDGER
            )));
        }
        let rhel = ["ID", "ID_LIKE"].iter().any(|k| {
            crate::host::os_release_field(host, k).is_some_and(|v| {
                ["rhel", "fedora", "centos"]
                    .iter()
                    .any(|d| v.split_whitespace().any(|w| w == *d))
            })
        });
        let mut plan = Plan::new();
        let s = ctx.settings;
        // Whatever the bridge carries goes back to node-if, as `uplink detach` plans it.
        if s.uplink.is_some()
            && crate::host::netlink::Netlink::open()?
                .link(&s.bridge)?
                .is_some()
            && !super::uplink::Detach.plan(ctx)?.actions.is_empty()
        {
            plan.actions.push(LegacyAction::DetachUplink);
        }
        if crate::host::apparmor::loaded_mode(host, &s.apparmor_profile)?.is_some() {
            plan.actions
                .push(LegacyAction::UnloadProfile(s.apparmor_profile.clone()));
        }
        let mut files = vec![
            paths::APPARMOR_PROFILE_FILE,
            "/etc/cni/net.d/10-nsx.conflist",
            "/etc/cni/net.d/10-nsx.conf",
            paths::LOOPBACK_CONF,
            paths::NSX_PLUGIN,
        ];
        // NCP removes the loopback plugin only on RHEL, where its own package put it.
        if rhel {
            files.push(paths::LOOPBACK_PLUGIN);
        }
        for f in files {
            if host.exists(f)? {
                plan.actions.push(LegacyAction::Remove(f));
            }
        }
        Ok(plan)
    }

    fn apply(
        &self,
        ctx: &Ctx,
        action: &LegacyAction,
        ledger: &mut Ledger,
        report: &mut StepReport,
    ) -> Result<()> {
        match action {
            LegacyAction::DetachUplink => super::uplink::detach_within(ctx, ledger, report, None),
            LegacyAction::UnloadProfile(p) => {
                crate::host::apparmor::Parser::find(ctx.host)?.unload(p)
            }
            LegacyAction::Remove(f) => ctx.host.remove_file(f).map(|_| ()),
        }
    }
}
