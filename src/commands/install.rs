//! `install` (every enabled bootstrap step) and `cni` (the CNI step alone).

use super::{Env, Outcome};
use crate::error::{classify, reclassify, Kind};
use crate::report::{Report, Status, StepReport};
use crate::steps::{apparmor::AppArmor, cni::Cni, execute, preflight, Ctx};
use anyhow::Result;

fn ctx<'a>(env: &'a Env) -> Ctx<'a> {
    Ctx {
        host: &env.host,
        config: &env.config,
        dry_run: env.cli.dry_run(),
        force: env.config.bool("cni.force"),
        progress: env.progress,
    }
}

pub fn cni(env: &Env, report: &mut Report) -> Result<Outcome> {
    let ctx = ctx(env);
    report.steps.push(execute(&ctx, &Cni::from_ctx(&ctx))?);
    Ok(Outcome::ok())
}

pub fn install(env: &Env, report: &mut Report) -> Result<Outcome> {
    let ctx = ctx(env);
    let cni = env.config.bool("cni.enabled").then(|| Cni::from_ctx(&ctx));
    let apparmor = AppArmor::from_ctx(&ctx);
    // Every step's input is checked before the first one acts: exit 2 means nothing changed.
    if let Some(cni) = &cni {
        preflight(&ctx, cni)?;
    }
    preflight(&ctx, &apparmor)?;
    // host-ovs and persist plan inside their own run: a dry run of each is their plan.
    let plan_only = Ctx {
        dry_run: true,
        ..self::ctx(env)
    };
    let preflight_of = |name: &str, r: Result<StepReport>| {
        r.map(|_| ())
            .map_err(|e| classify(e, Kind::Precondition).context(format!("step {name}")))
    };
    preflight_of(
        crate::steps::host_ovs::NAME,
        crate::steps::host_ovs::step(&plan_only),
    )?;
    if env.config.bool("persist.enabled") {
        preflight_of(
            crate::steps::persist::NAME,
            crate::steps::persist::step(&plan_only, None, false),
        )?;
    }

    // Steps run in order and stop at the first failure: the host's OVS first (so the node's
    // address is back on node-if before anything else), then CNI, then AppArmor.
    type StepRun<'a> = Box<dyn Fn() -> Result<StepReport> + 'a>;
    let steps: Vec<StepRun> = vec![
        Box::new(|| crate::steps::host_ovs::step(&ctx)),
        Box::new(|| match &cni {
            Some(cni) => execute(&ctx, cni),
            None => Ok(skipped("cni", "cni.enabled = false")),
        }),
        Box::new(|| execute(&ctx, &apparmor)),
        Box::new(|| {
            if env.config.bool("persist.enabled") {
                crate::steps::persist::step(&ctx, None, false)
            } else {
                Ok(skipped("persist", "persist.enabled = false"))
            }
        }),
    ];
    let mut changed = false;
    for step in steps {
        match step() {
            Ok(r) => {
                changed |= r.status == Status::Changed;
                report.steps.push(r);
            }
            // A later failure no longer means "nothing was changed".
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
    let ctx = ctx(env);
    report.steps.push(execute(&ctx, &AppArmor::from_ctx(&ctx))?);
    Ok(Outcome::ok())
}

pub fn uplink(env: &Env, attach: bool, report: &mut Report) -> Result<Outcome> {
    let ctx = ctx(env);
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

pub fn ovs_run(env: &Env) -> Result<Outcome> {
    let ctx = ctx(env);
    let code = crate::steps::ovs_run::run(&ctx)?;
    Ok(Outcome {
        code,
        text: String::new(),
        details: None,
    })
}

/// Liveness/readiness: exit 0, or exit 1 with a one-line reason.
pub fn ovs_health(env: &Env) -> Result<Outcome> {
    let ctx = ctx(env);
    Ok(match crate::steps::ovs_run::health(&ctx) {
        Ok(()) => Outcome {
            code: 0,
            text: "healthy\n".into(),
            details: None,
        },
        Err(why) => Outcome {
            code: 1,
            text: format!("unhealthy: {why}\n"),
            details: Some(serde_json::json!({ "unhealthy": why })),
        },
    })
}

pub fn persist(
    env: &Env,
    format: Option<&str>,
    apply: bool,
    report: &mut Report,
) -> Result<Outcome> {
    let ctx = ctx(env);
    report
        .steps
        .push(crate::steps::persist::step(&ctx, format, apply)?);
    Ok(Outcome::ok())
}
