//! `apparmor`: the AppArmor step alone.

use super::{Env, Outcome};
use crate::report::Report;
use crate::steps::{apparmor::AppArmor, execute};
use anyhow::Result;

pub fn run(env: &Env, report: &mut Report) -> Result<Outcome> {
    let ctx = env.ctx();
    report.steps.push(execute(&ctx, &AppArmor::from_ctx(&ctx))?);
    Ok(Outcome::ok())
}
