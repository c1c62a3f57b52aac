//! What an operator meets: rollback through configuration, status verdicts, help, logs, and
//! exit codes that automation can read.

mod common;
use common::*;
use std::fs;
use std::path::PathBuf;

struct Node {
    _tmp: tempfile::TempDir,
    host: PathBuf,
    bundle: PathBuf,
}

fn node(version: &str) -> Node {
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    fs::create_dir_all(host.join("etc")).unwrap();
    let bundle = bundle(tmp.path(), version);
    Node {
        _tmp: tmp,
        host,
        bundle,
    }
}

fn at(n: &Node, args: &[&str], env: &[(&str, &str)]) -> Run {
    let h = n.host.display().to_string();
    let mut a = vec!["--host-root", h.as_str()];
    a.extend_from_slice(args);
    run_env(&a, env)
}

fn b(n: &Node) -> String {
    n.bundle.display().to_string()
}

/// A rollback through the DaemonSet: the older bundle is refused, status says so as drift,
/// and `cni.force` (env) rolls back without editing the container's command.
#[test]
fn a_refused_downgrade_is_drift_and_cni_force_rolls_back() {
    let n = node("4.1.2");
    assert_eq!(at(&n, &["install", "--bundle", &b(&n)], &[]).code, 0);
    let old = bundle(&n._tmp.path().join("old"), "4.1.0");
    let old = old.to_str().unwrap();
    let r = at(&n, &["install", "--bundle", old], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("NCP_BOOTSTRAP_CNI_FORCE"), "{}", r.stdout);
    let s = at(&n, &["status", "--bundle", old, "--output", "json"], &[]);
    assert_eq!(s.code, 1, "{}", s.stdout);
    let j: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(j["details"]["node"], "drift");
    assert!(
        j["details"]["drift"]
            .to_string()
            .contains("not downgrading"),
        "{j}"
    );

    let force = [("NCP_BOOTSTRAP_CNI_FORCE", "true")];
    let r = at(&n, &["install", "--bundle", old], &force);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let conflist = fs::read_to_string(n.host.join("etc/cni/net.d/10-nsx.conflist")).unwrap();
    assert!(conflist.contains("\"4.1.0\""), "{conflist}");
    assert_eq!(at(&n, &["status", "--bundle", old], &force).code, 0);
    let r = at(&n, &["config", "show"], &force);
    assert!(
        r.stdout
            .contains("cni.force = true    # env NCP_BOOTSTRAP_CNI_FORCE"),
        "{}",
        r.stdout
    );
}

/// Another CNI's config that sorts first is named: a warning at install, drift in status.
#[test]
fn another_cni_config_that_sorts_first_is_named_and_left_alone() {
    let n = node("4.1.0");
    let calico = n.host.join("etc/cni/net.d/05-calico.conflist");
    write(&calico, b"{\"name\":\"k8s-pod-network\"}", 0o644);
    let r = at(&n, &["install", "--bundle", &b(&n)], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("warning: /etc/cni/net.d/05-calico.conflist sorts before"),
        "{}",
        r.stdout
    );
    let s = at(&n, &["status", "--bundle", &b(&n)], &[]);
    assert_eq!(s.code, 1);
    assert!(
        s.stdout
            .contains("drift: /etc/cni/net.d/05-calico.conflist"),
        "{}",
        s.stdout
    );
    assert!(calico.exists(), "not ours: left in place");
    // One that sorts after ours is no concern.
    fs::rename(&calico, n.host.join("etc/cni/net.d/20-calico.conflist")).unwrap();
    assert_eq!(at(&n, &["status", "--bundle", &b(&n)], &[]).code, 0);
}

