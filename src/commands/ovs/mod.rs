//! `ovs run`, the nsx-ovs container's entrypoint (a supervisor, not a step: it prepares the
//! database, starts the daemons, attaches the uplink through the uplink step and stays in the
//! foreground until a signal or a daemon's death; a crashed ovs-vswitchd is started again in
//! place, a few times, with the bridge's flows restored), and `ovs health`.

mod run;

use super::{Env, Outcome};
use crate::host::ovs::{live_daemons, Ovs, OvsDirs, DAEMONS};
use crate::steps::{uplink, Ctx};
use anyhow::Result;
pub use run::run;

pub fn ovs_run(env: &Env) -> Result<Outcome> {
    let code = run(&env.ctx())?;
    Ok(Outcome {
        code,
        text: String::new(),
        details: None,
    })
}

/// Liveness (and with `ready`, readiness): exit 0, or exit 1 with a one-line reason.
pub fn ovs_health(env: &Env, ready: bool) -> Result<Outcome> {
    let ctx = env.ctx();
    Ok(match health(&ctx, ready) {
        // Which module the kernel datapath runs on, on a line of its own.
        Ok(()) => Outcome {
            code: 0,
            text: match ctx.settings.datapath {
                crate::config::Datapath::System => format!(
                    "healthy\nkernel module: {}\n",
                    crate::steps::kmod::loaded_verdict(&ctx).unwrap_or_else(|e| e)
                ),
                crate::config::Datapath::Netdev => "healthy\n".into(),
            },
            details: None,
        },
        Err(why) => Outcome {
            code: 1,
            text: format!("unhealthy: {why}\n"),
            details: Some(serde_json::json!({ "unhealthy": why.0 })),
        },
    })
}

/// What to do when no uplink is known.
pub const NO_UPLINK: &str = "set ovs_uplink_port in ncp.ini [nsx_node_agent] (or node.uplink) to \
    node-if; without it NCP takes the port of the bridge with ofport 1, and the bridge has none";

/// The uplink: the configured one, or else, as NCP does when ncp.ini names none, the port of
/// the bridge with OpenFlow port 1 in the running OVS.
pub fn uplink_of(ctx: &Ctx, ovs: &Ovs) -> Result<Option<String>> {
    match &ctx.settings.uplink {
        Some(u) => Ok(Some(u.clone())),
        None => ovs.port_with_ofport_1(&ctx.settings.bridge),
    }
}

/// Why `ovs health` fails: the first thing forwarding lacks, or what could not be looked at.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unhealthy(pub String);

impl From<anyhow::Error> for Unhealthy {
    fn from(e: anyhow::Error) -> Self {
        Unhealthy(format!("{e:#}"))
    }
}

/// `ovs health`: `Ok(())` when both daemons answer and the uplink is attached as configured.
/// With `ready` (the readiness probe), an uplink must be known too.
pub fn health(ctx: &Ctx, ready: bool) -> Result<(), Unhealthy> {
    let dirs = OvsDirs::resolve(ctx.host, ctx.settings.ovs_dirs())?;
    let live = live_daemons(ctx.host, &dirs)?;
    for d in DAEMONS {
        if !live.iter().any(|(n, _)| *n == d) {
            return Err(Unhealthy(format!(
                "{d} is not running (no live pid in {})",
                dirs.run.display()
            )));
        }
    }
    let ovs = crate::host::ovs::Ovs::new(dirs.run.clone())?;
    ovs.reachable()?;
    if ovs.restore_wait()? {
        return Err(Unhealthy(
            "ovs-vswitchd waits for flows to be restored (other_config:flow-restore-wait=true)"
                .into(),
        ));
    }
    let bridge = ctx.settings.bridge.as_str();
    let Some(up) = uplink_of(ctx, &ovs)? else {
        // OVS itself is fine (liveness); a pod with nothing attached must not be Ready.
        return match ready {
            false => Ok(()),
            true => Err(Unhealthy(format!("no uplink: {NO_UPLINK}"))),
        };
    };
    let up = up.as_str();
    let ports = ovs
        .ports(bridge)
        .map_err(|e| Unhealthy(format!("bridge {bridge}: {e:#}")))?;
    if !ports.iter().any(|p| p == up) {
        return Err(Unhealthy(format!("{up} is not a port of {bridge}")));
    }
    uplink::check_forwarding(ctx.host, up, bridge)?;
    if ctx.settings.datapath == crate::config::Datapath::System {
        // A node told to use NSX's module that runs on another is not what was asked for.
        if ctx.settings.nsx_kernel_module {
            crate::steps::kmod::loaded_verdict(ctx).map_err(Unhealthy)?;
        }
        // A datapath that cannot be read says nothing either way (no ovs-dpctl in the image).
        let stale = crate::host::ovs::datapath::stale_drops(up).unwrap_or_default();
        if !stale.is_empty() {
            return Err(Unhealthy(format!(
                "the kernel datapath drops what {up} receives: {} exact-match drop flow(s) \
                 installed before ovs-vswitchd had mapped the port (ovs run removes them after \
                 each start of the switch; a restart of nsx-ovs does)",
                stale.len()
            )));
        }
    }
    Ok(())
}
