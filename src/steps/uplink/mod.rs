//! The uplink move: node-if's addresses, routes and rules to the OVS bridge (`attach`) and
//! back (`detach`), make-before-break, with the pre-state journaled before the first change,
//! connectivity probes around the move, and a rollback when the probes fail.
//!
//! The operations themselves come from `netmodel::plan_move` (pure, unit-tested); this module
//! observes the host, records, drives OVS and netlink, and verifies.

use super::Ctx;
use crate::error::{input, precondition, Error, Kind};
use crate::fault::fault;
use crate::host::netlink::Netlink;
use crate::host::ovs::{mac_string, Ovs};
use crate::host::probe::{self, Target};
use crate::host::sysctl;
use crate::host::HostRoot;
use crate::ledger::{Entry, Ledger, UplinkPreState};
use crate::netmodel::{self, Carried, End, Op};
use crate::report::{Change, StepReport};
use anyhow::{anyhow, Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod attach;
mod checks;
mod detach;
mod prestate;
mod undo;

pub use attach::{attach, Attach, AttachPlan};
use checks::*;
pub use checks::{check_forwarding, mtu_warning};
pub use detach::{
    detach, detach_recorded, detach_within, reattach, undo, Detach, DetachPlan, Detached,
};
use prestate::*;
pub use undo::Undo;

/// One planned move of node-if's addresses and routes, either way: the names and the lines
/// the report lists are the same for both; `P` holds what the direction needs besides.
pub struct Move<P> {
    pub names: Names,
    pub lines: Vec<String>,
    pub plan: P,
}

/// The words a move's report uses for its direction.
pub trait Direction {
    /// "move node-if's addresses and routes {TOWARDS} br-int".
    const TOWARDS: &'static str;
    /// "move node-if {WHY} br-int".
    const WHY: &'static str;
}

impl<P> std::ops::Deref for Move<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.plan
    }
}

impl<P> std::ops::DerefMut for Move<P> {
    fn deref_mut(&mut self) -> &mut P {
        &mut self.plan
    }
}

impl<P: Direction> crate::steps::Action for Move<P> {
    fn describe(&self) -> String {
        format!(
            "move {}'s addresses and routes {} {}",
            self.names.uplink,
            P::TOWARDS,
            self.names.bridge
        )
    }

    fn why(&self) -> String {
        format!(
            "move {} {} {}",
            self.names.uplink,
            P::WHY,
            self.names.bridge
        )
    }

    fn lines(&self) -> Vec<String> {
        self.lines.clone()
    }
}

pub const NAME: &str = "uplink";

pub struct Names {
    pub uplink: String,
    pub bridge: String,
}

impl Names {
    pub fn from_ctx(ctx: &Ctx) -> Result<Names> {
        let uplink = ctx.settings.uplink.clone().ok_or_else(|| {
            precondition(
                "no uplink configured: pass --uplink IF, or set node.uplink (config file, \
                 NCP_BOOTSTRAP_NODE_UPLINK) or ovs_uplink_port in ncp.ini [nsx_node_agent]",
            )
        })?;
        let bridge = ctx.settings.bridge.clone();
        if uplink == bridge {
            return Err(precondition(format!(
                "the uplink and the bridge are both `{uplink}`; node.uplink must name the NIC"
            )));
        }
        Ok(Names { uplink, bridge })
    }
}

fn ovs_dir(ctx: &Ctx) -> Result<PathBuf> {
    Ok(crate::host::ovs::OvsDirs::resolve(ctx.host, ctx.settings.ovs_dirs())?.run)
}

struct Live {
    addrs: Vec<netlink_packet_route::address::AddressMessage>,
    routes: Vec<netlink_packet_route::route::RouteMessage>,
    rules: Vec<netlink_packet_route::rule::RuleMessage>,
}

fn dump(nl: &mut Netlink) -> Result<Live> {
    Ok(Live {
        addrs: nl.addresses()?,
        routes: nl.routes()?,
        rules: nl.rules()?,
    })
}

/// The netlink operations that put `carried` from `from` onto `to`, against the links as they
/// are now.
fn plan_now(nl: &mut Netlink, carried: &Carried, from: End, to: End) -> Result<Vec<Op>> {
    let live = dump(nl)?;
    Ok(netmodel::plan_move(
        carried,
        from,
        to,
        &live.addrs,
        &live.routes,
        &live.rules,
    ))
}

/// How many times a move is planned again against the links as they are when a network
/// manager changed them under it.
const CONVERGE_TRIES: usize = 3;

/// Plans and applies the move until nothing is left to do. A network manager given the uplink
/// back works beside us (networkd configures it again as soon as its runtime file goes): an op
/// it made stale between the dump and the apply fails (`File exists`, `No such process`), and
/// the next plan starts from what is there. Returns the switch window in ms of the first burst.
fn converge(nl: &mut Netlink, carried: &Carried, from: End, to: End) -> Result<f64> {
    let mut window = None;
    let mut tries = 0;
    loop {
        let ops = plan_now(nl, carried, from, to)?;
        if ops.is_empty() {
            return Ok(window.unwrap_or(0.0));
        }
        tries += 1;
        crate::fault::hook("move-planned");
        let t = Instant::now();
        let (make, brk) = netmodel::make_then_break(&ops);
        let res = nl.apply(make).and_then(|()| nl.apply(brk));
        window.get_or_insert(t.elapsed().as_secs_f64() * 1000.0);
        match res {
            Ok(()) => return Ok(window.unwrap_or(0.0)),
            Err(e) if tries >= CONVERGE_TRIES => {
                return Err(e.context(format!(
                    "the move from {} to {} did not converge in {CONVERGE_TRIES} tries",
                    from.name, to.name
                )))
            }
            Err(_) => {}
        }
    }
}

