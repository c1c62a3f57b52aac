//! Races, kills and hostile input against temporary host roots: each test here failed before
//! the defect it names was fixed. Namespace tests (OVS, links) are at the end and need root.

mod common;
use common::netlab::NetLab;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Fixture {
    _tmp: tempfile::TempDir,
    host: PathBuf,
    bundle: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    fs::create_dir_all(host.join("etc")).unwrap();
    let bundle = bundle(tmp.path(), "4.1.0");
    Fixture {
        _tmp: tmp,
        host,
        bundle,
    }
}

fn h(f: &Fixture) -> String {
    f.host.display().to_string()
}

fn b(f: &Fixture) -> String {
    f.bundle.display().to_string()
}

/// `--host-root <f's host> args…`, leaked for the test's lifetime so that callers get `&str`s.
fn on(f: &Fixture, args: &[&str]) -> Vec<&'static str> {
    let mut a: Vec<&'static str> = vec!["--host-root", Box::leak(h(f).into_boxed_str())];
    a.extend(
        args.iter()
            .map(|s| &*Box::leak(s.to_string().into_boxed_str())),
    );
    a
}

fn command(f: &Fixture, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--host-root").arg(&f.host).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("NCP_") {
            c.env_remove(k);
        }
    }
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn ledger(f: &Fixture) -> Option<serde_json::Value> {
    let bytes = fs::read(f.host.join("var/lib/ncp-bootstrap/ledger.json")).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

fn recorded_paths(f: &Fixture) -> Vec<String> {
    ledger(f)
        .map(|l| {
            l["entries"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["path"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `install` and `cleanup` at once on one host root: whatever order the lock gives them, what
/// is on the host is in the ledger, and a last `cleanup` gives the host back as it was.
#[test]
fn cleanup_racing_install_never_loses_the_ledger() {
    for round in 0..30 {
        let f = fixture();
        let before = snapshot(&f.host, false);
        let mut install = command(&f, &["install", "--bundle", &b(&f)])
            .spawn()
            .unwrap();
        let mut cleanup = command(&f, &["cleanup"]).spawn().unwrap();
        let (i, c) = (install.wait().unwrap(), cleanup.wait().unwrap());
        assert!(i.success() && c.success(), "round {round}: {i} {c}");
        let recorded = recorded_paths(&f);
        for p in ["/opt/cni/bin/nsx", "/etc/cni/net.d/10-nsx.conflist"] {
            let on_host = f.host.join(&p[1..]).exists();
            assert_eq!(
                on_host,
                recorded.iter().any(|r| r == p),
                "round {round}: {p} on the host = {on_host}, recorded: {recorded:?}"
            );
        }
        let r = run(&["--host-root", &h(&f), "cleanup"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(snapshot(&f.host, false), before, "round {round}");
    }
}

/// A cleanup that takes the lock after an install that is still waiting for it: the install
/// must not act on a lock file that cleanup has removed with the state directory.
#[test]
fn installs_waiting_for_a_pruning_cleanup_still_exclude_each_other() {
    let f = fixture();
    let before = snapshot(&f.host, false);
    for _ in 0..10 {
        let mut kids: Vec<_> = (0..3)
            .map(|_| {
                command(&f, &["install", "--bundle", &b(&f)])
                    .spawn()
                    .unwrap()
            })
            .collect();
        kids.push(command(&f, &["cleanup"]).spawn().unwrap());
        kids.push(command(&f, &["cleanup"]).spawn().unwrap());
        for mut k in kids {
            let out = k.wait().unwrap();
            assert!(out.success(), "{out}");
        }
        let ledger = ledger(&f);
        let on_host = f.host.join("opt/cni/bin/nsx").exists();
        assert_eq!(on_host, ledger.is_some(), "{ledger:?}");
        if let Some(l) = ledger {
            // One install did the work; the others found it done under the lock.
            let files = l["entries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["path"] == "/opt/cni/bin/nsx")
                .count();
            assert_eq!(files, 1, "{l:#}");
        }
    }
    let r = run(&["--host-root", &h(&f), "cleanup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(snapshot(&f.host, false), before);
}

/// A stock Debian or Ubuntu root: `/var/run -> /run` and friends are absolute links that mean
/// paths under the host root.
#[test]
fn install_works_on_a_debian_layout_with_absolute_links() {
    let f = fixture();
    for d in ["run/lock", "var", "usr/lib", "usr/bin"] {
        fs::create_dir_all(f.host.join(d)).unwrap();
    }
    std::os::unix::fs::symlink("/run", f.host.join("var/run")).unwrap();
    std::os::unix::fs::symlink("/run/lock", f.host.join("var/lock")).unwrap();
    std::os::unix::fs::symlink("usr/lib", f.host.join("lib")).unwrap();
    std::os::unix::fs::symlink("usr/bin", f.host.join("bin")).unwrap();
    let before = snapshot(&f.host, false);
    let r = run(&["--host-root", &h(&f), "install", "--bundle", &b(&f)]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(f.host.join("opt/cni/bin/nsx").is_file());
    let r = run(&["--host-root", &h(&f), "cleanup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(snapshot(&f.host, false), before);
}

fn mkfifo(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let st = Command::new("mkfifo").arg(p).status().unwrap();
    assert!(st.success());
}

/// Runs with a time limit: a hang is a failure, not a stuck test.
fn run_limited(args: &[&str], limit: Duration) -> Run {
    let mut c = Command::new(BIN);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("NCP_") {
            c.env_remove(k);
        }
    }
    let mut child = c.spawn().unwrap();
    let end = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A FIFO (or directory) where the host's conflist belongs: refused by name, never a hang.
#[test]
fn a_fifo_or_directory_at_the_hosts_conflist_is_refused_not_waited_on() {
    for kind in ["fifo", "dir"] {
        let f = fixture();
        let p = f.host.join("etc/cni/net.d/10-nsx.conflist");
        match kind {
            "fifo" => mkfifo(&p),
            _ => fs::create_dir_all(&p).unwrap(),
        }
        let before = snapshot(&f.host, true);
        for args in [
            vec!["install", "--bundle", &b(&f)],
            vec!["install", "--bundle", &b(&f), "--dry-run"],
            vec!["status", "--bundle", &b(&f)],
        ] {
            let r = run_limited(&on(&f, &args), Duration::from_secs(20));
            assert_ne!(r.code, 0, "{kind} {args:?}: {}", r.stdout);
            assert!(
                r.stderr.contains("10-nsx.conflist") && r.stderr.contains("not a regular file"),
                "{kind} {args:?}: {}",
                r.stderr
            );
            assert_eq!(snapshot(&f.host, true), before, "{kind} {args:?}");
        }
    }
}

/// The bundle is input too: a FIFO or directory is not "missing", and a symlink that leads out
/// of the bundle would install some other file onto every node.
#[test]
fn a_bundle_with_a_fifo_directory_or_escaping_link_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    write(
        &outside.path().join("nsx"),
        b"#!/bin/sh\necho other\n",
        0o755,
    );
    type Spoil<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: Vec<(&str, Spoil, &str)> = vec![
        (
            "fifo",
            Box::new(|p: &Path| {
                fs::remove_file(p).unwrap();
                mkfifo(p);
            }),
            "a FIFO",
        ),
        (
            "dir",
            Box::new(|p: &Path| {
                fs::remove_file(p).unwrap();
                fs::create_dir(p).unwrap();
            }),
            "a directory",
        ),
        (
            "escaping link",
            Box::new(|p: &Path| {
                fs::remove_file(p).unwrap();
                std::os::unix::fs::symlink(outside.path().join("nsx"), p).unwrap();
            }),
            "outside the bundle",
        ),
    ];
    for (name, spoil, says) in cases {
        let f = fixture();
        spoil(&f.bundle.join("opt/cni/bin/nsx"));
        let before = snapshot(&f.host, true);
        let r = run_limited(
            &["--host-root", &h(&f), "install", "--bundle", &b(&f)],
            Duration::from_secs(20),
        );
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert!(
            r.stderr.contains("opt/cni/bin/nsx") && r.stderr.contains(says),
            "{name}: {}",
            r.stderr
        );
        assert_eq!(snapshot(&f.host, true), before, "{name}");
    }
    // A link inside the bundle is fine.
    let f = fixture();
    let p = f.bundle.join("opt/cni/bin/nsx");
    fs::rename(&p, f.bundle.join("opt/cni/bin/nsx-4.1.0")).unwrap();
    std::os::unix::fs::symlink("nsx-4.1.0", &p).unwrap();
    let r = run(&["--host-root", &h(&f), "install", "--bundle", &b(&f)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// A small deterministic spread of kill delays (no clock-seeded randomness: a failure must
/// reproduce).
fn delays(n: usize, max_ms: u64, seed: u64) -> Vec<Duration> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Duration::from_micros((x >> 33) % (max_ms * 1000))
        })
        .collect()
}

fn kill9(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A host that already has an older NSX conflist, so that backups are part of every run.
fn fixture_with_old_conflist() -> Fixture {
    let f = fixture();
    write(
        &f.host.join("etc/cni/net.d/10-nsx.conflist"),
        conflist("3.0").as_bytes(),
        0o644,
    );
    f
}

fn assert_no_duplicate_entries(f: &Fixture) {
    if let Some(l) = ledger(f) {
        let entries = l["entries"].as_array().unwrap();
        for (i, e) in entries.iter().enumerate() {
            assert!(
                !entries[..i].contains(e),
                "duplicate ledger entry {e}: {l:#}"
            );
        }
    }
}

/// kill -9 of `install` and of `cleanup` at spread-out moments: re-running converges, and
/// after cleanup the tree is byte-identical to the original, temp files included.
#[test]
fn killed_install_and_cleanup_leave_nothing_after_rerun_and_cleanup() {
    for (i, d) in delays(20, 60, 7).into_iter().enumerate() {
        let f = fixture_with_old_conflist();
        let before = snapshot(&f.host, false);
        let mut c = command(&f, &["install", "--bundle", &b(&f)])
            .spawn()
            .unwrap();
        std::thread::sleep(d);
        kill9(&mut c);
        let r = run(&["--host-root", &h(&f), "install", "--bundle", &b(&f)]);
        assert_eq!(r.code, 0, "install #{i} after kill at {d:?}: {}", r.stderr);
        assert_no_duplicate_entries(&f);
        let r = run(&["--host-root", &h(&f), "cleanup"]);
        assert_eq!(r.code, 0, "cleanup #{i} after kill at {d:?}: {}", r.stderr);
        assert_eq!(snapshot(&f.host, false), before, "install killed at {d:?}");
    }
    for (i, d) in delays(20, 40, 11).into_iter().enumerate() {
        let f = fixture_with_old_conflist();
        let before = snapshot(&f.host, false);
        let r = run(&["--host-root", &h(&f), "install", "--bundle", &b(&f)]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let mut c = command(&f, &["cleanup"]).spawn().unwrap();
        std::thread::sleep(d);
        kill9(&mut c);
        let r = run(&["--host-root", &h(&f), "cleanup"]);
        assert_eq!(r.code, 0, "cleanup #{i} after kill at {d:?}: {}", r.stderr);
        assert_eq!(snapshot(&f.host, false), before, "cleanup killed at {d:?}");
    }
}

/// Temp files of killed writes, placed where a kill leaves them: the next run removes them.
#[test]
fn temp_files_of_killed_writes_are_swept() {
    let f = fixture_with_old_conflist();
    let before = snapshot(&f.host, false);
    let r = run(&["--host-root", &h(&f), "install", "--bundle", &b(&f)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for t in [
        "etc/cni/net.d/.10-nsx.conflist.ncp-bootstrap-4194000.tmp",
        "opt/cni/bin/.nsx.ncp-bootstrap-4194001.tmp",
        "var/lib/ncp-bootstrap/.ledger.json.ncp-bootstrap-4194002.tmp",
        "var/lib/ncp-bootstrap/backup/etc/cni/net.d/.10-nsx.conflist.ncp-bootstrap-4194003.tmp",
    ] {
        write(&f.host.join(t), b"half written", 0o600);
    }
    let r = run(&["--host-root", &h(&f), "cleanup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(snapshot(&f.host, false), before);
}

fn backup_of_conflist(f: &Fixture) -> PathBuf {
    f.host
        .join("var/lib/ncp-bootstrap/backup/etc/cni/net.d/10-nsx.conflist")
}

/// A backup altered after it was taken is not restored over the host's file.
#[test]
fn an_altered_backup_is_not_restored() {
    let f = fixture_with_old_conflist();
    let r = run(&["--host-root", &h(&f), "install", "--bundle", &b(&f)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    fs::write(backup_of_conflist(&f), b"{\"evil\": true}\n").unwrap();
    let ours = fs::read(f.host.join("etc/cni/net.d/10-nsx.conflist")).unwrap();
    let r = run(&["--host-root", &h(&f), "cleanup"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("backup/etc/cni/net.d/10-nsx.conflist") && r.stderr.contains("altered"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fs::read(f.host.join("etc/cni/net.d/10-nsx.conflist")).unwrap(),
        ours,
        "the current file must be left as it is"
    );
    assert!(recorded_paths(&f)
        .iter()
        .any(|p| p == "/etc/cni/net.d/10-nsx.conflist"));
}

/// A missing backup: cleanup says how to go on, and `--forget-missing-backups` does.
#[test]
fn a_missing_backup_has_a_way_forward() {
    let f = fixture_with_old_conflist();
    let r = run(&["--host-root", &h(&f), "install", "--bundle", &b(&f)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    fs::remove_file(backup_of_conflist(&f)).unwrap();
    let ours = fs::read(f.host.join("etc/cni/net.d/10-nsx.conflist")).unwrap();
    let r = run(&["--host-root", &h(&f), "cleanup"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("--forget-missing-backups"),
        "{}",
        r.stderr
    );
    let r = run(&["--host-root", &h(&f), "cleanup", "--forget-missing-backups"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("is missing"), "{}", r.stdout);
    assert_eq!(
        fs::read(f.host.join("etc/cni/net.d/10-nsx.conflist")).unwrap(),
        ours
    );
    assert!(
        ledger(&f).is_none(),
        "the rest was undone and the ledger pruned"
    );
    assert!(!f.host.join("opt/cni/bin/nsx").exists());
}

fn write_ledger(f: &Fixture, ledger: serde_json::Value) {
    write(
        &f.host.join("var/lib/ncp-bootstrap/ledger.json"),
        serde_json::to_string_pretty(&ledger).unwrap().as_bytes(),
        0o600,
    );
}

/// The ledger is input: a `host_ovs_stopped` entry runs only the host's OVS daemons and units.
#[test]
fn cleanup_runs_no_command_a_ledger_smuggles_in() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let cases = vec![
        (
            "a shell as the daemon",
            "ovsdb-server",
            vec!["/bin/sh", "-c", touch.as_str()],
            vec![],
        ),
        (
            "another name",
            "sh",
            vec!["/bin/sh", "-c", touch.as_str()],
            vec![],
        ),
        (
            "a binary named like the daemon elsewhere",
            "ovsdb-server",
            vec!["/tmp/x/ovsdb-server"],
            vec![],
        ),
        (
            "a foreign unit",
            "ovsdb-server",
            vec!["/usr/sbin/ovsdb-server"],
            vec!["evil.service"],
        ),
    ];
    for (case, name, cmdline, units) in cases {
        let f = fixture();
        write_ledger(
            &f,
            serde_json::json!({
                "format": 1,
                "entries": [{
                    "kind": "host_ovs_stopped", "step": "host-ovs",
                    "daemons": [{ "name": name, "cmdline": cmdline, "env": [] }],
                    "units": units,
                }],
            }),
        );
        let before = snapshot(&f.host, true);
        for args in [vec!["cleanup", "--dry-run"], vec!["cleanup"]] {
            let r = run(&on(&f, &args));
            assert_ne!(r.code, 0, "{case} {args:?}: {}", r.stdout);
            assert!(
                r.stderr.contains("host_ovs_stopped") && r.stderr.contains("refusing"),
                "{case}: {}",
                r.stderr
            );
            assert!(!marker.exists(), "{case}: the smuggled command ran");
            assert_eq!(snapshot(&f.host, true), before, "{case}");
        }
    }
}

/// Exit 2 means nothing changed.
#[test]
fn refusals_change_nothing() {
    // A ledger whose state_dirs names something else than the state dir's parents.
    let f = fixture();
    fs::create_dir_all(f.host.join("srv/empty")).unwrap();
    write_ledger(
        &f,
        serde_json::json!({ "format": 1, "entries": [], "state_dirs": ["/srv/empty", "/srv"] }),
    );
    let before = snapshot(&f.host, true);
    let r = run(&["--host-root", &h(&f), "cleanup"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("state_dirs"), "{}", r.stderr);
    assert_eq!(snapshot(&f.host, true), before);

    // A ledger that is a directory.
    let f = fixture();
    fs::create_dir_all(f.host.join("var/lib/ncp-bootstrap/ledger.json")).unwrap();
    let before = snapshot(&f.host, true);
    for args in [vec!["cleanup"], vec!["status"]] {
        let r = run(&on(&f, &args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("ledger.json"), "{}", r.stderr);
        assert_eq!(snapshot(&f.host, true), before);
    }

    // An invalid probe target: refused alike by the real run, --dry-run and config show,
    // before anything (not even the state directory) is made.
    let f = fixture();
    let before = snapshot(&f.host, true);
    for args in [
        vec!["uplink", "attach", "--uplink", "eth9"],
        vec!["uplink", "attach", "--uplink", "eth9", "--dry-run"],
        vec!["install", "--bundle", &b(&f)],
        vec!["config", "show"],
    ] {
        let r = run_env(
            &on(&f, &args),
            &[("NCP_BOOTSTRAP_PROBE_TARGETS", "gateway,10.0.0.1:http")],
        );
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("10.0.0.1:http") && r.stderr.contains("NCP_BOOTSTRAP_PROBE_TARGETS"),
            "{args:?}: {}",
            r.stderr
        );
        assert_eq!(snapshot(&f.host, true), before, "{args:?}");
    }
}

#[test]
fn messages_say_what_is_accepted() {
    let f = fixture();
    let r = run_env(
        &["--host-root", &h(&f), "config", "show"],
        &[("NCP_BOOTSTRAP_PROBE_TIMEOUT_MS", "-5")],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("`-5`") && r.stderr.contains("0 or more"),
        "{}",
        r.stderr
    );

    // One set of boolean spellings for every source, and the message lists it.
    for (text, ok) in [("off", true), ("YES", true), ("0", true), ("maybe", false)] {
        let r = run_env(
            &["--host-root", &h(&f), "config", "show"],
            &[("NCP_BOOTSTRAP_CNI_ENABLED", text)],
        );
        assert_eq!(r.code == 0, ok, "{text}: {}", r.stderr);
        if !ok {
            assert!(r.stderr.contains("yes/no, on/off or 1/0"), "{}", r.stderr);
        }
    }
    write(
        &f.host.join("etc/ncp-bootstrap/config.toml"),
        b"[cni]\nenabled = \"off\"\n",
        0o644,
    );
    let r = run(&["--host-root", &h(&f), "config", "show"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // A usage error with --output json is still a JSON report on stdout.
    let r = run(&["--output", "json", "install", "--no-such-flag"]);
    assert_eq!(r.code, 2);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect(&r.stdout);
    assert_eq!(v["exit_code"], 2);
    assert!(v["error"].as_str().unwrap().contains("--no-such-flag"));

    // Versions with parts of any length.
    let f = fixture();
    let long = "4.1.0.123456789012345678901234567890";
    let b2 = f._tmp.path().join("b2");
    let bundle2 = bundle(&b2, long);
    let r = run(&[
        "--host-root",
        &h(&f),
        "install",
        "--bundle",
        bundle2.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&["--host-root", &h(&f), "install", "--bundle", &b(&f)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("newer than the bundle's"), "{}", r.stdout);
}

// ---- In network namespaces (root, OVS) ----------------------------------------------------

fn wait_healthy(lab: &NetLab) {
    let end = Instant::now() + Duration::from_secs(30);
    while lab.tool(&["ovs", "health"], &[]).code != 0 {
        assert!(Instant::now() < end, "ovs run never became healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Processes (any pid) whose command line mentions `needle`, zombies excluded.
fn processes_naming(needle: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| !c.is_empty() && String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

/// install → ovs run → SIGTERM (uplink kept) → cleanup killed with -9 → cleanup again: the
/// killed cleanup's private ovsdb-server must not outlive it holding conf.db.
#[test]
fn a_killed_cleanup_leaves_no_ovsdb_server_behind() {
    for d in [30u64, 60, 120, 250] {
        let Some(lab) = NetLab::new() else { return };
        lab.standard();
        let tmp = tempfile::tempdir().unwrap();
        let b = bundle(tmp.path(), "4.1.0");
        let r = lab.tool(&["install", "--bundle", b.to_str().unwrap()], &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let mut run = lab.start_ovs_run(&[]);
        wait_healthy(&lab);
        Command::new("kill")
            .args(["-TERM", &run.id().to_string()])
            .status()
            .unwrap();
        assert!(run.wait().unwrap().success());
        let db = lab.ovs_dir.join("conf.db").display().to_string();
        assert!(processes_naming(&db).is_empty(), "ovs run left a daemon");

        let mut c = lab.tool_command(&["cleanup"], &[]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(d));
        kill9(&mut c);
        // The kernel delivers the parent-death signal at once; give it a moment to be reaped.
        let end = Instant::now() + Duration::from_secs(2);
        while !processes_naming(&db).is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            processes_naming(&db).is_empty(),
            "kill at {d} ms: an ovsdb-server on {db} outlived cleanup"
        );
        let r = lab.tool(&["cleanup"], &[]);
        assert_eq!(r.code, 0, "kill at {d} ms: {}\n{}", r.stdout, r.stderr);
        assert!(!lab.host.join("var/lib/ncp-bootstrap").exists());
        assert!(
            lab.state().contains("addr eth1 10.0.0.5/24"),
            "{}",
            lab.state()
        );
    }
}

/// persist enabled on a host whose network format cannot be detected: exit 2 before host-ovs
/// or cni change anything.
#[test]
fn install_preflights_persist_before_any_step_acts() {
    let Some(lab) = NetLab::new() else { return };
    lab.standard();
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path(), "4.1.0");
    let before = snapshot(&lab.host, true);
    let r = lab.tool(
        &["install", "--bundle", b.to_str().unwrap()],
        &[("NCP_BOOTSTRAP_PERSIST_ENABLED", "true")],
    );
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("persist"), "{}", r.stderr);
    assert_eq!(snapshot(&lab.host, true), before);
}

/// The uplink must be a NIC that can be an OVS port; the bridge absent or OVS's own.
#[test]
fn wrong_links_as_uplink_or_bridge_are_refused() {
    let Some(mut lab) = NetLab::new() else { return };
    lab.standard();
    // OVS runs, as on a node: the refusal must not hang on OVS being absent.
    lab.start_ovs();
    lab.n("link add eth2 type veth peer name eth3");
    lab.n("link add lbr0 type bridge");
    let state = lab.state();
    let before = snapshot(&lab.host, true);
    for (args, says) in [
        (vec!["--uplink", "lo"], "loopback"),
        (vec!["--uplink", "lbr0"], "bridge device"),
        (vec!["--bridge", "eth2"], "not an OVS bridge"),
        (vec!["--bridge", "lbr0"], "not an OVS bridge"),
        (vec!["--uplink", "eth1", "--bridge", "eth1"], "both `eth1`"),
    ] {
        let mut a = vec!["uplink", "attach"];
        a.extend(args.iter().copied());
        let r = lab.tool(&a, &[]);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
        assert_eq!(lab.state(), state, "{args:?}");
        assert_eq!(snapshot(&lab.host, true), before, "{args:?}");
    }
}

/// detach names the bridge it removes, and waits for an attach in flight (the lock) before
/// it looks.
#[test]
fn detach_reports_the_bridge_and_waits_for_the_lock() {
    let Some(mut lab) = NetLab::new() else { return };
    lab.standard();
    lab.start_ovs();
    let r = lab.tool(&["uplink", "attach"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Hold the lock as an attach in flight would.
    let root = fs::File::open(&lab.host).unwrap();
    root.lock().unwrap();
    let mut detach = lab
        .tool_command(&["uplink", "detach", "--output", "json"], &[])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        detach.try_wait().unwrap().is_none(),
        "detach went ahead while the lock was held"
    );
    root.unlock().unwrap();
    let out = detach.wait_with_output().unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = report["steps"][0]["changes"].to_string();
    assert!(changes.contains("remove OVS bridge br-int"), "{changes}");
    assert!(!lab.vsctl(&["list-br"]).contains("br-int"));
}
