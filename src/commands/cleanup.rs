//! `cleanup` and `cleanup --legacy` (see `steps::cleanup`).

use super::{Env, Outcome};
use crate::report::Report;
use crate::steps::cleanup::{Cleanup, LegacyCleanup};
use crate::steps::execute;
use anyhow::Result;

pub fn run(
    env: &Env,
    legacy: bool,
    forget_missing_backups: bool,
    report: &mut Report,
) -> Result<Outcome> {
    let ctx = env.ctx();
    let step = match legacy {
        true => execute(&ctx, &LegacyCleanup)?,
        false => execute(
            &ctx,
            &Cleanup {
                forget_missing_backups,
            },
        )?,
    };
    report.steps.push(step);
    Ok(Outcome::ok())
}
