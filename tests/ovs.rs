//! `install`'s host-OVS duties, `ovs run` and `ovs health`, in network namespaces with
//! private OVS dirs (userspace datapath).

mod common;
use common::netlab::{Background, NetLab};
use common::*;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn healthy(lab: &NetLab) -> bool {
    lab.tool(&["ovs", "health"], &[]).code == 0
}

fn start_run(lab: &NetLab, env: &[(&str, &str)]) -> Background {
    lab.start_ovs_run(env)
}

fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn daemon_pid(lab: &NetLab, name: &str) -> String {
    std::fs::read_to_string(lab.ovs_dir.join(format!("{name}.pid")))
        .unwrap()
        .trim()
        .to_string()
}

/// The OVS run, database and log directories at their host paths under the lab's host root,
/// so that what `ovs run` makes there is the host's (recorded in the ledger, undone by cleanup).
fn host_ovs_dirs(lab: &NetLab) -> (String, String, String) {
    let host = |p: &str| lab.host.join(p).display().to_string();
    (
        host("var/run/openvswitch"),
        host("etc/openvswitch"),
        host("var/log/openvswitch"),
    )
}

fn kill9(pid: &str) {
    assert!(Command::new("kill")
        .args(["-9", pid])
        .status()
        .unwrap()
        .success());
}

fn sigterm(child: &Child) {
    // `ip netns exec` execs the tool, so the child's pid is the tool's.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
}

#[test]
fn host_ovs_is_stopped_then_ovs_run_takes_over_and_recovers() {
    let Some(mut lab) = NetLab::new() else { return };
    lab.standard();
    lab.start_ovs();
    // A host OVS that already carries the node: br-int with eth1, the address moved by hand.
    assert_eq!(lab.tool(&["uplink", "attach"], &[]).code, 0);
    // Forget our own record of it: this is what an earlier NCP left behind, not our attach.
    std::fs::remove_dir_all(lab.host.join("var/lib/ncp-bootstrap")).unwrap();
    let host_pids = lab.ovs_pids();
    assert_eq!(host_pids.len(), 2);

    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path(), "4.1.0");
    let r = lab.tool(&["install", "--bundle", b.to_str().unwrap()], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        lab.state().contains("addr eth1 10.0.0.5/24"),
        "the address must be back on eth1"
    );
    assert!(
        host_pids
            .iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()),
        "host OVS still runs"
    );
    assert!(lab.ping_from_peer("10.0.0.5"));
    let ledger =
        std::fs::read_to_string(lab.host.join("var/lib/ncp-bootstrap/ledger.json")).unwrap();
    assert!(
        ledger.contains("host_ovs_stopped") && ledger.contains("ovsdb-server"),
        "{ledger}"
    );
    assert!(ledger.contains("uplink_released"), "{ledger}");

    // ovs run on the same database: the bridge is kept, the uplink attached.
    let mut run = start_run(&lab, &[]);
    wait_for("ovs health", Duration::from_secs(20), || healthy(&lab));
    assert_eq!(lab.vsctl(&["get", "Interface", "eth1", "ofport"]), "1");
    assert!(lab.state().contains("addr br-int 10.0.0.5/24"));
    assert!(lab.ping_from_peer("10.0.0.5"));

    // Kill its ovsdb-server: ovs run must exit non-zero within 10 s (only a dead
    // ovs-vswitchd is started again in place).
    kill9(&daemon_pid(&lab, "ovsdb-server"));
    let status = exit_within(&mut run, Duration::from_secs(10))
        .expect("ovs run did not exit after its database server died");
    assert!(!status.success());
    assert!(!healthy(&lab));

    // A second run cleans the stale files and recovers.
    let mut run = start_run(&lab, &[("NCP_BOOTSTRAP_OVS_ON_EXIT", "restore")]);
    wait_for("ovs health after restart", Duration::from_secs(20), || {
        healthy(&lab)
    });
    // The node was unreachable while its switch was dead; the peer's neighbour entry may need
    // one more ARP round before the first reply.
    wait_for(
        "the peer reaching the node again",
        Duration::from_secs(5),
        || lab.ping_from_peer("10.0.0.5"),
    );

    // SIGTERM with on_exit = restore: the address goes back to the uplink, daemons stop.
    sigterm(&run);
    let status =
        exit_within(&mut run, Duration::from_secs(20)).expect("ovs run did not stop on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(lab.state().contains("addr eth1 10.0.0.5/24"));
    assert!(lab.ovs_pids().is_empty(), "daemons left running");
    assert!(lab.ping_from_peer("10.0.0.5"));

    // cleanup starts the host's OVS again, as it ran, and gives it back the node as it was
    // before install: eth1 a port of br-int, the address on br-int.
    let c = lab.tool(&["cleanup"], &[]);
    assert_eq!(c.code, 0, "{}\n{}", c.stdout, c.stderr);
    wait_for("host OVS restarted", Duration::from_secs(10), || {
        lab.ovs_pids().len() == 2
    });
    assert!(lab.vsctl(&["list-br"]).contains("br-int"));
    assert!(lab.vsctl(&["list-ports", "br-int"]).contains("eth1"));
    let state = lab.state();
    assert!(state.contains("addr br-int 10.0.0.5/24"), "{state}");
    assert!(!state.contains("addr eth1 10.0.0.5/24"), "{state}");
    wait_for(
        "the peer reaching the node on br-int",
        Duration::from_secs(5),
        || lab.ping_from_peer("10.0.0.5"),
    );
}

