//! The CNI step against temporary host roots, with the built binary.

mod common;
use common::*;
use std::fs;
use std::path::Path;

struct Fixture {
    _tmp: tempfile::TempDir,
    host: std::path::PathBuf,
    bundle: std::path::PathBuf,
}

fn fixture(version: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    fs::create_dir_all(host.join("etc")).unwrap();
    let bundle = bundle(tmp.path(), version);
    Fixture {
        _tmp: tmp,
        host,
        bundle,
    }
}

fn cni(f: &Fixture, rest: &[&str]) -> Run {
    with_bundle("cni", &f.host, &f.bundle, rest)
}

fn read(host: &Path, p: &str) -> String {
    fs::read_to_string(host.join(p)).unwrap()
}

fn mode(host: &Path, p: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(host.join(p)).unwrap().permissions().mode() & 0o7777
}

#[test]
fn fresh_install_writes_every_file_with_its_mode() {
    let f = fixture("4.1.0.22016640");
    let r = cni(&f, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for (p, m) in [
        ("opt/cni/bin/nsx", 0o755),
        ("opt/cni/bin/loopback", 0o755),
        ("etc/cni/net.d/10-nsx.conflist", 0o644),
        ("etc/cni/net.d/99-loopback.conf", 0o644),
    ] {
        assert_eq!(mode(&f.host, p), m, "{p}");
        assert_eq!(
            fs::read(f.host.join(p)).unwrap(),
            fs::read(f.bundle.join(p)).unwrap(),
            "{p}"
        );
    }
    let ledger: serde_json::Value =
        serde_json::from_str(&read(&f.host, "var/lib/ncp-bootstrap/ledger.json")).unwrap();
    let kinds: Vec<&str> = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "file").count(), 4);
    assert!(kinds.contains(&"dir_created"));
    // Binaries are recorded (and so written) before configs.
    let files: Vec<&str> = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "file")
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "/opt/cni/bin/nsx",
            "/opt/cni/bin/loopback",
            "/etc/cni/net.d/10-nsx.conflist",
            "/etc/cni/net.d/99-loopback.conf"
        ]
    );
}

#[test]
fn converged_rerun_writes_nothing() {
    let f = fixture("4.1.0");
    assert_eq!(cni(&f, &[]).code, 0);
    let before = snapshot(&f.host, true);
    let r = cni(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("converged"), "{}", r.stdout);
    assert_eq!(
        snapshot(&f.host, true),
        before,
        "a converged re-run changed the host"
    );
    let s = with_bundle("status", &f.host, &f.bundle, &[]);
    assert_eq!(s.code, 0, "{}", s.stdout);
}

#[test]
fn equal_version_on_a_foreign_host_is_a_noop_that_creates_nothing() {
    let f = fixture("4.1.0");
    write(&f.host.join("opt/cni/bin/nsx"), b"vendor", 0o755);
    write(&f.host.join("opt/cni/bin/loopback"), b"lo", 0o755);
    write(
        &f.host.join("etc/cni/net.d/10-nsx.conflist"),
        conflist("4.1.0.0").as_bytes(),
        0o644,
    );
    write(&f.host.join("etc/cni/net.d/99-loopback.conf"), b"{}", 0o644);
    let before = snapshot(&f.host, true);
    let r = cni(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(snapshot(&f.host, true), before);
    assert!(!f.host.join("var/lib/ncp-bootstrap").exists());
}

#[test]
fn older_host_is_replaced_with_a_backup_and_cleanup_restores_it() {
    let f = fixture("4.1.0.22016640");
    let old = conflist("3.2.1.0.18562871");
    write(
        &f.host.join("etc/cni/net.d/10-nsx.conflist"),
        old.as_bytes(),
        0o640,
    );
    write(&f.host.join("opt/cni/bin/nsx"), b"old plugin", 0o700);
    let before = snapshot(&f.host, false);
    let r = cni(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("older than the bundle"), "{}", r.stdout);
    assert_eq!(
        read(&f.host, "etc/cni/net.d/10-nsx.conflist"),
        conflist("4.1.0.22016640")
    );
    assert_eq!(
        read(
            &f.host,
            "var/lib/ncp-bootstrap/backup/etc/cni/net.d/10-nsx.conflist"
        ),
        old
    );
    assert_eq!(
        read(&f.host, "var/lib/ncp-bootstrap/backup/opt/cni/bin/nsx"),
        "old plugin"
    );
    let c = run(&["--host-root", f.host.to_str().unwrap(), "cleanup"]);
    assert_eq!(c.code, 0, "{}{}", c.stdout, c.stderr);
    assert_eq!(
        snapshot(&f.host, false),
        before,
        "cleanup did not restore the host exactly"
    );
}

/// The host's original comes back with its owner and group, not only its bytes and mode.
#[test]
fn cleanup_restores_the_owner_of_a_replaced_file() {
    use std::os::unix::fs::MetadataExt;
    let f = fixture("4.1.0.22016640");
    let p = f.host.join("etc/cni/net.d/10-nsx.conflist");
    write(&p, conflist("3.2.1.0.18562871").as_bytes(), 0o640);
    std::os::unix::fs::chown(&p, Some(1234), Some(2345)).unwrap();
    assert_eq!(cni(&f, &[]).code, 0);
    let c = run(&["--host-root", f.host.to_str().unwrap(), "cleanup"]);
    assert_eq!(c.code, 0, "{}{}", c.stdout, c.stderr);
    let m = fs::metadata(&p).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 2345));
    assert_eq!(mode(&f.host, "etc/cni/net.d/10-nsx.conflist"), 0o640);
    assert_eq!(
        read(&f.host, "etc/cni/net.d/10-nsx.conflist"),
        conflist("3.2.1.0.18562871")
    );
}

