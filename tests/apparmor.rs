//! The AppArmor step. The shipped profile is checked with the real `apparmor_parser` (compile
//! only: this machine's kernel has no AppArmor). Loading needs a kernel with AppArmor, so the
//! load/unload tests put `tests/fakes/apparmor_parser` first on PATH: it compiles with the real
//! parser and stands in only for the kernel's profile list. The real load in enforce mode is
//! covered by the VM harness (`make vm-test`).

mod common;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROFILE: &str = "distro/ubuntu/apparmor/ncp-apparmor";
const REAL: &str = "/usr/sbin/apparmor_parser";

fn real_parser() -> bool {
    if Path::new(REAL).exists() {
        return true;
    }
    skip("apparmor_parser (package apparmor) not installed");
    false
}

fn rules(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn shipped_profile_compiles_and_defines_exactly_node_agent_apparmor() {
    if !real_parser() {
        return;
    }
    let file = Path::new(REPO).join(PROFILE);
    let out = Command::new(REAL)
        .args(["-Q", "-K"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(REAL).arg("-N").arg(&file).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "node-agent-apparmor"
    );
    let rules = rules(&fs::read_to_string(&file).unwrap());
    assert!(
        !rules.iter().any(|r| r.starts_with("deny mount")),
        "deny mount must be gone"
    );
    assert!(
        rules.iter().any(|r| r == "mount,"),
        "a mount rule must be present"
    );
    for kind in ["network", "capability", "file,", "umount"] {
        assert!(rules.iter().any(|r| r.starts_with(kind)), "no {kind} rule");
    }
}

struct Host {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    bundle: PathBuf,
    fakes: PathBuf,
    log: PathBuf,
}

/// A host root that looks like Ubuntu with AppArmor enabled (the securityfs is a plain file).
fn ubuntu() -> Host {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("host");
    write(
        &root.join("sys/module/apparmor/parameters/enabled"),
        b"Y\n",
        0o644,
    );
    write(
        &root.join("sys/kernel/security/apparmor/profiles"),
        b"docker-default (enforce)\n",
        0o644,
    );
    fs::create_dir_all(root.join("etc/apparmor.d")).unwrap();
    let bundle = bundle(tmp.path(), "4.1.0");
    let fakes = Path::new(REPO).join("tests/fakes");
    let log = tmp.path().join("parser.log");
    Host {
        _tmp: tmp,
        root,
        bundle,
        fakes,
        log,
    }
}

fn aa(h: &Host, args: &[&str], env: &[(&str, &str)]) -> Run {
    let path = format!(
        "{}:{}",
        h.fakes.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut e: Vec<(&str, &str)> = vec![("PATH", &path), ("FAKE_AA_LOG", h.log.to_str().unwrap())];
    e.extend_from_slice(env);
    let (r, b) = (h.root.to_str().unwrap(), h.bundle.to_str().unwrap());
    let mut a = vec!["--host-root", r];
    a.extend_from_slice(args);
    if !args.contains(&"cleanup") && !args.contains(&"status") {
        a.extend_from_slice(&["--bundle", b]);
    }
    run_env(&a, &e)
}

fn profiles(h: &Host) -> String {
    fs::read_to_string(h.root.join("sys/kernel/security/apparmor/profiles")).unwrap()
}

#[test]
fn load_verify_rerun_status_and_cleanup() {
    if !real_parser() {
        return;
    }
    let h = ubuntu();
    let before = snapshot(&h.root, false);
    let r = aa(&h, &["apparmor"], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        fs::read(h.root.join("etc/apparmor.d/ncp-apparmor")).unwrap(),
        fs::read(Path::new(REPO).join(PROFILE)).unwrap()
    );
    assert!(profiles(&h).contains("node-agent-apparmor (enforce)"));
    let log = fs::read_to_string(&h.log).unwrap();
    let load = log
        .lines()
        .find(|l| l.starts_with("-K") && l.contains(" -r "))
        .expect("a load call");
    let base = h.root.join("etc/apparmor.d").display().to_string();
    assert!(
        load.contains(&format!("--base {base} -I {base}")),
        "host paths not passed: {load}"
    );
    assert!(
        load.contains(&format!(
            "-f {}",
            h.root.join("sys/kernel/security/apparmor").display()
        )),
        "{load}"
    );
    assert!(load.ends_with(&format!("{base}/ncp-apparmor")), "{load}");

    // Converged: no parser call at all, nothing written.
    let calls = log.lines().count();
    let snap = snapshot(&h.root, true);
    let r = aa(&h, &["apparmor"], &[]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("converged"), "{}", r.stdout);
    assert_eq!(fs::read_to_string(&h.log).unwrap().lines().count(), calls);
    assert_eq!(snapshot(&h.root, true), snap);

    let s = aa(&h, &["status"], &[]);
    assert!(
        s.stdout
            .contains("profile node-agent-apparmor: loaded (enforce)"),
        "{}",
        s.stdout
    );
    assert!(s.stdout.contains(
        "container.apparmor.security.beta.kubernetes.io/<container>: localhost/node-agent-apparmor"
    ));
    assert!(s.stdout.contains(
        "securityContext.appArmorProfile: {type: Localhost, localhostProfile: node-agent-apparmor}"
    ));

    let c = aa(&h, &["cleanup"], &[]);
    assert_eq!(c.code, 0, "{}{}", c.stdout, c.stderr);
    assert!(!profiles(&h).contains("node-agent-apparmor"));
    assert_eq!(
        snapshot(&h.root, false),
        before,
        "cleanup left the host different"
    );
}

#[test]
fn a_changed_profile_is_replaced_and_reloaded() {
    if !real_parser() {
        return;
    }
    let h = ubuntu();
    assert_eq!(aa(&h, &["apparmor"], &[]).code, 0);
    let p = h.bundle.join("etc/apparmor.d/ncp-apparmor");
    let mut text = fs::read_to_string(&p).unwrap();
    text.push_str("# a newer release\n");
    fs::write(&p, &text).unwrap();
    let r = aa(&h, &["apparmor"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("replace /etc/apparmor.d/ncp-apparmor"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("load /etc/apparmor.d/ncp-apparmor"),
        "{}",
        r.stdout
    );
    assert_eq!(
        fs::read_to_string(h.root.join("etc/apparmor.d/ncp-apparmor")).unwrap(),
        text
    );
    let loads = fs::read_to_string(&h.log)
        .unwrap()
        .lines()
        .filter(|l| l.contains(" -r "))
        .count();
    assert_eq!(loads, 2);
}

#[test]
fn another_profile_name_works_end_to_end() {
    if !real_parser() {
        return;
    }
    let h = ubuntu();
    let p = h.bundle.join("etc/apparmor.d/ncp-apparmor");
    let text = fs::read_to_string(&p)
        .unwrap()
        .replace("node-agent-apparmor", "site-agent");
    fs::write(&p, text).unwrap();
    // The config still names the default: a clear error, nothing changed.
    let before = snapshot(&h.root, true);
    let r = aa(&h, &["apparmor"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("site-agent") && r.stderr.contains("node-agent-apparmor"),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot(&h.root, true), before);
    let env = [("NCP_BOOTSTRAP_APPARMOR_PROFILE", "site-agent")];
    let r = aa(&h, &["apparmor"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(profiles(&h).contains("site-agent (enforce)"));
    let s = aa(&h, &["status"], &env);
    assert!(s.stdout.contains("localhost/site-agent"), "{}", s.stdout);
    assert_eq!(aa(&h, &["cleanup"], &env).code, 0);
    assert!(!profiles(&h).contains("site-agent"));
}

#[test]
fn auto_skips_hosts_without_apparmor_before_reading_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("host");
    fs::create_dir_all(root.join("etc")).unwrap();
    let before = snapshot(&root, true);
    let r = run(&[
        "--host-root",
        root.to_str().unwrap(),
        "apparmor",
        "--bundle",
        "/nonexistent/bundle",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("skipped"), "{}", r.stdout);
    assert!(r.stdout.contains("AppArmor is not enabled"), "{}", r.stdout);
    assert_eq!(snapshot(&root, true), before);
}

#[test]
fn preconditions_exit_2_name_what_is_missing_and_change_nothing() {
    // required, but no AppArmor on the host
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("host");
    fs::create_dir_all(root.join("etc")).unwrap();
    let r = run_env(
        &["--host-root", root.to_str().unwrap(), "apparmor"],
        &[("NCP_BOOTSTRAP_APPARMOR_MODE", "required")],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("cat /sys/module/apparmor/parameters/enabled"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("privileged: true"), "{}", r.stderr);

    // enabled, but /etc/apparmor.d is missing
    let h = ubuntu();
    fs::remove_dir(h.root.join("etc/apparmor.d")).unwrap();
    let before = snapshot(&h.root, true);
    let r = aa(&h, &["apparmor"], &[]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("/etc/apparmor.d does not exist"),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot(&h.root, true), before);

    // enabled, but apparmor_parser is not on PATH
    let h = ubuntu();
    let before = snapshot(&h.root, true);
    let (r0, b) = (h.root.to_str().unwrap(), h.bundle.to_str().unwrap());
    let r = run_env(
        &["--host-root", r0, "apparmor", "--bundle", b],
        &[("PATH", "/nonexistent")],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("`apparmor_parser` not found"),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot(&h.root, true), before);
}

#[test]
fn a_profile_that_does_not_compile_is_refused() {
    if !real_parser() {
        return;
    }
    let h = ubuntu();
    fs::write(
        h.bundle.join("etc/apparmor.d/ncp-apparmor"),
        "profile node-agent-apparmor {\n  frobnicate,\n}\n",
    )
    .unwrap();
    let before = snapshot(&h.root, true);
    let r = aa(&h, &["apparmor"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("ncp-apparmor"), "{}", r.stderr);
    assert_eq!(snapshot(&h.root, true), before);
}

#[test]
fn install_checks_every_step_before_the_first_acts() {
    if !real_parser() {
        return;
    }
    let h = ubuntu();
    fs::write(
        h.bundle.join("etc/apparmor.d/ncp-apparmor"),
        "profile x {\n",
    )
    .unwrap();
    let before = snapshot(&h.root, true);
    let r = aa(&h, &["install"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("step apparmor"), "{}", r.stderr);
    assert_eq!(
        snapshot(&h.root, true),
        before,
        "the CNI step ran although AppArmor's input was bad"
    );
    fs::copy(
        Path::new(REPO).join(PROFILE),
        h.bundle.join("etc/apparmor.d/ncp-apparmor"),
    )
    .unwrap();
    let r = aa(&h, &["install", "--output", "json"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["steps"][0]["name"], "host-ovs");
    assert_eq!(
        j["steps"][0]["status"], "converged",
        "no OVS runs in this host root"
    );
    assert_eq!(j["steps"][1]["name"], "kmod");
    assert_eq!(
        j["steps"][1]["status"], "skipped",
        "ovs.nsx_kernel_module is off"
    );
    assert_eq!(j["steps"][2]["name"], "cni");
    assert_eq!(j["steps"][3]["name"], "apparmor");
    assert_eq!(j["steps"][3]["status"], "changed");
}
