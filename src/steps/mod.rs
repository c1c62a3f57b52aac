//! Steps: each host change can plan (read only), apply (recording in the ledger before it acts),
//! and verify. Undo is driven by the ledger's data (see `crate::steps::undo`), so a crashed run can be
//! undone by a later process.

pub mod apparmor;
pub mod cleanup;
pub mod cni;
pub mod host_ovs;
pub mod kmod;
pub mod ovs_files;
pub mod persist;
pub mod undo;
pub mod uplink;

use crate::config::Settings;
use crate::error::{classify, Kind};
use crate::host::{paths, HostRoot};
use crate::ledger::Ledger;
use crate::report::{Change, Progress, Status, StepReport};
use anyhow::{Context, Result};
use std::time::Instant;

/// What every step sees.
pub struct Ctx<'a> {
    pub host: &'a HostRoot,
    pub settings: &'a Settings,
    pub dry_run: bool,
    pub progress: &'a Progress,
}

impl Ctx<'_> {
    /// The same context, planning only.
    pub fn planning(&self) -> Ctx<'_> {
        Ctx {
            host: self.host,
            settings: self.settings,
            dry_run: true,
            progress: self.progress,
        }
    }
}

/// One planned change, with the reason for it.
pub trait Action {
    fn describe(&self) -> String;
    fn why(&self) -> String;
    /// The lines the report lists for it: one, or one per part of a change made as a whole
    /// (the uplink's move lists each address and route).
    fn lines(&self) -> Vec<String> {
        vec![self.describe()]
    }
}

pub struct Plan<A> {
    pub actions: Vec<A>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    /// The step does not apply on this host, and why.
    pub skipped: Option<String>,
}

impl<A> Plan<A> {
    pub fn new() -> Self {
        Plan {
            actions: Vec::new(),
            warnings: Vec::new(),
            notes: Vec::new(),
            skipped: None,
        }
    }

    pub fn skip(why: impl Into<String>) -> Self {
        Plan {
            skipped: Some(why.into()),
            ..Plan::new()
        }
    }
}

impl<A> Default for Plan<A> {
    fn default() -> Self {
        Self::new()
    }
}

/// Every host change: plan (read only), apply (record in the ledger, then act), verify (planning
/// again finds nothing to do). `execute` runs the three under the lock.
pub trait Step {
    type Action: Action;
    fn name(&self) -> &'static str;
    /// Observes the host and decides; reads only.
    fn plan(&self, ctx: &Ctx) -> Result<Plan<Self::Action>>;
    /// Makes one planned change, recording it in the ledger before acting. What it measured or
    /// noticed goes into `report`.
    fn apply(
        &self,
        ctx: &Ctx,
        action: &Self::Action,
        ledger: &mut Ledger,
        report: &mut StepReport,
    ) -> Result<()>;
    /// Whether a plan made after applying shows the step converged: by default, nothing is
    /// left to do. A step with a best-effort part (a hand-off another program may decline)
    /// leaves that part out.
    fn converged(&self, plan: &Plan<Self::Action>) -> bool {
        plan.actions.is_empty()
    }
    /// Whether the actions are independent, so that one failing does not stop the others
    /// (cleanup's ledger entries); the failures are then reported together.
    fn keep_going(&self) -> bool {
        false
    }
}

/// The actions of a `keep_going` step that failed, each with its error; the rest were applied.
#[derive(Debug, thiserror::Error)]
pub struct Failures {
    pub step: &'static str,
    pub failed: Vec<Failure>,
}

#[derive(Debug)]
pub struct Failure {
    pub action: String,
    pub error: String,
}

impl std::fmt::Display for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.failed.len();
        write!(
            f,
            "{} could not do {n} of its changes: {}; the rest was done, and what failed stays \
             recorded in {} for the next run",
            self.step,
            self.failed
                .iter()
                .map(|x| format!("{}: {}", x.action, x.error))
                .collect::<Vec<_>>()
                .join("; "),
            paths::LEDGER
        )
    }
}

