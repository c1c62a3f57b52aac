//! `uplink detach`, and the undo of a recorded attach for cleanup and the monitor.

use super::*;

/// What a detach did besides the recorded move.
pub struct Detached {
    /// The switch window in ms: the netlink burst that puts addresses and routes back.
    pub window_ms: f64,
    /// What was added to the bridge after the attach and was carried to the uplink with the rest.
    pub carried_extra: Vec<String>,
}

/// Puts everything the pre-state recorded back on the uplink, with what was added to a bridge
/// of ours since, removes the port, and the bridge when this tool created it and nothing else
/// uses it.
pub fn detach_recorded(
    host: &HostRoot,
    nl: &mut Netlink,
    ovs: &Ovs,
    pre: &UplinkPreState,
) -> Result<Detached> {
    let uplink = nl
        .link(&pre.uplink)?
        .with_context(|| format!("the uplink `{}` does not exist", pre.uplink))?;
    if pre.uplink_was_up {
        nl.set_link(uplink.index, Some(true), None, None)?;
    }
    // Without its bridge link (a userspace bridge vanishes with ovs-vswitchd; after a reboot a
    // kernel one is not there until OVS runs) the addresses are nowhere: put them straight on
    // the uplink, with an index no link has standing in for the bridge.
    let bridge = nl.link(&pre.bridge)?;
    let br_end = End {
        index: bridge.as_ref().map_or(netmodel::NO_LINK, |b| b.index),
        name: &pre.bridge,
    };
    let up_end = End {
        index: uplink.index,
        name: &pre.uplink,
    };
    let recorded = restore_carried(pre, br_end)?;
    // What was added to a bridge of ours after the attach goes with the rest: the bridge is
    // removed below and would take it along. (On a bridge we did not make it stays there.)
    let added = match &bridge {
        Some(br) if pre.bridge_created => {
            let live = dump(nl)?;
            let now = netmodel::carried_by(
                br.index,
                &pre.bridge,
                &live.addrs,
                &live.routes,
                &live.rules,
            );
            netmodel::added_since(&recorded, &now)
        }
        _ => Carried::default(),
    };
    let carried_extra: Vec<String> = added
        .describe()
        .iter()
        .map(|x| named(x, &[up_end, br_end]))
        .collect();
    let carried = recorded.with(added);
    // networkd makes before we break: it configures the uplink again while the bridge still
    // carries the addresses (and the move below then finds them in place).
    crate::host::networkd::release_uplink(host, &pre.uplink)?;
    let window = converge(nl, &carried, br_end, up_end)?;
    // The addresses are back on the uplink: NetworkManager may have it again.
    crate::host::nm::take_back(host, &pre.uplink, &pre.bridge)?;
    ovs.del_port(&pre.bridge, &pre.uplink)?;
    if pre.uplink_promisc == Some(false) && uplink.promisc {
        // Left on by an attach that was killed while it held the flag.
        nl.set_promisc(uplink.index, false)?;
    }
    crate::host::networkd::release_bridge(host, &pre.uplink)?;
    restore_ipv6(pre, !pre.bridge_created && nl.link(&pre.bridge)?.is_some())?;
    let done = Detached {
        window_ms: window,
        carried_extra,
    };
    if !ovs.bridge_exists(&pre.bridge)? {
        return Ok(done);
    }
    if pre.bridge_created {
        if ovs.ports(&pre.bridge)?.is_empty() {
            ovs.del_bridge(&pre.bridge)?;
        }
    } else if pre.ovs_run_dir.is_some() {
        ovs.restore_bridge_settings(
            &pre.bridge,
            pre.bridge_hwaddr_before.as_deref(),
            pre.bridge_mtu_request_before.as_deref(),
        )?;
    }
    Ok(done)
}

/// `uplink detach` as a step: everything back on node-if from the recorded pre-state (or, with
/// no record, what the bridge carries), the port removed, the bridge too when attach made it.
pub struct Detach;

/// What the move back needs besides its names and lines.
pub struct DetachPlan {
    /// The recorded attach; `None` when something else attached the uplink.
    recorded: Option<UplinkPreState>,
    /// The step under which an attach made by something else is recorded as released
    /// (`install` taking the uplink from the host's OVS), so that cleanup gives it back.
    release_step: Option<String>,
}

impl Direction for DetachPlan {
    const TOWARDS: &'static str = "back from";
    const WHY: &'static str = "back off";
}

pub fn detach(ctx: &Ctx) -> Result<StepReport> {
    crate::steps::execute(ctx, &Detach)
}

/// The detach step run inside another step's apply (host-ovs, legacy cleanup), under the lock
/// that step holds (the skeleton would take it a second time); what it moved goes into that
/// step's notes. `release_step`: record an attach made by something else under that step, for
/// cleanup to restore. Verified as the skeleton verifies: planning again finds nothing to do.
pub fn detach_within(
    ctx: &Ctx,
    ledger: &mut Ledger,
    report: &mut StepReport,
    release_step: Option<&str>,
) -> Result<()> {
    use crate::steps::{Action, Step};
    for mut a in Detach.plan(ctx)?.actions {
        a.release_step = release_step.map(String::from);
        Detach.apply(ctx, &a, ledger, report)?;
        report.notes.extend(a.lines());
    }
    let again = Detach.plan(&ctx.planning())?;
    if !Detach.converged(&again) {
        let left: Vec<String> = again.actions.iter().flat_map(|a| a.lines()).collect();
        return Err(Error::new(
            Kind::Apply,
            format!(
                "the uplink's detach did not converge; still to do: {}",
                left.join("; ")
            ),
        )
        .into());
    }
    Ok(())
}

