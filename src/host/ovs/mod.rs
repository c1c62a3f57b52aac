//! Open vSwitch on the host: `ovs-vsctl` pointed at one OVSDB socket, the private ovsdb-server
//! cleanup starts on a database nobody serves, and (in submodules) dirs and supervised daemons.

mod daemons;
pub mod datapath;
mod dirs;
pub mod flows;
pub mod logs;
pub mod supervisor;

pub use daemons::{terminate, Daemons};
pub use dirs::{
    clean_stale, db_plan, db_record, live_daemons, live_in, prepare_db, recorded_db, DbPlan,
    HostDirs, OvsDirs, DAEMONS,
};

use super::{run, HostRoot};
use crate::error::precondition;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// `ovs-vsctl` arguments that end flow-restore-wait. Removing the key (rather than setting it
/// false) leaves the database as the host's OVS had it.
const RESTORE_WAIT_OFF: [&str; 5] = [
    "remove",
    "Open_vSwitch",
    ".",
    "other_config",
    "flow-restore-wait",
];

pub struct Ovs {
    tool: PathBuf,
    db: String,
    /// No ovs-vswitchd to wait for (a private ovsdb-server): every change with `--no-wait`.
    no_wait: bool,
}

impl Ovs {
    /// The OVSDB socket in `run_dir` (`OvsDirs::run`, which honours `OVS_RUNDIR`).
    pub fn new(run_dir: PathBuf) -> Result<Ovs> {
        Ok(Ovs {
            tool: run::find_tool("ovs-vsctl", "talk to Open vSwitch")?,
            db: format!("unix:{}", run_dir.join("db.sock").display()),
            no_wait: false,
        })
    }

    fn vsctl(&self, args: &[&str]) -> Result<String> {
        let mut a = vec![format!("--db={}", self.db), "--timeout=10".to_string()];
        if self.no_wait {
            a.push("--no-wait".into());
        }
        a.extend(args.iter().map(|s| s.to_string()));
        Ok(run::run(&self.tool, a)?.stdout.trim().to_string())
    }

    /// Fails with a precondition error when OVSDB does not answer.
    pub fn reachable(&self) -> Result<()> {
        self.vsctl(&["--timeout=3", "show"])
            .map(|_| ())
            .map_err(|e| {
                precondition(format!(
                "Open vSwitch is not reachable at {} ({e:#}); start it (`ovs run`, or the host's \
                 openvswitch-switch) or set ovs.run_dir",
                self.db
            ))
            })
    }

    /// Bridges, their ports and settings, in one `ovs-vsctl` run (each run costs a process and
    /// a database round trip; planning an attach needed six). Fails as `reachable` does.
    pub fn view(&self) -> Result<View> {
        let out = self
            .vsctl(&[
                "--format=json",
                "--data=json",
                "--",
                "--columns=name,ports,other_config",
                "list",
                "Bridge",
                "--",
                "--columns=_uuid,name",
                "list",
                "Port",
                "--",
                "--columns=name,mtu_request",
                "list",
                "Interface",
            ])
            .map_err(|e| {
                precondition(format!(
                    "Open vSwitch is not reachable at {} ({e:#}); start it (`ovs run`, or the \
                     host's openvswitch-switch) or set ovs.run_dir",
                    self.db
                ))
            })?;
        View::parse(&out)
    }

    pub fn bridge_exists(&self, bridge: &str) -> Result<bool> {
        Ok(self.vsctl(&["list-br"])?.lines().any(|l| l == bridge))
    }

    /// The bridge's `protocols` column as printed ("[]" when every version is enabled).
    pub fn bridge_protocols(&self, bridge: &str) -> Result<String> {
        self.vsctl(&["get", "Bridge", bridge, "protocols"])
    }

    /// Whether ovs-vswitchd is told to leave the datapath alone until flows are restored.
    pub fn restore_wait(&self) -> Result<bool> {
        let v = self.vsctl(&[
            "--if-exists",
            "get",
            "Open_vSwitch",
            ".",
            "other_config:flow-restore-wait",
        ])?;
        Ok(v.trim_matches('"') == "true")
    }

