//! `cni`: the CNI step alone.

use super::{Env, Outcome};
use crate::report::Report;
use crate::steps::{cni::Cni, execute};
use anyhow::Result;

pub fn run(env: &Env, report: &mut Report) -> Result<Outcome> {
    let ctx = env.ctx();
    report.steps.push(execute(&ctx, &Cni::from_ctx(&ctx))?);
    Ok(Outcome::ok())
}