/// What the pre-state says the uplink carried, expressed as it must be on the bridge.
fn restore_carried(pre: &UplinkPreState, bridge: End) -> Result<Carried> {
    let uplink = End {
        index: pre.uplink_index,
        name: &pre.uplink,
    };
    Ok(pre.carried()?.moved(uplink, bridge))
}

fn describe_ops(ops: &[Op], ends: &[End]) -> Vec<String> {
    ops.iter().map(|o| named(&o.describe(), ends)).collect()
}

/// A description with the links it names by index (`dev#9`) named as people know them
/// (`dev br-int`), for the two ends of a move; other indexes stay as they are.
fn named(text: &str, ends: &[End]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("dev#") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 4..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let end = after[..digits]
            .parse::<u32>()
            .ok()
            .and_then(|i| ends.iter().find(|e| e.index == i));
        match end {
            Some(e) => out.push_str(&format!("dev {}", e.name)),
            None => out.push_str(&rest[at..at + 4 + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

fn resolve_targets(ctx: &Ctx, c: &Carried) -> Result<Vec<(String, Target)>> {
    let mut out = Vec::new();
    for t in &ctx.settings.probe_targets {
        match t {
            Target::Gateway => {
                for gw in netmodel::default_gateways(c) {
                    out.push((format!("gateway {gw}"), Target::Icmp(gw)));
                }
            }
            other => out.push((other.to_string(), other.clone())),
        }
    }
    Ok(out)
}

fn probe_all(targets: &[(String, Target)], each: Duration) -> Vec<String> {
    targets
        .iter()
        .filter(|(_, t)| probe::once(t, each))
        .map(|(n, _)| n.clone())
        .collect()
}

/// After a move: true when any target that answered before answers within the deadline.
fn probe_after(targets: &[(String, Target)], answered: &[String], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let wanted: Vec<&(String, Target)> = targets
        .iter()
        .filter(|(n, _)| answered.contains(n))
        .collect();
    while Instant::now() < deadline {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(500));
        if wanted.iter().any(|(_, t)| probe::once(t, left)) {
            return true;
        }
    }
    false
}

/// What both directions start from, with the preconditions every move shares checked.
struct Session {
    names: Names,
    nl: Netlink,
    uplink: crate::host::netlink::Link,
    ovs: Ovs,
    /// OVSDB's bridges and ports as the session opened (read once: it also proves OVS answers).
    view: crate::host::ovs::View,
}

fn open(ctx: &Ctx) -> Result<Session> {
    open_with(ctx, true)
}

/// `open`, reading OVSDB's view only when asked: applying right after planning needs no second
/// read (each `ovs-vsctl` run is a process and a database round trip).
fn open_with(ctx: &Ctx, read_view: bool) -> Result<Session> {
    let names = Names::from_ctx(ctx)?;
    let mut nl = Netlink::open()?;
    let uplink = nl.link(&names.uplink)?.ok_or_else(|| {
        precondition(format!(
            "the uplink `{}` does not exist on this host",
            names.uplink
        ))
    })?;
    check_uplink(&names, &uplink)?;
    if let Some(br) = nl.link(&names.bridge)? {
        check_bridge(&names, &br)?;
    }
    let ovs = Ovs::new(ovs_dir(ctx)?)?;
    let view = if read_view {
        ovs.view()?
    } else {
        crate::host::ovs::View::default()
    };
    Ok(Session {
        names,
        nl,
        uplink,
        ovs,
        view,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uplink_smaller_than_the_pods_mtu_is_named_with_both_figures() {
        assert_eq!(mtu_warning("ens192", 1500, 1500), None);
        assert_eq!(mtu_warning("ens192", 9000, 1500), None);
        let w = mtu_warning("ens192", 1400, 1500).unwrap();
        for want in [
            "ens192",
            "1400",
            "1500",
            "[nsx_node_agent] mtu",
            "mtu = 1400",
        ] {
            assert!(w.contains(want), "{want}: {w}");
        }
    }

    #[test]
    fn links_are_named_in_descriptions() {
        let ends = [
            End {
                index: 2,
                name: "eth1",
            },
            End {
                index: 9,
                name: "br-int",
            },
        ];
        assert_eq!(
            named("add address 10.0.0.5/24 dev#9 label br-int", &ends),
            "add address 10.0.0.5/24 dev br-int label br-int"
        );
        assert_eq!(
            named(
                "replace route default via 10.0.0.1 dev#2 metric 5; dev#21 dev#",
                &ends
            ),
            "replace route default via 10.0.0.1 dev eth1 metric 5; dev#21 dev#"
        );
    }
}