#[test]
fn ovs_run_creates_a_missing_database_and_follows_a_symlinked_one() {
    let Some(lab) = NetLab::new() else { return };
    lab.standard();
    // Missing: created from the schema.
    let mut run = start_run(&lab, &[]);
    wait_for("ovs health", Duration::from_secs(20), || healthy(&lab));
    assert!(lab.ovs_dir.join("conf.db").is_file());
    assert!(lab.state().contains("addr br-int 10.0.0.5/24"));
    sigterm(&run);
    assert!(exit_within(&mut run, Duration::from_secs(20)).is_some());

    // Symlinked: conf.db -> real/conf.db (relative, as host packages do it).
    std::fs::create_dir_all(lab.ovs_dir.join("real")).unwrap();
    std::fs::rename(
        lab.ovs_dir.join("conf.db"),
        lab.ovs_dir.join("real/conf.db"),
    )
    .unwrap();
    std::os::unix::fs::symlink("real/conf.db", lab.ovs_dir.join("conf.db")).unwrap();
    let mut run = start_run(&lab, &[]);
    wait_for(
        "ovs health on a symlinked db",
        Duration::from_secs(20),
        || healthy(&lab),
    );
    assert!(
        std::fs::symlink_metadata(lab.ovs_dir.join("conf.db"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link must stay a link"
    );
    assert!(lab.vsctl(&["list-ports", "br-int"]).contains("eth1"));
    sigterm(&run);
    assert!(exit_within(&mut run, Duration::from_secs(20)).is_some());

    // Absolute, as Debian 12 links /etc/openvswitch/conf.db to /var/lib/openvswitch/conf.db:
    // a host path, found under the host root (a container mounts the host at /host).
    let real = lab.host.join("var/lib/openvswitch");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::rename(lab.ovs_dir.join("real/conf.db"), real.join("conf.db")).unwrap();
    std::fs::remove_file(lab.ovs_dir.join("conf.db")).unwrap();
    std::os::unix::fs::symlink("/var/lib/openvswitch/conf.db", lab.ovs_dir.join("conf.db"))
        .unwrap();
    let _ = std::fs::remove_file(lab.ovs_dir.join(".conf.db.~lock~"));
    std::os::unix::fs::symlink(
        "/var/lib/openvswitch/.conf.db.~lock~",
        lab.ovs_dir.join(".conf.db.~lock~"),
    )
    .unwrap();
    let mut run = start_run(&lab, &[]);
    wait_for(
        "ovs health on a db linked to a host path",
        Duration::from_secs(20),
        || healthy(&lab),
    );
    assert!(lab.vsctl(&["list-ports", "br-int"]).contains("eth1"));
    assert!(
        !lab.ovs_dir.join("real/conf.db").exists() && real.join("conf.db").is_file(),
        "the host's database must be the one used, not a new one"
    );
    assert!(
        std::fs::symlink_metadata(lab.ovs_dir.join(".conf.db.~lock~"))
            .is_ok_and(|m| m.file_type().is_symlink()),
        "the host's lock link must stay"
    );
    sigterm(&run);
    assert!(exit_within(&mut run, Duration::from_secs(20)).is_some());
}

/// Two `ovs run` started together on one host (the systemd unit and the DaemonSet, or a rolling
/// update with surge), on a fresh database and on an existing one: exactly one wins, the other
/// exits 2 naming the winner's pid, and the winner's daemons are never touched.
#[test]
fn of_two_ovs_runs_started_together_exactly_one_wins() {
    let Some(lab) = NetLab::new() else { return };
    lab.standard();
    let env = [("NCP_BOOTSTRAP_OVS_ON_EXIT", "restore")];
    for round in 0..6 {
        if round % 2 == 0 {
            let _ = std::fs::remove_file(lab.ovs_dir.join("conf.db"));
        }
        let piped = || {
            let mut c = lab.tool_command(&["ovs", "run"], &env);
            c.stderr(std::process::Stdio::piped());
            Background(c.spawn().unwrap())
        };
        let mut a = piped();
        let mut b = piped();
        let (mut loser, mut winner) = loop {
            if a.try_wait().unwrap().is_some() {
                break (a, b);
            }
            if b.try_wait().unwrap().is_some() {
                break (b, a);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = std::mem::replace(&mut loser.0, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "round {round}: {stderr}");
        assert!(
            stderr.contains(&format!("(pid {})", winner.id())),
            "round {round}: the winner is not named: {stderr}"
        );
        wait_for("the winner healthy", Duration::from_secs(20), || {
            healthy(&lab)
        });
        let switch = daemon_pid(&lab, "ovs-vswitchd");
        let ppid = std::fs::read_to_string(format!("/proc/{switch}/stat")).unwrap();
        let ppid = ppid
            .rsplit(") ")
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .to_string();
        assert_eq!(
            ppid,
            winner.id().to_string(),
            "round {round}: ovs-vswitchd is the winner's"
        );
        assert!(exit_within(&mut winner, Duration::from_millis(500)).is_none());
        sigterm(&winner);
        let s = exit_within(&mut winner, Duration::from_secs(20)).expect("winner exits");
        assert_eq!(s.code(), Some(0), "round {round}");
    }
}

/// `ovs run`'s own files on the host are recorded before they are made, and cleanup removes
/// exactly them: the database it created (and its lock), the daemons' logs, the directories it
/// made for them. The OVS directories here are the host root's, as in the DaemonSet.
#[test]
fn cleanup_removes_the_files_ovs_run_made() {
    let Some(lab) = NetLab::new() else { return };
    lab.standard();
    let (run_dir, db_dir, log_dir) = host_ovs_dirs(&lab);
    let env = [
        ("OVS_RUNDIR", run_dir.as_str()),
        ("OVS_DBDIR", db_dir.as_str()),
        ("OVS_LOGDIR", log_dir.as_str()),
        ("NCP_BOOTSTRAP_OVS_ON_EXIT", "restore"),
    ];
    let before = snapshot(&lab.host, false);
    let mut run = start_run(&lab, &env);
    wait_for("ovs health", Duration::from_secs(30), || {
        lab.tool(&["ovs", "health"], &env).code == 0
    });
    let ledger =
        std::fs::read_to_string(lab.host.join("var/lib/ncp-bootstrap/ledger.json")).unwrap();
    for want in [
        "\"path\": \"/etc/openvswitch/conf.db\"",
        "\"path\": \"/var/log/openvswitch/ovs-vswitchd.log\"",
        "\"path\": \"/var/log/openvswitch/ovsdb-server.log\"",
        "\"kind\": \"ovs_file_created\"",
    ] {
        assert!(ledger.contains(want), "{want} not recorded:\n{ledger}");
    }
    sigterm(&run);
    assert_eq!(
        exit_within(&mut run, Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0)
    );
    let c = lab.tool(&["cleanup"], &env);
    assert_eq!(c.code, 0, "{}\n{}", c.stdout, c.stderr);
    assert!(
        c.stdout
            .contains("remove /etc/openvswitch/conf.db (made by ovs run)"),
        "{}",
        c.stdout
    );
    assert_eq!(
        snapshot(&lab.host, false),
        before,
        "cleanup left ovs run's files"
    );
}

/// No uplink configured (ncp.ini without ovs_uplink_port): as NCP does, the bridge's port with
/// ofport 1 is the uplink, for `ovs run` and `ovs health`; with none, liveness stays healthy
/// and readiness (`--ready`) fails naming the key to set.
#[test]
fn without_a_configured_uplink_the_port_with_ofport_1_is_used() {
    let Some(mut lab) = NetLab::new() else { return };
    lab.standard();
    lab.start_ovs();
    assert_eq!(lab.tool(&["uplink", "attach"], &[]).code, 0);
    let unset = [("NCP_BOOTSTRAP_NODE_UPLINK", "")];
    for args in [&["ovs", "health"][..], &["ovs", "health", "--ready"][..]] {
        let h = lab.tool(args, &unset);
        assert_eq!(h.code, 0, "{args:?}: {}{}", h.stdout, h.stderr);
    }
    // The switch stops (the userspace bridge goes with it); `ovs run` with no uplink configured
    // finds eth1 at ofport 1 in the database and attaches it again.
    lab.stop_ovs();
    let mut run = start_run(&lab, &unset);
    wait_for("ovs health --ready", Duration::from_secs(30), || {
        lab.tool(&["ovs", "health", "--ready"], &unset).code == 0
    });
    assert!(
        lab.state().contains("addr br-int 10.0.0.5/24"),
        "{}",
        lab.state()
    );
    sigterm(&run);
    assert!(exit_within(&mut run, Duration::from_secs(20)).is_some());

    // No bridge port with ofport 1 and none configured: live, not ready.
    lab.start_ovs();
    assert_eq!(lab.tool(&["uplink", "detach"], &[]).code, 0);
    assert_eq!(lab.tool(&["ovs", "health"], &unset).code, 0);
    let r = lab.tool(&["ovs", "health", "--ready"], &unset);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("no uplink")
            && r.stdout
                .contains("ovs_uplink_port in ncp.ini [nsx_node_agent]"),
        "{}",
        r.stdout
    );
}

#[test]
fn ovs_run_refuses_a_live_host_ovs() {
    let Some(mut lab) = NetLab::new() else { return };
    lab.standard();
    lab.start_ovs();
    let r = lab.tool(&["ovs", "run"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("live ovsdb-server (pid"), "{}", r.stderr);
    assert_eq!(lab.ovs_pids().len(), 2, "the host OVS must be left alone");
}

/// An older schema made from the installed one (version lowered, one column taken out), since
/// no older package is here: its path, and the installed schema's version.
fn old_schema(lab: &NetLab) -> (std::path::PathBuf, String) {
    let mut schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("/usr/share/openvswitch/vswitch.ovsschema").unwrap(),
    )
    .unwrap();
    let current = schema["version"].as_str().unwrap().to_string();
    schema["version"] = "8.0.0".into();
    schema["tables"]["Open_vSwitch"]["columns"]
        .as_object_mut()
        .unwrap()
        .remove("datapath_types")
        .unwrap();
    let old = lab.host.join("old.ovsschema");
    std::fs::write(&old, schema.to_string()).unwrap();
    (old, current)
}

/// A host whose OVS package is older than the one in the image: its conf.db has an older
/// schema. `ovs run` backs it up and converts it, keeping its rows. The old schema is made from
/// the installed one (version lowered, one column taken out), since no older package is here.
#[test]
fn ovs_run_converts_an_old_database_after_a_backup() {
    let Some(lab) = NetLab::new() else { return };
    lab.standard();
    let (old, current) = old_schema(&lab);
    let db = lab.ovs_dir.join("conf.db");
    let tool = |args: &[&str]| {
        let out = Command::new("ovsdb-tool").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    tool(&["create", db.to_str().unwrap(), old.to_str().unwrap()]);
    tool(&[
        "transact",
        db.to_str().unwrap(),
        r#"["Open_vSwitch",{"op":"insert","table":"Open_vSwitch","row":{"external_ids":["map",[["system-id","node-7"]]]}}]"#,
    ]);
    assert_eq!(tool(&["db-version", db.to_str().unwrap()]), "8.0.0");

    let mut run = start_run(&lab, &[]);
    wait_for(
        "ovs health after conversion",
        Duration::from_secs(20),
        || healthy(&lab),
    );
    assert_eq!(tool(&["db-version", db.to_str().unwrap()]), current);
    let backup = lab.ovs_dir.join("conf.db.backup-8.0.0");
    assert_eq!(tool(&["db-version", backup.to_str().unwrap()]), "8.0.0");
    assert_eq!(
        lab.vsctl(&["get", "Open_vSwitch", ".", "external_ids:system-id"]),
        "node-7",
        "the host's rows survive the conversion"
    );
    assert!(lab.vsctl(&["list-ports", "br-int"]).contains("eth1"));
    sigterm(&run);
    assert!(exit_within(&mut run, Duration::from_secs(20)).is_some());
}

/// The conversion of the host's database is recorded before it is made, and cleanup puts the
/// copy from before it back, so that the host's own (older) OVS reads it again.
#[test]
fn cleanup_puts_back_the_database_ovs_run_converted() {
    let Some(lab) = NetLab::new() else { return };
    lab.standard();
    let (old, _) = old_schema(&lab);
    let (run_dir, db_dir, log_dir) = host_ovs_dirs(&lab);
    for d in [&run_dir, &db_dir, &log_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let db = format!("{db_dir}/conf.db");
    let out = Command::new("ovsdb-tool")
        .args(["create", &db, old.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let original = std::fs::read(&db).unwrap();
    let env = [
        ("OVS_RUNDIR", run_dir.as_str()),
        ("OVS_DBDIR", db_dir.as_str()),
        ("OVS_LOGDIR", log_dir.as_str()),
        ("NCP_BOOTSTRAP_OVS_ON_EXIT", "restore"),
    ];
    let mut run = start_run(&lab, &env);
    wait_for(
        "ovs health after conversion",
        Duration::from_secs(30),
        || lab.tool(&["ovs", "health"], &env).code == 0,
    );
    assert_ne!(std::fs::read(&db).unwrap(), original);
    sigterm(&run);
    assert!(exit_within(&mut run, Duration::from_secs(20)).is_some());
    let c = lab.tool(&["cleanup"], &env);
    assert_eq!(c.code, 0, "{}\n{}", c.stdout, c.stderr);
    assert!(
        c.stdout.contains("put back /etc/openvswitch/conf.db"),
        "{}",
        c.stdout
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        original,
        "the host's database is not back"
    );
    assert!(!std::path::Path::new(&format!("{db_dir}/conf.db.backup-8.0.0")).exists());
}

/// `ovs-ofctl` in the node namespace against the lab switch's bridge.
fn ofctl(lab: &NetLab, args: &[&str]) -> String {
    let mgmt = format!("unix:{}/br-int.mgmt", lab.ovs_dir.display());
    let mut a = vec![
        "ip",
        "netns",
        "exec",
        &lab.node,
        "ovs-ofctl",
        "-O",
        "OpenFlow15",
    ];
    a.push(args[0]);
    a.push(&mgmt);
    a.extend_from_slice(&args[1..]);
    let out = common::netlab::sh(&a);
    assert!(
        out.status.success(),
        "ovs-ofctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn restore_wait(lab: &NetLab) -> String {
    lab.vsctl(&["get", "Open_vSwitch", ".", "other_config"])
}

/// What NCP's agent would have put on br-int: a meter, a group and flows that use them.
fn add_agent_state(lab: &NetLab) {
    ofctl(
        lab,
        &[
            "add-meter",
            "meter=3,kbps,burst,bands=type=drop,rate=1000,burst_size=100",
        ],
    );
    ofctl(
        lab,
        &["add-group", "group_id=7,type=select,bucket=output:1"],
    );
    ofctl(
        lab,
        &[
            "add-flow",
            "table=0,priority=300,cookie=0xbeef,ip,nw_dst=10.9.9.9,actions=drop",
        ],
    );
    ofctl(
        lab,
        &[
            "add-flow",
            "table=3,priority=10,cookie=0xcafe,ip,actions=meter:3,group:7",
        ],
    );
}

fn assert_agent_state(lab: &NetLab, when: &str) {
    let flows = ofctl(lab, &["dump-flows", "--no-stats"]);
    for cookie in ["0xbeef", "0xcafe"] {
        assert!(
            flows.contains(cookie),
            "flow {cookie} lost {when}:\n{flows}"
        );
    }
    assert!(
        ofctl(lab, &["dump-groups"]).contains("group_id=7"),
        "group lost {when}"
    );
    assert!(
        ofctl(lab, &["dump-meters"]).contains("meter=3"),
        "meter lost {when}"
    );
    // The switch's own default flow is there once, not doubled by the restore.
    assert_eq!(flows.matches("actions=NORMAL").count(), 1, "{flows}");
    assert!(
        !restore_wait(lab).contains("flow-restore-wait"),
        "flow-restore-wait left in the database {when}: {}",
        restore_wait(lab)
    );
}

#[test]
fn a_restart_keeps_the_flows_groups_and_meters_on_the_bridge() {
    let Some(lab) = NetLab::new() else { return };
    lab.standard();
    let mut run = start_run(&lab, &[]);
    wait_for("ovs health", Duration::from_secs(20), || healthy(&lab));
    assert!(!restore_wait(&lab).contains("flow-restore-wait"));
    add_agent_state(&lab);

    // SIGTERM: the table is saved on the way out and restored by the next run.
    sigterm(&run);
    assert!(exit_within(&mut run, Duration::from_secs(20)).is_some_and(|s| s.success()));
    let mut run = start_run(&lab, &[]);
    wait_for("ovs health after SIGTERM", Duration::from_secs(20), || {
        healthy(&lab)
    });
    assert_agent_state(&lab, "across SIGTERM and start");
    // The userspace datapath's br-int is a new tap; the peer may need one ARP round.
    wait_for("the peer reaching the node", Duration::from_secs(5), || {
        lab.ping_from_peer("10.0.0.5")
    });

    // kill -9 of the supervisor (its daemons die with it): the copy kept while it ran is
    // restored. A flow added now must reach the copy before the kill.
    ofctl(
        &lab,
        &["add-flow", "table=5,priority=1,cookie=0xf00d,actions=drop"],
    );
    let store = lab.ovs_dir.join("ncp-bootstrap.br-int.flows.json");
    wait_for(
        "the copy to take the new flow",
        Duration::from_secs(10),
        || std::fs::read_to_string(&store).is_ok_and(|s| s.contains("0xf00d")),
    );
    Command::new("kill")
        .args(["-9", &run.id().to_string()])
        .status()
        .unwrap();
    let _ = run.wait();
    wait_for("the daemons gone", Duration::from_secs(10), || {
        lab.ovs_pids().is_empty()
    });
    let mut run = start_run(&lab, &[]);
    wait_for("ovs health after kill -9", Duration::from_secs(20), || {
        healthy(&lab)
    });
    assert_agent_state(&lab, "across kill -9 and start");
    assert!(ofctl(&lab, &["dump-flows", "--no-stats"]).contains("0xf00d"));

    // kill -9 of ovs-vswitchd alone: the same run starts it again, with the flows restored.
    for n in 1..=3 {
        let old = daemon_pid(&lab, "ovs-vswitchd");
        kill9(&old);
        wait_for(
            "ovs-vswitchd started again by the same run",
            Duration::from_secs(20),
            || {
                std::fs::read_to_string(lab.ovs_dir.join("ovs-vswitchd.pid"))
                    .is_ok_and(|p| p.trim() != old)
                    && healthy(&lab)
            },
        );
        assert!(
            run.try_wait().unwrap().is_none(),
            "ovs run exited after ovs-vswitchd's death {n}"
        );
        assert_agent_state(&lab, &format!("across kill -9 {n} of ovs-vswitchd"));
        assert!(ofctl(&lab, &["dump-flows", "--no-stats"]).contains("0xf00d"));
    }
    // A fourth death within the minute: the run gives up and exits non-zero, for the
    // runtime's back-off.
    kill9(&daemon_pid(&lab, "ovs-vswitchd"));
    let status = exit_within(&mut run, Duration::from_secs(20))
        .expect("ovs run kept restarting a switch that keeps dying");
    assert!(!status.success());
    let mut run = start_run(&lab, &[]);
    wait_for(
        "ovs health after the run gave up",
        Duration::from_secs(20),
        || healthy(&lab),
    );
    assert_agent_state(&lab, "after the run gave up and a new one started");
    sigterm(&run);
    assert!(exit_within(&mut run, Duration::from_secs(20)).is_some());

    // Decommission: cleanup removes the copy with everything else.
    assert!(store.exists());
    let c = lab.tool(&["cleanup"], &[]);
    assert_eq!(c.code, 0, "{}\n{}", c.stdout, c.stderr);
    assert!(!store.exists(), "cleanup left {}", store.display());
}

#[test]
fn a_damaged_flow_copy_is_reported_and_the_switch_still_forwards() {
    let Some(lab) = NetLab::new() else { return };
    lab.standard();
    let mut run = start_run(&lab, &[]);
    wait_for("ovs health", Duration::from_secs(20), || healthy(&lab));
    sigterm(&run);
    assert!(exit_within(&mut run, Duration::from_secs(20)).is_some());
    let store = lab.ovs_dir.join("ncp-bootstrap.br-int.flows.json");
    std::fs::write(&store, r#"{"bridge":"br-int","protocol":"OpenFlow15","tlv_map":[],"meters":[],"groups":[],"flows":["priority=1 actions=drop\nx"]}"#).unwrap();
    let out = lab
        .tool_command(&["ovs", "run"], &[])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = Background(out);
    wait_for("ovs health", Duration::from_secs(20), || healthy(&lab));
    assert!(!restore_wait(&lab).contains("flow-restore-wait"));
    wait_for("the peer reaching the node", Duration::from_secs(5), || {
        lab.ping_from_peer("10.0.0.5")
    });
    sigterm(&run);
    let mut err = String::new();
    use std::io::Read;
    run.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(
        err.contains("could not be restored") && err.contains("ncp-bootstrap.br-int.flows.json"),
        "{err}"
    );
}

/// NCP's `log_rotation_file_max_mb` and `log_rotation_backup_count` cap the OVS daemons' logs:
/// a burst of debug logging from ovsdb-server is rotated (`.log.1` newest, no more copies than
/// kept), the daemon reopens its log (it writes to the new file, holds no deleted one), and
/// cleanup removes the copies with the logs.
#[test]
fn ovs_run_caps_the_daemons_logs_as_ncp_ini_says() {
    let Some(lab) = NetLab::new() else { return };
    lab.standard();
    let (run_dir, db_dir, log_dir) = host_ovs_dirs(&lab);
    let ini = lab.host.join("ncp.ini");
    std::fs::write(
        &ini,
        "[DEFAULT]\nlog_rotation_file_max_mb = 1\nlog_rotation_backup_count = 2\n",
    )
    .unwrap();
    let env = [
        ("OVS_RUNDIR", run_dir.as_str()),
        ("OVS_DBDIR", db_dir.as_str()),
        ("OVS_LOGDIR", log_dir.as_str()),
        ("NCP_BOOTSTRAP_OVS_ON_EXIT", "restore"),
    ];
    let before = snapshot(&lab.host, false);
    let mut run = Background(
        lab.tool_command(&["--ncp-ini", ini.to_str().unwrap(), "ovs", "run"], &env)
            .spawn()
            .unwrap(),
    );
    wait_for("ovs health", Duration::from_secs(30), || {
        lab.tool(&["ovs", "health"], &env).code == 0
    });
    let pid = std::fs::read_to_string(format!("{run_dir}/ovsdb-server.pid"))
        .unwrap()
        .trim()
        .to_string();
    let ctl = format!("{run_dir}/ovsdb-server.{pid}.ctl");
    let appctl = |args: &[&str]| {
        let mut a = vec!["ovs-appctl", "-t", ctl.as_str()];
        a.extend_from_slice(args);
        common::netlab::sh(&a);
    };
    appctl(&["vlog/set", "file:dbg"]);
    let db = format!("--db=unix:{run_dir}/db.sock");
    let pad = "x".repeat(20_000);
    let log = std::path::PathBuf::from(format!("{log_dir}/ovsdb-server.log"));
    let copy = |n: u32| std::path::PathBuf::from(format!("{}.{n}", log.display()));
    // Debug logging of every transaction (each carries 20 kB): until two rotations happened.
    let end = Instant::now() + Duration::from_secs(120);
    let mut n = 0;
    while !copy(2).exists() {
        assert!(
            Instant::now() < end,
            "no second rotation after {n} transactions"
        );
        let value = format!("external_ids:pad=\"{pad}{n}\"");
        common::netlab::sh(&["ovs-vsctl", &db, "set", "Open_vSwitch", ".", &value]);
        n += 1;
    }
    // The next look (every 200 ms) finds the log under the cap again.
    appctl(&["vlog/set", "file:info"]);
    std::thread::sleep(Duration::from_secs(5));
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    assert!(size(&log) <= 1024 * 1024, "{} bytes", size(&log));
    assert!(size(&copy(1)) > 0 && size(&copy(2)) > 0);
    assert!(
        !copy(3).exists(),
        "more copies than log_rotation_backup_count"
    );
    // The daemon writes to the new file and holds no deleted one.
    let grew_from = size(&log);
    appctl(&["vlog/set", "file:dbg"]);
    common::netlab::sh(&[
        "ovs-vsctl",
        &db,
        "set",
        "Open_vSwitch",
        ".",
        "external_ids:pad=1",
    ]);
    appctl(&["vlog/set", "file:info"]);
    assert!(
        size(&log) > grew_from,
        "ovsdb-server does not write its reopened log"
    );
    let held: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.display().to_string())
        .filter(|t| t.starts_with(&log_dir) && t.ends_with("(deleted)"))
        .collect();
    assert!(held.is_empty(), "{held:?}");
    let ledger =
        std::fs::read_to_string(lab.host.join("var/lib/ncp-bootstrap/ledger.json")).unwrap();
    assert!(
        ledger.contains("\"path\": \"/var/log/openvswitch/ovsdb-server.log.2\""),
        "{ledger}"
    );

    sigterm(&run.0);
    assert_eq!(
        exit_within(&mut run.0, Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0)
    );
    let c = lab.tool(&["cleanup"], &env);
    assert_eq!(c.code, 0, "{}\n{}", c.stdout, c.stderr);
    assert_eq!(
        snapshot(&lab.host, false),
        before,
        "cleanup left log copies"
    );
}

fn addresses_on(lab: &NetLab, dev: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", &lab.node, "-o", "addr", "show", "dev", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The bootstrap pod's `monitor`: an in-place restart of ovs-vswitchd is not "gone"; `ovs run`
/// killed with its daemons (the nsx-ovs pod deleted) is, and within the grace period plus 2 s
/// node-if has its addresses and routes back and the peer reaches the node; `status` says what
/// the monitor did; `ovs run` back attaches as usual; a monitor killed in the middle of its
/// move is finished by the next one.
#[test]
fn the_monitor_gives_node_if_its_addresses_back_when_nsx_ovs_is_gone() {
    let Some(lab) = NetLab::new() else { return };
    lab.standard();
    let before = lab.state();
    let grace = [("NCP_BOOTSTRAP_MONITOR_GRACE_SECONDS", "2")];
    let mut run = start_run(&lab, &[]);
    wait_for("ovs health", Duration::from_secs(30), || healthy(&lab));
    let _monitor = Background(lab.tool_command(&["monitor"], &grace).spawn().unwrap());

    // ovs-vswitchd killed: `ovs run` starts it again in place; the monitor leaves the node be.
    kill9(&daemon_pid(&lab, "ovs-vswitchd"));
    std::thread::sleep(Duration::from_secs(5));
    wait_for(
        "ovs health after the restart",
        Duration::from_secs(30),
        || healthy(&lab),
    );
    assert!(addresses_on(&lab, "br-int").contains("10.0.0.5/24"));
    let ledger_path = lab.host.join("var/lib/ncp-bootstrap/ledger.json");
    let ledger = std::fs::read_to_string(&ledger_path).unwrap();
    assert!(!ledger.contains("monitor_released"), "{ledger}");

    // The nsx-ovs pod deleted: `ovs run` killed, its daemons die with it.
    kill9(&run.id().to_string());
    let _ = run.0.wait();
    let gone = Instant::now();
    wait_for("node-if's addresses back", Duration::from_secs(4), || {
        addresses_on(&lab, "eth1").contains("10.0.0.5/24")
    });
    eprintln!(
        "monitor: node-if has its address back {} ms after ovs run was killed (grace 2 s)",
        gone.elapsed().as_millis()
    );
    wait_for("the routes back", Duration::from_secs(3), || {
        lab.state() == before
    });
    assert!(lab.ping_from_peer("10.0.0.5"));
    let s = lab.tool(&["status"], &[]);
    assert!(
        s.stdout.contains("gave eth1 its addresses back") && s.stdout.contains("absent for"),
        "{}",
        s.stdout
    );

    // `ovs run` back: attached as usual, the monitor's record dropped.
    let mut run = start_run(&lab, &[]);
    wait_for("ovs health --ready", Duration::from_secs(30), || {
        lab.tool(&["ovs", "health", "--ready"], &[]).code == 0
    });
    assert!(addresses_on(&lab, "br-int").contains("10.0.0.5/24"));
    // Dropped by the attach once its check after the move is done.
    wait_for(
        "the monitor's record dropped",
        Duration::from_secs(15),
        || std::fs::read_to_string(&ledger_path).is_ok_and(|l| !l.contains("monitor_released")),
    );
    sigterm(&run);
    assert!(exit_within(&mut run, Duration::from_secs(20)).is_some());
}

#[test]
fn a_monitor_killed_in_the_middle_of_its_move_is_finished_by_the_next() {
    let Some(lab) = NetLab::new() else { return };
    lab.standard();
    let before = lab.state();
    let mut run = start_run(&lab, &[]);
    wait_for("ovs health", Duration::from_secs(30), || healthy(&lab));
    kill9(&run.id().to_string());
    let _ = run.0.wait();
    let grace = [
        ("NCP_BOOTSTRAP_MONITOR_GRACE_SECONDS", "1"),
        ("NCP_FAULT_HOOK", "move-planned=kill -9 $PPID"),
    ];
    let mut first = lab.tool_command(&["monitor"], &grace).spawn().unwrap();
    let status =
        exit_within(&mut first, Duration::from_secs(10)).expect("the monitor was not killed");
    assert!(!status.success());
    let ledger_path = lab.host.join("var/lib/ncp-bootstrap/ledger.json");
    let ledger = std::fs::read_to_string(&ledger_path).unwrap();
    assert!(
        ledger.contains("monitor_released") && ledger.contains("uplink_attached"),
        "{ledger}"
    );
    let _second = Background(
        lab.tool_command(
            &["monitor"],
            &[("NCP_BOOTSTRAP_MONITOR_GRACE_SECONDS", "1")],
        )
        .spawn()
        .unwrap(),
    );
    wait_for("the node as before", Duration::from_secs(10), || {
        lab.state() == before
    });
    // The attach is forgotten once its undo is done, a moment after the addresses are back.
    wait_for("the attach forgotten", Duration::from_secs(5), || {
        std::fs::read_to_string(&ledger_path).is_ok_and(|l| !l.contains("uplink_attached"))
    });
}

/// `ovs run` starting while the monitor gives node-if its addresses back (started by the
/// monitor itself, between its plan and its burst): it waits for the monitor's lock, then
/// attaches as usual, and the monitor, looking again, leaves it alone.
#[test]
fn ovs_run_starting_while_the_monitor_acts_waits_then_attaches() {
    let Some(lab) = NetLab::new() else { return };
    lab.standard();
    let mut run = start_run(&lab, &[]);
    wait_for("ovs health", Duration::from_secs(30), || healthy(&lab));
    kill9(&run.id().to_string());
    let _ = run.0.wait();
    let pidfile = lab.host.join("second-run.pid");
    let log = lab.host.join("second-run.log");
    let hook = format!(
        "move-planned=env -u NCP_FAULT_HOOK {} --host-root {} ovs run > {} 2>&1 & echo $! > {}; sleep 1",
        common::BIN,
        lab.host.display(),
        log.display(),
        pidfile.display()
    );
    let _monitor = Background(
        lab.tool_command(
            &["monitor"],
            &[
                ("NCP_BOOTSTRAP_MONITOR_GRACE_SECONDS", "1"),
                ("NCP_FAULT_HOOK", hook.as_str()),
            ],
        )
        .spawn()
        .unwrap(),
    );
    wait_for(
        "the second ovs run started",
        Duration::from_secs(15),
        || pidfile.exists(),
    );
    let second = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    wait_for(
        "attached by the second ovs run",
        Duration::from_secs(30),
        || lab.tool(&["ovs", "health", "--ready"], &[]).code == 0,
    );
    assert!(addresses_on(&lab, "br-int").contains("10.0.0.5/24"));
    assert!(!addresses_on(&lab, "eth1").contains("10.0.0.5/24"));
    // The monitor looks again for a few seconds and does nothing.
    std::thread::sleep(Duration::from_secs(3));
    assert!(addresses_on(&lab, "br-int").contains("10.0.0.5/24"));
    let ledger =
        std::fs::read_to_string(lab.host.join("var/lib/ncp-bootstrap/ledger.json")).unwrap();
    assert!(!ledger.contains("monitor_released"), "{ledger}");
    assert!(ledger.contains("uplink_attached"), "{ledger}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("uplink attached"), "{text}");
    assert!(Command::new("kill")
        .args(["-TERM", &second])
        .status()
        .unwrap()
        .success());
    wait_for(
        "the second ovs run stopped",
        Duration::from_secs(20),
        || !std::path::Path::new(&format!("/proc/{second}")).exists(),
    );
}