/// Plans a step without acting, so that `install` can refuse bad input for every step before
/// the first one changes anything.
pub fn preflight<S: Step>(ctx: &Ctx, step: &S) -> Result<()> {
    step.plan(&ctx.planning())
        .map(|_| ())
        .map_err(|e| classify(e, Kind::Precondition).context(format!("step {}", step.name())))
}

/// Any step behind `dyn`, so that a command can run several from one list.
pub trait Runnable {
    fn preflight(&self, ctx: &Ctx) -> Result<()>;
    fn execute(&self, ctx: &Ctx) -> Result<StepReport>;
}

impl<S: Step> Runnable for S {
    fn preflight(&self, ctx: &Ctx) -> Result<()> {
        preflight(ctx, self)
    }

    fn execute(&self, ctx: &Ctx) -> Result<StepReport> {
        execute(ctx, self)
    }
}

/// Plans, and unless this is a dry run applies and verifies, one step.
pub fn execute<S: Step>(ctx: &Ctx, step: &S) -> Result<StepReport> {
    let started = Instant::now();
    let mut report = StepReport::new(step.name());
    ctx.progress.info(&format!("{}: planning", step.name()));
    let result = execute_inner(ctx, step, &mut report);
    report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(()) => Ok(report),
        Err(e) => {
            report.status = Status::Failed;
            Err(e.context(StepFailed(Box::new(report))))
        }
    }
}

/// Carries the partial report of a failed step up to the command, for the JSON output.
#[derive(Debug)]
pub struct StepFailed(pub Box<StepReport>);

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {}", self.0.name)
    }
}

fn execute_inner<S: Step>(ctx: &Ctx, step: &S, report: &mut StepReport) -> Result<()> {
    // A real run plans under the lock, so that it acts on what is there now and a run that
    // waited finds the work of the one before it done. The lock creates nothing on the host.
    let _lock = match ctx.dry_run {
        true => None,
        false => Some(lock(ctx.host).map_err(|e| classify(e, Kind::Precondition))?),
    };
    let plan = step
        .plan(ctx)
        .map_err(|e| classify(e, Kind::Precondition))?;
    if let Some(why) = plan.skipped {
        ctx.progress
            .info(&format!("{}: skipped: {why}", step.name()));
        report.status = Status::Skipped;
        report.notes.push(why);
        return Ok(());
    }
    // Warnings go into the report, which prints them once at the end.
    report.warnings.extend(plan.warnings.iter().cloned());
    report.notes.extend(plan.notes.iter().cloned());
    for n in &plan.notes {
        ctx.progress.debug(&format!("{}: {n}", step.name()));
    }
    for a in &plan.actions {
        ctx.progress.debug(&format!(
            "{}: planned: {} ({})",
            step.name(),
            a.describe(),
            a.why()
        ));
    }
    if plan.actions.is_empty() {
        return Ok(());
    }
    if ctx.dry_run {
        report.status = Status::Planned;
        report.changes = plan
            .actions
            .iter()
            .flat_map(|a| changes(a, false))
            .collect();
        return Ok(());
    }
    crate::ledger::create_state_dir(ctx.host)?;
    let mut ledger = Ledger::load(ctx.host)?;
    report.status = Status::Changed;
    ctx.progress.info(&format!(
        "{}: applying {} change{}",
        step.name(),
        plan.actions.len(),
        if plan.actions.len() == 1 { "" } else { "s" }
    ));
    let mut failed = Vec::new();
    for action in &plan.actions {
        ctx.progress
            .doing(&format!("{}: {}", step.name(), action.describe()));
        // Changes an apply adds itself (a hand-off it made) are listed after the action's own.
        let at = report.changes.len();
        match step.apply(ctx, action, &mut ledger, report) {
            Ok(()) => {
                let extra = report.changes.split_off(at);
                report.changes.extend(changes(action, true));
                report.changes.extend(extra);
            }
            Err(e) if step.keep_going() => failed.push(Failure {
                action: action.describe(),
                error: crate::error::render(&e),
            }),
            Err(e) => {
                // An apply that undid itself (a rolled-back attach) may leave nothing recorded:
                // then nothing of ours may stay either.
                if ledger.is_empty() {
                    crate::ledger::prune_state(ctx.host, &ledger.state_dirs)?;
                }
                return Err(classify(
                    e.context(format!(
                        "{}: {} failed; what was done is recorded in {} — re-run to finish, or \
                         run `ncp-bootstrap cleanup` to undo it",
                        step.name(),
                        action.describe(),
                        paths::LEDGER
                    )),
                    Kind::Apply,
                ));
            }
        }
    }
    // An undo (a detach, a cleanup) may leave nothing recorded: then the state directory goes.
    if ledger.is_empty() {
        crate::ledger::prune_state(ctx.host, &ledger.state_dirs)?;
    }
    if !failed.is_empty() {
        let failures = Failures {
            step: step.name(),
            failed,
        };
        return Err(classify(failures.into(), Kind::Apply));
    }
    verify(ctx, step)
}

