//! `install`: every enabled bootstrap step, in order, each planned before the first one acts.

use super::{Env, Outcome};
use crate::error::{reclassify, Kind};
use crate::report::{Report, Status, StepReport};
use crate::steps::{
    apparmor::AppArmor, cni::Cni, execute, host_ovs::HostOvs, persist::Persist, preflight,
};
use anyhow::Result;

pub fn run(env: &Env, report: &mut Report) -> Result<Outcome> {
    let ctx = env.ctx();
    let s = ctx.settings;
    let cni = s.cni_enabled.then(|| Cni::from_ctx(&ctx));
    let apparmor = AppArmor::from_ctx(&ctx);
    let persist = s.persist_enabled.then_some(Persist);
    // Every step's input is checked before the first one acts: exit 2 means nothing changed.
    preflight(&ctx, &HostOvs)?;
    if let Some(cni) = &cni {
        preflight(&ctx, cni)?;
    }
    preflight(&ctx, &apparmor)?;
    if let Some(p) = &persist {
        preflight(&ctx, p)?;
    }

    // Steps run in order and stop at the first failure: the host's OVS first (so the node's
    // address is back on node-if before anything else), then CNI, AppArmor, persist.
    type StepRun<'a> = Box<dyn Fn() -> Result<StepReport> + 'a>;
    let steps: Vec<StepRun> = vec![
        Box::new(|| execute(&ctx, &HostOvs)),
        Box::new(|| match &cni {
            Some(cni) => execute(&ctx, cni),
            None => Ok(skipped("cni", "cni.enabled = false")),
        }),
        Box::new(|| execute(&ctx, &apparmor)),
        Box::new(|| match &persist {
            Some(p) => execute(&ctx, p),
            None => Ok(skipped("persist", "persist.enabled = false")),
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
            Err(e) if changed => {
                return Err(reclassify(
                    e,
                    Kind::Apply,
                    "install stopped after earlier steps changed the host",
                ))
            }
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
