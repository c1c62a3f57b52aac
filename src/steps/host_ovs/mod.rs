//! The init container's OVS duties: if OVS runs on the host, bring the node's addresses back
//! from the bridge to node-if, then stop that OVS so that it stays stopped, recording what was
//! stopped so that `cleanup` can start it again the same way.

mod undo;

use super::{uplink, Action, Ctx, Plan, Step};
use crate::error::{Error, Kind};
use crate::host::ovs::{live_daemons, terminate, OvsDirs};
use crate::host::{proc, systemd};
use crate::ledger::{Entry, Ledger, StoppedDaemon};
use crate::report::StepReport;
use anyhow::Result;
use std::time::{Duration, Instant};
pub use undo::Undo;

pub const NAME: &str = "host-ovs";
/// Units of the host's OVS packages (Debian/Ubuntu and RHEL names).
const UNITS: [&str; 4] = [
    "openvswitch-switch.service",
    "openvswitch.service",
    "ovs-vswitchd.service",
    "ovsdb-server.service",
];

/// The daemons' own units (both distributions): masked while OVS runs in the container, since
/// disabling them does not keep a unit that wants them from starting them.
const DAEMON_UNITS: [&str; 2] = ["ovsdb-server.service", "ovs-vswitchd.service"];

/// The host-OVS step of `install`.
pub struct HostOvs;

