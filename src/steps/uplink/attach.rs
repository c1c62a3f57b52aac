//! `uplink attach`: one transaction in the manner of nmstate's checkpoint.

use super::*;

/// `uplink attach` as a step: one transaction in the manner of nmstate's checkpoint. The
/// pre-state is recorded, then bridge, port and the netlink burst, then the check (probes);
/// a failed check rolls everything back to the pre-state.
pub struct Attach;

/// What the move onto the bridge needs besides its names and lines.
pub struct AttachPlan {
    pre: UplinkPreState,
    carried_on_uplink: Carried,
    /// The hand-off from NetworkManager, listed when it happens.
    nm_line: Option<String>,
    /// The hand-off from systemd-networkd, prepared before anything moves.
    networkd: Option<crate::host::networkd::HandOff>,
    /// The host configured the uplink again since the attach was recorded, otherwise than
    /// recorded: `pre` holds the uplink's configuration as it is now, to replace the record.
    recorded_anew: bool,
}

impl Direction for AttachPlan {
    const TOWARDS: &'static str = "onto";
    const WHY: &'static str = "onto";
}

pub fn attach(ctx: &Ctx) -> Result<StepReport> {
    crate::steps::execute(ctx, &Attach)
}

impl crate::steps::Step for Attach {
    type Action = Move<AttachPlan>;