    /// Removes `flow-restore-wait`: an `ovs run` killed while restoring flows leaves it set,
    /// and the host's own OVS, started on this database later, would forward nothing new.
    pub fn clear_restore_wait(&self) -> Result<()> {
        self.vsctl(&RESTORE_WAIT_OFF).map(|_| ())
    }

    /// The port of `bridge` that has OpenFlow port 1: NCP's uplink when ncp.ini names none
    /// ("the port that gets ofport 1 is used"). `None` without the bridge or such a port.
    pub fn port_with_ofport_1(&self, bridge: &str) -> Result<Option<String>> {
        if !self.bridge_exists(bridge)? {
            return Ok(None);
        }
        let ports = self.ports(bridge)?;
        let ones = self.vsctl(&["--bare", "--columns=name", "find", "Interface", "ofport=1"])?;
        Ok(ones
            .lines()
            .map(str::trim)
            .find(|n| ports.iter().any(|p| p == n))
            .map(String::from))
    }

    pub fn ports(&self, bridge: &str) -> Result<Vec<String>> {
        Ok(self
            .vsctl(&["list-ports", bridge])?
            .lines()
            .map(String::from)
            .collect())
    }

    /// Creates the bridge with the uplink's MAC (OVS would otherwise pick the lowest port MAC)
    /// and MTU, so that peers see no change when the address moves.
    pub fn add_bridge(&self, bridge: &str, datapath: &str, mac: &str, mtu: u32) -> Result<()> {
        self.vsctl(&[
            "--may-exist",
            "add-br",
            bridge,
            "--",
            "set",
            "Bridge",
            bridge,
            &format!("datapath_type={datapath}"),
            &format!("other-config:hwaddr=\"{mac}\""),
            "--",
            "set",
            "Interface",
            bridge,
            &format!("mtu_request={mtu}"),
        ])
        .with_context(|| format!("creating OVS bridge {bridge}"))
        .map(|_| ())
    }

    /// Puts back the settings `View` read before the attach.
    pub fn restore_bridge_settings(
        &self,
        bridge: &str,
        hwaddr: Option<&str>,
        mtu: Option<&str>,
    ) -> Result<()> {
        let hw = match hwaddr {
            Some(h) => vec![
                "set".to_string(),
                "Bridge".into(),
                bridge.into(),
                format!("other-config:hwaddr=\"{h}\""),
            ],
            None => vec![
                "remove".to_string(),
                "Bridge".into(),
                bridge.into(),
                "other-config".into(),
                "hwaddr".into(),
            ],
        };
        let mtu = match mtu {
            Some(m) => vec![
                "set".to_string(),
                "Interface".into(),
                bridge.into(),
                format!("mtu_request={m}"),
            ],
            None => vec![
                "clear".to_string(),
                "Interface".into(),
                bridge.into(),
                "mtu_request".into(),
            ],
        };
        let mut args: Vec<String> = hw;
        args.push("--".into());
        args.extend(mtu);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.vsctl(&refs).map(|_| ())
    }

    pub fn add_port(&self, bridge: &str, port: &str) -> Result<()> {
        self.vsctl(&[
            "--may-exist",
            "add-port",
            bridge,
            port,
            "--",
            "set",
            "Interface",
            port,
            "ofport_request=1",
        ])
        .with_context(|| format!("adding {port} to OVS bridge {bridge}"))
        .map(|_| ())
    }

    pub fn ofport(&self, port: &str) -> Result<Option<i64>> {
        let v = self.vsctl(&["get", "Interface", port, "ofport"])?;
        Ok(v.trim_matches(|c| c == '[' || c == ']').parse().ok())
    }

    pub fn del_port(&self, bridge: &str, port: &str) -> Result<()> {
        self.vsctl(&["--if-exists", "del-port", bridge, port])
            .map(|_| ())
    }

    pub fn del_bridge(&self, bridge: &str) -> Result<()> {
        self.vsctl(&["--if-exists", "del-br", bridge]).map(|_| ())
    }
}

/// A private ovsdb-server on a database nobody serves: for cleanup after OVS is gone. It runs in
/// the foreground as our child and dies with us (even on kill -9); its run directory lives in
/// the state directory, so that the next run finds and stops anything a killed run left.
/// Stopped, and its directory removed, when dropped.
pub struct Offline {
    pub ovs: Ovs,
    child: std::process::Child,
    dir: PathBuf,
}