pub enum HostOvsAction {
    /// The node's addresses back from the bridge to node-if first, while OVS still runs.
    DetachUplink,
    /// Stop (and with systemd, disable) the host's OVS, recording how to start it again.
    Stop {
        live: Vec<(&'static str, u32)>,
        systemd: bool,
    },
    /// Units a recorded stop was to disable (or mask) and that are enabled (or unmasked) still:
    /// a run killed between the stop and the disable (the daemons gone, the next boot would
    /// start them again).
    Disable {
        units: Vec<String>,
        mask: Vec<String>,
    },
}

impl Action for HostOvsAction {
    fn describe(&self) -> String {
        match self {
            HostOvsAction::DetachUplink => {
                "move the node's addresses and routes from the bridge back to node-if".into()
            }
            HostOvsAction::Stop { live, .. } => format!(
                "stop the host's OVS: {}",
                live.iter()
                    .map(|(d, p)| format!("{d} (pid {p})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            HostOvsAction::Disable { units, mask } => format!(
                "disable the host's OVS units {}",
                units
                    .iter()
                    .map(String::from)
                    .chain(mask.iter().map(|u| format!("{u} (mask)")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn why(&self) -> String {
        "OVS runs in the nsx-ovs container, not on the host".into()
    }

    fn lines(&self) -> Vec<String> {
        match self {
            HostOvsAction::Stop { systemd: true, .. } => vec![
                self.describe(),
                "stop and disable the host's OVS units, mask the daemons' own".into(),
            ],
            _ => vec![self.describe()],
        }
    }
}

impl Step for HostOvs {
    type Action = HostOvsAction;

    fn name(&self) -> &'static str {
        NAME
    }

    fn plan(&self, ctx: &Ctx) -> Result<Plan<HostOvsAction>> {
        let mut plan = Plan::new();
        let dirs = OvsDirs::resolve(ctx.host, ctx.settings.ovs_dirs())?;
        let (live, supervisors) = host_daemons(ctx, &dirs)?;
        if !supervisors.is_empty() {
            plan.notes.push(format!(
                "OVS runs in the nsx-ovs container, not on the host: {}; left alone",
                supervisors.join(", ")
            ));
        }
        if live.is_empty() && supervisors.is_empty() {
            plan.notes.push(format!(
                "no OVS runs on the host (no live pid in {})",
                dirs.run.display()
            ));
        }
        if live.is_empty() {
            let (units, mask) = still_enabled(ctx)?;
            if !units.is_empty() || !mask.is_empty() {
                plan.actions.push(HostOvsAction::Disable { units, mask });
            }
            return Ok(plan);
        }
        if ctx.settings.uplink.is_some() {
            plan.actions.push(HostOvsAction::DetachUplink);
        }
        plan.actions.push(HostOvsAction::Stop {
            live,
            systemd: systemd::available(ctx.host),
        });
        Ok(plan)
    }

    fn apply(
        &self,
        ctx: &Ctx,
        action: &HostOvsAction,
        ledger: &mut Ledger,
        report: &mut StepReport,
    ) -> Result<()> {
        match action {
            HostOvsAction::DetachUplink => {
                let dirs = OvsDirs::resolve(ctx.host, ctx.settings.ovs_dirs())?;
                if settle(ctx, &dirs, host_daemons(ctx, &dirs)?.0)?.is_empty() {
                    report.notes.push(
                        "the host's OVS exited meanwhile (a stop already under way): no bridge \
                         to take addresses from"
                            .into(),
                    );
                    return Ok(());
                }
                uplink::detach_within(ctx, ledger, report, Some(NAME))
            }
            HostOvsAction::Stop { live, systemd } => stop(ctx, live, *systemd, ledger, report),
            HostOvsAction::Disable { units, mask } => {
                disable(units)?;
                mask_units(mask)
            }
        }
    }
}

/// The units recorded as stopped and disabled that are enabled now, and those recorded as
/// masked that are not (none without systemd).
fn still_enabled(ctx: &Ctx) -> Result<(Vec<String>, Vec<String>)> {
    if !systemd::available(ctx.host) {
        return Ok((Vec::new(), Vec::new()));
    }
    let ledger = Ledger::load(ctx.host)?;
    let recorded = |pick: fn(&Entry) -> Option<&Vec<String>>| {
        let mut v: Vec<String> = ledger
            .entries
            .iter()
            .filter_map(pick)
            .flatten()
            .filter(|u| UNITS.contains(&u.as_str()))
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let units = recorded(|e| match e {
        Entry::HostOvsStopped { units, .. } => Some(units),
        _ => None,
    })
    .into_iter()
    .filter(|u| systemd::unit_file_state(u).as_deref() == Some("enabled"))
    .collect();
    let mask = recorded(|e| match e {
        Entry::HostOvsStopped { masked, .. } => Some(masked),
        _ => None,
    })
    .into_iter()
    .filter(|u| systemd::unit_file_state(u).is_some_and(|s| s != "masked"))
    .collect();
    Ok((units, mask))
}

/// The daemon units to mask: those that exist and are not masked yet.
fn to_mask() -> Vec<String> {
    DAEMON_UNITS
        .iter()
        .filter(|u| {
            systemd::unit_file_state(u).is_some_and(|s| s != "masked" && s != "masked-runtime")
        })
        .map(|u| u.to_string())
        .collect()
}

fn mask_units(units: &[String]) -> Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    let mut args = vec!["mask"];
    args.extend(units.iter().map(String::as_str));
    systemd::systemctl(&args)
        .map(|_| ())
        .map_err(|e| Error::new(Kind::Apply, format!("masking {}: {e:#}", units.join(", "))).into())
}

fn disable(units: &[String]) -> Result<()> {
    for u in units {
        systemd::systemctl(&["disable", u])
            .map_err(|e| Error::new(Kind::Apply, format!("disabling {u}: {e:#}")))?;
    }
    Ok(())
}

/// Live daemons: name and pid.
type Live = Vec<(&'static str, u32)>;

/// The host's live OVS daemons, and apart from them (left alone) those an `ovs run` supervises.
fn host_daemons(ctx: &Ctx, dirs: &OvsDirs) -> Result<(Live, Vec<String>)> {
    let live = live_daemons(ctx.host, dirs)?;
    let mut supervisors = Vec::new();
    for (d, pid) in &live {
        if let Some(parent) = proc::ovs_run_parent(ctx.host, *pid)? {
            supervisors.push(format!("{d} (pid {pid}) under `ovs run` (pid {parent})"));
        }
    }
    Ok(match supervisors.is_empty() {
        true => (live, supervisors),
        false => (Vec::new(), supervisors),
    })
}

/// How long live daemons whose database does not answer may take to finish starting or
/// stopping.
const SETTLE: Duration = Duration::from_secs(20);

/// Host daemons that are alive while their database does not answer are starting or stopping:
/// a run killed while systemd stopped them leaves systemd's job going on after it. The detach
/// needs the database, so wait until it answers or the daemons are gone; after `SETTLE`, a
/// refusal that names them.
fn settle(ctx: &Ctx, dirs: &OvsDirs, mut live: Live) -> Result<Live> {
    let ovs = crate::host::ovs::Ovs::new(dirs.run.clone())?;
    let deadline = Instant::now() + SETTLE;
    loop {
        let jobs = pending_jobs(ctx);
        if jobs.is_empty() && (live.is_empty() || ovs.reachable().is_ok()) {
            return Ok(live);
        }
        if Instant::now() >= deadline && !jobs.is_empty() {
            return Err(crate::error::precondition(format!(
                "systemd's jobs on the host's OVS units ({}) have not finished in {} s. Wait for \
                 them (`systemctl list-jobs`), and run install again",
                jobs.join(", "),
                SETTLE.as_secs()
            )));
        }
        if Instant::now() >= deadline {
            return Err(crate::error::precondition(format!(
                "the host's OVS daemons {} are alive, but their database at {} has not \
                 answered for {} s: they are starting or stopping. Wait for them (`systemctl \
                 status openvswitch-switch`), or stop them, and run install again",
                live.iter()
                    .map(|(d, p)| format!("{d} (pid {p})"))
                    .collect::<Vec<_>>()
                    .join(", "),
                dirs.run.join("db.sock").display(),
                SETTLE.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
        live = host_daemons(ctx, dirs)?.0;
    }
}

/// The host's OVS units with a systemd job queued or running. A stop job outlives a killed
/// run: between its stop of ovs-vswitchd and its stop of ovsdb-server the database still
/// answers, and a detach started then would lose it halfway.
fn pending_jobs(ctx: &Ctx) -> Vec<String> {
    if !systemd::available(ctx.host) {
        return Vec::new();
    }
    let Ok(out) = systemd::systemctl(&["list-jobs", "--no-legend", "--plain"]) else {
        return Vec::new();
    };
    jobs_on(&out, &UNITS)
}

/// From `systemctl list-jobs --no-legend --plain` (`JOB UNIT TYPE STATE` a line), the jobs
/// on `units`, as `UNIT TYPE`.
fn jobs_on(list: &str, units: &[&str]) -> Vec<String> {
    list.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, unit, kind) = (f.next()?, f.next()?, f.next()?);
            units.contains(&unit).then(|| format!("{unit} {kind}"))
        })
        .collect()
}

/// Records what runs, then stops it: ovs-vswitchd first, so that the database outlives the
/// switch that reads it.
fn stop(
    ctx: &Ctx,
    live: &[(&'static str, u32)],
    systemd: bool,
    ledger: &mut Ledger,
    report: &mut StepReport,
) -> Result<()> {
    let mut stopped = Vec::new();
    for (name, pid) in live {
        let cmdline = proc::cmdline(ctx.host, *pid)?.unwrap_or_default();
        // A daemon already exiting has no command line left (the host's systemd stopping its
        // OVS this moment: `systemctl enable --now ncp-ovs` stops the unit it conflicts with
        // while install runs). There is nothing to start it again by, and cleanup would refuse
        // an entry without one: it is not recorded; the host's units, recorded below, bring
        // the host's OVS back.
        if cmdline.is_empty() {
            report.notes.push(format!(
                "{name} (pid {pid}) was already exiting; not recorded as a daemon to start again"
            ));
            continue;
        }
        let env = proc::ovs_environ(ctx.host, *pid)?;
        stopped.push(StoppedDaemon {
            name: name.to_string(),
            cmdline,
            env,
        });
    }
    let (units, started, masked) = if systemd {
        let (units, started) = unit_states();
        (units, started, to_mask())
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    ledger.record(
        ctx.host,
        Entry::HostOvsStopped {
            step: NAME.into(),
            daemons: stopped,
            units: units.clone(),
            started,
            masked: masked.clone(),
        },
    )?;
    if systemd {
        let mut args = vec!["stop"];
        args.extend(UNITS.iter().copied());
        let _ = systemd::systemctl(&args);
        disable(&units)?;
        mask_units(&masked)?;
    }
    for (_, pid) in live.iter().rev() {
        terminate(*pid);
    }
    let dirs = OvsDirs::resolve(ctx.host, ctx.settings.ovs_dirs())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !live_daemons(ctx.host, &dirs)?.is_empty() {
        if Instant::now() > deadline {
            let names: Vec<String> = live.iter().map(|(d, p)| format!("{d} (pid {p})")).collect();
            return Err(Error::new(
                Kind::Apply,
                format!(
                    "the host's OVS did not stop within 10 s: {}",
                    names.join(", ")
                ),
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The host's OVS units: those enabled, and those active without being enabled (started as a
/// dependency of another unit; they are started again by cleanup, never enabled).
fn unit_states() -> (Vec<String>, Vec<String>) {
    let active =
        |u: &str| systemd::systemctl(&["is-active", u]).is_ok_and(|s| s.trim() == "active");
    let (units, others): (Vec<&str>, Vec<&str>) = UNITS
        .iter()
        .partition(|u| systemd::unit_file_state(u).as_deref() == Some("enabled"));
    let started = others
        .into_iter()
        .filter(|u| active(u))
        .map(String::from)
        .collect();
    (units.into_iter().map(String::from).collect(), started)
}

#[cfg(test)]
mod tests {
    use super::undo::validate;
    use super::*;
    use crate::steps::testing::host;

    /// A host OVS as the step sees it: a pid file, and that pid in the host root's /proc.
    fn with_host_ovsdb(h: &crate::steps::testing::TestHost) {
        h.write("/proc/self/stat", b"");
        h.write("/var/run/openvswitch/ovsdb-server.pid", b"4242\n");
        h.write(
            "/proc/4242/cmdline",
            b"/usr/sbin/ovsdb-server\0/etc/openvswitch/conf.db\0--detach\0",
        );
    }

    #[test]
    fn only_jobs_on_the_host_ovs_units_hold_the_detach() {
        let list = "1731 ovsdb-server.service stop waiting\n\
                    1730 ovs-vswitchd.service stop running\n\
                    1702 apt-daily.service start waiting\n\
                    garbage\n";
        assert_eq!(
            jobs_on(list, &UNITS),
            ["ovsdb-server.service stop", "ovs-vswitchd.service stop"]
        );
        assert!(jobs_on("1702 apt-daily.service start waiting\n", &UNITS).is_empty());
        assert!(jobs_on("", &UNITS).is_empty());
    }

    #[test]
    fn an_entry_that_masked_another_unit_is_refused_and_old_entries_read() {
        let entry = |masked: &str| -> Entry {
            serde_json::from_str(&format!(
                r#"{{"kind":"host_ovs_stopped","step":"host-ovs","daemons":[],
                    "units":["openvswitch-switch.service"]{masked}}}"#
            ))
            .unwrap()
        };
        // A ledger written before masks were recorded: nothing to unmask.
        let old = Undo::plan(&entry("")).unwrap().unwrap();
        assert_eq!(
            old.describe(),
            "enable and start openvswitch-switch.service"
        );
        let ours = Undo::plan(&entry(r#","masked":["ovsdb-server.service"]"#))
            .unwrap()
            .unwrap();
        assert_eq!(
            ours.describe(),
            "unmask ovsdb-server.service, enable and start openvswitch-switch.service"
        );
        let e = Undo::plan(&entry(r#","masked":["sshd.service"]"#)).unwrap_err();
        assert!(
            format!("{e:#}").contains("`sshd.service` as masked"),
            "{e:#}"
        );
    }

    #[test]
    fn a_host_without_ovs_plans_nothing() {
        let h = host(&[]);
        let plan = HostOvs.plan(&h.ctx()).unwrap();
        assert!(plan.actions.is_empty());
        assert!(
            plan.notes[0].contains("no OVS runs on the host"),
            "{:?}",
            plan.notes
        );
    }

    #[test]
    fn a_running_host_ovs_is_stopped_after_the_uplink_comes_back() {
        let h = host(&[]);
        with_host_ovsdb(&h);
        let plan = HostOvs.plan(&h.ctx()).unwrap();
        let lines: Vec<String> = plan.actions.iter().flat_map(|a| a.lines()).collect();
        assert_eq!(
            lines,
            vec!["stop the host's OVS: ovsdb-server (pid 4242)".to_string()]
        );

        let h = host(&[("NCP_BOOTSTRAP_NODE_UPLINK", "eth1")]);
        with_host_ovsdb(&h);
        let plan = HostOvs.plan(&h.ctx()).unwrap();
        assert!(matches!(
            plan.actions.as_slice(),
            [HostOvsAction::DetachUplink, HostOvsAction::Stop { .. }]
        ));
    }

    #[test]
    fn daemons_under_ovs_run_are_the_containers_not_the_hosts() {
        let h = host(&[("NCP_BOOTSTRAP_NODE_UPLINK", "eth1")]);
        with_host_ovsdb(&h);
        h.write(
            "/proc/4242/stat",
            b"4242 (ovsdb-server) S 4100 4242 4242 0 -1 4194560 0 0",
        );
        h.write(
            "/proc/4100/cmdline",
            b"/usr/bin/ncp-bootstrap\0ovs\0run\0--host-root\0/host\0",
        );
        let plan = HostOvs.plan(&h.ctx()).unwrap();
        assert!(plan.actions.is_empty());
        assert!(
            plan.notes[0].contains("ovsdb-server (pid 4242) under `ovs run` (pid 4100)"),
            "{:?}",
            plan.notes
        );
        // Any other parent (here: systemd) leaves the daemon the host's.
        h.write("/proc/4100/cmdline", b"/sbin/init\0");
        assert_eq!(HostOvs.plan(&h.ctx()).unwrap().actions.len(), 2);
    }

    #[test]
    fn a_recorded_daemon_runs_only_from_a_standard_directory() {
        let d = |argv0: &str| StoppedDaemon {
            name: "ovsdb-server".into(),
            cmdline: vec![argv0.into(), "--pidfile".into()],
            env: vec![("OVS_RUNDIR".into(), "/run/openvswitch".into())],
        };
        let ok = validate(
            &[d("/usr/sbin/ovsdb-server")],
            &["openvswitch-switch.service".into()],
            &["ovsdb-server.service".into()],
        );
        assert_eq!(
            ok.unwrap(),
            vec![std::path::PathBuf::from("/usr/sbin/ovsdb-server")]
        );
        for bad in [
            "/tmp/ovsdb-server",
            "/usr/sbin/sh",
            "/usr/sbin/../../tmp/ovsdb-server",
        ] {
            assert!(validate(&[d(bad)], &[], &[]).is_err(), "{bad}");
        }
        assert!(validate(&[], &["sshd.service".into()], &[]).is_err());
        assert!(validate(&[], &[], &["sshd.service".into()]).is_err());
    }
}