/// A cleanup that keeps an operator-edited file keeps the host's original in its backup; the
/// next install must not overwrite that backup: its own goes beside it, and its cleanup
/// restores what that install replaced, leaving the first original where the first cleanup
/// said it stays.
#[test]
fn a_backup_a_cleanup_kept_is_never_overwritten() {
    let f = fixture("4.1.0.22016640");
    let conf = "etc/cni/net.d/10-nsx.conflist";
    let backup = "var/lib/ncp-bootstrap/backup/etc/cni/net.d/10-nsx.conflist";
    let original = conflist("3.2.1.0.18562871");
    write(&f.host.join(conf), original.as_bytes(), 0o644);
    assert_eq!(cni(&f, &[]).code, 0);
    // The operator edits ours (an older version string, as a hand rollback would).
    let edited = conflist("4.0.0.1").replace("\"name\":\"nsx\"", "\"name\":\"nsx-edited\"");
    write(&f.host.join(conf), edited.as_bytes(), 0o644);
    let host = f.host.to_str().unwrap();
    let c = run(&["--host-root", host, "cleanup"]);
    assert_eq!(c.code, 0, "{}{}", c.stdout, c.stderr);
    assert!(
        c.stdout.contains("keep /etc/cni/net.d/10-nsx.conflist"),
        "{}",
        c.stdout
    );
    assert_eq!(read(&f.host, backup), original);
    // The next install replaces the edited file: the kept original stays as it is.
    assert_eq!(cni(&f, &[]).code, 0);
    assert_eq!(
        read(&f.host, backup),
        original,
        "the kept backup was overwritten"
    );
    assert_eq!(read(&f.host, &format!("{backup}.1")), edited);
    let c = run(&["--host-root", host, "cleanup"]);
    assert_eq!(c.code, 0, "{}{}", c.stdout, c.stderr);
    assert_eq!(read(&f.host, conf), edited);
    assert_eq!(read(&f.host, backup), original);
    assert!(!f.host.join(format!("{backup}.1")).exists());
}

/// A target directory that is a symlink to nothing (`/etc/cni/net.d -> /data/cni/net.d`, /data
/// not mounted): refused in the plan, exit 2, nothing written (not exit 3 half way).
#[test]
fn a_dangling_link_on_a_target_directory_is_refused_before_anything_changes() {
    let f = fixture("4.1.0.22016640");
    fs::create_dir_all(f.host.join("etc/cni")).unwrap();
    std::os::unix::fs::symlink("/data/cni/net.d", f.host.join("etc/cni/net.d")).unwrap();
    let before = snapshot(&f.host, true);
    let r = cni(&f, &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("/etc/cni/net.d is a symlink to /data/cni/net.d, which does not exist"),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot(&f.host, true), before);
    assert!(!f.host.join("opt").exists() && !f.host.join("var").exists());
}

