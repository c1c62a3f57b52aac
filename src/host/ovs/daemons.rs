//! ovsdb-server and ovs-vswitchd as supervised children: started in the foreground (no
//! `--detach`, so a dead daemon is noticed at once), dying with their supervisor, stopped in
//! order.

use super::dirs::OvsDirs;
use super::RESTORE_WAIT_OFF;
use crate::host::run;
use anyhow::{Context, Result};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A daemon that exited, and what it last logged.
pub struct Death {
    pub name: &'static str,
    pub text: String,
}

impl std::fmt::Display for Death {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

pub struct Daemons {
    children: Vec<(&'static str, Child)>,
    dirs: OvsDirs,
    /// The database already held the bridge, so ovs-vswitchd was started with
    /// `flow-restore-wait=true`: the caller restores the flows, then calls `end_restore_wait`.
    pub restoring: bool,
}

impl Daemons {
    fn spawn(dirs: &OvsDirs, name: &'static str, args: &[String]) -> Result<Child> {
        let tool = run::find_tool(name, "run Open vSwitch")?;
        let mut cmd = Command::new(&tool);
        cmd.args(args)
            .env("OVS_RUNDIR", &dirs.run)
            .env("OVS_DBDIR", &dirs.db)
            .env("OVS_LOGDIR", &dirs.log);
        // A supervisor killed with -9 must not leave daemons that hold conf.db and the pid
        // files, which would make the next `ovs run` refuse to start. In a process group of
        // their own, a signal to ours (Ctrl-C, `timeout`) reaches only the supervisor, which
        // saves the flows and stops them in order.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        run::die_with_parent(&mut cmd)
            .spawn()
            .with_context(|| format!("starting {}", tool.display()))
    }

    /// Starts both daemons. When the database already holds `keep` (a bridge whose flows are
    /// kept across a restart or an upgrade), ovs-vswitchd starts with `other_config:flow-restore-wait=true`, so it neither
    /// flushes the kernel datapath nor changes its flows until the caller has put the OpenFlow
    /// tables back and called `end_restore_wait`.
    pub fn start(dirs: &OvsDirs, keep: Option<&str>) -> Result<Daemons> {
        for d in [&dirs.run, &dirs.log] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let db = dirs.conf_db()?;
        let sock = dirs.run.join("db.sock");
        let mut me = Daemons {
            children: Vec::new(),
            dirs: dirs.clone(),
            restoring: false,
        };
        let server = Self::spawn(
            dirs,
            "ovsdb-server",
            &[
                db.display().to_string(),
                format!("--remote=punix:{}", sock.display()),
                "--remote=db:Open_vSwitch,Open_vSwitch,manager_options".into(),
                "--pidfile".into(),
                "--log-file".into(),
                // Warnings and errors to the container log; everything to the log file.
                "-vconsole:warn".into(),
                "-vfile:info".into(),
            ],
        )?;
        me.children.push(("ovsdb-server", server));
        let vsctl = run::find_tool("ovs-vsctl", "talk to Open vSwitch")?;
        let db_arg = format!("--db=unix:{}", sock.display());
        // The first answer also lists the bridges (whether this is a restart of the bridge),
        // and clears a flow-restore-wait a killed run left, which would hold the new switch back.
        let mut bridges = String::new();
        let mut first = vec![
            db_arg.as_str(),
            "--timeout=1",
            "--no-wait",
            "init",
            "--",
            "list-br",
            "--",
        ];
        first.extend(RESTORE_WAIT_OFF);
        super::wait_until(
            &format!("ovsdb-server answering on {}", sock.display()),
            Duration::from_secs(10),
            || {
                sock.exists()
                    && run::run(&vsctl, first.iter().copied())
                        .map(|o| bridges = o.stdout)
                        .is_ok()
            },
            || me.dead().map(|d| d.to_string()),
        )?;
        let restoring = keep.is_some_and(|bridge| bridges.lines().any(|b| b == bridge));
        me.start_switch(restoring)?;
        Ok(me)
    }

