//! The ledger: what this tool changed on the host, so that `cleanup` can undo exactly that.
//!
//! On disk: `<host-root>/var/lib/ncp-bootstrap/ledger.json`, rewritten atomically (temp file,
//! fsync, rename) after every entry, *before* the change it describes is made. A crash therefore
//! leaves a ledger that may list a change that did not happen (undo copes: it checks the host)
//! but never misses one that did.
//!
//! ```json
//! { "format": 1,
//!   "entries": [
//!     { "kind": "dir_created",  "step": "cni", "path": "/etc/cni/net.d" },
//!     { "kind": "file",         "step": "cni", "path": "/opt/cni/bin/nsx",
//!       "sha256": "…", "mode": 493,
//!       "before": { "state": "absent" } },
//!     { "kind": "file",         "step": "cni", "path": "/etc/cni/net.d/10-nsx.conflist",
//!       "sha256": "…", "mode": 420,
//!       "before": { "state": "replaced", "backup": "/var/lib/ncp-bootstrap/backup/etc/cni/net.d/10-nsx.conflist",
//!                   "sha256": "…", "mode": 420, "owner": { "uid": 0, "gid": 0 } } },
//!     { "kind": "package_removed", "step": "cni", "manager": "dpkg", "package": "nsx-cni",
//!       "version": "3.0.1", "backups": [ { "path": "…", "backup": "…", "sha256": "…", "mode": 493 } ] },
//!     { "kind": "profile_loaded", "step": "apparmor", "name": "node-agent-apparmor",
//!       "was_loaded": false, "reload_from": null },
//!     { "kind": "ovs_file_created", "step": "ovs", "path": "/etc/openvswitch/conf.db",
//!       "run_dir": "/var/run/openvswitch" },
//!     { "kind": "ovs_db_converted", "step": "ovs", "path": "/etc/openvswitch/conf.db",
//!       "backup": "/etc/openvswitch/conf.db.backup-8.3.0", "run_dir": "/var/run/openvswitch" },
//!     { "kind": "uplink_attached", "step": "uplink", "uplink": "eth1", "uplink_index": 2,
//!       "bridge": "br-int", "ovs_run_dir": "/var/run/openvswitch", "bridge_created": true,
//!       "uplink_was_up": true, "uplink_promisc": false, "mac": "52:54:00:12:34:56", "mtu": 1500,
//!       "addresses": [ { "summary": "10.0.0.5/24 dev#2", "raw": "<netlink bytes, hex>" } ],
//!       "routes": [ … ], "rules": [ … ],
//!       "ipv6_before": [ { "end": "bridge", "key": "accept_ra", "value": 1 } ] },
//!     { "kind": "kernel_module", "step": "kmod", "release": "6.1.0-57-amd64",
//!       "srcversion": "1EE68641F5D59B63F3CE00C", "was_loaded": true },
//!     { "kind": "monitor_released", "step": "monitor", "uplink": "eth1", "bridge": "br-int",
//!       "at": 1796000000, "absent_s": 31 }
//!   ],
//!   "state_dirs": [ "/var/lib" ] }
//! ```
//! Paths are host paths (as the host sees them). Entries are undone in reverse order. A file
//! written twice keeps its first `before`, so the backup is always of the host's original, with
//! its mode and owner (`owner` is absent in ledgers written before it was recorded). A backup
//! that a cleanup kept (the file had changed since we wrote it) is never overwritten: the next
//! install backs up to a numbered name beside it (`….1`, `….2`).

mod files;

pub use files::{install_file, kept_backups, prune_state, take_backup, write_backup, FileUndo};

