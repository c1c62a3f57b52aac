//! The OVS daemons' own logs, capped the way NCP caps its logs (`log_rotation_file_max_mb`,
//! `log_rotation_backup_count`). A node whose OVS runs in our container has no logrotate rule
//! for these files (RHEL, or a host whose OVS package `install` stopped), so without this they
//! grow until the disk is full.
//!
//! Rotation is the usual shift: `X.log.N-1` → `X.log.N` (the oldest beyond the count removed),
//! `X.log` → `X.log.1`, then `vlog/reopen` makes the daemon open a new `X.log`. Until the
//! reopen it writes to the renamed file, so nothing is lost; a daemon still holding a file
//! that is gone (the disk space of a deleted log kept in use) is reported.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the logs' sizes are looked at: two `stat`s, cheap enough to do at every turn of
/// the supervisor's loop, so that a burst of debug logging (ovsdb-server at debug level writes
/// about 10 MiB/s under a stream of transactions) overshoots the cap by what a fifth of a
/// second holds.
pub const CHECK_EVERY: Duration = Duration::from_millis(200);

/// The cap, from `ovs.log_max_mb` and `ovs.log_backups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub max_bytes: u64,
    pub backups: u32,
}

/// `log.1` … `log.N`: the files rotation makes for `log` (at least `.1`, which a count of 0
/// uses for the instant between the rename and the reopen).
pub fn backup_paths(log: &Path, backups: u32) -> Vec<PathBuf> {
    (1..=backups.max(1)).map(|i| numbered(log, i)).collect()
}

fn numbered(log: &Path, i: u32) -> PathBuf {
    let mut s = log.as_os_str().to_os_string();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// Whether `log` is past the cap (a missing log is not).
pub fn is_over(log: &Path, cap: Cap) -> Result<bool> {
    match std::fs::metadata(log) {
        Ok(m) => Ok(m.len() > cap.max_bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("inspecting {}", log.display())),
    }
}

/// Shifts the numbered copies up and renames `log` to `log.1`. The daemon keeps writing to the
/// renamed file until it reopens.
pub fn shift(log: &Path, cap: Cap) -> Result<()> {
    let keep = cap.backups.max(1);
    remove_if_present(&numbered(log, keep))?;
    for i in (1..keep).rev() {
        let from = numbered(log, i);
        if from.exists() {
            std::fs::rename(&from, numbered(log, i + 1))
                .with_context(|| format!("renaming {}", from.display()))?;
        }
    }
    std::fs::rename(log, numbered(log, 1)).with_context(|| format!("renaming {}", log.display()))
}

/// After the daemon reopened: with no copies to keep, the one made for the reopen goes.
pub fn finish(log: &Path, cap: Cap) -> Result<()> {
    if cap.backups == 0 {
        remove_if_present(&numbered(log, 1))?;
    }
    Ok(())
}

fn remove_if_present(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", p.display()))
        }
        _ => Ok(()),
    }
}

/// Files under `dir` that process `pid` holds open although they were deleted: disk space a
/// rotation meant to free and did not.
pub fn open_deleted(pid: u32, dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.starts_with(&*dir.to_string_lossy()) && t.ends_with(" (deleted)"))
        .collect()
}

/// When the next look is due.
#[derive(Debug)]
pub struct Schedule {
    next: Instant,
}

impl Schedule {
    pub fn new(now: Instant) -> Schedule {
        Schedule {
            next: now + CHECK_EVERY,
        }
    }

    pub fn take_due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + CHECK_EVERY;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(dir: &Path) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_shift_keeps_the_newest_copies_and_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ovs-vswitchd.log");
        let cap = Cap {
            max_bytes: 3,
            backups: 2,
        };
        for round in 1..=3u64 {
            std::fs::write(&log, vec![b'x'; round as usize + 3]).unwrap();
            assert!(is_over(&log, cap).unwrap());
            shift(&log, cap).unwrap();
            finish(&log, cap).unwrap();
            assert!(
                !is_over(&log, cap).unwrap(),
                "the log itself is gone until reopened"
            );
        }
        // Rounds 3 and 2 are kept (sizes 6 and 5), round 1's copy went.
        assert_eq!(
            sizes(dir.path()),
            [
                ("ovs-vswitchd.log.1".to_string(), 6),
                ("ovs-vswitchd.log.2".to_string(), 5)
            ]
        );
        assert_eq!(
            backup_paths(&log, 2),
            [
                dir.path().join("ovs-vswitchd.log.1"),
                dir.path().join("ovs-vswitchd.log.2")
            ]
        );
    }

    #[test]
    fn with_no_copies_kept_the_rotated_log_goes_after_the_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ovsdb-server.log");
        let cap = Cap {
            max_bytes: 1,
            backups: 0,
        };
        std::fs::write(&log, b"abc").unwrap();
        shift(&log, cap).unwrap();
        assert!(dir.path().join("ovsdb-server.log.1").exists());
        finish(&log, cap).unwrap();
        assert!(sizes(dir.path()).is_empty());
    }

    #[test]
    fn a_deleted_file_held_open_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("held.log");
        let f = std::fs::File::create(&p).unwrap();
        assert!(open_deleted(std::process::id(), dir.path()).is_empty());
        std::fs::remove_file(&p).unwrap();
        let found = open_deleted(std::process::id(), dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("held.log"));
        drop(f);
    }
}