    /// Starts ovs-vswitchd, the first time or after it died, and waits until it reads the
    /// database. With `restoring`, under `flow-restore-wait=true`: an existing kernel datapath
    /// keeps its flows, and keeps forwarding established traffic, until the caller has put the
    /// OpenFlow tables back and called `end_restore_wait`.
    pub fn start_switch(&mut self, restoring: bool) -> Result<()> {
        let vsctl = run::find_tool("ovs-vsctl", "talk to Open vSwitch")?;
        let sock = self.dirs.run.join("db.sock");
        let db_arg = format!("--db=unix:{}", sock.display());
        if restoring {
            run::run(
                &vsctl,
                [
                    db_arg.as_str(),
                    "--timeout=2",
                    "--no-wait",
                    "set",
                    "Open_vSwitch",
                    ".",
                    "other_config:flow-restore-wait=true",
                ],
            )
            .context("setting flow-restore-wait")?;
        }
        self.restoring = restoring;
        let vswitchd = Self::spawn(
            &self.dirs,
            "ovs-vswitchd",
            &[
                format!("unix:{}", sock.display()),
                "--pidfile".into(),
                "--log-file".into(),
                "-vconsole:warn".into(),
                "-vfile:info".into(),
            ],
        )?;
        // A dead switch's entry is replaced: `dead` must see the new process, not the old status.
        self.children.retain(|(name, _)| *name != "ovs-vswitchd");
        self.children.push(("ovs-vswitchd", vswitchd));
        // ovs-vsctl waits for ovs-vswitchd to apply a change, which proves the switch is up
        // and reading the database. The value must differ from the last run's: ovs-vsctl does
        // not wait on a transaction that changes nothing.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mark_value = format!("external-ids:ncp-bootstrap=\"running since {since}\"");
        let mark = [
            db_arg.as_str(),
            "--timeout=2",
            "set",
            "Open_vSwitch",
            ".",
            mark_value.as_str(),
        ];
        super::wait_until(
            "ovs-vswitchd coming up",
            Duration::from_secs(20),
            || run::run(&vsctl, mark).is_ok(),
            || self.dead().map(|d| d.to_string()),
        )
    }

    /// Lets ovs-vswitchd manage the datapath's flows again (waiting until it has read that).
    pub fn end_restore_wait(&mut self) -> Result<()> {
        let vsctl = run::find_tool("ovs-vsctl", "talk to Open vSwitch")?;
        let db_arg = format!("--db=unix:{}", self.dirs.run.join("db.sock").display());
        run::run(
            &vsctl,
            [db_arg.as_str(), "--timeout=5"]
                .into_iter()
                .chain(RESTORE_WAIT_OFF),
        )
        .context("clearing flow-restore-wait")?;
        self.restoring = false;
        Ok(())
    }

    /// The daemons that run, by name, with their pids and logs.
    pub fn running(&self) -> Vec<(&'static str, u32, std::path::PathBuf)> {
        self.children
            .iter()
            .map(|(name, c)| (*name, c.id(), self.dirs.log.join(format!("{name}.log"))))
            .collect()
    }

    /// `vlog/reopen`: the daemon closes its log file and opens it again by name (after a
    /// rotation renamed it).
    pub fn reopen_log(&self, name: &str, pid: u32) -> Result<()> {
        let appctl = run::find_tool("ovs-appctl", "rotate Open vSwitch's logs")?;
        let ctl = self.dirs.run.join(format!("{name}.{pid}.ctl"));
        let target = ctl.display().to_string();
        run::run(
            &appctl,
            ["--timeout=5", "-t", target.as_str(), "vlog/reopen"],
        )
        .with_context(|| format!("asking {name} to reopen its log"))?;
        Ok(())
    }

    /// The first daemon that exited, with the last lines of its log.
    pub fn dead(&mut self) -> Option<Death> {
        for (name, child) in self.children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = self.dirs.log.join(format!("{name}.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(10)..].join("\n");
                return Some(Death {
                    name,
                    text: format!(
                        "{name} exited ({status}); last lines of {}:\n{tail}",
                        log.display()
                    ),
                });
            }
        }
        None
    }

    /// SIGTERM to every daemon (ovs-vswitchd first), SIGKILL whatever is left after `grace`.
    /// Once stopped, they are forgotten: a second call (the guard's) signals no pid that may
    /// belong to someone else by then.
    pub fn stop(&mut self, grace: Duration) {
        for (_, child) in self.children.iter().rev() {
            terminate(child.id());
        }
        let deadline = Instant::now() + grace;
        for (_, child) in self.children.iter_mut().rev() {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.children.clear();
    }
}

/// The one guard: whatever way the supervisor leaves (an error, a switch that died too often),
/// the daemons it started stop in order with it.
impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// SIGTERM: OVS daemons exit cleanly on it (ovs-vswitchd keeps the datapath flows).
pub fn terminate(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}