impl crate::steps::Step for Detach {
    type Action = Move<DetachPlan>;

    fn name(&self) -> &'static str {
        NAME
    }

    fn plan(&self, ctx: &Ctx) -> Result<crate::steps::Plan<Move<DetachPlan>>> {
        let mut plan = crate::steps::Plan::new();
        let Session {
            names,
            mut nl,
            uplink,
            view,
            ..
        } = open(ctx)?;
        let ledger = Ledger::load(ctx.host)?;
        let recorded = ledger.uplink(&names.uplink).cloned();
        let bridge = nl.link(&names.bridge)?;
        let ports = view
            .bridge(&names.bridge)
            .map(|b| b.ports.clone())
            .unwrap_or_default();
        let mut lines = Vec::new();
        if let Some(br) = &bridge {
            let br_end = End {
                index: br.index,
                name: &names.bridge,
            };
            let up_end = End {
                index: uplink.index,
                name: &names.uplink,
            };
            let live = dump(&mut nl)?;
            let now = netmodel::carried_by(
                br.index,
                &names.bridge,
                &live.addrs,
                &live.routes,
                &live.rules,
            );
            let carried = match &recorded {
                Some(p) => {
                    let rec = restore_carried(p, br_end)?;
                    let added = netmodel::added_since(&rec, &now);
                    let each: Vec<String> = added
                        .describe()
                        .iter()
                        .map(|x| named(x, &[up_end, br_end]))
                        .collect();
                    if p.bridge_created {
                        lines.extend(each.iter().map(|x| {
                            format!("carry {x} too (added to {} after the attach)", names.bridge)
                        }));
                        rec.with(added)
                    } else {
                        plan.warnings.extend(each.iter().map(|x| {
                            format!(
                                "{x} was added to {} after the attach; it stays there (the \
                                 bridge is not ncp-bootstrap's and is kept)",
                                names.bridge
                            )
                        }));
                        rec
                    }
                }
                None => now,
            };
            lines.extend(describe_ops(
                &netmodel::plan_move(
                    &carried,
                    br_end,
                    up_end,
                    &live.addrs,
                    &live.routes,
                    &live.rules,
                ),
                &[up_end, br_end],
            ));
        }
        if ports.contains(&names.uplink) {
            lines.push(format!(
                "remove port {} from {}",
                names.uplink, names.bridge
            ));
        }
        let bridge_goes = recorded.as_ref().is_some_and(|p| p.bridge_created)
            && view.bridge(&names.bridge).is_some()
            && ports.iter().all(|p| *p == names.uplink);
        if bridge_goes {
            lines.push(format!(
                "remove OVS bridge {} (uplink attach created it)",
                names.bridge
            ));
        }
        if lines.is_empty() {
            match &recorded {
                None => {
                    plan.notes.push(format!(
                        "{} is not attached to {}",
                        names.uplink, names.bridge
                    ));
                    return Ok(plan);
                }
                Some(_) => lines.push(format!(
                    "forget the recorded attach of {} (nothing is left on {})",
                    names.uplink, names.bridge
                )),
            }
        }
        plan.actions.push(Move {
            names,
            lines,
            plan: DetachPlan {
                recorded,
                release_step: None,
            },
        });
        Ok(plan)
    }

    fn apply(
        &self,
        ctx: &Ctx,
        p: &Move<DetachPlan>,
        ledger: &mut Ledger,
        report: &mut StepReport,
    ) -> Result<()> {
        let Session {
            names,
            mut nl,
            uplink,
            ovs,
            ..
        } = open_with(ctx, false)?;
        let pre = match &p.recorded {
            Some(pre) => pre.clone(),
            // No record (attached by something else): move what the bridge carries, keep the
            // bridge.
            None => {
                let br = nl
                    .link(&names.bridge)?
                    .with_context(|| format!("{} vanished", names.bridge))?;
                let live = dump(&mut nl)?;
                let c = netmodel::carried_by(
                    br.index,
                    &names.bridge,
                    &live.addrs,
                    &live.routes,
                    &live.rules,
                );
                let back = c.moved(
                    End {
                        index: br.index,
                        name: &names.bridge,
                    },
                    End {
                        index: uplink.index,
                        name: &names.uplink,
                    },
                );
                // No ovs_run_dir: the bridge is not ours, its settings are left alone.
                let kept = BridgeBefore {
                    created: false,
                    hwaddr: None,
                    mtu_request: None,
                };
                let pre = pre_state(&names, &uplink, None, kept, &back);
                if let Some(step) = &p.release_step {
                    // Before the move: a kill in between leaves a record whose undo finds the
                    // addresses still on the bridge, which is what it would have restored.
                    let released = UplinkPreState {
                        step: step.clone(),
                        ovs_run_dir: Some(ovs_dir(ctx)?.display().to_string()),
                        ..pre.clone()
                    };
                    ledger.record(ctx.host, Entry::UplinkReleased(Box::new(released)))?;
                }
                pre
            }
        };
        let done = detach_recorded(ctx.host, &mut nl, &ovs, &pre).map_err(|e| {
            Error::new(
                Kind::Apply,
                format!("uplink detach failed: {e:#}; re-run it to finish"),
            )
        })?;
        report
            .metrics
            .insert("switch_window_ms".into(), done.window_ms);
        report.notes.extend(done.carried_extra.iter().map(|x| {
            format!(
                "carried {x} to {} (added to {} after the attach)",
                names.uplink, names.bridge
            )
        }));
        let entry = Entry::UplinkAttached(Box::new(pre));
        if ledger.entries.contains(&entry) {
            ledger.forget(ctx.host, &entry)?;
        }
        Ok(())
    }
}