/// The private ovsdb-server's run directory (host path).
use crate::host::paths::OFFLINE_OVSDB_DIR as OFFLINE_DIR;
const OFFLINE_PIDFILE: &str = "ovsdb-server.pid";

impl Offline {
    pub fn start(host: &HostRoot, conf_db: &std::path::Path) -> Result<Offline> {
        let server = run::find_tool("ovsdb-server", "edit the OVS database while OVS is stopped")?;
        clear_leftover(host)?;
        host.create_dirs(OFFLINE_DIR)?;
        let dir = host.resolve(OFFLINE_DIR)?;
        let sock = dir.join("db.sock");
        let mut cmd = std::process::Command::new(&server);
        cmd.arg(conf_db)
            .arg(format!("--remote=punix:{}", sock.display()))
            .arg(format!("--pidfile={}", dir.join(OFFLINE_PIDFILE).display()))
            .arg(format!(
                "--unixctl={}",
                dir.join("ovsdb-server.ctl").display()
            ))
            .arg("-vconsole:off")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = run::die_with_parent(&mut cmd)
            .spawn()
            .with_context(|| format!("starting a private ovsdb-server on {}", conf_db.display()))?;
        let ovs = Ovs {
            tool: run::find_tool("ovs-vsctl", "edit the OVS database")?,
            db: format!("unix:{}", sock.display()),
            no_wait: true,
        };
        let mut me = Offline { ovs, child, dir };
        let db = conf_db.display().to_string();
        let ovs = &me.ovs;
        let child = &mut me.child;
        wait_until(
            &format!("the private ovsdb-server on {db} answering"),
            std::time::Duration::from_secs(5),
            || ovs.vsctl(&["--timeout=1", "show"]).is_ok(),
            || match child.try_wait() {
                Ok(Some(st)) => Some(format!(
                    "the private ovsdb-server on {db} exited ({st}); is another OVS holding it?"
                )),
                _ => None,
            },
        )?;
        Ok(me)
    }
}

