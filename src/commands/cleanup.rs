//! `cleanup` and `cleanup --legacy` (see `steps::cleanup`).

use super::{Env, Outcome};
use crate::report::Report;
use crate::steps::cleanup::{Cleanup, LegacyCleanup};
use crate::steps::execute;
use anyhow::Result;

pub fn run(
    env: &Env,
    legacy: bool,
    forget: crate::steps::undo::Forget,
    report: &mut Report,
) -> Result<Outcome> {
    let ctx = env.ctx();
    let step = match legacy {
        true => execute(&ctx, &LegacyCleanup)?,
        false => execute(&ctx, &Cleanup { forget })?,
    };
    report.steps.push(step);
    Ok(Outcome::ok())
}
