//! Network labs for tests: a `node` and a `peer` network namespace joined by a veth pair
//! (`eth1` in node, `peer0` in peer), and a userspace OVS (netdev datapath) running inside the
//! node namespace with private run/db/log dirs. Nothing here touches the machine's own
//! namespace: every `ip` command names a namespace this lab created, and Drop removes them.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct NetLab {
    pub node: String,
    pub peer: String,
    pub ovs_dir: PathBuf,
    pub host: PathBuf,
    _tmp: tempfile::TempDir,
    ovs_started: bool,
}

pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl NetLab {
    /// A lab with the uplink set up as the tests expect; `None` (test skipped) when not root or
    /// OVS is not installed.
    pub fn new() -> Option<NetLab> {
        if !super::is_root() || !super::have("ovs-vsctl") || !super::have("ip") {
            super::skip("needs root, iproute2 and openvswitch-switch for network namespace tests");
            return None;
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{n}", std::process::id());
        let tmp = tempfile::tempdir().unwrap();
        let lab = NetLab {
            node: format!("ncpb-node-{id}"),
            peer: format!("ncpb-peer-{id}"),
            ovs_dir: tmp.path().join("ovs"),
            host: tmp.path().join("host"),
            _tmp: tmp,
            ovs_started: false,
        };
        std::fs::create_dir_all(&lab.ovs_dir).unwrap();
        std::fs::create_dir_all(lab.host.join("etc")).unwrap();
        sh(&["ip", "netns", "add", &lab.node]);
        sh(&["ip", "netns", "add", &lab.peer]);
        sh(&[
            "ip",
            "link",
            "add",
            "eth1",
            "netns",
            &lab.node,
            "address",
            "52:54:00:aa:bb:01",
            "type",
            "veth",
            "peer",
            "name",
            "peer0",
            "netns",
            &lab.peer,
        ]);
        Some(lab)
    }

    pub fn n(&self, args: &str) {
        let mut a = vec!["ip", "-n", &self.node];
        a.extend(args.split_whitespace());
        sh(&a);
    }

    pub fn p(&self, args: &str) {
        let mut a = vec!["ip", "-n", &self.peer];
        a.extend(args.split_whitespace());
        sh(&a);
    }

    /// The standard node: two IPv4 addresses (primary + secondary), an IPv6 global
    /// address, a default route, a gateway route with a metric, an on-link route, a route in
    /// table 100 with a rule pointing to it, a rule naming the uplink, an IPv6 route.
    pub fn standard(&self) {
        for a in [
            "link set lo up",
            "link set peer0 up",
            "addr add 10.0.0.1/24 dev peer0",
            "-6 addr add fd00::1/64 dev peer0 nodad",
        ] {
            self.p(a);
        }
        for a in [
            "link set lo up",
            "link set eth1 up",
            "addr add 10.0.0.5/24 dev eth1",
            "addr add 10.0.0.6/24 dev eth1",
            "-6 addr add fd00::5/64 dev eth1 nodad",
            "-6 addr add fd00::15/64 dev eth1",
            "route add default via 10.0.0.1 dev eth1",
            "route add 192.168.50.0/24 via 10.0.0.1 dev eth1 metric 50",
            "route add 172.16.9.0/24 dev eth1 scope link",
            "route add 192.168.60.0/24 via 10.0.0.1 dev eth1 table 100",
            "rule add from 10.0.0.0/24 lookup 100 pref 1000",
            "rule add iif eth1 lookup 100 pref 1001",
            "-6 route add fd01::/64 via fd00::1 dev eth1",
        ] {
            self.n(a);
        }
        self.wait_no_tentative();
    }

    /// Waits (up to 5 s) until no IPv6 address of the node is tentative (DAD running), so
    /// that a snapshot does not race the kernel.
    pub fn wait_no_tentative(&self) {
        for _ in 0..100 {
            if self
                .json("-6 addr show tentative")
                .as_array()
                .is_none_or(|a| {
                    a.iter()
                        .all(|d| d["addr_info"].as_array().is_none_or(|i| i.is_empty()))
                })
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn ovs_env(&self) -> Vec<(String, String)> {
        let d = self.ovs_dir.display().to_string();
        ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"]
            .iter()
            .map(|k| (k.to_string(), d.clone()))
            .collect()
    }

    /// Pids of the OVS daemons whose pid files are in the lab's run dir and that are alive.
    pub fn ovs_pids(&self) -> Vec<u32> {
        ["ovsdb-server", "ovs-vswitchd"]
            .iter()
            .filter_map(|d| std::fs::read_to_string(self.ovs_dir.join(format!("{d}.pid"))).ok())
            .filter_map(|p| p.trim().parse().ok())
            .filter(|p: &u32| std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect()
    }

    pub fn start_ovs(&mut self) {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.node,
            "/usr/share/openvswitch/scripts/ovs-ctl",
            "start",
            "--system-id=random",
        ]);
        c.envs(self.ovs_env());
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "ovs-ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.ovs_started = true;
    }

    /// `ovs-ctl stop` of what `start_ovs` started (nothing when it did not).
    pub fn stop_ovs(&mut self) {
        if !self.ovs_started {
            return;
        }
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.node,
                "/usr/share/openvswitch/scripts/ovs-ctl",
                "stop",
            ])
            .envs(self.ovs_env())
            .output();
        self.ovs_started = false;
    }

    /// `br-int` on the userspace datapath, with `settings` (`fail_mode=secure`, …) besides.
    pub fn add_bridge(&self, settings: &[&str]) -> String {
        let mut args = vec![
            "add-br",
            "br-int",
            "--",
            "set",
            "Bridge",
            "br-int",
            "datapath_type=netdev",
        ];
        args.extend_from_slice(settings);
        self.vsctl(&args)
    }

    pub fn vsctl(&self, args: &[&str]) -> String {
        let db = format!("--db=unix:{}/db.sock", self.ovs_dir.display());
        let mut a = vec!["ip", "netns", "exec", &self.node, "ovs-vsctl", &db];
        a.extend_from_slice(args);
        String::from_utf8_lossy(&sh(&a).stdout).trim().to_string()
    }

    /// Runs ncp-bootstrap inside the node namespace against the lab's host root and OVS.
    pub fn tool(&self, args: &[&str], env: &[(&str, &str)]) -> super::Run {
        let out = self.tool_command(args, env).output().unwrap();
        super::Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The command `tool` runs, for callers that keep it in the background.
    pub fn tool_command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        self.tool_command_at(&self.host, args, env)
    }

    /// `ncp-bootstrap ovs run` in the background, killed if the test fails before stopping it.
    pub fn start_ovs_run(&self, env: &[(&str, &str)]) -> Background {
        Background(self.tool_command(&["ovs", "run"], env).spawn().unwrap())
    }

    /// `tool` against another host root.
    pub fn tool_at(
        &self,
        root: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> super::Run {
        let out = self.tool_command_at(root, args, env).output().unwrap();
        super::Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn tool_command_at(
        &self,
        root: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.node, super::BIN, "--host-root"]);
        c.arg(root);
        c.args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("NCP_") {
                c.env_remove(k);
            }
        }
        c.env("OVS_RUNDIR", &self.ovs_dir);
        c.env("OVS_DBDIR", &self.ovs_dir);
        c.env("OVS_LOGDIR", &self.ovs_dir);
        c.env("NCP_BOOTSTRAP_OVS_DATAPATH_TYPE", "netdev");
        c.env("NCP_BOOTSTRAP_NODE_UPLINK", "eth1");
        c.env("NCP_BOOTSTRAP_PROBE_TIMEOUT_MS", "3000");
        c.envs(env.iter().copied());
        c
    }

    fn json(&self, args: &str) -> serde_json::Value {
        let mut a = vec!["ip", "-n", &self.node, "-j"];
        a.extend(args.split_whitespace());
        serde_json::from_slice(&sh(&a).stdout).unwrap()
    }

    /// Normalised state of the node: addresses per device (no link-local, no lifetimes),
    /// routes of every table (kernel-made ones too, since they follow the addresses), rules.
    pub fn state(&self) -> String {
        let mut lines = Vec::new();
        for dev in self.json("addr show").as_array().unwrap() {
            let name = dev["ifname"].as_str().unwrap();
            for a in dev["addr_info"].as_array().unwrap() {
                if a["scope"] == "link" || a["scope"] == "host" {
                    continue;
                }
                let mut flags: Vec<&str> = Vec::new();
                for f in ["secondary", "noprefixroute", "nodad", "dynamic"] {
                    if a[f].as_bool() == Some(true) {
                        flags.push(f);
                    }
                }
                lines.push(format!(
                    "addr {name} {}/{} label={} {}",
                    a["local"].as_str().unwrap(),
                    a["prefixlen"],
                    a["label"].as_str().unwrap_or(""),
                    flags.join(",")
                ));
            }
        }
        for fam in ["-4", "-6"] {
            for r in self
                .json(&format!("{fam} route show table all"))
                .as_array()
                .unwrap()
            {
                let mut r = r.as_object().unwrap().clone();
                for k in ["expires", "pref", "flags"] {
                    r.remove(k);
                }
                if r.get("type").and_then(|t| t.as_str()) == Some("multicast") {
                    continue;
                }
                lines.push(format!("route {}", sorted(&serde_json::Value::Object(r))));
            }
            for r in self.json(&format!("{fam} rule show")).as_array().unwrap() {
                lines.push(format!("rule {}", sorted(r)));
            }
        }
        lines.sort();
        lines.join("\n")
    }

    /// `state()` once the kernel has finished with what a run just did: no IPv6 address
    /// tentative, and two reads 100 ms apart the same (an IPv6 address's local route comes with
    /// the kernel's notification of the address, which a loaded machine delays), up to 5 s.
    pub fn settled_state(&self) -> String {
        self.wait_no_tentative();
        let mut last = self.state();
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = self.state();
            if now == last {
                break;
            }
            last = now;
        }
        last
    }

    /// Waits (up to 5 s) until a link has its IPv6 link-local address, so that snapshots taken
    /// before and after do not race the kernel's address configuration.
    pub fn wait_link_local(&self, dev: &str) {
        for _ in 0..100 {
            let j = self.json(&format!("-6 addr show dev {dev} scope link"));
            if j.as_array().is_some_and(|a| {
                a.iter()
                    .any(|d| d["addr_info"].as_array().is_some_and(|i| !i.is_empty()))
            }) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn ping_from_peer(&self, ip: &str) -> bool {
        Command::new("ip")
            .args([
                "netns", "exec", &self.peer, "ping", "-c", "1", "-W", "1", ip,
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

/// A child that dies with the test when the test panics before it ends the child itself.
pub struct Background(pub std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Background {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Background {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

/// A JSON object with its keys in sorted order, whatever serde_json's map preserves.
fn sorted(v: &serde_json::Value) -> String {
    match v.as_object() {
        Some(m) => {
            let b: std::collections::BTreeMap<&String, &serde_json::Value> = m.iter().collect();
            serde_json::to_string(&b).unwrap()
        }
        None => v.to_string(),
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        self.stop_ovs();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.node])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.peer])
            .output();
    }
}
