//! `persist`: the persist step, and `--apply`'s safe reload.

use super::{Env, Outcome};
use crate::report::Report;
use crate::steps::{execute, persist};
use anyhow::Result;

pub fn run(env: &Env, apply: bool, report: &mut Report) -> Result<Outcome> {
    let ctx = env.ctx();
    let mut step = execute(&ctx, &persist::Persist)?;
    if apply && step.status == crate::report::Status::Changed {
        step.notes.push(persist::apply_note(&ctx)?);
    }
    report.steps.push(step);
    Ok(Outcome::ok())
}
