//! The inverse of a `host_ovs_stopped` entry: what the host-OVS step stopped, disabled and
//! masked, started again exactly as it ran, once the entry is checked to name only OVS.

use super::{DAEMON_UNITS, UNITS};
use crate::error::{Error, Kind};
use crate::host::ovs::DAEMONS;
use crate::host::{run, systemd};
use crate::ledger::{Entry, StoppedDaemon};
use anyhow::{Context, Result};
use std::time::Duration;

/// Where a host's OVS daemons are installed (Debian/Ubuntu, RHEL, a local build).
const DAEMON_DIRS: [&str; 6] = [
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/local/sbin",
    "/usr/local/bin",
];

/// The ledger is a file on the host that other tools touch: before cleanup runs what a
/// `host_ovs_stopped` entry names, check that it names only the host's OVS units and daemons.
/// Returns the program to run for each daemon.
pub fn validate(
    daemons: &[StoppedDaemon],
    units: &[String],
    started: &[String],
) -> Result<Vec<std::path::PathBuf>> {
    let refuse = |what: String| {
        Error::new(
            Kind::Input,
            format!(
                "the ledger's host_ovs_stopped entry {what}; refusing to run it. Restart the host's \
                 OVS by hand (systemctl start openvswitch-switch) and remove the entry from {}",
                crate::host::paths::LEDGER
            ),
        )
    };
    for u in units.iter().chain(started) {
        if !UNITS.contains(&u.as_str()) {
            return Err(refuse(format!(
                "names the unit `{u}`, which is not one of {}",
                UNITS.join(", ")
            ))
            .into());
        }
    }
    let mut programs = Vec::new();
    for d in daemons {
        if !DAEMONS.contains(&d.name.as_str()) {
            return Err(refuse(format!("names the daemon `{}`, not an OVS daemon", d.name)).into());
        }
        let Some(argv0) = d.cmdline.first() else {
            return Err(refuse(format!("records no command line for {}", d.name)).into());
        };
        let p = std::path::Path::new(argv0);
        if p.file_name().and_then(|n| n.to_str()) != Some(d.name.as_str()) {
            return Err(refuse(format!(
                "would run `{argv0}` as {}, which is not that daemon's binary",
                d.name
            ))
            .into());
        }
        let program = if p.is_absolute() {
            let dir = p.parent().and_then(|d| d.to_str()).unwrap_or_default();
            if !DAEMON_DIRS.contains(&dir) {
                return Err(refuse(format!(
                    "would run `{argv0}`, outside the standard directories {}",
                    DAEMON_DIRS.join(", ")
                ))
                .into());
            }
            p.to_path_buf()
        } else {
            run::find_tool(&d.name, "start the host's OVS again")?
        };
        if let Some((k, _)) = d.env.iter().find(|(k, _)| {
            !(k.starts_with("OVS_") && k.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        }) {
            return Err(refuse(format!(
                "sets the environment variable `{k}` for {}; only OVS_* variables are recorded",
                d.name
            ))
            .into());
        }
        programs.push(program);
    }
    Ok(programs)
}

/// For `cleanup`: start again exactly what was stopped. Daemons that ran under systemd units
/// are started through those units, never by hand beside them.
pub fn undo(
    daemons: &[StoppedDaemon],
    units: &[String],
    started: &[String],
    masked: &[String],
) -> Result<()> {
    let programs = validate(daemons, units, started)?;
    validate_masked(masked)?;
    if !masked.is_empty() {
        let mut args = vec!["unmask"];
        args.extend(masked.iter().map(String::as_str));
        systemd::systemctl(&args)?;
    }
    if !units.is_empty() || !started.is_empty() {
        for u in units {
            systemd::systemctl(&["enable", u])?;
        }
        let mut args = vec!["start"];
        args.extend(units.iter().chain(started).map(String::as_str));
        systemd::systemctl(&args)?;
        return Ok(());
    }
    for (d, prog) in daemons.iter().zip(programs) {
        let args = d.cmdline.get(1..).unwrap_or_default();
        run::start_host_daemon(&prog, args, &d.env)
            .with_context(|| format!("restarting {}", d.name))?;
        if d.name == "ovsdb-server" {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// Only the daemons' own units are ever masked; anything else in the entry is refused.
fn validate_masked(masked: &[String]) -> Result<()> {
    match masked.iter().find(|u| !DAEMON_UNITS.contains(&u.as_str())) {
        None => Ok(()),
        Some(u) => Err(Error::new(
            Kind::Input,
            format!(
                "the ledger's host_ovs_stopped entry names `{u}` as masked, which is not one of \
                 {}; refusing to unmask it. Unmask the host's OVS units by hand and remove the \
                 entry from {}",
                DAEMON_UNITS.join(", "),
                crate::host::paths::LEDGER
            ),
        )
        .into()),
    }
}

/// The inverse of a `host_ovs_stopped` entry: start again exactly what was stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Undo {
    daemons: Vec<StoppedDaemon>,
    units: Vec<String>,
    started: Vec<String>,
    masked: Vec<String>,
}

impl Undo {
    /// Plans it (read only), refusing an entry that names anything but the host's OVS; `None`
    /// for any other entry.
    pub fn plan(entry: &Entry) -> Result<Option<Undo>> {
        let Entry::HostOvsStopped {
            daemons,
            units,
            started,
            masked,
            ..
        } = entry
        else {
            return Ok(None);
        };
        validate(daemons, units, started)?;
        validate_masked(masked)?;
        Ok(Some(Undo {
            daemons: daemons.clone(),
            units: units.clone(),
            started: started.clone(),
            masked: masked.clone(),
        }))
    }

    pub fn describe(&self) -> String {
        let what = self.starts();
        match self.masked.is_empty() {
            true => what,
            false => format!("unmask {}, {what}", self.masked.join(", ")),
        }
    }

    fn starts(&self) -> String {
        let Undo {
            daemons,
            units,
            started,
            ..
        } = self;
        match (units.is_empty(), started.is_empty()) {
            (true, true) => format!(
                "start the host's OVS again as it ran: {}",
                daemons
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (false, true) => format!("enable and start {}", units.join(", ")),
            (true, false) => format!("start {} (not enabled)", started.join(", ")),
            (false, false) => format!(
                "enable and start {}, start {}",
                units.join(", "),
                started.join(", ")
            ),
        }
    }

    pub fn apply(&self) -> Result<()> {
        undo(&self.daemons, &self.units, &self.started, &self.masked)
    }
}