/// A state directory the operator moved elsewhere (`/var/lib/ncp-bootstrap` a symlink to a
/// directory of theirs): cleanup empties it of ours and leaves the directory and the link.
#[test]
fn a_symlinked_state_directory_is_emptied_not_removed() {
    let f = fixture("4.1.0.22016640");
    fs::create_dir_all(f.host.join("srv/ncp-state")).unwrap();
    fs::create_dir_all(f.host.join("var/lib")).unwrap();
    std::os::unix::fs::symlink("/srv/ncp-state", f.host.join("var/lib/ncp-bootstrap")).unwrap();
    assert_eq!(cni(&f, &[]).code, 0);
    assert!(f.host.join("srv/ncp-state/ledger.json").is_file());
    let c = run(&["--host-root", f.host.to_str().unwrap(), "cleanup"]);
    assert_eq!(c.code, 0, "{}{}", c.stdout, c.stderr);
    assert!(
        f.host.join("srv/ncp-state").is_dir(),
        "the operator's directory was removed"
    );
    assert_eq!(
        fs::read_dir(f.host.join("srv/ncp-state")).unwrap().count(),
        0
    );
    assert!(fs::symlink_metadata(f.host.join("var/lib/ncp-bootstrap"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn newer_host_is_kept_unless_forced() {
    let f = fixture("4.1.0");
    let newer = conflist("4.2");
    write(
        &f.host.join("etc/cni/net.d/10-nsx.conflist"),
        newer.as_bytes(),
        0o644,
    );
    write(&f.host.join("opt/cni/bin/nsx"), b"newer", 0o755);
    let r = cni(&f, &[]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("not downgrading"), "{}", r.stdout);
    assert_eq!(read(&f.host, "etc/cni/net.d/10-nsx.conflist"), newer);
    let r = cni(&f, &["--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        read(&f.host, "etc/cni/net.d/10-nsx.conflist"),
        conflist("4.1.0")
    );
}

#[test]
fn unusable_host_conflist_is_backed_up_and_replaced() {
    for (case, bytes) in [
        ("corrupt", "{ not json".to_string()),
        (
            "no version",
            "{\"cniVersion\":\"0.4.0\",\"plugins\":[{\"type\":\"nsx\"}]}".to_string(),
        ),
        ("odd version", conflist("4.1.O.1")),
    ] {
        let f = fixture("4.1.0");
        write(
            &f.host.join("etc/cni/net.d/10-nsx.conflist"),
            bytes.as_bytes(),
            0o644,
        );
        let r = cni(&f, &[]);
        assert_eq!(r.code, 0, "{case}: {}", r.stderr);
        assert!(
            r.stdout.contains("backed up and replaced"),
            "{case}: {}",
            r.stdout
        );
        assert_eq!(
            read(&f.host, "etc/cni/net.d/10-nsx.conflist"),
            conflist("4.1.0"),
            "{case}"
        );
        assert_eq!(
            read(
                &f.host,
                "var/lib/ncp-bootstrap/backup/etc/cni/net.d/10-nsx.conflist"
            ),
            bytes,
            "{case}"
        );
    }
}

#[test]
fn existing_loopback_files_are_never_overwritten() {
    let f = fixture("4.1.0");
    let custom = b"{ \"cniVersion\": \"1.0.0\", \"name\": \"mine\", \"type\": \"loopback\" }\n";
    write(
        &f.host.join("etc/cni/net.d/99-loopback.conf"),
        custom,
        0o600,
    );
    write(&f.host.join("opt/cni/bin/loopback"), b"my loopback", 0o750);
    let r = cni(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        fs::read(f.host.join("etc/cni/net.d/99-loopback.conf")).unwrap(),
        custom
    );
    assert_eq!(mode(&f.host, "etc/cni/net.d/99-loopback.conf"), 0o600);
    assert_eq!(read(&f.host, "opt/cni/bin/loopback"), "my loopback");
    // Cleanup removes only what we created.
    let c = run(&["--host-root", f.host.to_str().unwrap(), "cleanup"]);
    assert_eq!(c.code, 0, "{}", c.stderr);
    assert_eq!(
        fs::read(f.host.join("etc/cni/net.d/99-loopback.conf")).unwrap(),
        custom
    );
    assert!(!f.host.join("opt/cni/bin/nsx").exists());
    assert!(!f.host.join("var/lib/ncp-bootstrap").exists());
}

/// (case, how to break the bundle, what the error must name)
type BundleCase = (&'static str, Box<dyn Fn(&Path)>, &'static str);
/// (case, config file text, environment, what the error must name)
type ConfigCase = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    &'static str,
);

#[test]
fn bad_bundles_exit_2_name_the_file_and_change_nothing() {
    let cases: Vec<BundleCase> = vec![
        (
            "missing plugin",
            Box::new(|b: &Path| fs::remove_file(b.join("opt/cni/bin/nsx")).unwrap()),
            "opt/cni/bin/nsx",
        ),
        (
            "corrupt conflist",
            Box::new(|b: &Path| fs::write(b.join("etc/cni/net.d/10-nsx.conflist"), "{").unwrap()),
            "10-nsx.conflist",
        ),
        (
            "no version",
            Box::new(|b: &Path| {
                fs::write(b.join("etc/cni/net.d/10-nsx.conflist"), "{\"plugins\":[]}").unwrap()
            }),
            "nsxBuildVersion",
        ),
        (
            "odd version",
            Box::new(|b: &Path| {
                fs::write(
                    b.join("etc/cni/net.d/10-nsx.conflist"),
                    conflist("4.1.0-rc1"),
                )
                .unwrap()
            }),
            "4.1.0-rc1",
        ),
    ];
    for (case, break_it, named) in cases {
        let f = fixture("4.1.0");
        break_it(&f.bundle);
        let before = snapshot(&f.host, true);
        let r = cni(&f, &[]);
        assert_eq!(r.code, 2, "{case}: {}", r.stderr);
        assert!(r.stderr.contains(named), "{case}: {}", r.stderr);
        assert_eq!(snapshot(&f.host, true), before, "{case}: host changed");
    }
}

#[test]
fn bad_config_inputs_exit_2_and_change_nothing() {
    let f = fixture("4.1.0");
    let cfg = f.host.join("etc/ncp-bootstrap/config.toml");
    let cases: Vec<ConfigCase> = vec![
        ("bad toml", "[cni\n", vec![], "not valid TOML"),
        (
            "unknown key",
            "[cni]\nbundel = \"/x\"\n",
            vec![],
            "cni.bundel",
        ),
        (
            "wrong type",
            "[cni]\nenabled = \"maybe\"\n",
            vec![],
            "cni.enabled",
        ),
        (
            "bad choice",
            "[ovs]\ndatapath_type = \"kernel\"\n",
            vec![],
            "datapath_type",
        ),
        (
            "bad env",
            "",
            vec![("NCP_BOOTSTRAP_PROBE_TIMEOUT_MS", "soon")],
            "NCP_BOOTSTRAP_PROBE_TIMEOUT_MS",
        ),
    ];
    for (case, text, env, named) in cases {
        write(&cfg, text.as_bytes(), 0o644);
        let before = snapshot(&f.host, true);
        let (h, b) = (f.host.to_str().unwrap(), f.bundle.to_str().unwrap());
        let r = run_env(&["--host-root", h, "cni", "--bundle", b], &env);
        assert_eq!(r.code, 2, "{case}: {}", r.stderr);
        assert!(r.stderr.contains(named), "{case}: {}", r.stderr);
        assert_eq!(snapshot(&f.host, true), before, "{case}");
    }
    let r = run(&["--host-root", "/nonexistent/host", "status"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("/nonexistent/host"), "{}", r.stderr);
}

#[test]
fn symlink_out_of_the_host_root_is_refused() {
    let f = fixture("4.1.0");
    fs::create_dir_all(f.host.join("etc/cni")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../tmp", f.host.join("etc/cni/net.d"))
        .unwrap();
    let before = snapshot(&f.host, true);
    let r = cni(&f, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("outside the host root"), "{}", r.stderr);
    assert_eq!(snapshot(&f.host, true), before);
}

/// An absolute link is a host path: on the host it leads where it says, so through
/// `--host-root` it leads there under the host root, never into the container's own files.
#[test]
fn absolute_symlink_is_followed_under_the_host_root() {
    let f = fixture("4.1.0");
    // The target exists in this process's own tree too: that copy must stay untouched.
    let outside = tempfile::tempdir().unwrap();
    let under = f.host.join(outside.path().strip_prefix("/").unwrap());
    fs::create_dir_all(&under).unwrap();
    fs::create_dir_all(f.host.join("etc/cni")).unwrap();
    std::os::unix::fs::symlink(outside.path(), f.host.join("etc/cni/net.d")).unwrap();
    let r = cni(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        fs::read_dir(outside.path()).unwrap().count(),
        0,
        "wrote outside the host root"
    );
    assert!(under.join("10-nsx.conflist").is_file());
}

#[test]
fn dry_run_changes_nothing_and_prints_the_plan() {
    let f = fixture("4.1.0");
    write(
        &f.host.join("etc/cni/net.d/10-nsx.conflist"),
        conflist("3.0").as_bytes(),
        0o644,
    );
    let before = snapshot(&f.host, true);
    let r = cni(&f, &["--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("[plan] replace /etc/cni/net.d/10-nsx.conflist"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("[plan] install /opt/cni/bin/nsx"),
        "{}",
        r.stdout
    );
    assert_eq!(snapshot(&f.host, true), before);
}

#[test]
fn json_report_lists_changes() {
    let f = fixture("4.1.0");
    let r = cni(&f, &["--output", "json"]);
    assert_eq!(r.code, 0);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["steps"][0]["name"], "cni");
    assert_eq!(j["steps"][0]["status"], "changed");
    assert_eq!(j["steps"][0]["changes"].as_array().unwrap().len(), 4);
    assert!(j["steps"][0]["duration_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn replacing_a_running_plugin_works() {
    let f = fixture("4.1.0");
    // A real ELF binary, running from the host path while we replace it: writing into it would
    // fail with "text file busy"; the atomic rename does not.
    let sleep = fs::read("/bin/sleep").unwrap();
    write(&f.host.join("opt/cni/bin/nsx"), &sleep, 0o755);
    write(
        &f.host.join("etc/cni/net.d/10-nsx.conflist"),
        conflist("3.0").as_bytes(),
        0o644,
    );
    let mut child = std::process::Command::new(f.host.join("opt/cni/bin/nsx"))
        .arg("30")
        .spawn()
        .unwrap();
    let r = cni(&f, &[]);
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(still_running);
    assert_eq!(
        fs::read(f.host.join("opt/cni/bin/nsx")).unwrap(),
        fs::read(f.bundle.join("opt/cni/bin/nsx")).unwrap()
    );
}

#[test]
fn read_only_target_directory_is_reported_with_its_path() {
    if !is_root() || !have("unshare") {
        skip("needs root and unshare for a read-only bind mount");
        return;
    }
    let f = fixture("4.1.0");
    fs::create_dir_all(f.host.join("etc/cni/net.d")).unwrap();
    let netd = f.host.join("etc/cni/net.d");
    let script = format!(
        "mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec {bin} --host-root {h} cni --bundle {b}",
        d = netd.display(), bin = BIN, h = f.host.display(), b = f.bundle.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(code == 3 || code == 2, "exit {code}: {stderr}");
    assert!(stderr.contains("net.d"), "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    // What was done before the failure is recorded, so cleanup can undo it.
    let c = run(&["--host-root", f.host.to_str().unwrap(), "cleanup"]);
    assert_eq!(c.code, 0, "{}", c.stderr);
    assert!(!f.host.join("opt/cni/bin/nsx").exists());
}

#[test]
fn the_real_loopback_plugin_accepts_the_installed_conf() {
    if !is_root() || !have("ip") || !Path::new("/usr/lib/cni/loopback").exists() {
        skip("needs root, iproute2 and containernetworking-plugins");
        return;
    }
    let f = fixture("4.1.0");
    assert_eq!(cni(&f, &[]).code, 0);
    let ns = format!("ncpb-lo-{}", std::process::id());
    assert!(std::process::Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    let conf = fs::read(f.host.join("etc/cni/net.d/99-loopback.conf")).unwrap();
    let mut child = std::process::Command::new(f.host.join("opt/cni/bin/loopback"))
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "test")
        .env("CNI_NETNS", format!("/var/run/netns/{ns}"))
        .env("CNI_IFNAME", "lo")
        .env("CNI_PATH", f.host.join("opt/cni/bin"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&conf).unwrap();
    let out = child.wait_with_output().unwrap();
    let link = std::process::Command::new("ip")
        .args(["-n", &ns, "-j", "link", "show", "lo"])
        .output()
        .unwrap();
    std::process::Command::new("ip")
        .args(["netns", "del", &ns])
        .status()
        .unwrap();
    assert!(
        out.status.success(),
        "loopback ADD failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["cniVersion"], "0.4.0");
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("\"operstate\":\"UNKNOWN\""),
        "lo not up in the namespace"
    );
}

/// An ncp.ini as NCP 3.x and later write the node agent's, with `use_ncp_portmap` as given.
fn portmap_ini(dir: &Path, on: &str) -> String {
    let p = dir.join(format!("ncp-portmap-{on}.ini"));
    fs::write(
        &p,
        format!(
            "[DEFAULT]\n#log_dir = <None>\n[nsx_node_agent]\n# If this option is True, ...\n\
             use_ncp_portmap = {on}\n"
        ),
    )
    .unwrap();
    p.display().to_string()
}

/// The bundle's portmap: the real plugin of containernetworking-plugins where installed.
fn add_portmap(bundle: &Path) -> Vec<u8> {
    let real = Path::new("/usr/lib/cni/portmap");
    let bytes = fs::read(real).unwrap_or_else(|_| b"#!/bin/sh\necho portmap\n".to_vec());
    write(&bundle.join("opt/cni/bin/portmap"), &bytes, 0o755);
    bytes
}

fn ledger_paths(host: &Path) -> Vec<String> {
    let Ok(text) = fs::read_to_string(host.join("var/lib/ncp-bootstrap/ledger.json")) else {
        return Vec::new();
    };
    let ledger: serde_json::Value = serde_json::from_str(&text).unwrap();
    ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str().map(String::from))
        .collect()
}

#[test]
fn use_ncp_portmap_installs_ours_keeps_a_foreign_one_and_turning_it_off_removes_ours() {
    let f = fixture("4.1.0");
    let bytes = add_portmap(&f.bundle);
    let (on, off) = (
        portmap_ini(f._tmp.path(), "True"),
        portmap_ini(f._tmp.path(), "False"),
    );
    let portmap = f.host.join("opt/cni/bin/portmap");

    // On: installed from the bundle, before the conflist, recorded.
    let r = cni(&f, &["--ncp-ini", &on]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(fs::read(&portmap).unwrap(), bytes);
    assert_eq!(mode(&f.host, "opt/cni/bin/portmap"), 0o755);
    let recorded = ledger_paths(&f.host);
    let at = |p: &str| recorded.iter().position(|x| x == p).unwrap();
    assert!(at("/opt/cni/bin/portmap") < at("/etc/cni/net.d/10-nsx.conflist"));
    let r = cni(&f, &["--ncp-ini", &on]);
    assert!(r.stdout.contains("converged"), "{}", r.stdout);
    let shown = run(&["--ncp-ini", &on, "config", "show"]);
    assert!(
        shown.stdout.contains("[nsx_node_agent] use_ncp_portmap"),
        "{}",
        shown.stdout
    );

    // Off: ours goes, and the ledger forgets it; the rest stays installed.
    let r = cni(&f, &["--ncp-ini", &off]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("remove /opt/cni/bin/portmap"),
        "{}",
        r.stdout
    );
    assert!(!portmap.exists());
    assert!(!ledger_paths(&f.host).contains(&"/opt/cni/bin/portmap".to_string()));
    assert!(f.host.join("opt/cni/bin/nsx").exists());

    // On again, then cleanup: gone with everything else.
    assert_eq!(cni(&f, &["--ncp-ini", &on]).code, 0);
    assert!(portmap.exists());
    let c = run(&["--host-root", &f.host.display().to_string(), "cleanup"]);
    assert_eq!(c.code, 0, "{}{}", c.stdout, c.stderr);
    assert!(!portmap.exists());
}

#[test]
fn a_foreign_portmap_is_never_touched() {
    let f = fixture("4.1.0");
    add_portmap(&f.bundle);
    let on = portmap_ini(f._tmp.path(), "true");
    let off = portmap_ini(f._tmp.path(), "false");
    write(
        &f.host.join("opt/cni/bin/portmap"),
        b"#!/bin/sh\n# the distribution's\n",
        0o700,
    );
    let r = cni(&f, &["--ncp-ini", &on]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("is not ours"), "{}", r.stdout);
    assert!(!ledger_paths(&f.host).contains(&"/opt/cni/bin/portmap".to_string()));
    for ini in [&off, &on] {
        assert_eq!(cni(&f, &["--ncp-ini", ini]).code, 0);
    }
    let c = run(&["--host-root", &f.host.display().to_string(), "cleanup"]);
    assert_eq!(c.code, 0, "{}{}", c.stdout, c.stderr);
    assert_eq!(
        fs::read(f.host.join("opt/cni/bin/portmap")).unwrap(),
        b"#!/bin/sh\n# the distribution's\n"
    );
    assert_eq!(mode(&f.host, "opt/cni/bin/portmap"), 0o700);
}

#[test]
fn use_ncp_portmap_with_a_bundle_without_it_exits_2_and_changes_nothing() {
    let f = fixture("4.1.0");
    let on = portmap_ini(f._tmp.path(), "TRUE");
    let before = snapshot(&f.host, true);
    let r = cni(&f, &["--ncp-ini", &on]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    for want in ["use_ncp_portmap", "opt/cni/bin/portmap", "bundle"] {
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
    }
    assert_eq!(snapshot(&f.host, true), before);
}
