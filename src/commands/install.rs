//! `install` (every enabled bootstrap step) and `cni` (the CNI step alone).

use super::{Env, Outcome};
use crate::error::{reclassify, Kind};
use crate::report::{Report, Status, StepReport};
use crate::steps::{apparmor::AppArmor, cni::Cni, execute, preflight, Ctx};
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
    let cni = env.config.bool("cni.enabled").then(|| Cni::from_ctx(&ctx));
    let apparmor = AppArmor::from_ctx(&ctx);
    // Every step's input is checked before the first one acts: exit 2 means nothing changed.
    if let Some(cni) = &cni {
        preflight(&ctx, cni)?;
    }
    preflight(&ctx, &apparmor)?;

    let mut results = Vec::new();
    match &cni {
        Some(cni) => results.push(execute(&ctx, cni)),
        None => results.push(Ok(skipped("cni", "cni.enabled = false"))),
    }
    if results.iter().all(Result::is_ok) {
        results.push(execute(&ctx, &apparmor));
    }
    let mut changed = false;
    for r in results {
        match r {
            Ok(step) => {
                changed |= step.status == Status::Changed;
                report.steps.push(step);
            }
            Err(e) if changed => return Err(reclassify(e, Kind::Apply)),
            Err(e) => return Err(e),
        }
    }
    Ok(Outcome::ok())
}

fn skipped(name: &str, why: &str) -> StepReport {
    let mut r = StepReport::new(name);
    r.status = Status::Skipped;
    r.notes.push(why.to_string());
    r
}

pub fn apparmor(env: &Env, report: &mut Report) -> Result<Outcome> {
    let ctx = ctx(env, false);
    report.steps.push(execute(&ctx, &AppArmor::from_ctx(&ctx))?);
    Ok(Outcome::ok())
}

pub fn uplink(env: &Env, attach: bool, report: &mut Report) -> Result<Outcome> {
    let ctx = ctx(env, false);
    let step = if attach {
        crate::steps::uplink::attach(&ctx)
    } else {
        crate::steps::uplink::detach(&ctx)
    };
    report
        .steps
        .push(step.map_err(|e| crate::error::classify(e, Kind::Apply))?);
    Ok(Outcome::ok())
}
