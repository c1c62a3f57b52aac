//! The test of record: snapshot the host (every file under the host root with mode and hash;
//! addresses, routes of every table, rules), run `install`, `ovs run` (then stop it, keeping
//! the uplink attached, as when the DaemonSet goes away), `persist`, then `cleanup`, and compare:
//! identical. For an ifupdown host and a netplan host, and with cleanup killed at each point
//! and run again.

mod common;
use common::netlab::NetLab;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn ifupdown_host(lab: &NetLab) {
    write(
        &lab.host.join("etc/os-release"),
        b"ID=ubuntu\nVERSION_ID=\"22.04\"\n",
        0o644,
    );
    write(
        &lab.host.join("etc/network/interfaces"),
        b"auto lo\niface lo inet loopback\n\n# node-if\nauto eth1\niface eth1 inet manual\n",
        0o644,
    );
    write(&lab.host.join("sbin/ifup"), b"", 0o755);
}

fn netplan_host(lab: &NetLab) {
    write(
        &lab.host.join("etc/os-release"),
        b"ID=ubuntu\nVERSION_ID=\"24.04\"\n",
        0o644,
    );
    write(
        &lab.host.join("etc/netplan/50-cloud-init.yaml"),
        b"network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n",
        0o600,
    );
}

fn snap(lab: &NetLab) -> String {
    let files: Vec<String> = snapshot(&lab.host, false)
        .into_iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    format!("{}\n{}", files.join("\n"), lab.state())
}

/// install → ovs run → persist → stop (uplink stays attached) and returns the snapshot before.
fn prepare(lab: &NetLab, layout: fn(&NetLab)) -> String {
    layout(lab);
    let tmp = lab.host.parent().unwrap().join("bundle-dir");
    let b = bundle(&tmp, "4.1.0");
    let before = snap(lab);
    let r = lab.tool(&["install", "--bundle", b.to_str().unwrap()], &[]);
    assert_eq!(r.code, 0, "install: {}\n{}", r.stdout, r.stderr);
    let mut run = lab.start_ovs_run(&[]);
    let end = Instant::now() + Duration::from_secs(30);
    while lab.tool(&["ovs", "health"], &[]).code != 0 {
        assert!(Instant::now() < end, "ovs run never became healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = lab.tool(&["persist"], &[]);
    assert_eq!(r.code, 0, "persist: {}\n{}", r.stdout, r.stderr);
    Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(run.wait().unwrap().success());
    assert!(
        lab.state().contains("addr br-int") || !lab.state().contains("addr eth1 10.0.0.5"),
        "the uplink should still be attached (on_exit = keep)"
    );
    before
}

fn lifecycle(layout: fn(&NetLab)) {
    let Some(lab) = NetLab::new() else { return };
    lab.standard();
    let before = prepare(&lab, layout);
    let c = lab.tool(&["cleanup"], &[]);
    assert_eq!(c.code, 0, "cleanup: {}\n{}", c.stdout, c.stderr);
    assert_same(
        &snap(&lab),
        &before,
        "cleanup did not give the node back as it was",
    );
    assert!(lab.ping_from_peer("10.0.0.5"));
}

#[test]
fn install_ovs_run_persist_cleanup_is_identity_on_an_ifupdown_host() {
    lifecycle(ifupdown_host);
}

#[test]
fn install_ovs_run_persist_cleanup_is_identity_on_a_netplan_host() {
    lifecycle(netplan_host);
}

#[test]
fn a_killed_cleanup_finishes_on_the_next_run() {
    if !cfg!(feature = "fault-injection") {
        skip("build with --features fault-injection (make test does)");
        return;
    }
    // The ledger of this flow has about a dozen entries; kill before a few of them.
    for n in [0, 3, 7] {
        let Some(lab) = NetLab::new() else { return };
        lab.standard();
        let before = prepare(&lab, ifupdown_host);
        let point = format!("cleanup-{n}");
        let r = lab.tool(&["cleanup"], &[("NCP_FAULT", point.as_str())]);
        assert_ne!(r.code, 0, "{point}: the fault did not fire");
        assert!(
            r.stderr.contains(&format!("aborting at {point}")),
            "{}",
            r.stderr
        );
        let c = lab.tool(&["cleanup"], &[]);
        assert_eq!(c.code, 0, "{point}: {}\n{}", c.stdout, c.stderr);
        assert_same(
            &snap(&lab),
            &before,
            &format!("killed at {point}, then cleanup again"),
        );
    }
}

#[test]
fn legacy_cleanup_follows_ncps_documented_steps() {
    let Some(mut lab) = NetLab::new() else { return };
    lab.standard();
    lab.start_ovs();
    // What NCP's own bootstrap leaves: its files, and the address on br-int; no ledger.
    assert_eq!(lab.tool(&["uplink", "attach"], &[]).code, 0);
    std::fs::remove_dir_all(lab.host.join("var/lib/ncp-bootstrap")).unwrap();
    for f in [
        "etc/cni/net.d/10-nsx.conflist",
        "etc/cni/net.d/99-loopback.conf",
        "opt/cni/bin/nsx",
        "opt/cni/bin/loopback",
    ] {
        write(&lab.host.join(f), b"x", 0o644);
    }
    write(&lab.host.join("etc/cni/net.d/20-other.conf"), b"{}", 0o644);
    write(&lab.host.join("etc/os-release"), b"ID=ubuntu\n", 0o644);
    let dry = lab.tool(&["--dry-run", "cleanup", "--legacy"], &[]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    for p in [
        "remove /etc/cni/net.d/10-nsx.conflist",
        "remove /etc/cni/net.d/99-loopback.conf",
        "remove /opt/cni/bin/nsx",
        "from the bridge back to node-if",
    ] {
        assert!(dry.stdout.contains(p), "the plan lacks {p}: {}", dry.stdout);
    }
    assert!(
        lab.host.join("opt/cni/bin/nsx").exists(),
        "dry run deleted something"
    );
    let r = lab.tool(&["cleanup", "--legacy"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!lab.host.join("opt/cni/bin/nsx").exists());
    assert!(!lab.host.join("etc/cni/net.d/10-nsx.conflist").exists());
    assert!(
        lab.host.join("opt/cni/bin/loopback").exists(),
        "the loopback plugin stays on Ubuntu"
    );
    assert!(
        lab.host.join("etc/cni/net.d/20-other.conf").exists(),
        "another CNI's conf stays"
    );
    assert!(
        lab.state().contains("addr eth1 10.0.0.5/24"),
        "{}",
        lab.state()
    );
}