/// After cleanup (or before install) nothing is drift: the node is "not installed", exit 0,
/// even with a bundle that cannot be used (said as what stops the next install). On an
/// installed node an unusable bundle is drift. Not ready is exit 1: the node is not usable.
#[test]
fn status_tells_not_installed_from_drift_and_an_unusable_bundle() {
    let n = node("4.1.0");
    let s = at(&n, &["status", "--bundle", &b(&n)], &[]);
    assert_eq!(s.code, 0, "{}", s.stdout);
    assert!(s.stdout.contains("node: not installed"), "{}", s.stdout);
    assert_eq!(at(&n, &["install", "--bundle", &b(&n)], &[]).code, 0);
    assert!(at(&n, &["status", "--bundle", &b(&n)], &[])
        .stdout
        .contains("node: ready"));
    assert_eq!(at(&n, &["cleanup"], &[]).code, 0);
    let s = at(&n, &["status", "--bundle", &b(&n)], &[]);
    assert_eq!(s.code, 0, "{}", s.stdout);
    assert!(s.stdout.contains("node: not installed"), "{}", s.stdout);

    let s = at(&n, &["status", "--bundle", "/nonexistent/bundle"], &[]);
    assert_eq!(s.code, 0, "{}", s.stdout);
    assert!(s.stdout.contains("node: not installed"), "{}", s.stdout);
    assert!(
        s.stdout
            .contains("install would fail: the bundle is unusable"),
        "{}",
        s.stdout
    );

    // Installed with an uplink configured, but no containerized OVS: not ready, said so.
    assert_eq!(at(&n, &["install", "--bundle", &b(&n)], &[]).code, 0);
    let s = at(&n, &["status", "--bundle", "/nonexistent/bundle"], &[]);
    assert_eq!(s.code, 1, "{}", s.stdout);
    assert!(
        s.stdout.contains("drift: the bundle is unusable"),
        "{}",
        s.stdout
    );
    let env = [("NCP_BOOTSTRAP_NODE_UPLINK", "eth1")];
    let s = at(&n, &["status", "--bundle", &b(&n)], &env);
    assert_eq!(s.code, 1, "{}", s.stdout);
    assert!(s.stdout.contains("node: not ready"), "{}", s.stdout);
    assert!(
        s.stdout
            .contains("not ready: the containerized OVS is not running"),
        "{}",
        s.stdout
    );
}

/// `--detailed-exit-codes`: 4 when something changed, 0 when converged; without it, 0.
#[test]
fn detailed_exit_codes_tell_changed_from_converged() {
    let n = node("4.1.0");
    let d = "--detailed-exit-codes";
    assert_eq!(
        at(&n, &[d, "install", "--bundle", &b(&n), "--dry-run"], &[]).code,
        0
    );
    assert_eq!(at(&n, &[d, "install", "--bundle", &b(&n)], &[]).code, 4);
    assert_eq!(at(&n, &["install", "--bundle", &b(&n), d], &[]).code, 0);
    assert_eq!(at(&n, &["cleanup", d], &[]).code, 4);
    assert_eq!(at(&n, &["cleanup", d], &[]).code, 0);
    assert_eq!(at(&n, &["install", "--bundle", &b(&n)], &[]).code, 0);
    // Errors keep their codes.
    assert_eq!(at(&n, &[d, "cni", "--bundle", "/nonexistent"], &[]).code, 2);
}