/// A step has converged when planning again finds nothing to do.
fn verify<S: Step>(ctx: &Ctx, step: &S) -> Result<()> {
    let again = step.plan(ctx).map_err(|e| classify(e, Kind::Apply))?;
    if step.converged(&again) {
        return Ok(());
    }
    let left: Vec<String> = again.actions.iter().map(|a| a.describe()).collect();
    Err(crate::error::Error::new(
        Kind::Apply,
        format!(
            "{}: verification failed, still to do after applying: {}",
            step.name(),
            left.join("; ")
        ),
    )
    .into())
}

fn changes<A: Action>(a: &A, done: bool) -> Vec<Change> {
    let why = a.why();
    a.lines()
        .into_iter()
        .map(|action| Change {
            action,
            why: why.clone(),
            done,
        })
        .collect()
}

const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The held lock. Dropping it releases the lock.
pub struct Lock {
    _file: std::fs::File,
}

/// Serialises every run that reads, changes and writes the ledger (`execute` takes it before
/// planning); it creates nothing on the host, so a converged re-run leaves no trace.
///
/// What is locked is the host root directory itself (flock on its inode, which a container's
/// `/host` mount shares with the host's `/`). A lock file in the state directory would have to
/// be deleted with that directory by `cleanup`, while another run may be waiting on it; the
/// host root is never deleted, and the state directory is created and removed only under it.
pub fn lock(host: &HostRoot) -> Result<Lock> {
    let p = host.root();
    let f =
        std::fs::File::open(p).with_context(|| format!("opening {} to lock it", p.display()))?;
    // Another run (an `ovs run` still probing after its attach, say) usually finishes within
    // seconds: wait for it rather than fail.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(Lock { _file: f }),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(crate::error::precondition(format!(
                    "another ncp-bootstrap run has held the lock on the host root {} for {} s; \
                     wait for it to finish",
                    p.display(),
                    LOCK_WAIT.as_secs()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", p.display()))
            }
        }
    }
}

/// A temporary host root with settings from the given environment, for the steps' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::Ctx;
    use crate::config::{Config, Inputs, Settings};
    use crate::host::HostRoot;
    use crate::report::Progress;

    pub struct TestHost {
        pub dir: tempfile::TempDir,
        pub host: HostRoot,
        pub settings: Settings,
        progress: Progress,
    }

    pub fn host(env: &[(&str, &str)]) -> TestHost {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let host = HostRoot::new(dir.path()).unwrap();
        let inputs = Inputs {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Inputs::default()
        };
        let settings = Settings::from_config(&Config::load(&host, &inputs).unwrap()).unwrap();
        TestHost {
            dir,
            host,
            settings,
            progress: Progress::new(true, false),
        }
    }

    /// The error a step's plan fails with on this host.
    pub fn plan_err<S: super::Step>(step: &S, h: &TestHost) -> anyhow::Error {
        match step.plan(&h.ctx()) {
            Ok(_) => panic!("{}: the plan succeeded", step.name()),
            Err(e) => e,
        }
    }

    impl TestHost {
        pub fn ctx(&self) -> Ctx<'_> {
            Ctx {
                host: &self.host,
                settings: &self.settings,
                dry_run: true,
                progress: &self.progress,
            }
        }

        pub fn write(&self, path: &str, bytes: &[u8]) {
            let p = self.dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
    }
}