/// Polls `ready` every 5 ms until it holds; fails at once with what `dead` says when a daemon
/// being waited for has exited, or after `limit`.
pub fn wait_until(
    what: &str,
    limit: std::time::Duration,
    mut ready: impl FnMut() -> bool,
    mut dead: impl FnMut() -> Option<String>,
) -> Result<()> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(why) = dead() {
            anyhow::bail!("{why}");
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("timed out after {} s waiting for {what}", limit.as_secs());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

impl Drop for Offline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops a private ovsdb-server that a killed run left (one that outlived it before children
/// died with their parent, or one in another pid namespace's view), and removes its directory.
/// The pid file is input: the process is stopped only when its command line names this very
/// pid file, so a recycled pid is never signalled.
pub fn clear_leftover(host: &HostRoot) -> Result<()> {
    let dir = host.resolve(OFFLINE_DIR)?;
    if !dir.is_dir() {
        return Ok(());
    }
    let pidfile = dir.join(OFFLINE_PIDFILE);
    if let Some(pid) = super::proc::read_pidfile(&pidfile) {
        let own = format!("--pidfile={}", pidfile.display());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).any(|a| a == own.as_bytes()) && pid > 1 {
            let target = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while super::proc::alive_here(pid) {
                if std::time::Instant::now() > deadline {
                    anyhow::bail!(
                        "a private ovsdb-server (pid {pid}) left by a killed run does not stop"
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
}

pub fn mac_string(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One bridge as `Ovs::view` read it.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeView {
    pub name: String,
    pub ports: Vec<String>,
    /// `other-config:hwaddr`.
    pub hwaddr: Option<String>,
    /// `mtu_request` of the bridge's own interface.
    pub mtu_request: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct View {
    pub bridges: Vec<BridgeView>,
}

impl View {
    /// `ovs-vsctl --format=json --data=json` prints one table per line, in command order.
    fn parse(out: &str) -> Result<View> {
        use serde_json::Value;
        let tables: Vec<Value> = out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .context("reading ovs-vsctl's JSON")?;
        let [bridges, ports, ifaces] = tables.as_slice() else {
            anyhow::bail!("ovs-vsctl printed {} tables, not 3", tables.len());
        };
        let rows = |t: &Value| -> Vec<Vec<Value>> {
            t["data"]
                .as_array()
                .map(|r| r.iter().filter_map(|row| row.as_array().cloned()).collect())
                .unwrap_or_default()
        };
        // An OVSDB set is ["set", [..]] unless it has exactly one member; a uuid is ["uuid", ..].
        let members = |v: &Value| -> Vec<Value> {
            match v.as_array().map(Vec::as_slice) {
                Some([tag, Value::Array(items)]) if tag == "set" => items.clone(),
                Some(_) => vec![v.clone()],
                None => Vec::new(),
            }
        };
        let uuid = |v: &Value| v.get(1).and_then(Value::as_str).map(String::from);
        let port_names: std::collections::HashMap<String, String> = rows(ports)
            .iter()
            .filter_map(|r| Some((uuid(r.first()?)?, r.get(1)?.as_str()?.to_string())))
            .collect();
        let mtu: std::collections::HashMap<String, String> = rows(ifaces)
            .iter()
            .filter_map(|r| {
                let name = r.first()?.as_str()?.to_string();
                let m = r.get(1)?.as_i64()?;
                Some((name, m.to_string()))
            })
            .collect();
        let mut out = Vec::new();
        for r in rows(bridges) {
            let Some(name) = r.first().and_then(Value::as_str) else {
                continue;
            };
            let ports = r
                .get(1)
                .map(|p| members(p).iter().filter_map(uuid).collect::<Vec<_>>())
                .unwrap_or_default()
                .iter()
                .filter_map(|u| port_names.get(u).cloned())
                // A bridge's own port is not one of "its ports" for list-ports either.
                .filter(|p| p != name)
                .collect::<Vec<_>>();
            let hwaddr = r
                .get(2)
                .and_then(|m| m.get(1))
                .and_then(Value::as_array)
                .and_then(|pairs| {
                    pairs
                        .iter()
                        .find_map(|kv| match kv.as_array().map(Vec::as_slice) {
                            Some([k, v]) if k == "hwaddr" => v.as_str().map(String::from),
                            _ => None,
                        })
                });
            out.push(BridgeView {
                name: name.to_string(),
                ports,
                hwaddr,
                mtu_request: mtu.get(name).cloned(),
            });
        }
        Ok(View { bridges: out })
    }

    pub fn bridge(&self, name: &str) -> Option<&BridgeView> {
        self.bridges.iter().find(|b| b.name == name)
    }

    /// The bridge a port belongs to, if any.
    pub fn port_bridge(&self, port: &str) -> Option<&str> {
        self.bridges
            .iter()
            .find(|b| b.ports.iter().any(|p| p == port))
            .map(|b| b.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_reads_bridges_ports_and_settings_from_one_json_run() {
        // As ovs-vsctl 3.1 prints it: br-int with its own port and eth1, br-ex with one port.
        let out = concat!(
            r#"{"data":[["br-int",["set",[["uuid","p1"],["uuid","p2"]]],["map",[["hwaddr","52:54:00:aa:bb:01"]]]],["br-ex",["uuid","p3"],["map",[]]]],"headings":["name","ports","other_config"]}"#,
            "\n",
            r#"{"data":[[["uuid","p1"],"br-int"],[["uuid","p2"],"eth1"],[["uuid","p3"],"br-ex"]],"headings":["_uuid","name"]}"#,
            "\n",
            r#"{"data":[["br-int",1400],["eth1",["set",[]]],["br-ex",["set",[]]]],"headings":["name","mtu_request"]}"#,
            "\n"
        );
        let v = View::parse(out).unwrap();
        assert_eq!(
            v.bridge("br-int"),
            Some(&BridgeView {
                name: "br-int".into(),
                ports: vec!["eth1".into()],
                hwaddr: Some("52:54:00:aa:bb:01".into()),
                mtu_request: Some("1400".into()),
            })
        );
        assert_eq!(v.bridge("br-ex").map(|b| b.ports.len()), Some(0));
        assert_eq!(v.port_bridge("eth1"), Some("br-int"));
        assert_eq!(v.port_bridge("eth2"), None);
        assert!(View::parse("{}\n").is_err());
    }
}