/// For `cleanup`: detach from a ledger entry alone. When no OVS runs any more (the nsx-ovs
/// container is gone, as on decommission), a private ovsdb-server is started on the recorded
/// database just long enough to remove the port and the bridge.
pub fn undo(host: &HostRoot, pre: &UplinkPreState) -> Result<()> {
    let mut nl = Netlink::open()?;
    let run_dir = pre.run_dir()?;
    let ovs = Ovs::new(PathBuf::from(run_dir))?;
    if ovs.reachable().is_ok() {
        return detach_recorded(host, &mut nl, &ovs, pre).map(|_| ());
    }
    let db = pre.conf_db.as_deref().ok_or_else(|| {
        anyhow!(
            "OVS is not running at {} and the ledger does not name its database; start OVS \
             (`ovs run`) and run cleanup again",
            run_dir
        )
    })?;
    let db = crate::host::ovs::recorded_db(host, db)?;
    let offline = crate::host::ovs::Offline::start(host, &db)?;
    // On the kernel datapath node-if stays a port of a switch that no longer runs: out of it
    // first, or the addresses put back on it would not answer.
    crate::host::ovs::datapath::release_port(&pre.uplink)?;
    detach_recorded(host, &mut nl, &offline.ovs, pre)?;
    offline.ovs.clear_restore_wait()?;
    // The bridge's own device outlives a stopped ovs-vswitchd; with no switch to remove it,
    // remove it here when the bridge was ours (a kernel datapath's internal port goes with
    // its datapath port).
    if pre.bridge_created && !crate::host::ovs::datapath::release_port(&pre.bridge)? {
        if let Some(br) = nl.link(&pre.bridge)? {
            nl.del_link(br.index).with_context(|| {
                format!(
                    "{} was removed from OVS but its device stays until OVS runs again",
                    pre.bridge
                )
            })?;
        }
    }
    Ok(())
}

/// For `cleanup`: gives the host's OVS back the uplink that `install` took from it (NCP's
/// manual procedure had attached it): the port again, then the addresses and routes on the
/// bridge, make-before-break as in attach. Runs after the host's OVS was started again.
pub fn reattach(pre: &UplinkPreState) -> Result<()> {
    let run_dir = pre.run_dir()?;
    let ovs = Ovs::new(PathBuf::from(run_dir))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = ovs.reachable() {
        if Instant::now() > deadline {
            return Err(anyhow!(
                "the host's OVS at {} did not come back within 30 s ({e:#}); start it and run \
                 cleanup again to put {} back into {}",
                run_dir,
                pre.uplink,
                pre.bridge
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if !ovs.bridge_exists(&pre.bridge)? {
        return Err(anyhow!(
            "the host's OVS has no bridge {} any more; {} stays on node-if",
            pre.bridge,
            pre.uplink
        ));
    }
    // The names come from the ledger: the uplink must be a link that exists before any
    // ovs-vsctl sees it.
    let mut nl = Netlink::open()?;
    let uplink = nl
        .link(&pre.uplink)?
        .with_context(|| format!("the uplink `{}` does not exist", pre.uplink))?;
    if !ovs.ports(&pre.bridge)?.contains(&pre.uplink) {
        ovs.add_port(&pre.bridge, &pre.uplink)?;
    }
    // A switch that just started creates the bridge's device when it has read the database.
    let bridge = loop {
        if let Some(b) = nl.link(&pre.bridge)? {
            break b;
        }
        if Instant::now() > deadline {
            return Err(anyhow!("OVS did not create the {} interface", pre.bridge));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !bridge.up {
        nl.set_link(bridge.index, Some(true), None, None)?;
    }
    let up_end = End {
        index: uplink.index,
        name: &pre.uplink,
    };
    let br_end = End {
        index: bridge.index,
        name: &pre.bridge,
    };
    let carried = restore_carried(pre, up_end)?;
    // Make before break, as the attach moves: an address the host's bridge refuses is then
    // never taken off the uplink.
    converge(&mut nl, &carried, up_end, br_end).map(drop)
}
