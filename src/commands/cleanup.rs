//! `cleanup`: undo every ledger entry in reverse order. Each undone entry is dropped from the
//! ledger at once, so a cleanup killed half way finishes on the next run; a failing entry does
//! not stop the others, and all failures are reported together.

use super::{Env, Outcome};
use crate::error::{unsupported, Error, Kind};
use crate::ledger::Ledger;
use crate::report::{Change, Report, Status, StepReport};
use crate::steps::lock;
use crate::undo;
use anyhow::Result;
use std::time::Instant;

pub fn run(env: &Env, legacy: bool, report: &mut Report) -> Result<Outcome> {
    if legacy {
        return Err(unsupported(
            "`cleanup --legacy` is not implemented in this build yet (issue 7); nothing was changed",
        ));
    }
    let started = Instant::now();
    let mut step = StepReport::new("cleanup");
    let mut ledger = Ledger::load(&env.host)?;
    if ledger.is_empty() {
        step.notes.push("the ledger records nothing to undo".into());
        if !env.cli.dry_run && env.host.exists(crate::host::paths::STATE_DIR)? {
            let _lock = lock(&env.host)?;
            undo::prune_state(&env.host, &ledger.state_dirs)?;
        }
        report.steps.push(step);
        return Ok(Outcome::ok());
    }
    let dry = env.cli.dry_run;
    let _lock = if dry { None } else { Some(lock(&env.host)?.0) };
    let mut errors = Vec::new();
    for entry in ledger.entries.clone().iter().rev() {
        let outcome = undo::plan(&env.host, entry).and_then(|action| {
            env.progress
                .info(&format!("cleanup: {}", action.describe()));
            if !dry {
                undo::apply(&env.host, &action)?;
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
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !dry && ledger.is_empty() {
        if let Err(e) = undo::prune_state(&env.host, &ledger.state_dirs) {
            errors.push(format!("{e:#}"));
        }
    }
    step.status = if dry {
        Status::Planned
    } else {
        Status::Changed
    };
    step.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    if !errors.is_empty() {
        step.status = Status::Failed;
        report.steps.push(step);
        return Err(Error::new(
            Kind::Apply,
            format!(
                "cleanup could not undo {} entr{}: {}; the rest was undone, and the failed entries stay in \
                 the ledger for the next `cleanup`",
                errors.len(),
                if errors.len() == 1 { "y" } else { "ies" },
                errors.join("; ")
            ),
        )
        .into());
    }
    report.steps.push(step);
    Ok(Outcome::ok())
}