    fn name(&self) -> &'static str {
        NAME
    }

    fn plan(&self, ctx: &Ctx) -> Result<crate::steps::Plan<Move<AttachPlan>>> {
        let mut plan = crate::steps::Plan::new();
        let Session {
            names,
            mut nl,
            uplink,
            view,
            ..
        } = open(ctx)?;
        if let Some(other) = view.port_bridge(&names.uplink) {
            if other != names.bridge {
                return Err(precondition(format!(
                    "{} is already a port of OVS bridge {other}, not {}; remove it there first",
                    names.uplink, names.bridge
                )));
            }
        }
        let ledger = Ledger::load(ctx.host)?;
        let bridge_view = view.bridge(&names.bridge);
        let bridge_exists = bridge_view.is_some();
        let bridge_link = nl.link(&names.bridge)?;
        let live = dump(&mut nl)?;
        let up_end = End {
            index: uplink.index,
            name: &names.uplink,
        };
        // Before creating the bridge its index is unknown; 0 stands in for the plan's description.
        let br_index = bridge_link.as_ref().map_or(0, |l| l.index);
        let br_end = End {
            index: br_index,
            name: &names.bridge,
        };
        let (hwaddr, mtu_request) = bridge_view
            .map(|b| (b.hwaddr.clone(), b.mtu_request.clone()))
            .unwrap_or_default();
        let before = BridgeBefore {
            created: !bridge_exists,
            hwaddr,
            mtu_request,
        };
        let ipv6_now = Ipv6Now::read(&names)?;
        let mut recorded_anew = None;
        let (pre, carried_on_uplink) = match ledger.uplink(&names.uplink) {
            Some(p) => {
                let was = restore_carried(p, br_end)?.moved(br_end, up_end);
                let now = netmodel::carried_by(
                    uplink.index,
                    &names.uplink,
                    &live.addrs,
                    &live.routes,
                    &live.rules,
                );
                if netmodel::configured_again(&was, br_index, &live.addrs, &now) {
                    recorded_anew = Some(record_anew_line(&names, &was, &now, up_end, br_end));
                    (recarried(p, &uplink, &now), now)
                } else {
                    (p.clone(), was)
                }
            }
            None => {
                let c = netmodel::carried_by(
                    uplink.index,
                    &names.uplink,
                    &live.addrs,
                    &live.routes,
                    &live.rules,
                );
                let run_dir = ovs_dir(ctx)?.display().to_string();
                let mut pre = pre_state(&names, &uplink, Some(run_dir), before, &c);
                // Recorded before they change; a bridge made by the attach goes with detach.
                pre.ipv6_before = ipv6_now.befores(&ipv6_now.changes(ctx, &c));
                // As the host names it, links unresolved: cleanup and the monitor read it under
                // their own host roots, in other containers.
                pre.conf_db = crate::host::ovs::OvsDirs::resolve(ctx.host, ctx.settings.ovs_dirs())
                    .ok()
                    .and_then(|d| crate::host::ovs::db_record(ctx.host, &d.db.join("conf.db")));
                (pre, c)
            }
        };
        let networkd =
            crate::host::networkd::prepare(ctx.host, &names.uplink, uplink.index, &names.bridge)?;
        if ledger.uplink(&names.uplink).is_none() && networkd.is_none() {
            check_dynamic(ctx, &names, &carried_on_uplink, &mut plan.warnings)?;
        }
        check_labels(&names, &carried_on_uplink)?;
        check_nexthop_objects(&names, &carried_on_uplink)?;
        plan.warnings
            .extend(mtu_warning(&names.uplink, uplink.mtu, ctx.settings.pod_mtu));
        let port_present = bridge_view.is_some_and(|b| b.ports.contains(&names.uplink));
        let ops = netmodel::plan_move(
            &carried_on_uplink,
            up_end,
            br_end,
            &live.addrs,
            &live.routes,
            &live.rules,
        );
        let links_up = uplink.up && bridge_link.as_ref().is_some_and(|l| l.up);
        let mut lines: Vec<String> = recorded_anew.iter().cloned().collect();
        if !bridge_exists {
            lines.push(format!(
                "create OVS bridge {} (datapath {})",
                names.bridge,
                datapath(ctx)
            ));
        }
        if !port_present {
            lines.push(format!(
                "add {} to {} with ofport_request=1",
                names.uplink, names.bridge
            ));
        }
        if !links_up {
            lines.push(format!("set {} and {} up", names.uplink, names.bridge));
        }
        lines.extend(describe_ops(&ops, &[up_end, br_end]));
        lines.extend(describe_ipv6(
            &names,
            &ipv6_now.changes(ctx, &carried_on_uplink),
        ));
        let nm_line = crate::host::nm::needs_hand_off(ctx.host, &names.uplink)?.then(|| {
            format!(
                "tell NetworkManager to leave {} unmanaged while attached",
                names.uplink
            )
        });
        if lines.is_empty() && nm_line.is_none() && networkd.is_none() {
            plan.notes
                .push(format!("{} is attached to {}", names.uplink, names.bridge));
            return Ok(plan);
        }
        if ctx.dry_run {
            lines.extend(nm_line.clone());
            lines.extend(networkd.as_ref().map(|h| h.describe()));
        }
        plan.actions.push(Move {
            names,
            lines,
            plan: AttachPlan {
                pre,
                carried_on_uplink,
                nm_line,
                networkd,
                recorded_anew: recorded_anew.is_some(),
            },
        });
        Ok(plan)
    }

    /// The hand-off from NetworkManager is best effort (NetworkManager may not know the
    /// device, or not answer; both are reported): converged means nothing is left to move.
    fn converged(&self, plan: &crate::steps::Plan<Move<AttachPlan>>) -> bool {
        plan.actions.iter().all(|a| a.lines.is_empty())
    }

    fn apply(
        &self,
        ctx: &Ctx,
        p: &Move<AttachPlan>,
        ledger: &mut Ledger,
        report: &mut StepReport,
    ) -> Result<()> {
        let Session { mut nl, ovs, .. } = open_with(ctx, false)?;
        let names = &p.names;
        let targets = resolve_targets(ctx, &p.carried_on_uplink)?;
        let timeout = ctx.settings.probe_timeout;
        let answered = probe_all(&targets, timeout.min(Duration::from_secs(1)));
        if answered.is_empty() {
            report.warnings.push(if targets.is_empty() {
                "no probe target (no default gateway on the uplink and probe.targets names none); the move is not checked".into()
            } else {
                format!(
                    "no probe target answered before the move ({}); continuing without a connectivity check",
                    targets.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                )
            });
        }
        ctx.progress.debug(&format!(
            "uplink: {} of {} probe targets answered before the move",
            answered.len(),
            targets.len()
        ));
        if ledger.uplink(&names.uplink).is_none() {
            ledger.record(ctx.host, Entry::UplinkAttached(Box::new(p.pre.clone())))?;
        } else if p.plan.recorded_anew {
            ledger.replace_uplink(ctx.host, p.pre.clone())?;
        }
        fault("after-record");
        let result = do_attach(ctx, &mut nl, &ovs, names, &p.pre, report);
        let result = result.and_then(|window| {
            report.metrics.insert("switch_window_ms".into(), window);
            if answered.is_empty() || probe_after(&targets, &answered, timeout) {
                Ok(())
            } else {
                Err(anyhow!(
                    "connectivity lost after the move: none of {} answered within {} ms",
                    answered.join(", "),
                    timeout.as_millis()
                ))
            }
        });
        if let Err(e) = result {
            let rollback = detach_recorded(ctx.host, &mut nl, &ovs, &p.pre).map(|_| ());
            let msg = match rollback {
                Ok(()) => {
                    let _ = ledger.forget(ctx.host, &Entry::UplinkAttached(Box::new(p.pre.clone())));
                    format!("uplink attach failed and was rolled back to the pre-state: {e:#}")
                }
                Err(r) => format!(
                    "uplink attach failed ({e:#}) and the rollback failed too ({r:#}); the pre-state is \
                     in {}: run `ncp-bootstrap uplink detach` to restore it",
                    crate::host::paths::LEDGER
                ),
            };
            return Err(Error::new(Kind::Apply, msg).into());
        }
        // Attached again: what the monitor did before is history.
        let released: Vec<Entry> = ledger
            .entries
            .iter()
            .filter(
                |e| matches!(e, Entry::MonitorReleased { uplink, .. } if *uplink == names.uplink),
            )
            .cloned()
            .collect();
        for e in &released {
            ledger.forget(ctx.host, e)?;
        }
        // After the move and its check: NetworkManager finds the uplink already without addresses.
        match crate::host::nm::hand_off(ctx.host, &names.uplink, &names.bridge) {
            Ok(Some(note)) => {
                report.changes.extend(p.nm_line.iter().map(|l| Change {
                    action: l.clone(),
                    why: format!("move {} onto {}", names.uplink, names.bridge),
                    done: true,
                }));
                report.notes.push(note);
            }
            Ok(None) => {}
            Err(e) => report.warnings.push(format!(
                "could not tell NetworkManager to leave {} alone ({e:#}); a restart of \
                 NetworkManager would put the node's addresses back on it",
                names.uplink
            )),
        }
        if let Some(h) = &p.networkd {
            match crate::host::networkd::hand_off(ctx.host, h) {
                Ok(note) => {
                    report.changes.push(Change {
                        action: h.describe(),
                        why: format!("move {} onto {}", names.uplink, names.bridge),
                        done: true,
                    });
                    report.notes.push(note);
                }
                Err(e) => report.warnings.push(format!(
                    "could not hand {} over from systemd-networkd ({e:#}); a reconfigure of \
                     {} would put the node's addresses back on it{}",
                    names.uplink,
                    names.uplink,
                    if h.lease.is_some() {
                        ", and nothing renews its DHCP lease on the bridge"
                    } else {
                        ""
                    }
                )),
            }
        }
        Ok(())
    }
}

