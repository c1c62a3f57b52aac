//! The command-line contract: help, config precedence and editing, exit codes.

mod common;
use common::*;
use std::fs;

#[test]
fn help_fits_80_columns() {
    for args in [
        vec!["--help"],
        vec!["install", "--help"],
        vec!["uplink", "attach", "--help"],
        vec!["config", "--help"],
    ] {
        let r = run(&args);
        assert_eq!(r.code, 0);
        for line in r.stdout.lines() {
            assert!(line.chars().count() <= 80, "{args:?}: too wide: {line}");
        }
    }
    let r = run(&["--help"]);
    for cmd in [
        "install", "cni", "apparmor", "ovs", "uplink", "persist", "cleanup", "status", "config",
        "demo",
    ] {
        assert!(
            r.stdout.contains(&format!("  {cmd} ")),
            "--help lacks {cmd}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["frobnicate"]).code, 2);
    assert_eq!(run(&["--output", "xml", "status"]).code, 2);
}

#[test]
fn uplink_commands_need_an_uplink() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().to_str().unwrap();
    let r = run(&["--host-root", h, "uplink", "attach"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no uplink configured"), "{}", r.stderr);
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn the_demo_runs_the_whole_story_and_leaves_nothing() {
    if !is_root() || !have("ovs-vsctl") || !have("ping") {
        skip("the demo needs root, openvswitch-switch and ping");
        return;
    }
    // This demo's own namespaces carry its pid: another demo may run at the same time.
    let child = std::process::Command::new(BIN)
        .arg("demo")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for want in [
        "== install",
        "ovs run",
        "peer's view during the move",
        "persist",
        "cleanup",
        "identical: files, modes, bytes, addresses and routes are as they were",
    ] {
        assert!(
            r.stdout.contains(want),
            "demo output lacks {want:?}:\n{}",
            r.stdout
        );
    }
    // Duplicate replies from the userspace datapath are said for what they are.
    if r.stdout.contains("duplicates") {
        assert!(
            r.stdout
                .contains("on the userspace datapath the kernel also answers"),
            "{}",
            r.stdout
        );
    }
    let after = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap()
        .stdout;
    let left: Vec<String> = String::from_utf8_lossy(&after)
        .lines()
        .filter(|l| {
            l.contains(&format!("ncpb-demo-node-{pid}"))
                || l.contains(&format!("ncpb-demo-peer-{pid}"))
        })
        .map(String::from)
        .collect();
    assert!(left.is_empty(), "the demo left namespaces behind: {left:?}");
    assert!(
        !std::path::Path::new(&std::env::temp_dir().join(format!("ncp-bootstrap-demo-{pid}")))
            .exists()
    );
}

#[test]
fn config_precedence_flag_env_file_ini_default() {
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    let ini = tmp.path().join("ncp.ini");
    fs::write(
        &ini,
        "[nsx_kube_proxy]\novs_uplink_port = ens224\n[nsx_node_agent]\novs_bridge = br-nsx\n",
    )
    .unwrap();
    write(
        &host.join("etc/ncp-bootstrap/config.toml"),
        b"[node]\nbridge = \"br-file\"\n[cni]\nbundle = \"/from/file\"\n",
        0o644,
    );
    let h = host.to_str().unwrap();
    let i = ini.to_str().unwrap();
    let r = run_env(
        &[
            "--host-root",
            h,
            "--ncp-ini",
            i,
            "--output",
            "json",
            "config",
            "show",
        ],
        &[
            ("NCP_BOOTSTRAP_CNI_BUNDLE", "/from/env"),
            ("NCP_BOOTSTRAP_OVS_DATAPATH_TYPE", "netdev"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let d = &j["details"];
    assert_eq!(d["node.uplink"]["value"], "ens224");
    assert_eq!(d["node.uplink"]["source"]["kind"], "ncp_ini");
    assert_eq!(d["node.bridge"]["value"], "br-file");
    assert_eq!(d["node.bridge"]["source"]["kind"], "file");
    assert_eq!(d["cni.bundle"]["value"], "/from/env");
    assert_eq!(
        d["ovs.datapath_type"]["source"]["name"],
        "NCP_BOOTSTRAP_OVS_DATAPATH_TYPE"
    );
    assert_eq!(d["apparmor.mode"]["value"], "auto");
    assert_eq!(d["apparmor.mode"]["source"]["kind"], "default");
    // A flag beats the environment.
    let r = run_env(
        &[
            "--host-root",
            h,
            "--ncp-ini",
            i,
            "status",
            "--bundle",
            "/from/flag",
            "--output",
            "json",
        ],
        &[("NCP_BOOTSTRAP_CNI_BUNDLE", "/from/env")],
    );
    assert!(r.stdout.contains("/from/flag"), "{}", r.stdout);
    // Text form names each source.
    let r = run(&["--host-root", h, "--ncp-ini", i, "config", "show"]);
    assert!(
        r.stdout.contains("node.uplink = ens224    # ncp.ini"),
        "{}",
        r.stdout
    );
    // An explicit ncp.ini that is missing is an error.
    let r = run(&[
        "--host-root",
        h,
        "--ncp-ini",
        "/nonexistent/ncp.ini",
        "config",
        "show",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("/nonexistent/ncp.ini"));
}

/// `config show` with an ncp.ini.
fn config_show(host: &str, ini: &std::path::Path) -> common::Run {
    run(&[
        "--host-root",
        host,
        "--ncp-ini",
        ini.to_str().unwrap(),
        "config",
        "show",
    ])
}

/// NCP 3.x and 4.x keep `ovs_uplink_port` under `[nsx_node_agent]` (NCP 2.x: `[nsx_kube_proxy]`,
/// now empty): read from there, with the section named as its source, in CRLF too; set to two
/// values in the two sections, refused naming both.
#[test]
fn ncp_ini_as_ncp_3_and_4_write_it() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().to_str().unwrap();
    let fixture = format!("{}/tests/fixtures/ncp-4x-node-agent.ini", common::REPO);
    let r = run(&["--host-root", h, "--ncp-ini", &fixture, "config", "show"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("node.uplink = "))
        .unwrap_or_default();
    assert!(
        line.starts_with("node.uplink = ens192")
            && line.ends_with("[nsx_node_agent] ovs_uplink_port"),
        "{}",
        r.stdout
    );
    // The bridge is commented out: the default.
    assert!(
        r.stdout.contains("node.bridge = br-int    # default"),
        "{}",
        r.stdout
    );

    let crlf = tmp.path().join("crlf.ini");
    let text = fs::read_to_string(&fixture).unwrap().replace('\n', "\r\n");
    fs::write(&crlf, text).unwrap();
    let r = config_show(h, &crlf);
    assert!(
        r.stdout.contains("node.uplink = ens192"),
        "{}{}",
        r.stdout,
        r.stderr
    );

    let clash = tmp.path().join("clash.ini");
    fs::write(
        &clash,
        "[nsx_kube_proxy]\novs_uplink_port = ens224\n[nsx_node_agent]\novs_uplink_port = ens192\n",
    )
    .unwrap();
    let r = config_show(h, &clash);
    assert_eq!(r.code, 2, "{}", r.stdout);
    for want in [
        "[nsx_node_agent]",
        "[nsx_kube_proxy]",
        "ens192",
        "ens224",
        "clash.ini",
    ] {
        assert!(r.stderr.contains(want), "{want} missing: {}", r.stderr);
    }
}

/// A command that changes the host, run as another user than root: exit 2 before anything is
/// read or changed, saying so (not exit 3 at the first file it cannot create).
#[test]
fn a_change_as_non_root_is_refused_up_front() {
    if !have("setpriv") {
        return skip("setpriv (util-linux) not installed");
    }
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().to_str().unwrap();
    let before = snapshot(tmp.path(), true);
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(["--host-root", h, "install", "--bundle", "/nonexistent"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("must run as root (uid 65534"), "{stderr}");
    assert_eq!(snapshot(tmp.path(), true), before);
}

#[test]
fn config_set_keeps_comments_and_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config.toml");
    let text = "# site settings\n[node]\n# NSX NIC\nuplink = \"eth1\" # was eth1\n\n[ovs]\ndatapath_type = \"system\"\n";
    write(&cfg, text.as_bytes(), 0o640);
    let c = cfg.to_str().unwrap();
    let r = run(&["--config", c, "config", "set", "node.uplink", "ens192"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        fs::read_to_string(&cfg).unwrap(),
        text.replace("\"eth1\" #", "\"ens192\" #")
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let r = run(&[
        "--config",
        c,
        "config",
        "set",
        "ovs.datapath_type",
        "kernel",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("one of system, netdev"), "{}", r.stderr);
    let r = run(&[
        "--config",
        c,
        "--dry-run",
        "config",
        "set",
        "probe.timeout_ms",
        "900",
    ]);
    assert_eq!(r.code, 0);
    assert!(!fs::read_to_string(&cfg).unwrap().contains("timeout_ms"));
}

#[test]
fn readme_documents_every_config_key_and_exit_code() {
    let readme = fs::read_to_string(format!("{REPO}/README.md")).unwrap();
    for k in ncp_bootstrap::config::KEYS {
        assert!(
            readme.contains(&format!("`{}`", k.name)),
            "README lacks key {}",
            k.name
        );
        let env = ncp_bootstrap::config::env_var(k.name);
        assert!(readme.contains(&env), "README lacks {env}");
    }
    // Every ncp.ini key read has its row in the ncp.ini table, naming section, key and ours.
    for (ours, sections, key) in ncp_bootstrap::config::NCP_INI_KEYS {
        let row = format!("| `[{}] {key}`", sections[0]);
        let line = readme.lines().find(|l| l.starts_with(&row));
        assert!(
            line.is_some_and(|l| l.contains(&format!("| `{ours}` |"))),
            "README's ncp.ini table lacks {row} → {ours}"
        );
    }
    for code in ["| 0 |", "| 1 |", "| 2 |", "| 3 |"] {
        assert!(readme.contains(code), "README lacks exit code row {code}");
    }
}

/// Every key the bootstrap owns, read from ncp.ini as NCP 2.3, 3.x and 4.x lay it out: the
/// value and the `[section] key` it came from, as `config show --output json` gives them.
#[test]
fn ncp_ini_of_ncp_2_3_3x_and_4x_gives_every_bootstrap_key() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().to_str().unwrap();
    let show = |fixture: &str| -> serde_json::Value {
        let f = format!("{}/tests/fixtures/{fixture}", common::REPO);
        let r = run(&[
            "--host-root",
            h,
            "--ncp-ini",
            &f,
            "--output",
            "json",
            "config",
            "show",
        ]);
        assert_eq!(r.code, 0, "{fixture}: {}{}", r.stdout, r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["details"].clone()
    };
    let at = |v: &serde_json::Value, key: &str| -> (String, String) {
        let e = &v[key];
        (
            e["value"].to_string(),
            e["source"]["name"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
        )
    };
    let v = show("ncp-23-node.ini");
    let (value, source) = at(&v, "node.uplink");
    assert_eq!(value, "\"eth1\"");
    assert!(
        source.ends_with("[nsx_kube_proxy] ovs_uplink_port"),
        "{source}"
    );
    assert_eq!(at(&v, "node.mtu"), ("1500".into(), "default".into()));
    assert_eq!(at(&v, "cni.portmap").0, "false");

    let v = show("ncp-3x-node-agent.ini");
    assert_eq!(at(&v, "node.uplink").0, "null");
    for (key, value, from) in [
        ("node.enable_ipv6", "true", "[nsx_node_agent] enable_ipv6"),
        (
            "node.uplink_dhcp",
            "\"true\"",
            "[nsx_node_agent] is_dhcp_configured_on_ovs_uplink_port",
        ),
        ("node.mtu", "8950", "[nsx_node_agent] mtu"),
        ("cni.portmap", "true", "[nsx_node_agent] use_ncp_portmap"),
        (
            "ovs.nsx_kernel_module",
            "false",
            "[nsx_node_agent] use_nsx_ovs_kernel_module",
        ),
        ("ovs.log_max_mb", "10", "[DEFAULT] log_rotation_file_max_mb"),
        (
            "ovs.log_backups",
            "3",
            "[DEFAULT] log_rotation_backup_count",
        ),
        ("log.dir", "\"/var/log/nsx-ujo\"", "[DEFAULT] log_dir"),
        ("log.file", "\"nsx_node_agent.log\"", "[DEFAULT] log_file"),
    ] {
        let (got, source) = at(&v, key);
        assert_eq!(got, value, "{key}");
        assert!(source.ends_with(from), "{key}: {source}");
    }

    let v = show("ncp-4x-node-agent.ini");
    assert_eq!(at(&v, "node.uplink").0, "\"ens192\"");
    assert_eq!(
        at(&v, "node.uplink_dhcp"),
        ("\"auto\"".into(), "default".into())
    );
    assert_eq!(at(&v, "ovs.log_max_mb"), ("100".into(), "default".into()));
    // NCP's log directory puts OVS's logs where NCP's nsx-ovs keeps them.
    let r = run(&[
        "--host-root",
        h,
        "--ncp-ini",
        &format!("{}/tests/fixtures/ncp-4x-node-agent.ini", common::REPO),
        "config",
        "show",
    ]);
    assert!(
        r.stdout.contains("/var/log/nsx-ujo/openvswitch"),
        "{}",
        r.stdout
    );
}

/// A value NCP's own reader would refuse is exit 2 naming the file, section, key and value.
#[test]
fn bad_ncp_ini_values_exit_2_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().to_str().unwrap();
    for (body, want) in [
        ("[nsx_node_agent]\nmtu = 15OO\n", "15OO"),
        ("[nsx_node_agent]\nmtu = 40\n", "40"),
        ("[nsx_node_agent]\nenable_ipv6 = maybe\n", "maybe"),
        (
            "[nsx_node_agent]\nis_dhcp_configured_on_ovs_uplink_port = sometimes\n",
            "sometimes",
        ),
        ("[DEFAULT]\nlog_rotation_backup_count = -1\n", "-1"),
    ] {
        let ini = tmp.path().join("ncp.ini");
        fs::write(&ini, body).unwrap();
        let r = config_show(h, &ini);
        assert_eq!(r.code, 2, "{body}: {}{}", r.stdout, r.stderr);
        let (section, rest) = body.split_once('\n').unwrap();
        let key = rest.split(" =").next().unwrap();
        for w in [ini.to_str().unwrap(), section, key, want] {
            assert!(r.stderr.contains(w), "{body}: {w} missing in {}", r.stderr);
        }
    }
}

/// NCP's `use_nsx_ovs_kernel_module = True` is read from ncp.ini and shown; with a bundle whose
/// modules do not cover the running kernel, install exits 2 before anything changes, naming the
/// kernel, what the bundle covers and the way out.
#[test]
fn use_nsx_ovs_kernel_module_without_a_module_for_this_kernel_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("host");
    fs::create_dir_all(root.join("etc")).unwrap();
    let h = root.to_str().unwrap();
    let ini = tmp.path().join("ncp.ini");
    fs::write(&ini, "[nsx_node_agent]\nuse_nsx_ovs_kernel_module = True\n").unwrap();
    let r = config_show(h, &ini);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("ovs.nsx_kernel_module = true"),
        "{}",
        r.stdout
    );

    let bundle = tmp.path().join("bundle");
    fs::create_dir_all(bundle.join("kmod/0.0.0-other")).unwrap();
    let before = common::snapshot(&root, true);
    let r = common::run_env(
        &[
            "--host-root",
            h,
            "--ncp-ini",
            ini.to_str().unwrap(),
            "install",
            "--bundle",
            bundle.to_str().unwrap(),
        ],
        &[
            ("NCP_BOOTSTRAP_CNI_ENABLED", "false"),
            ("NCP_BOOTSTRAP_APPARMOR_MODE", "off"),
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    let release = nix::sys::utsname::uname().unwrap();
    let release = release.release().to_str().unwrap();
    for want in [
        format!("running kernel {release}"),
        "covers 0.0.0-other".into(),
        "use_nsx_ovs_kernel_module = False".into(),
    ] {
        assert!(r.stderr.contains(&want), "{want}: {}", r.stderr);
    }
    assert_eq!(
        common::snapshot(&root, true),
        before,
        "install changed the host"
    );
}