use crate::host::{paths, HostRoot};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Ledger {
    pub format: u32,
    pub entries: Vec<Entry>,
    /// Directories above the state dir that the first run had to create (`/var/lib` on a bare
    /// host root); removed, if empty, with the state dir itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_dirs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    DirCreated {
        step: String,
        path: String,
    },
    File {
        step: String,
        path: String,
        sha256: String,
        mode: u32,
        before: Before,
    },
    PackageRemoved {
        step: String,
        manager: String,
        package: String,
        version: String,
        backups: Vec<Backup>,
    },
    /// An AppArmor profile we loaded. Undo unloads it, or, when an older copy was loaded before
    /// and its file was backed up, reloads that copy.
    ProfileLoaded {
        step: String,
        name: String,
        was_loaded: bool,
        reload_from: Option<String>,
    },
    /// The uplink's state before `uplink attach` changed anything: what detach restores.
    UplinkAttached(Box<UplinkPreState>),
    /// An uplink that something else (NCP's manual procedure) had attached to the host's OVS,
    /// taken back to node-if by `install` before it stopped that OVS. Recorded as the uplink
    /// carries it afterwards; cleanup puts the port and the addresses back on the bridge once the
    /// host's OVS runs again.
    UplinkReleased(Box<UplinkPreState>),
    /// A file `ovs run` made for OVS (the database it created, its lock, a daemon's log):
    /// cleanup removes it once no OVS daemon of `run_dir` is alive.
    OvsFileCreated {
        step: String,
        path: String,
        run_dir: String,
    },
    /// A database `ovs run` converted to the image's schema after copying it to `backup`:
    /// cleanup puts the copy back, so that the host's own (older) OVS reads it again.
    OvsDbConverted {
        step: String,
        path: String,
        backup: String,
        run_dir: String,
    },
    /// What `monitor` did: nsx-ovs was gone for `absent_s` seconds, so at `at` (seconds since
    /// the epoch) it gave `uplink` its addresses back from `bridge`. A record for `status`;
    /// nothing to undo. The next attach of the uplink drops it.
    MonitorReleased {
        step: String,
        uplink: String,
        bridge: String,
        at: u64,
        absent_s: u64,
    },
    /// NSX's OVS kernel module, installed for kernel `release` (`srcversion` is the bundle's
    /// `openvswitch.ko`), with whether an `openvswitch` was loaded before and which. Recorded
    /// before the module's files, so that cleanup removes those first and then re-indexes the
    /// tree and gives the distribution's module back.
    KernelModule {
        step: String,
        release: String,
        srcversion: String,
        was_loaded: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        was_srcversion: Option<String>,
    },
    /// A host OVS that `install` stopped: how to start it again.
    HostOvsStopped {
        step: String,
        daemons: Vec<StoppedDaemon>,
        /// systemd units that were enabled and are now disabled.
        units: Vec<String>,
        /// Units that were active without being enabled: started as another unit's dependency
        /// (netplan's netplan-ovs-cleanup.service pulls in ovsdb-server.service at boot).
        /// Started again by cleanup, not enabled.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        started: Vec<String>,
        /// The daemons' own units, masked so that no other unit starts them at boot (netplan's
        /// netplan-ovs-cleanup.service wants ovsdb-server.service, enabled or not). Unmasked by
        /// cleanup before anything is started again.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        masked: Vec<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoppedDaemon {
    pub name: String,
    pub cmdline: Vec<String>,
    /// Its `OVS_*` environment (run, db and log dirs).
    pub env: Vec<(String, String)>,
}

/// An empty string, as earlier ledgers wrote for "none", reads as `None`.
fn empty_is_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.filter(|s| !s.is_empty()))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UplinkPreState {
    pub step: String,
    pub uplink: String,
    pub uplink_index: u32,
    pub bridge: String,
    /// The OVS run directory whose `db.sock` serves the bridge; `None` for an attach that
    /// something else made (its bridge settings are not ours to restore). Ledgers written
    /// before the rename call it `ovs_db_dir`, and wrote an empty string for none.
    #[serde(
        alias = "ovs_db_dir",
        default,
        deserialize_with = "empty_is_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub ovs_run_dir: Option<String>,
    pub bridge_created: bool,
    /// A bridge that existed: its `other-config:hwaddr` and `mtu_request` before we set them.
    #[serde(default)]
    pub bridge_hwaddr_before: Option<String>,
    #[serde(default)]
    pub bridge_mtu_request_before: Option<String>,
    pub uplink_was_up: bool,
    /// The uplink's user promiscuous flag before the attach, which holds it on for the instant
    /// the port is added (`None` in a ledger written before that was recorded: left alone).
    #[serde(default)]
    pub uplink_promisc: Option<bool>,
    pub mac: String,
    pub mtu: u32,
    /// The OVS database file, so that cleanup can edit it when no OVS runs any more.
    #[serde(default)]
    pub conf_db: Option<String>,
    pub addresses: Vec<crate::netmodel::Recorded>,
    pub routes: Vec<crate::netmodel::Recorded>,
    pub rules: Vec<crate::netmodel::Recorded>,
    /// IPv6 settings the attach changed for `node.enable_ipv6`, as they were: detach writes
    /// them back (the bridge's only when it stays).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6_before: Vec<crate::host::sysctl::Before>,
}