/// A config file that overrides ncp.ini is named, and cleanup says it leaves it.
#[test]
fn a_config_file_that_disagrees_with_ncp_ini_is_named() {
    let n = node("4.1.0");
    let ini = n._tmp.path().join("ncp.ini");
    fs::write(&ini, "[nsx_kube_proxy]\novs_uplink_port = ens192\n").unwrap();
    let ini = ini.to_str().unwrap();
    let r = at(
        &n,
        &["--ncp-ini", ini, "config", "set", "node.uplink", "eth1"],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = at(&n, &["--ncp-ini", ini, "config", "show"], &[]);
    assert!(
        r.stdout.contains("warning: node.uplink: config file")
            && r.stdout.contains("says eth1, ncp.ini")
            && r.stdout.contains("says ens192"),
        "{}",
        r.stdout
    );
    let r = at(&n, &["cleanup"], &[]);
    assert!(
        r.stdout.contains("left /etc/ncp-bootstrap/config.toml"),
        "{}",
        r.stdout
    );
}

/// Every change and warning is printed once in a log (stderr not a TTY): in the report.
/// `-v` adds the plan; a run starts with one line naming version, host root and sources.
#[test]
fn logs_print_each_change_once_and_v_adds_detail() {
    let n = node("4.1.0");
    write(&n.host.join("etc/cni/net.d/05-other.conf"), b"{}", 0o644);
    let r = at(&n, &["install", "--bundle", &b(&n)], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    for once in [
        "install /opt/cni/bin/nsx (mode 0755)",
        "05-other.conf sorts before",
    ] {
        assert_eq!(all.matches(once).count(), 1, "{once}:\n{all}");
    }
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("ncp-bootstrap 0.1.0 install: host root") && first.contains("flags"),
        "{first}"
    );
    let v = at(&n, &["cleanup", "--dry-run", "-v"], &[]);
    assert!(
        v.stderr
            .contains("cleanup: planned: remove /opt/cni/bin/nsx"),
        "{}",
        v.stderr
    );
    assert!(
        v.stdout.contains("[plan] remove /opt/cni/bin/nsx"),
        "{}",
        v.stdout
    );
    let q = at(&n, &["cleanup", "--dry-run"], &[]);
    assert!(
        !q.stderr.contains("remove /opt/cni/bin/nsx"),
        "{}",
        q.stderr
    );
    let n2 = node("4.1.0");
    let v = at(&n2, &["install", "--bundle", &b(&n2), "-v"], &[]);
    assert!(
        v.stderr.contains("cni: planned: install /opt/cni/bin/nsx"),
        "{}",
        v.stderr
    );
    assert!(!r.stderr.contains("Error:") && !v.stderr.contains("Error:"));
}

/// Help: global options under their own heading; options that mean nothing for a command are
/// not offered on it; config set lists the keys; exit codes on top.
#[test]
fn help_offers_only_what_a_command_uses() {
    let top = run(&["--help"]);
    assert!(
        top.stdout.contains("Exit codes:")
            && top.stdout.contains("  4  with --detailed-exit-codes")
    );
    for (cmd, absent) in [
        (vec!["status", "--help"], vec!["--force", "--dry-run"]),
        (vec!["apparmor", "--help"], vec!["--force"]),
        (vec!["config", "show", "--help"], vec!["--dry-run"]),
        (vec!["ovs", "health", "--help"], vec!["--dry-run"]),
    ] {
        let h = run(&cmd);
        assert_eq!(h.code, 0);
        assert!(h.stdout.contains("Global options"), "{cmd:?}");
        assert!(h.stdout.contains("Example"), "{cmd:?}: {}", h.stdout);
        for a in absent {
            assert!(!h.stdout.contains(a), "{cmd:?} offers {a}:\n{}", h.stdout);
        }
    }
    let i = run(&["install", "--help"]);
    for want in [
        "--force",
        "--dry-run",
        "NCP_BOOTSTRAP_CNI_FORCE",
        "NCP_BOOTSTRAP_CNI_BUNDLE",
    ] {
        assert!(i.stdout.contains(want), "install --help lacks {want}");
    }
    let s = run(&["config", "set", "--help"]);
    assert!(s.stdout.contains("probe.timeout_ms") && s.stdout.contains("cni.force"));
    // `--dry-run` is refused where it means nothing.
    assert_eq!(run(&["status", "--dry-run"]).code, 2);
}

fn install_host(args: &[&str]) -> Run {
    let out = std::process::Command::new("bash")
        .arg(format!("{REPO}/scripts/install-host.sh"))
        .args(args)
        .env("NCP_BIN", BIN)
        .env_remove("DESTDIR")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `make install-host` takes the bundle from the NCP release, lists everything missing at
/// once, refuses the placeholder conflist, puts units where packages do; uninstall undoes it.
#[test]
fn install_host_needs_a_real_bundle_and_uninstall_removes_it_all() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let d = dest.to_str().unwrap();
    let r = install_host(&["install", "", d, "/usr"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("NCP_BUNDLE"), "{}", r.stderr);

    let b = bundle(tmp.path(), "4.1.0");
    fs::remove_file(b.join("opt/cni/bin/nsx")).unwrap();
    fs::remove_file(b.join("opt/cni/bin/loopback")).unwrap();
    let bs = b.to_str().unwrap();
    let r = install_host(&["install", bs, d, "/usr"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("opt/cni/bin/nsx") && r.stderr.contains("opt/cni/bin/loopback"),
        "one message for all that is missing: {}",
        r.stderr
    );
    let b = bundle(&tmp.path().join("placeholder"), "4.1.0");
    fs::copy(
        format!("{REPO}/distro/cni/10-nsx.conflist"),
        b.join("etc/cni/net.d/10-nsx.conflist"),
    )
    .unwrap();
    let r = install_host(&["install", b.to_str().unwrap(), d, "/usr"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("placeholder"), "{}", r.stderr);
    assert!(!dest.exists(), "nothing installed on refusal");

    let b = bundle(&tmp.path().join("release"), "4.1.0");
    let r = install_host(&["install", b.to_str().unwrap(), d, "/usr"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for f in [
        "usr/bin/ncp-bootstrap",
        "usr/share/ncp-bootstrap/bundle/opt/cni/bin/nsx",
        "usr/share/ncp-bootstrap/bundle/etc/cni/net.d/10-nsx.conflist",
        "usr/share/ncp-bootstrap/bundle/etc/apparmor.d/ncp-apparmor",
        "usr/lib/systemd/system/ncp-bootstrap.service",
        "usr/lib/systemd/system/ncp-bootstrap-cleanup.service",
    ] {
        assert!(dest.join(f).is_file(), "{f} not installed");
    }
    let r = install_host(&["uninstall", "", d, "/usr"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let left: Vec<_> = snapshot(&dest, false)
        .into_iter()
        .filter(|(_, v)| !v.starts_with("mode=40"))
        .collect();
    assert!(left.is_empty(), "uninstall left {left:?}");
}

/// A step that fails after an earlier one changed the host: exit 3, and the JSON report keeps
/// both the earlier step's changes and the failed step's partial report.
#[test]
fn a_late_failure_keeps_every_step_report_in_the_json() {
    if !have("apparmor_parser") {
        skip("apparmor_parser (apparmor) not installed");
        return;
    }
    let n = node("4.1.0");
    write(
        &n.host.join("sys/module/apparmor/parameters/enabled"),
        b"Y\n",
        0o644,
    );
    write(
        &n.host.join("sys/kernel/security/apparmor/profiles"),
        b"",
        0o644,
    );
    fs::create_dir_all(n.host.join("etc/apparmor.d")).unwrap();
    // The real parser compiles (-Q, -N); the load (-r) fails as a kernel that refuses would.
    let bin = n._tmp.path().join("bin");
    write(
        &bin.join("apparmor_parser"),
        b"#!/bin/sh\nfor a; do [ \"$a\" = -r ] && { echo 'kernel refused' >&2; exit 1; }; done\nexec /usr/sbin/apparmor_parser \"$@\"\n",
        0o755,
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let r = at(
        &n,
        &["--output", "json", "install", "--bundle", &b(&n)],
        &[("PATH", &path)],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let steps = j["steps"].as_array().unwrap();
    let status = |name: &str| {
        steps
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["status"].clone())
    };
    assert_eq!(status("cni"), Some("changed".into()), "{j:#}");
    assert_eq!(status("apparmor"), Some("failed".into()), "{j:#}");
    let error = j["error"].as_str().unwrap();
    assert!(
        error.contains("earlier steps changed the host") && error.contains("kernel refused"),
        "{error}"
    );
}
