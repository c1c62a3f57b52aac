//! `uplink attach` / `uplink detach` in network namespaces with a real userspace OVS.

mod common;
use common::netlab::NetLab;

fn lab() -> Option<NetLab> {
    let mut lab = NetLab::new()?;
    lab.standard();
    lab.start_ovs();
    Some(lab)
}

#[test]
fn attach_moves_everything_and_detach_restores_it_exactly() {
    let Some(lab) = lab() else { return };
    let before = lab.state();
    assert!(lab.ping_from_peer("10.0.0.5"));

    let r = lab.tool(&["uplink", "attach", "--output", "json"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        j["steps"][0]["metrics"]["switch_window_ms"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let attached = lab.state() + "\n";
    assert!(!attached.contains("addr eth1 10.0.0.5"), "{attached}");
    for want in [
        "addr br-int 10.0.0.5/24 label=br-int ",
        "addr br-int 10.0.0.6/24 label=br-int secondary",
        "addr br-int fd00::5/64 label= nodad",
        // Moved without DAD, then given its own flags back: no lingering nodad.
        "addr br-int fd00::15/64 label= \n",
        r#"{"dev":"br-int","dst":"default","gateway":"10.0.0.1"}"#,
        r#"{"dev":"br-int","dst":"192.168.50.0/24","gateway":"10.0.0.1","metric":50}"#,
        r#"{"dev":"br-int","dst":"172.16.9.0/24","scope":"link"}"#,
        r#"{"dev":"br-int","dst":"192.168.60.0/24","gateway":"10.0.0.1","table":"100"}"#,
        r#"{"dev":"br-int","dst":"fd01::/64","gateway":"fd00::1","metric":1024}"#,
        r#"{"iif":"br-int","priority":1001,"src":"all","table":"100"}"#,
    ] {
        assert!(attached.contains(want), "missing {want} in\n{attached}");
    }
    assert_eq!(lab.vsctl(&["get", "Interface", "eth1", "ofport"]), "1");
    let br_mac = lab.vsctl(&["get", "Interface", "br-int", "mac_in_use"]);
    assert_eq!(
        br_mac, "\"52:54:00:aa:bb:01\"",
        "bridge must carry the uplink's MAC"
    );
    assert!(
        lab.ping_from_peer("10.0.0.5"),
        "peer cannot reach the node after attach"
    );
    assert!(lab.ping_from_peer("10.0.0.6"));

    // A second attach is a no-op.
    let again = lab.tool(&["uplink", "attach"], &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("converged"), "{}", again.stdout);
    assert_eq!(lab.state() + "\n", attached);

    let d = lab.tool(&["uplink", "detach"], &[]);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
    common::assert_same(
        &lab.state(),
        &before,
        "detach did not restore the pre-state",
    );
    assert_eq!(lab.vsctl(&["list-br"]), "", "the bridge we created must go");
    assert!(lab.ping_from_peer("10.0.0.5"));
    assert!(!lab.host.join("var/lib/ncp-bootstrap/ledger.json").exists());
}

#[test]
fn dry_run_plans_and_changes_nothing() {
    let Some(lab) = lab() else { return };
    let before = lab.state();
    let r = lab.tool(&["--dry-run", "uplink", "attach"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("[plan] create OVS bridge br-int"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("[plan] add address 10.0.0.5/24"),
        "{}",
        r.stdout
    );
    assert_eq!(lab.state(), before);
    assert_eq!(lab.vsctl(&["list-br"]), "");
}

#[test]
fn lost_connectivity_rolls_back_with_exit_3() {
    let Some(lab) = lab() else { return };
    // A bridge in secure fail mode with no flows drops everything that crosses it: the gateway
    // answers before the move (through eth1 alone) and cannot after it (replies leave through
    // br-int). That is a real loss of connectivity, not a simulated probe failure.
    lab.vsctl(&[
        "add-br",
        "br-int",
        "--",
        "set",
        "Bridge",
        "br-int",
        "datapath_type=netdev",
        "fail_mode=secure",
    ]);
    lab.n("link set br-int up");
    lab.wait_link_local("br-int");
    let before = lab.state();
    let r = lab.tool(
        &["uplink", "attach"],
        &[("NCP_BOOTSTRAP_PROBE_TIMEOUT_MS", "1500")],
    );
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("rolled back"), "{}", r.stderr);
    assert!(r.stderr.contains("gateway 10.0.0.1"), "{}", r.stderr);
    common::assert_same(
        &lab.state(),
        &before,
        "rollback did not restore the pre-state",
    );
    assert_eq!(
        lab.vsctl(&["list-ports", "br-int"]),
        "",
        "the uplink port must be gone"
    );
    assert_eq!(
        lab.vsctl(&["list-br"]),
        "br-int",
        "a bridge we did not create stays"
    );
    assert!(lab.ping_from_peer("10.0.0.5"));
    assert!(
        !lab.host.join("var/lib/ncp-bootstrap/ledger.json").exists()
            || !std::fs::read_to_string(lab.host.join("var/lib/ncp-bootstrap/ledger.json"))
                .unwrap()
                .contains("uplink_attached")
    );
}

#[test]
fn preconditions_exit_2() {
    let Some(lab) = lab() else { return };
    let before = lab.state();
    let r = lab.tool(&["uplink", "attach", "--uplink", "eth9"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`eth9` does not exist"), "{}", r.stderr);
    let r = lab.tool(&["uplink", "attach", "--uplink", "br-int"], &[]);
    assert_eq!(r.code, 2);
    lab.vsctl(&[
        "add-br",
        "br-other",
        "--",
        "set",
        "Bridge",
        "br-other",
        "datapath_type=netdev",
    ]);
    lab.vsctl(&["add-port", "br-other", "eth1"]);
    let r = lab.tool(&["uplink", "attach"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("already a port of OVS bridge br-other"),
        "{}",
        r.stderr
    );
    lab.vsctl(&["del-br", "br-other"]);
    let r = lab.tool(&["uplink", "attach"], &[("OVS_RUNDIR", "/nonexistent")]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not reachable"), "{}", r.stderr);
    assert_eq!(lab.state(), before);
}

/// Kill the tool at each point of an attach (fault injection, test builds only), then: a
/// second attach converges to exactly the state of an uninterrupted one, and a detach after
/// the crash restores the pre-state.
#[test]
fn a_killed_attach_resumes_or_detaches_cleanly() {
    if !cfg!(feature = "fault-injection") {
        common::skip("build with --features fault-injection (make test does)");
        return;
    }
    // The reference: an uninterrupted attach.
    let Some(reference) = lab() else { return };
    let r = reference.tool(&["uplink", "attach"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let attached = reference.state();
    drop(reference);

    for point in ["after-record", "after-bridge", "after-port", "mid-move"] {
        for then in ["attach", "detach"] {
            let lab = lab().unwrap();
            let before = lab.state();
            let r = lab.tool(&["uplink", "attach"], &[("NCP_FAULT", point)]);
            assert_ne!(r.code, 0, "{point}: the fault did not fire: {}", r.stderr);
            assert!(
                r.stderr.contains(&format!("aborting at {point}")),
                "{point}: {}",
                r.stderr
            );
            let r = lab.tool(&["uplink", then], &[]);
            assert_eq!(r.code, 0, "{point} then {then}: {}\n{}", r.stdout, r.stderr);
            let want = if then == "attach" { &attached } else { &before };
            assert_eq!(&lab.state(), want, "{point} then {then}");
            assert!(
                lab.ping_from_peer("10.0.0.5"),
                "{point} then {then}: node unreachable"
            );
        }
    }
}

#[test]
fn cleanup_detaches_an_attached_uplink() {
    let Some(lab) = lab() else { return };
    let before = lab.state();
    assert_eq!(lab.tool(&["uplink", "attach"], &[]).code, 0);
    let c = lab.tool(&["cleanup"], &[]);
    assert_eq!(c.code, 0, "{}\n{}", c.stdout, c.stderr);
    assert!(
        c.stdout
            .contains("move eth1's addresses and routes back from br-int"),
        "{}",
        c.stdout
    );
    assert_eq!(lab.state(), before);
    assert_eq!(lab.vsctl(&["list-br"]), "");
    assert!(!lab.host.join("var/lib/ncp-bootstrap").exists());
}