/// A recorded file compared with what the host has now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCheck {
    /// The ledger does not record this path.
    NotRecorded,
    /// Recorded, and no longer on the host.
    Gone,
    /// Bytes and mode as written.
    AsWritten,
    /// Our bytes, another mode.
    ModeChanged,
    /// Other bytes: someone changed it after we wrote it.
    ContentChanged,
}

impl FileCheck {
    /// What we wrote (`sha256`, `mode`) against what is there now.
    pub fn of(sha256: &str, mode: u32, now: Option<&crate::host::FileState>) -> FileCheck {
        match now {
            None => FileCheck::Gone,
            Some(s) if s.sha256 != sha256 => FileCheck::ContentChanged,
            Some(s) if s.mode != mode => FileCheck::ModeChanged,
            Some(_) => FileCheck::AsWritten,
        }
    }

    /// Whether the bytes on the host are the ones we wrote.
    pub fn content_ours(self) -> bool {
        matches!(self, FileCheck::AsWritten | FileCheck::ModeChanged)
    }

    /// Whether it drifted from what we wrote (changed in any way, or gone).
    pub fn drifted(self) -> bool {
        matches!(
            self,
            FileCheck::Gone | FileCheck::ModeChanged | FileCheck::ContentChanged
        )
    }
}

impl Entry {
    /// A file entry against the host; any other entry is `NotRecorded`.
    pub fn check(&self, host: &HostRoot) -> Result<FileCheck> {
        let Entry::File {
            path, sha256, mode, ..
        } = self
        else {
            return Ok(FileCheck::NotRecorded);
        };
        Ok(FileCheck::of(
            sha256,
            *mode,
            host.file_state(path)?.as_ref(),
        ))
    }
}

impl UplinkPreState {
    /// The OVS run directory that serves the bridge, which undoing the attach needs.
    pub fn run_dir(&self) -> Result<&str> {
        self.ovs_run_dir.as_deref().ok_or_else(|| {
            crate::error::input(format!(
                "the ledger's {} entry for {} names no OVS run directory (ovs_run_dir), so its \
                 bridge {} cannot be reached: fix or remove that entry",
                self.step, self.uplink, self.bridge
            ))
        })
    }

    /// Records what the uplink carries, as it is on the uplink (`carried` decodes it).
    pub fn set_carried(&mut self, c: &crate::netmodel::Carried) {
        use crate::netmodel;
        self.addresses = c.addresses.iter().map(netmodel::record_address).collect();
        self.routes = c.routes.iter().map(netmodel::record_route).collect();
        self.rules = c.rules.iter().map(netmodel::record_rule).collect();
    }

    /// What the uplink carried, decoded from the recorded netlink bytes, as it was on the uplink.
    pub fn carried(&self) -> Result<crate::netmodel::Carried> {
        use crate::netmodel;
        let bad = |what: &str, s: &str| {
            crate::error::input(format!(
                "the ledger's {what} `{s}` cannot be decoded; {} was altered",
                paths::LEDGER
            ))
        };
        let mut c = netmodel::Carried::default();
        for r in &self.addresses {
            c.addresses
                .push(netmodel::restore_address(r).ok_or_else(|| bad("address", &r.summary))?);
        }
        for r in &self.routes {
            c.routes
                .push(netmodel::restore_route(r).ok_or_else(|| bad("route", &r.summary))?);
        }
        for r in &self.rules {
            c.rules
                .push(netmodel::restore_rule(r).ok_or_else(|| bad("rule", &r.summary))?);
        }
        Ok(c)
    }
}