/// The plan's line for a record replaced by what the host configured on the uplink again.
fn record_anew_line(names: &Names, was: &Carried, now: &Carried, up: End, br: End) -> String {
    let list = |c: &Carried| {
        c.describe()
            .iter()
            .map(|x| named(x, &[up, br]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "record {}'s configuration anew, as the host configured it again since the attach ({}; \
         recorded: {}): that is what moves to {} and what detach gives back",
        names.uplink,
        list(now),
        list(was),
        names.bridge
    )
}

fn datapath(ctx: &Ctx) -> String {
    ctx.settings.datapath.as_str().to_string()
}

/// Bridge, port, links, then the burst. Returns the switch window in ms (port added → last
/// address/route in place).
fn do_attach(
    ctx: &Ctx,
    nl: &mut Netlink,
    ovs: &Ovs,
    names: &Names,
    pre: &UplinkPreState,
    report: &mut StepReport,
) -> Result<f64> {
    ctx.progress
        .debug(&format!("uplink: creating bridge {}", names.bridge));
    ovs.add_bridge(&names.bridge, &datapath(ctx), &pre.mac, pre.mtu)?;
    fault("after-bridge");
    let uplink = nl.link(&names.uplink)?.context("the uplink vanished")?;
    let bridge = nl
        .link(&names.bridge)?
        .with_context(|| format!("OVS did not create the {} interface", names.bridge))?;
    if !bridge.up {
        nl.set_link(bridge.index, Some(true), None, None)?;
    }
    // Everything that can be prepared is prepared before the uplink enters the bridge: adding
    // the port does not change addresses or routes, so the plan made now stays valid.
    let br_end = End {
        index: bridge.index,
        name: &names.bridge,
    };
    let up_end = End {
        index: uplink.index,
        name: &names.uplink,
    };
    let carried = restore_carried(pre, br_end)?.moved(br_end, up_end);
    // Before any address moves: an IPv6 address cannot go onto a link with IPv6 off.
    apply_ipv6(ctx, names, &carried)?;
    let planned_on = |addrs: &[netlink_packet_route::address::AddressMessage]| -> Vec<_> {
        addrs
            .iter()
            .filter(|a| a.header.index == uplink.index)
            .map(netmodel::address_key)
            .collect()
    };
    let live = dump(nl)?;
    let addrs_at_plan = planned_on(&live.addrs);
    let mut ops = netmodel::plan_move(
        &carried,
        up_end,
        br_end,
        &live.addrs,
        &live.routes,
        &live.rules,
    );

    let p = ctx.progress;
    let kernel = ctx.settings.datapath == crate::config::Datapath::System;
    // The kernel registers the port's receive hook before it marks the device as an OVS port,
    // and between the two it switches the NIC to promiscuous mode (a round trip to the NIC or
    // its firmware); a packet arriving then is dropped. With the flag already on, that switch
    // is only a count (`host::ovs::datapath`).
    let hold_promisc = kernel && !uplink.promisc;
    if hold_promisc {
        nl.set_promisc(uplink.index, true)?;
    }
    p.debug(&format!("uplink: adding port {}", names.uplink));
    let added = ovs.add_port(&names.bridge, &names.uplink);
    if kernel && (hold_promisc || pre.uplink_promisc == Some(false)) {
        // OVS holds its own count now; ours goes (also when a killed run left it on).
        nl.set_promisc(uplink.index, false)?;
    }
    added?;
    // Adding the port waits for ovs-vswitchd (tens of ms, more on a busy node): an address
    // deleted from the uplink meanwhile must not be re-created on the bridge. One address dump
    // tells; the plan is made again only when they changed.
    crate::fault::hook("port-added");
    if planned_on(&nl.addresses()?) != addrs_at_plan {
        ops = plan_now(nl, &carried, up_end, br_end)?;
    }
    let (make, brk) = netmodel::make_then_break(&ops);
    p.debug(&format!(
        "uplink: port added; moving {} operations",
        ops.len()
    ));
    // The window opens when OVS has taken the port (ovs-vsctl returns after vswitchd applied
    // it) and closes when the last address and route are in place.
    let window = Instant::now();
    if !uplink.up {
        nl.set_link(uplink.index, Some(true), None, None)?;
    }
    fault("after-port");
    let first = nl.apply(make);
    fault("mid-move");
    crate::fault::hook("mid-move");
    // An op made stale by someone else (an address deleted inside the move) fails alone; the
    // move is then finished from the links as they are, rather than rolled back.
    if first.is_err() || nl.apply(brk).is_err() {
        converge(nl, &carried, up_end, br_end)?;
    }
    let window_ms = window.elapsed().as_secs_f64() * 1000.0;
    p.debug("uplink: addresses and routes moved");

    match ovs.ofport(&names.uplink)? {
        Some(1) => {}
        other => report.warnings.push(format!(
            "{} got ofport {} instead of 1; set `ovs_uplink_port = {}` in ncp.ini section [nsx_kube_proxy]",
            names.uplink,
            other.map_or("(none)".into(), |o| o.to_string()),
            names.uplink
        )),
    }
    // Verify: re-planning finds nothing left, which also means the uplink keeps no moved address.
    let left = plan_now(nl, &carried, up_end, br_end)?;
    if !left.is_empty() {
        return Err(anyhow!(
            "verification failed, still to do: {}",
            describe_ops(&left, &[up_end, br_end]).join("; ")
        ));
    }
    // Last, so that ovs-vswitchd has handled every packet that reached it before it knew the
    // port, and installed whatever drop flows it will for them.
    if kernel {
        match crate::host::ovs::datapath::clear_stale_drops(&names.uplink) {
            Ok(0) => {}
            Ok(n) => report.notes.push(format!(
                "removed {n} datapath flow(s) that dropped what {} received before \
                 ovs-vswitchd had mapped its port",
                names.uplink
            )),
            Err(e) => report.warnings.push(format!(
                "the datapath's drop flows for {} were not checked: {e:#}",
                names.uplink
            )),
        }
    }
    Ok(window_ms)
}
