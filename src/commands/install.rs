//! `install`: every enabled bootstrap step, in order, each planned before the first one acts.

use super::{Env, Outcome};
use crate::error::{reclassify, Kind};
use crate::report::{Report, Status, StepReport};
use crate::steps::{
    apparmor::AppArmor, cni::Cni, host_ovs::HostOvs, kmod::KernelModule, persist::Persist, Runnable,
};
use anyhow::Result;

/// One entry of install's list: a step to run, or one the settings turn off.
enum Entry<'a> {
    Run(Box<dyn Runnable + 'a>),
    Off {
        name: &'static str,
        why: &'static str,
    },
}

pub fn run(env: &Env, report: &mut Report) -> Result<Outcome> {
    let ctx = env.ctx();
    let s = ctx.settings;
    // In order: the host's OVS first (so the node's address is back on node-if before anything
    // else), NSX's OVS kernel module (swapped once that OVS is stopped), then CNI, AppArmor,
    // persist.
    let steps = [
        Entry::Run(Box::new(HostOvs)),
        Entry::Run(Box::new(KernelModule::from_ctx(&ctx))),
        match s.cni_enabled {
            true => Entry::Run(Box::new(Cni::from_ctx(&ctx))),
            false => Entry::Off {
                name: "cni",
                why: "cni.enabled = false",
            },
        },
        Entry::Run(Box::new(AppArmor::from_ctx(&ctx))),
        match s.persist_enabled {
            true => Entry::Run(Box::new(Persist)),
            false => Entry::Off {
                name: "persist",
                why: "persist.enabled = false",
            },
        },
    ];
    // Every step's input is checked before the first one acts: exit 2 means nothing changed.
    for step in &steps {
        if let Entry::Run(step) = step {
            step.preflight(&ctx)?;
        }
    }
    // They run in order and stop at the first failure.
    let mut changed = false;
    for step in &steps {
        let result = match step {
            Entry::Run(step) => step.execute(&ctx),
            Entry::Off { name, why } => Ok(skipped(name, why)),
        };
        match result {
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
