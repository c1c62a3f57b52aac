//! `install` (every enabled bootstrap step) and `cni` (the CNI step alone).

use super::{Env, Outcome};
use crate::report::{Report, Status, StepReport};
use crate::steps::{cni::Cni, execute, Ctx};
use anyhow::Result;

fn ctx<'a>(env: &'a Env, force: bool) -> Ctx<'a> {
    Ctx {
        host: &env.host,
        config: &env.config,
        dry_run: env.cli.dry_run,
        force,
        progress: env.progress,
    }
}

pub fn cni(env: &Env, force: bool, report: &mut Report) -> Result<Outcome> {
    let ctx = ctx(env, force);
    report.steps.push(execute(&ctx, &Cni::from_ctx(&ctx))?);
    Ok(Outcome::ok())
}

pub fn install(env: &Env, force: bool, report: &mut Report) -> Result<Outcome> {
    // Refuse before any step runs, so that exit 2 still means nothing was changed.
    if env.config.bool("persist.enabled") {
        return Err(crate::error::unsupported(
            "persist.enabled = true, but the persist step is not implemented in this build yet \
             (issue 6); set persist.enabled = false",
        ));
    }
    let ctx = ctx(env, force);
    if env.config.bool("cni.enabled") {
        report.steps.push(execute(&ctx, &Cni::from_ctx(&ctx))?);
    } else {
        report.steps.push(skipped("cni", "cni.enabled = false"));
    }
    Ok(Outcome::ok())
}

fn skipped(name: &str, why: &str) -> StepReport {
    let mut r = StepReport::new(name);
    r.status = Status::Skipped;
    r.notes.push(why.to_string());
    r
}
