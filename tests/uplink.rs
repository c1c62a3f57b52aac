//! `uplink attach` / `uplink detach` in network namespaces with a real userspace OVS.

mod common;
use common::netlab::NetLab;
use std::process::Command;

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
    let attached = lab.settled_state() + "\n";
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
    lab.add_bridge(&["fail_mode=secure"]);
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
    // Rolled back, nothing is recorded: no ledger and no state directory are left either.
    assert!(
        !lab.host.join("var/lib/ncp-bootstrap").exists(),
        "a rolled-back attach left its state directory"
    );
    assert!(
        !lab.host.join("var/lib").exists(),
        "and the directories it made for it"
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
    // A bridge name the kernel cannot give an interface: refused before OVS is asked.
    let r = lab.tool(&["uplink", "attach", "--bridge", "br-integration01"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("16 bytes long"), "{}", r.stderr);
    assert_eq!(lab.vsctl(&["list-br"]), "");
    // An alias label that would be too long on the bridge (eth1:abcdefghij → br-int:abcdefghij,
    // 17 bytes): refused in the plan, where the kernel would refuse it in the middle of the move.
    lab.n("addr add 10.0.0.9/24 dev eth1 label eth1:abcdefghij");
    let with_label = lab.state();
    let r = lab.tool(&["uplink", "attach"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("\"br-int:abcdefghij\" (17 bytes")
            && r.stderr.contains("at most 8 bytes"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.state(), with_label);
    assert_eq!(lab.vsctl(&["list-br"]), "");
    lab.n("addr del 10.0.0.9/24 dev eth1");
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

/// A network manager given node-if back before the move (systemd-networkd once its runtime
/// file goes) configures it again while detach works: here between detach's plan and its apply
/// (the fault hook stands in for networkd). The kernel then holds two copies of a route (the
/// manager's appended after br-int's), and a replace of br-int's copy with one identical to the
/// manager's is refused with EEXIST. Detach converges on what is already there: the manager's
/// copy stays, br-int's goes.
#[test]
fn detach_converges_on_what_a_network_manager_puts_back_meanwhile() {
    let Some(lab) = lab() else { return };
    let before = lab.state();
    assert_eq!(lab.tool(&["uplink", "attach"], &[]).code, 0);
    // What networkd does once it has eth1 again: its address, then its routes.
    let networkd = "move-planned=ip addr add 10.0.0.5/24 dev eth1; \
        ip route append default via 10.0.0.1 dev eth1; \
        ip route append 192.168.50.0/24 via 10.0.0.1 dev eth1 metric 50";
    let d = lab.tool(&["uplink", "detach"], &[("NCP_FAULT_HOOK", networkd)]);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
    let after = lab.state();
    assert!(!after.contains("br-int"), "{after}");
    common::assert_same(&after, &before, "detach did not converge on the pre-state");
    assert!(lab.ping_from_peer("10.0.0.5"));
}

/// An address deleted from node-if while the attach works (while OVS adds the port, or inside
/// the move itself) stays deleted: it is not re-created on br-int, and the attach finishes
/// instead of rolling back. Detach does not bring it back either.
#[test]
fn an_address_deleted_during_the_attach_stays_deleted() {
    if !cfg!(feature = "fault-injection") {
        return common::skip("build with --features fault-injection (make test does)");
    }
    for (point, del) in [
        ("port-added", "ip addr del 10.0.0.6/24 dev eth1"),
        (
            "mid-move",
            "ip addr del 10.0.0.6/24 dev eth1; ip addr del 10.0.0.6/24 dev br-int",
        ),
    ] {
        let Some(lab) = lab() else { return };
        let before = lab.state();
        let hook = format!("{point}={del}");
        let r = lab.tool(&["uplink", "attach"], &[("NCP_FAULT_HOOK", &hook)]);
        assert_eq!(r.code, 0, "{point}: {}\n{}", r.stdout, r.stderr);
        let attached = lab.state();
        assert!(
            !attached.contains("10.0.0.6"),
            "{point}: re-created:\n{attached}"
        );
        assert!(
            attached.contains("addr br-int 10.0.0.5/24"),
            "{point}:\n{attached}"
        );
        assert!(
            !attached.contains("addr eth1 10.0.0.5"),
            "{point}:\n{attached}"
        );
        assert!(lab.ping_from_peer("10.0.0.5"), "{point}");
        let d = lab.tool(&["uplink", "detach"], &[]);
        assert_eq!(d.code, 0, "{point}: {}\n{}", d.stdout, d.stderr);
        let want: String = before
            .lines()
            .filter(|l| !l.contains("10.0.0.6"))
            .collect::<Vec<_>>()
            .join("\n");
        common::assert_same(&lab.state(), &want, "detach after the deletion");
    }
}

/// What changed on br-int while attached goes back with the detach as it is then: an address
/// and a route added to the bridge are carried to node-if (the bridge, ours, is removed and
/// would take them along), listed by `--dry-run`; an address removed from the bridge is not
/// brought back.
#[test]
fn detach_carries_the_bridge_as_it_is_at_detach_time() {
    let Some(lab) = lab() else { return };
    let before = lab.state();
    assert_eq!(lab.tool(&["uplink", "attach"], &[]).code, 0);
    lab.n("addr add 10.0.0.77/24 dev br-int");
    lab.n("route add 192.168.77.0/24 via 10.0.0.1 dev br-int");
    lab.n("addr del 10.0.0.6/24 dev br-int");
    let dry = lab.tool(&["--dry-run", "uplink", "detach"], &[]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    for want in ["carry 10.0.0.77/24", "carry 192.168.77.0/24 via 10.0.0.1"] {
        assert!(dry.stdout.contains(want), "{want} missing:\n{}", dry.stdout);
    }
    assert!(!dry.stdout.contains("10.0.0.6"), "{}", dry.stdout);
    let d = lab.tool(&["uplink", "detach"], &[]);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
    let after = lab.state();
    assert!(after.contains("addr eth1 10.0.0.77/24"), "{after}");
    assert!(
        after.contains(r#""dev":"eth1","dst":"192.168.77.0/24","gateway":"10.0.0.1""#),
        "{after}"
    );
    let want: Vec<&str> = before.lines().filter(|l| !l.contains("10.0.0.6")).collect();
    let got: Vec<&str> = after
        .lines()
        .filter(|l| !l.contains("10.0.0.77") && !l.contains("192.168.77.0"))
        .collect();
    common::assert_same(&got.join("\n"), &want.join("\n"), "detach");
}

/// A SIGTERM or SIGINT to a standalone `uplink attach` in the middle of its work (here: once
/// OVS has the port, just before the move) does not leave the node half moved: the attach
/// finishes, says the signal came, and the node is attached as after an undisturbed run.
#[test]
fn a_signal_during_the_attach_is_held_until_it_finishes() {
    if !cfg!(feature = "fault-injection") {
        return common::skip("build with --features fault-injection (make test does)");
    }
    for sig in ["TERM", "INT"] {
        let Some(lab) = lab() else { return };
        let before = lab.state();
        // The hook's shell is the tool's child: $PPID is the tool.
        let hook = format!("port-added=kill -{sig} $PPID; sleep 0.2");
        let r = lab.tool(&["uplink", "attach"], &[("NCP_FAULT_HOOK", &hook)]);
        assert_eq!(r.code, 0, "SIG{sig}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains(&format!(
                "SIG{sig} arrived while the host was being changed"
            )),
            "{}",
            r.stdout
        );
        let attached = lab.state();
        assert!(!attached.contains("addr eth1 10.0.0"), "{attached}");
        assert!(attached.contains("addr br-int 10.0.0.6/24"), "{attached}");
        assert!(lab.ping_from_peer("10.0.0.5"));
        assert_eq!(lab.tool(&["uplink", "detach"], &[]).code, 0);
        common::assert_same(&lab.state(), &before, "detach after the signal");
    }
}

/// A route through a nexthop object (FRR 8, systemd-networkd `[NextHop]`): refused by name in
/// the plan (exit 2, nothing changed), not an EINVAL in the middle of the move and a rollback.
#[test]
fn routes_through_nexthop_objects_are_refused_before_anything_changes() {
    let Some(lab) = lab() else { return };
    lab.n("nexthop add id 10 via 10.0.0.1 dev eth1");
    lab.n("route add 192.168.90.0/24 nhid 10");
    let before = lab.state();
    assert!(before.contains("192.168.90.0/24"), "{before}");
    let r = lab.tool(&["uplink", "attach"], &[]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("192.168.90.0/24") && r.stderr.contains("nexthop id 10"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.state(), before);
    assert_eq!(lab.vsctl(&["list-br"]), "");
}

/// `ovs health` says what forwarding needs: node-if down fails it (the gateway is out of reach
/// whatever OVS says), a moved address back on node-if fails it (a restart's attach moves it
/// again), but an address someone added to node-if after the attach does not (no restart moves
/// it: liveness would loop); `status` names it as drift.
#[test]
fn health_follows_what_forwarding_needs_and_what_a_restart_can_repair() {
    let Some(lab) = lab() else { return };
    assert_eq!(lab.tool(&["uplink", "attach"], &[]).code, 0);
    let health = || lab.tool(&["ovs", "health"], &[]);
    assert_eq!(health().code, 0, "{}", health().stdout);

    lab.n("link set eth1 down");
    let h = health();
    assert_eq!(h.code, 1, "{}", h.stdout);
    assert!(h.stdout.contains("eth1 is down"), "{}", h.stdout);
    let st = lab.tool(&["status"], &[]);
    assert!(st.stdout.contains("eth1 is down"), "{}", st.stdout);
    lab.n("link set eth1 up");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while health().code != 0 && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(health().code, 0, "{}", health().stdout);

    lab.n("addr add 10.0.0.77/24 dev eth1");
    let h = health();
    assert_eq!(
        h.code, 0,
        "an address no restart moves fails liveness: {}",
        h.stdout
    );
    let st = lab.tool(&["status"], &[]);
    assert!(
        st.stdout.contains("10.0.0.77/24") && st.stdout.contains("after the attach"),
        "{}",
        st.stdout
    );
    lab.n("addr del 10.0.0.77/24 dev eth1");

    lab.n("addr add 10.0.0.6/24 dev eth1");
    let h = health();
    assert_eq!(h.code, 1, "{}", h.stdout);
    assert!(
        h.stdout.contains("eth1 still holds 10.0.0.6/24"),
        "{}",
        h.stdout
    );
}

/// An attach whose uplink is gone by cleanup time (renamed NIC): `cleanup --dry-run` and the
/// real cleanup agree (exit 2, naming the way forward), and `--forget-missing-uplink` takes it.
#[test]
fn cleanup_of_an_uplink_that_is_gone_says_the_way_forward() {
    let Some(lab) = lab() else { return };
    assert_eq!(lab.tool(&["uplink", "attach"], &[]).code, 0);
    lab.n("link set eth1 down");
    lab.n("link set eth1 name eth7");
    for args in [&["--dry-run", "cleanup"][..], &["cleanup"][..]] {
        let r = lab.tool(args, &[]);
        assert_eq!(r.code, 2, "{args:?}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr
                .contains("the recorded uplink eth1 does not exist any more")
                && r.stderr.contains("--forget-missing-uplink"),
            "{}",
            r.stderr
        );
    }
    let r = lab.tool(&["cleanup", "--forget-missing-uplink"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("forget the attach of eth1"),
        "{}",
        r.stdout
    );
    assert!(!lab.host.join("var/lib/ncp-bootstrap/ledger.json").exists());
}

/// The peer of the dual-stack tests: 10.0.0.1/24 and fd00::1/64.
fn dual_stack_peer(lab: &NetLab) {
    for a in [
        "link set lo up",
        "link set peer0 up",
        "addr add 10.0.0.1/24 dev peer0",
        "-6 addr add fd00::1/64 dev peer0 nodad",
    ] {
        lab.p(a);
    }
}

/// node-if (eth1) up, then configured by `ip` arguments.
fn eth1_with<'a>(lab: &NetLab, config: impl IntoIterator<Item = &'a &'a str>) {
    for a in ["link set lo up", "link set eth1 up"].iter().chain(config) {
        lab.n(a);
    }
}

/// node-if as NetworkManager configures it: `noprefixroute` addresses, its own prefix routes
/// (protocol kernel, metric 100), default routes of metric 100.
const NM_ETH1: [&str; 6] = [
    "addr add 10.0.0.5/24 dev eth1 noprefixroute",
    "route add 10.0.0.0/24 dev eth1 proto kernel scope link src 10.0.0.5 metric 100",
    "route add default via 10.0.0.1 dev eth1 proto static metric 100",
    "-6 addr add fd00::5/64 dev eth1 nodad noprefixroute",
    "-6 route add fd00::/64 dev eth1 proto kernel metric 100",
    "-6 route add default via fd00::1 dev eth1 proto static metric 100",
];

/// NetworkManager adds its addresses with `noprefixroute` and the prefix routes itself (protocol
/// kernel, metric 100). The kernel never remakes those routes, so they must move with the
/// addresses: otherwise br-int carries 10.0.0.5/24 with no route to 10.0.0.0/24 and the
/// gateway is unreachable.
#[test]
fn networkmanager_style_prefix_routes_move_with_noprefixroute_addresses() {
    let Some(mut lab) = NetLab::new() else { return };
    dual_stack_peer(&lab);
    eth1_with(&lab, &NM_ETH1);
    lab.wait_no_tentative();
    lab.start_ovs();
    let before = lab.state();
    assert!(lab.ping_from_peer("10.0.0.5") && lab.ping_from_peer("fd00::5"));

    let r = lab.tool(&["uplink", "attach"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let attached = lab.state() + "\n";
    for want in [
        "addr br-int 10.0.0.5/24 label=br-int noprefixroute\n",
        r#""dev":"br-int","dst":"10.0.0.0/24","metric":100,"prefsrc":"10.0.0.5","protocol":"kernel""#,
        r#""dev":"br-int","dst":"fd00::/64","metric":100,"protocol":"kernel""#,
        r#"{"dev":"br-int","dst":"default","gateway":"10.0.0.1","metric":100,"protocol":"static"}"#,
    ] {
        assert!(attached.contains(want), "missing {want} in\n{attached}");
    }
    assert!(
        !attached.contains(r#""dev":"eth1","dst":"10.0.0.0/24""#),
        "{attached}"
    );
    assert!(lab.ping_from_peer("10.0.0.5") && lab.ping_from_peer("fd00::5"));

    let d = lab.tool(&["uplink", "detach"], &[]);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
    common::assert_same(&lab.state(), &before, "detach did not restore NM's layout");
    assert!(lab.ping_from_peer("10.0.0.5") && lab.ping_from_peer("fd00::5"));
}

/// After a reboot the host's own configuration (here NetworkManager's shape: `noprefixroute`
/// addresses, prefix routes of metric 100) is on node-if again, and it may differ from what the
/// attach recorded (an address moved there by hand, with the kernel's prefix routes). The
/// attach at boot moves what is there now and records it anew: a move by the old record would
/// leave NetworkManager's IPv6 prefix route on node-if, shadowing the bridge's (metric 100
/// before 256), and the node unreachable over IPv6. Detach then gives back the new shape.
#[test]
fn after_a_reboot_the_uplink_as_the_host_configured_it_again_is_what_moves() {
    let Some(mut lab) = NetLab::new() else { return };
    dual_stack_peer(&lab);
    eth1_with(
        &lab,
        &[
            "addr add 10.0.0.5/24 dev eth1",
            "route add default via 10.0.0.1 dev eth1",
            "-6 addr add fd00::5/64 dev eth1 nodad",
            "-6 route add default via fd00::1 dev eth1",
        ],
    );
    lab.wait_no_tentative();
    lab.start_ovs();
    let r = lab.tool(&["uplink", "attach"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // The reboot: the kernel's state is gone, the bridge comes back empty, and NetworkManager
    // configures node-if from its connection before OVS runs.
    for a in [
        "addr del 10.0.0.5/24 dev br-int",
        "-6 route del default via fd00::1 dev br-int",
        "-6 addr del fd00::5/64 dev br-int",
    ]
    .iter()
    .chain(&NM_ETH1)
    {
        lab.n(a);
    }
    let not_bridge = |s: String| {
        s.lines()
            .filter(|l| !l.contains("br-int"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let configured = not_bridge(lab.state());

    let r = lab.tool(&["uplink", "attach"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("record eth1's configuration anew"),
        "{}",
        r.stdout
    );
    let attached = lab.state() + "\n";
    for want in [
        "addr br-int 10.0.0.5/24 label=br-int noprefixroute\n",
        "addr br-int fd00::5/64 label= noprefixroute,nodad\n",
        r#""dev":"br-int","dst":"fd00::/64","metric":100,"protocol":"kernel""#,
        r#""dev":"br-int","dst":"10.0.0.0/24","metric":100,"prefsrc":"10.0.0.5","protocol":"kernel""#,
    ] {
        assert!(attached.contains(want), "missing {want} in\n{attached}");
    }
    assert!(
        !attached.contains(r#""dev":"eth1","dst":"fd00::/64","metric":100"#),
        "{attached}"
    );
    assert!(
        !attached.contains("\"dev\":\"br-int\",\"dst\":\"fd00::/64\",\"metric\":256"),
        "{attached}"
    );
    assert!(lab.ping_from_peer("10.0.0.5") && lab.ping_from_peer("fd00::5"));
    let again = lab.tool(&["uplink", "attach"], &[]);
    assert!(again.stdout.contains("converged"), "{}", again.stdout);

    let d = lab.tool(&["uplink", "detach"], &[]);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
    common::assert_same(
        &not_bridge(lab.state()),
        &configured,
        "detach did not give back the configuration the host made at boot",
    );
    assert!(lab.ping_from_peer("10.0.0.5") && lab.ping_from_peer("fd00::5"));
}

/// systemd-networkd gives its addresses a route metric (`IFA_RT_PRIORITY`): the kernel makes
/// their prefix routes with it (metric 100, not 0). The attach keeps it on the bridge, and the
/// undo with the switch gone (the monitor's give-back, a userspace bridge gone with its
/// switch) puts it back on node-if with it.
#[test]
fn address_route_metrics_survive_attach_and_the_offline_give_back() {
    let Some(mut lab) = NetLab::new() else { return };
    dual_stack_peer(&lab);
    eth1_with(
        &lab,
        &[
            "addr add 10.0.0.5/24 dev eth1 metric 100",
            "route add default via 10.0.0.1 dev eth1 proto dhcp metric 100",
        ],
    );
    lab.start_ovs();
    let before = lab.state();
    assert!(
        before.contains(r#""dev":"eth1","dst":"10.0.0.0/24","metric":100,"prefsrc":"10.0.0.5","protocol":"kernel""#),
        "{before}"
    );
    let r = lab.tool(&["uplink", "attach"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let attached = lab.state();
    assert!(
        attached.contains(r#""dev":"br-int","dst":"10.0.0.0/24","metric":100,"prefsrc":"10.0.0.5","protocol":"kernel""#),
        "{attached}"
    );
    assert!(
        !attached.contains(r#""dst":"10.0.0.0/24","prefsrc""#),
        "{attached}"
    );
    lab.stop_ovs();
    let c = lab.tool(&["cleanup"], &[]);
    assert_eq!(c.code, 0, "{}\n{}", c.stdout, c.stderr);
    common::assert_same(
        &lab.state(),
        &before,
        "the offline give-back lost the metric",
    );
    assert!(lab.ping_from_peer("10.0.0.5"));
}

/// A stand-in for NetworkManager (no real one runs in a namespace without systemd and a system
/// bus; the VM scenario `networkmanager.sh` runs the real one): a copy of `sleep` named
/// NetworkManager, announced through a /proc inside the test's host root (so the tool never
/// looks at this machine's own processes), and an `nmcli` first on PATH that answers the state
/// query with "100 (connected)" and logs every call.
struct FakeNm {
    child: std::process::Child,
    path: String,
    log: std::path::PathBuf,
}

impl FakeNm {
    fn start(lab: &NetLab) -> FakeNm {
        use std::fs;
        let bin = lab.host.join("usr/sbin/NetworkManager");
        fs::create_dir_all(bin.parent().unwrap()).unwrap();
        fs::copy("/bin/sleep", &bin).unwrap();
        let child = std::process::Command::new(&bin).arg("60").spawn().unwrap();
        let proc_dir = lab.host.join(format!("proc/{}", child.id()));
        fs::create_dir_all(lab.host.join("proc/self")).unwrap();
        fs::create_dir_all(&proc_dir).unwrap();
        fs::write(proc_dir.join("comm"), "NetworkManager\n").unwrap();
        fs::write(
            proc_dir.join("cmdline"),
            "/usr/sbin/NetworkManager\0--no-daemon\0",
        )
        .unwrap();
        fs::create_dir_all(lab.host.join("run/NetworkManager")).unwrap();
        let fakes = lab.host.join("fake-bin");
        fs::create_dir_all(&fakes).unwrap();
        let log = lab.host.join("nmcli.log");
        common::write(
            &fakes.join("nmcli"),
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\ncase \"$*\" in *GENERAL.STATE*) echo '100 (connected)';; esac\n",
                log.display()
            )
            .as_bytes(),
            0o755,
        );
        let path = format!("{}:{}", fakes.display(), std::env::var("PATH").unwrap());
        FakeNm { child, path, log }
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for FakeNm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn networkmanager_leaves_the_attached_uplink_alone_until_detach() {
    let Some(lab) = lab() else { return };
    let mark = lab.host.join("run/ncp-bootstrap/nm-unmanaged-eth1");
    let nm = FakeNm::start(&lab);
    let env = [("PATH", nm.path.as_str())];

    let dry = lab.tool(&["uplink", "attach", "--dry-run"], &env);
    assert!(
        dry.stdout
            .contains("tell NetworkManager to leave eth1 unmanaged"),
        "{}",
        dry.stdout
    );
    assert_eq!(nm.calls(), "", "a dry run must not talk to NetworkManager");

    let r = lab.tool(&["uplink", "attach"], &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        nm.calls(),
        "-t -g GENERAL.STATE device show eth1\ndevice set eth1 managed no\n"
    );
    assert!(
        r.stdout
            .contains("NetworkManager leaves eth1 unmanaged while it is attached"),
        "{}",
        r.stdout
    );
    assert!(mark.exists());
    assert!(lab.ping_from_peer("10.0.0.5"));
    let st = lab.tool(&["status"], &env);
    assert!(
        st.stdout
            .contains("NetworkManager leaves it unmanaged until detach"),
        "{}",
        st.stdout
    );
    // Handed back by hand (as a restarted node would be): status calls it drift.
    std::fs::remove_file(&mark).unwrap();
    let st = lab.tool(&["status"], &env);
    assert!(
        st.stdout
            .contains("NetworkManager runs and still manages it"),
        "{}",
        st.stdout
    );
    assert_eq!(lab.tool(&["uplink", "attach"], &env).code, 0);
    assert!(mark.exists());

    // Converged: nothing is asked again.
    let calls = nm.calls().lines().count();
    let again = lab.tool(&["uplink", "attach"], &env);
    assert!(again.stdout.contains("converged"), "{}", again.stdout);
    assert_eq!(nm.calls().lines().count(), calls);

    // Detach gives it back after the addresses are home, and forgets the mark.
    let d = lab.tool(&["uplink", "detach"], &env);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
    assert!(
        nm.calls().ends_with("device set eth1 managed yes\n"),
        "{}",
        nm.calls()
    );
    assert!(!mark.exists() && !mark.parent().unwrap().exists());
    assert!(lab.ping_from_peer("10.0.0.5"));
}

#[test]
fn networkmanager_without_the_device_needs_nothing_and_a_broken_nmcli_warns() {
    let Some(lab) = lab() else { return };
    let nm = FakeNm::start(&lab);
    let env = [("PATH", nm.path.as_str())];
    let fake = lab.host.join("fake-bin/nmcli");
    // NM runs but does not know eth1 (nmcli exits 10, as it does).
    common::write(
        &fake,
        b"#!/bin/sh\necho \"Error: Device 'eth1' not found.\" >&2\nexit 10\n",
        0o755,
    );
    let r = lab.tool(&["uplink", "attach"], &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        !r.stdout.contains("NetworkManager") && !r.stderr.contains("NetworkManager"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert!(!lab.host.join("run/ncp-bootstrap").exists());
    assert_eq!(lab.tool(&["uplink", "detach"], &env).code, 0);
    // nmcli cannot reach NetworkManager: the attach stands, with a warning that says why.
    common::write(
        &fake,
        b"#!/bin/sh\necho 'Error: NetworkManager is not running.' >&2\nexit 8\n",
        0o755,
    );
    let r = lab.tool(&["uplink", "attach"], &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let all = r.stdout + &r.stderr;
    assert!(
        all.contains("could not tell NetworkManager to leave eth1 alone"),
        "{all}"
    );
    assert!(!all.contains("[done] tell NetworkManager"), "{all}");
    assert!(lab.ping_from_peer("10.0.0.5"));
    assert_eq!(lab.tool(&["uplink", "detach"], &env).code, 0);
    // The operator keeps eth1 unmanaged already: nothing is set, and detach sets nothing back.
    let log = lab.host.join("nmcli.log");
    common::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\necho '10 (unmanaged)'\n",
            log.display()
        )
        .as_bytes(),
        0o755,
    );
    let r = lab.tool(&["uplink", "attach"], &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("tell NetworkManager"), "{}", r.stdout);
    let again = lab.tool(&["uplink", "attach"], &env);
    assert!(again.stdout.contains("converged"), "{}", again.stdout);
    assert_eq!(lab.tool(&["uplink", "detach"], &env).code, 0);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "-t -g GENERAL.STATE device show eth1\n",
        "only the state was asked, once"
    );
    assert!(!lab.host.join("run/ncp-bootstrap").exists());
}

/// A DHCP lease that nothing would renew on the bridge (here a dhclient's, known by its pid
/// file) is refused by default, with the way out, and nothing changes. With the way out taken it
/// moves with its lifetime (never frozen into a permanent address), with a warning.
/// A node whose address came from DHCP (a lease of 600 s, a default route `proto dhcp`) and
/// a dhclient pid file naming eth1.
fn dhcp_lab() -> Option<NetLab> {
    let mut lab = NetLab::new()?;
    for a in [
        "link set lo up",
        "link set peer0 up",
        "addr add 10.0.0.1/24 dev peer0",
    ] {
        lab.p(a);
    }
    eth1_with(
        &lab,
        &[
            "addr add 10.0.0.5/24 dev eth1 valid_lft 600 preferred_lft 600",
            "route add default via 10.0.0.1 dev eth1 proto dhcp",
        ],
    );
    lab.start_ovs();
    common::write(&lab.host.join("run/dhclient-eth1.pid"), b"4242\n", 0o644);
    Some(lab)
}

#[test]
fn a_dynamic_address_is_refused_unless_its_expiry_is_accepted() {
    let Some(lab) = dhcp_lab() else { return };
    let before = lab.state();
    let r = lab.tool(&["uplink", "attach"], &[]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    for want in [
        "10.0.0.5 (valid for",
        "the DHCP client of /run/dhclient-eth1.pid",
        "--allow-expiring-lease",
    ] {
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
    }
    assert!(
        lab.vsctl(&["list-br"]).trim().is_empty(),
        "a refused attach made a bridge"
    );
    assert_eq!(lab.state(), before, "a refused attach changed the node");

    // ncp.ini says the uplink has no DHCP: the lease contradicts it, whatever else is allowed.
    let ini = lab.host.join("ncp.ini");
    std::fs::write(
        &ini,
        "[nsx_node_agent]\nis_dhcp_configured_on_ovs_uplink_port = False\n",
    )
    .unwrap();
    let ini = ini.display().to_string();
    let r = lab.tool(
        &[
            "--ncp-ini",
            &ini,
            "uplink",
            "attach",
            "--allow-expiring-lease",
        ],
        &[],
    );
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("is_dhcp_configured_on_ovs_uplink_port = False"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.state(), before, "a refused attach changed the node");

    let r = lab.tool(&["uplink", "attach", "--allow-expiring-lease"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let all = r.stdout.clone() + &r.stderr;
    assert!(all.contains("10.0.0.5 (valid for"), "{all}");
    assert!(all.contains("run a DHCP client for br-int"), "{all}");
    let on_br = Command::new("ip")
        .args(["-n", &lab.node, "-4", "-o", "addr", "show", "dev", "br-int"])
        .output()
        .unwrap();
    let on_br = String::from_utf8_lossy(&on_br.stdout);
    assert!(on_br.contains("10.0.0.5/24"), "{on_br}");
    assert!(
        on_br.contains("dynamic") && !on_br.contains("valid_lft forever"),
        "{on_br}"
    );
    assert!(lab.ping_from_peer("10.0.0.5"));
}

/// ncp.ini's `is_dhcp_configured_on_ovs_uplink_port = True` says a DHCP client serves the
/// uplink: the lease moves with its lifetime, with the warning to run that client for the
/// bridge, as `node.allow_expiring_lease` does.
#[test]
fn ncp_ini_declaring_dhcp_on_the_uplink_lets_the_lease_move() {
    let Some(lab) = dhcp_lab() else { return };
    let ini = lab.host.join("ncp.ini");
    std::fs::write(
        &ini,
        "[nsx_node_agent]\nis_dhcp_configured_on_ovs_uplink_port = True\n",
    )
    .unwrap();
    let ini = ini.display().to_string();
    let r = lab.tool(&["--ncp-ini", &ini, "uplink", "attach"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let all = r.stdout + &r.stderr;
    assert!(all.contains("node.uplink_dhcp is true"), "{all}");
    assert!(all.contains("run a DHCP client for br-int"), "{all}");
    assert!(
        lab.state().contains("addr br-int 10.0.0.5/24"),
        "{}",
        lab.state()
    );
}

fn ipv6_conf(lab: &NetLab, dev: &str, key: &str) -> String {
    let path = format!("/proc/sys/net/ipv6/conf/{dev}/{key}");
    let out = common::netlab::sh(&["ip", "netns", "exec", &lab.node, "cat", &path]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn set_ipv6_conf(lab: &NetLab, dev: &str, key: &str, value: &str) {
    let arg = format!("net.ipv6.conf.{dev}.{key}={value}");
    common::netlab::sh(&["ip", "netns", "exec", &lab.node, "sysctl", "-qw", &arg]);
}

/// A node whose new links get IPv6 off by default (a hardened host) and that forwards: the
/// bridge OVS makes must still take node-if's IPv6 addresses, so it gets IPv6 on; with NCP's
/// `enable_ipv6` it also takes router advertisements (`accept_ra` 2). An existing bridge's
/// settings are recorded and restored by detach.
#[test]
fn the_bridge_carries_the_nodes_ipv6_on_a_host_with_ipv6_off_by_default() {
    let Some(lab) = lab() else { return };
    set_ipv6_conf(&lab, "default", "disable_ipv6", "1");
    set_ipv6_conf(&lab, "all", "forwarding", "1");
    assert_eq!(ipv6_conf(&lab, "eth1", "accept_ra"), "1");
    let before = lab.state();

    let r = lab.tool(&["uplink", "attach"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(ipv6_conf(&lab, "br-int", "disable_ipv6"), "0");
    assert_eq!(ipv6_conf(&lab, "br-int", "accept_ra"), "1");
    assert!(
        lab.state().contains("addr br-int fd00::5/64"),
        "{}",
        lab.state()
    );
    let d = lab.tool(&["uplink", "detach"], &[]);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
    common::assert_same(
        &lab.state(),
        &before,
        "detach did not restore the pre-state",
    );

    let on = [("NCP_BOOTSTRAP_NODE_ENABLE_IPV6", "true")];
    let r = lab.tool(&["uplink", "attach"], &on);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(ipv6_conf(&lab, "br-int", "disable_ipv6"), "0");
    assert_eq!(ipv6_conf(&lab, "br-int", "accept_ra"), "2");
    let d = lab.tool(&["uplink", "detach"], &on);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
    common::assert_same(
        &lab.state(),
        &before,
        "detach did not restore the pre-state",
    );

    // A bridge that was there before: its settings are put back by detach.
    lab.add_bridge(&[]);
    let mut tries = 0;
    while !Command::new("ip")
        .args(["-n", &lab.node, "link", "show", "br-int"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        tries += 1;
        assert!(tries < 50, "OVS made no br-int");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    set_ipv6_conf(&lab, "br-int", "disable_ipv6", "0");
    assert_eq!(ipv6_conf(&lab, "br-int", "accept_ra"), "1");
    let dry = lab.tool(&["uplink", "attach", "--dry-run"], &on);
    assert!(
        dry.stdout
            .contains("set net.ipv6.conf.br-int.accept_ra = 2"),
        "{}",
        dry.stdout
    );
    let r = lab.tool(&["uplink", "attach"], &on);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(ipv6_conf(&lab, "br-int", "accept_ra"), "2");
    let ledger =
        std::fs::read_to_string(lab.host.join("var/lib/ncp-bootstrap/ledger.json")).unwrap();
    assert!(ledger.contains("\"ipv6_before\""), "{ledger}");
    let d = lab.tool(&["uplink", "detach"], &on);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
    assert_eq!(ipv6_conf(&lab, "br-int", "accept_ra"), "1");
}

/// Make before break: an address the bridge refuses (here IPv6 turned off on it after the port
/// was added) is never deleted from node-if, so the rollback finds the node as it was.
#[test]
fn an_address_the_bridge_refuses_is_not_lost_by_the_rollback() {
    let Some(lab) = lab() else { return };
    let before = lab.state();
    let hook = format!(
        "port-added=ip netns exec {} sysctl -qw net.ipv6.conf.br-int.disable_ipv6=1",
        lab.node
    );
    let r = lab.tool(&["uplink", "attach"], &[("NCP_FAULT_HOOK", hook.as_str())]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("rolled back"), "{}", r.stderr);
    common::assert_same(&lab.state(), &before, "the rollback lost what the node had");
}