impl Entry {
    /// The entry's kind as the ledger file names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::DirCreated { .. } => "dir_created",
            Entry::File { .. } => "file",
            Entry::PackageRemoved { .. } => "package_removed",
            Entry::ProfileLoaded { .. } => "profile_loaded",
            Entry::UplinkAttached(_) => "uplink_attached",
            Entry::UplinkReleased(_) => "uplink_released",
            Entry::HostOvsStopped { .. } => "host_ovs_stopped",
            Entry::KernelModule { .. } => "kernel_module",
            Entry::OvsFileCreated { .. } => "ovs_file_created",
            Entry::OvsDbConverted { .. } => "ovs_db_converted",
            Entry::MonitorReleased { .. } => "monitor_released",
        }
    }

    pub fn step(&self) -> &str {
        match self {
            Entry::DirCreated { step, .. }
            | Entry::File { step, .. }
            | Entry::PackageRemoved { step, .. }
            | Entry::ProfileLoaded { step, .. } => step,
            Entry::UplinkAttached(p) | Entry::UplinkReleased(p) => &p.step,
            Entry::HostOvsStopped { step, .. }
            | Entry::KernelModule { step, .. }
            | Entry::OvsFileCreated { step, .. }
            | Entry::OvsDbConverted { step, .. }
            | Entry::MonitorReleased { step, .. } => step,
        }
    }
}

