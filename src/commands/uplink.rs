//! `uplink attach` and `uplink detach`.

use super::{Env, Outcome};
use crate::report::Report;
use crate::steps::{execute, uplink};
use anyhow::Result;

pub fn run(env: &Env, attach: bool, report: &mut Report) -> Result<Outcome> {
    let ctx = env.ctx();
    let step = match attach {
        true => execute(&ctx, &uplink::Attach),
        false => execute(&ctx, &uplink::Detach),
    };
    report.steps.push(step?);
    Ok(Outcome::ok())
}