/// The owner and group of a file we replaced, restored with it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// What was at a path before we wrote it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Before {
    Absent,
    Replaced {
        backup: String,
        sha256: String,
        mode: u32,
        /// `None` in a ledger written before owners were recorded: the restored file keeps
        /// whatever owner it gets.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<Owner>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Backup {
    pub path: String,
    pub backup: String,
    pub sha256: String,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

impl Ledger {
    /// Loads the ledger; an absent one is empty. A corrupt one is an error naming the file:
    /// guessing would make cleanup undo the wrong things.
    pub fn load(host: &HostRoot) -> Result<Ledger> {
        let Some(bytes) = host.read(paths::LEDGER)? else {
            return Ok(Ledger {
                format: FORMAT,
                ..Ledger::default()
            });
        };
        let ledger: Ledger = serde_json::from_slice(&bytes).map_err(|e| {
            crate::error::input(format!(
                "ledger {} is not valid ({e}); it records what cleanup must undo, so it is not \
                 guessed at: restore it from a backup or remove it to forget what was recorded",
                paths::LEDGER
            ))
        })?;
        // Cleanup removes these directories (when empty): only the state directory's own
        // ancestors may be named, written plainly.
        if let Some(bad) = ledger.state_dirs.iter().find(|d| !is_state_ancestor(d)) {
            return Err(crate::error::input(format!(
                "ledger {}: `state_dirs` names {bad:?}, which is not the state directory {} or \
                 one of its parents; the ledger was altered. Fix or remove that entry",
                paths::LEDGER,
                paths::STATE_DIR
            )));
        }
        if ledger.format != FORMAT {
            return Err(crate::error::input(format!(
                "ledger {} has format {}, this build reads format {FORMAT}",
                paths::LEDGER,
                ledger.format
            )));
        }
        Ok(ledger)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pre-state of an attached uplink, if recorded.
    pub fn uplink(&self, uplink: &str) -> Option<&UplinkPreState> {
        self.entries.iter().find_map(|e| match e {
            Entry::UplinkAttached(p) if p.uplink == uplink => Some(&**p),
            _ => None,
        })
    }

    /// A host path we may have written, against what is there now.
    pub fn check_file(&self, host: &HostRoot, path: &str) -> Result<FileCheck> {
        match self.file(path) {
            Some(e) => e.check(host),
            None => Ok(FileCheck::NotRecorded),
        }
    }

    /// The file entry for a host path, if we wrote it.
    pub fn file(&self, path: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| matches!(e, Entry::File { path: p, .. } if p == path))
    }

    pub fn save(&mut self, host: &HostRoot) -> Result<()> {
        // `steps::execute` makes it before the first change; made here, the directories it
        // needed are kept with the rest.
        if !host.is_dir(paths::STATE_DIR)? {
            create_state_dir(host)?;
            for d in Ledger::load(host)?.state_dirs {
                if !self.state_dirs.contains(&d) {
                    self.state_dirs.push(d);
                }
            }
        }
        let mut bytes = serde_json::to_vec_pretty(self).context("serialising the ledger")?;
        bytes.push(b'\n');
        host.write_atomic(paths::LEDGER, &bytes, 0o600)
            .with_context(|| format!("writing the ledger {}", paths::LEDGER))
    }

    /// Adds an entry (a file entry replaces the one for the same path, keeping its `before`)
    /// and makes it durable.
    pub fn record(&mut self, host: &HostRoot, mut entry: Entry) -> Result<()> {
        // A run resumed after a kill records its directories again: once is enough.
        if matches!(entry, Entry::DirCreated { .. }) && self.entries.contains(&entry) {
            return Ok(());
        }
        if let Entry::File { path, before, .. } = &mut entry {
            if let Some(Entry::File { before: first, .. }) = self.file(path) {
                *before = first.clone();
            }
            let path = path.clone();
            self.entries
                .retain(|e| !matches!(e, Entry::File { path: p, .. } if *p == path));
        }
        self.entries.push(entry);
        self.save(host)
    }

    /// Replaces the recorded attach of the same uplink where it stands (the order of entries is
    /// the order of undo), and makes that durable.
    pub fn replace_uplink(&mut self, host: &HostRoot, pre: UplinkPreState) -> Result<()> {
        let at = self
            .entries
            .iter()
            .position(|e| matches!(e, Entry::UplinkAttached(p) if p.uplink == pre.uplink))
            .with_context(|| format!("no recorded attach of {} to replace", pre.uplink))?;
        self.entries[at] = Entry::UplinkAttached(Box::new(pre));
        self.save(host)
    }

    /// Drops an entry once it has been undone, and makes that durable.
    pub fn forget(&mut self, host: &HostRoot, entry: &Entry) -> Result<()> {
        if let Some(i) = self.entries.iter().rposition(|e| e == entry) {
            self.entries.remove(i);
        }
        self.save(host)
    }
}

/// Creates the state directory, with a ledger that names the directories it had to create
/// (`state_dirs`), in one step: the missing chain is built under a temporary name beside its
/// outermost directory and renamed into place. A run killed at any moment therefore leaves
/// either no new directory or one whose ledger says it is ours, and cleanup removes exactly
/// those. Call with the lock held: a temporary chain found then is a killed run's, and goes.
pub fn create_state_dir(host: &HostRoot) -> Result<()> {
    let missing = host.missing_dirs(paths::STATE_DIR)?;
    let mut ancestors: Vec<&str> = vec!["/"];
    ancestors.extend(
        paths::STATE_DIR
            .match_indices('/')
            .skip(1)
            .map(|(i, _)| &paths::STATE_DIR[..i]),
    );
    for a in ancestors {
        if host.is_dir(a)? {
            crate::host::sweep_temp_dirs(&host.resolve(a)?)?;
        }
    }
    let Some(top) = missing.first() else {
        return Ok(());
    };
    let top_real = host.resolve(top)?;
    let (Some(parent), Some(name)) = (top_real.parent(), top_real.file_name()) else {
        anyhow::bail!("cannot create the state directory {}", paths::STATE_DIR);
    };
    let staging = parent.join(crate::host::temp_name(
        &name.to_string_lossy(),
        std::process::id(),
    ));
    let inner = staging.join(
        std::path::Path::new(paths::STATE_DIR)
            .strip_prefix(top)
            .unwrap_or(std::path::Path::new("")),
    );
    let ledger = Ledger {
        format: FORMAT,
        entries: Vec::new(),
        state_dirs: missing.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&ledger).context("serialising the ledger")?;
    bytes.push(b'\n');
    let built = crate::host::build_dir_chain(&staging, &inner, "ledger.json", &bytes, 0o600)
        .and_then(|()| {
            std::fs::rename(&staging, &top_real).with_context(|| {
                format!("renaming {} to {}", staging.display(), top_real.display())
            })
        });
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    built?;
    crate::host::fsync_dir(parent)
}

/// Whether `dir` is `/var/lib/ncp-bootstrap` or one of its parents other than `/`, written as
/// a plain absolute path.
fn is_state_ancestor(dir: &str) -> bool {
    let plain = dir.starts_with('/')
        && dir.len() > 1
        && !dir.ends_with('/')
        && dir[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    plain
        && (dir == paths::STATE_DIR
            || paths::STATE_DIR
                .strip_prefix(dir)
                .is_some_and(|rest| rest.starts_with('/')))
}

/// Where the backup of a host path lives.
pub fn backup_path(host_path: &str) -> String {
    format!("{}{}", paths::BACKUP_DIR, host_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, sha: &str, before: Before) -> Entry {
        Entry::File {
            step: "cni".into(),
            path: path.into(),
            sha256: sha.into(),
            mode: 0o644,
            before,
        }
    }

    #[test]
    fn a_file_written_twice_keeps_its_first_before_and_survives_a_reload() {
        let t = tempfile::tempdir().unwrap();
        let host = HostRoot::new(t.path()).unwrap();
        let mut l = Ledger::load(&host).unwrap();
        let original = Before::Replaced {
            backup: backup_path("/etc/x"),
            sha256: "old".into(),
            mode: 0o600,
            owner: Some(Owner {
                uid: 1234,
                gid: 2345,
            }),
        };
        l.record(&host, file("/etc/x", "v1", original.clone()))
            .unwrap();
        l.record(
            &host,
            Entry::DirCreated {
                step: "cni".into(),
                path: "/opt".into(),
            },
        )
        .unwrap();
        // The second write saw our own v1 as "before"; the host's original must win.
        let v1_backup = Before::Replaced {
            backup: backup_path("/etc/x"),
            sha256: "v1".into(),
            mode: 0o644,
            owner: None,
        };
        l.record(&host, file("/etc/x", "v2", v1_backup)).unwrap();
        let again = Ledger::load(&host).unwrap();
        assert_eq!(again, l);
        assert_eq!(again.entries.len(), 2);
        assert_eq!(again.file("/etc/x"), Some(&file("/etc/x", "v2", original)));
    }

    #[test]
    fn state_dirs_must_be_the_state_dirs_parents() {
        for ok in ["/var", "/var/lib", "/var/lib/ncp-bootstrap"] {
            assert!(is_state_ancestor(ok), "{ok}");
        }
        for bad in [
            "/",
            "/etc",
            "/var/lib/..",
            "/var/../etc",
            "var/lib",
            "/var/",
            "/var/li",
            "//var",
        ] {
            assert!(!is_state_ancestor(bad), "{bad}");
        }
    }

    #[test]
    fn a_ledger_that_calls_the_run_directory_ovs_db_dir_still_reads() {
        let old = r#"{"kind":"uplink_attached","step":"uplink","uplink":"eth1","uplink_index":2,
            "bridge":"br-int","ovs_db_dir":"/var/run/openvswitch","bridge_created":true,
            "uplink_was_up":true,"mac":"52:54:00:aa:bb:01","mtu":1500,
            "addresses":[],"routes":[],"rules":[]}"#;
        let Entry::UplinkAttached(p) = serde_json::from_str::<Entry>(old).unwrap() else {
            panic!("not an attach")
        };
        assert_eq!(p.ovs_run_dir.as_deref(), Some("/var/run/openvswitch"));
        let new = serde_json::to_string(&Entry::UplinkAttached(p)).unwrap();
        assert!(
            new.contains("\"ovs_run_dir\"") && !new.contains("ovs_db_dir"),
            "{new}"
        );
    }

    #[test]
    fn a_corrupt_ledger_is_an_error_not_a_guess() {
        let t = tempfile::tempdir().unwrap();
        let host = HostRoot::new(t.path()).unwrap();
        host.create_dirs(paths::STATE_DIR).unwrap();
        host.write_atomic(paths::LEDGER, b"{ nope", 0o600).unwrap();
        let e = Ledger::load(&host).unwrap_err().to_string();
        assert!(e.contains("ledger.json") && e.contains("not valid"), "{e}");
    }
}
