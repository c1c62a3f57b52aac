//! Processes seen through the host's `/proc` (the DaemonSet runs with `hostPID`).

use super::HostRoot;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The pid in a pid file, if the file is a regular file and holds a plausible pid. A pid file
/// is input: anything else (a FIFO, garbage, 0 or 1) is no pid.
pub fn read_pidfile(path: &std::path::Path) -> Option<u32> {
    let bytes = super::read_regular(path).ok()??;
    let pid: u32 = std::str::from_utf8(&bytes).ok()?.trim().parse().ok()?;
    (pid > 1 && pid <= i32::MAX as u32).then_some(pid)
}

/// Whether `pid` is a live process in this process's own pid namespace; a zombie (empty
/// command line) counts as dead.
pub fn alive_here(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// The host's `/proc`: `<host-root>/proc` when the host root has one (a host root at `/`, or a
/// DaemonSet that mounts the host's /proc there), otherwise this process's own `/proc`, which
/// with `hostPID` is the host's.
fn proc_dir(host: &HostRoot) -> Result<PathBuf> {
    if host.is_dir("/proc/self")? {
        host.resolve("/proc")
    } else {
        Ok(PathBuf::from("/proc"))
    }
}

/// A file of a process under `dir`; `None` when the process (or the file) is gone.
fn read_in(dir: &Path, pid: u32, file: &str) -> Result<Option<Vec<u8>>> {
    let p = dir.join(pid.to_string()).join(file);
    match std::fs::read(&p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

fn proc_file(host: &HostRoot, pid: u32, file: &str) -> Result<Option<Vec<u8>>> {
    read_in(&proc_dir(host)?, pid, file)
}

/// The lowest pid whose process runs `program` (by `comm`, which the kernel cuts at 15 bytes).
pub fn find(host: &HostRoot, program: &str) -> Result<Option<u32>> {
    let dir = proc_dir(host)?;
    let comm: String = program.chars().take(15).collect();
    let mut pids: Vec<u32> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Some(c) = read_in(&dir, pid, "comm")? else {
            continue;
        };
        if String::from_utf8_lossy(&c).trim_end() == comm {
            return Ok(Some(pid));
        }
    }
    Ok(None)
}

/// The command line of a live process, NUL-separated arguments split.
pub fn cmdline(host: &HostRoot, pid: u32) -> Result<Option<Vec<String>>> {
    let Some(bytes) = proc_file(host, pid, "cmdline")? else {
        return Ok(None);
    };
    if bytes.is_empty() {
        // A zombie or kernel thread: not a live daemon.
        return Ok(None);
    }
    Ok(Some(
        bytes
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    ))
}

/// The file name of a command line's program (`argv[0]` without its directory).
fn program(cmdline: &[String]) -> Option<&str> {
    cmdline.first().and_then(|a0| a0.rsplit('/').next())
}

/// Whether `pid` is alive and runs `program` (guards against a recycled pid).
pub fn runs(host: &HostRoot, pid: u32, name: &str) -> Result<bool> {
    Ok(cmdline(host, pid)?.is_some_and(|c| {
        program(&c) == Some(name) || c.first().is_some_and(|a0| a0.contains(name))
    }))
}

/// The parent of a live process, from `/proc/<pid>/stat` (the field after the parenthesised
/// command name, which may itself hold spaces and parentheses).
pub fn ppid(host: &HostRoot, pid: u32) -> Result<Option<u32>> {
    let Some(bytes) = proc_file(host, pid, "stat")? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let Some((_, rest)) = text.rsplit_once(')') else {
        return Ok(None);
    };
    Ok(rest
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0))
}

/// The `ncp-bootstrap ovs run` that supervises `pid`, if that is its parent: such daemons are
/// the nsx-ovs container's, not the host's (the two DaemonSets start in no particular order).
pub fn ovs_run_parent(host: &HostRoot, pid: u32) -> Result<Option<u32>> {
    let Some(parent) = ppid(host, pid)? else {
        return Ok(None);
    };
    let ours = cmdline(host, parent)?.is_some_and(|c| {
        program(&c) == Some("ncp-bootstrap") && c.windows(2).any(|w| w[0] == "ovs" && w[1] == "run")
    });
    Ok(ours.then_some(parent))
}

/// The `OVS_*` variables of a process's environment (where its pid files and sockets live).
pub fn ovs_environ(host: &HostRoot, pid: u32) -> Result<Vec<(String, String)>> {
    let bytes = proc_file(host, pid, "environ")?.unwrap_or_default();
    Ok(bytes
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            k.starts_with("OVS_")
                .then(|| (k.to_string(), v.to_string()))
        })
        .collect())
}

/// The pid holding a `flock` on the file or directory with this device and inode, from this
/// process's `/proc/locks` (pids as this pid namespace sees them; `None` when none is listed or
/// the holder is outside the namespace). Lines are input: one that does not parse is skipped.
pub fn flock_holder(dev: u64, ino: u64) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    flock_holder_in(&text, dev, ino)
}

/// Whether any process holds a flock on the file (`dev`, `ino`), whoever it is.
pub fn flock_held(dev: u64, ino: u64) -> bool {
    std::fs::read_to_string("/proc/locks").is_ok_and(|t| flock_lines(&t, dev, ino).next().is_some())
}

/// The `/proc/locks` lines of granted flocks on the file (waiters, `->`, are not holders).
fn flock_lines(text: &str, dev: u64, ino: u64) -> impl Iterator<Item = Vec<&str>> {
    // dev_t as the kernel splits it (the glibc/Linux encoding), printed `%02x:%02x:%lu`.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let want = format!("{major:02x}:{minor:02x}:{ino}");
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<&str>>())
        // `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`; blocked waiters have `->` first.
        .filter(move |f| f.len() >= 6 && f[1] == "FLOCK" && f[5] == want)
}

fn flock_holder_in(text: &str, dev: u64, ino: u64) -> Option<u32> {
    flock_lines(text, dev, ino).find_map(|f| f[4].parse().ok().filter(|p| *p > 0))
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn the_holder_of_a_flock_is_read_from_proc_locks() {
        // dev 0xfd01 = major 0xfd, minor 0x01.
        let text = "1: POSIX  ADVISORY  WRITE 77 fd:01:99 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 4321 fd:01:5678 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 4400 fd:01:5678 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE garbage fd:01:42 0 EOF\n";
        assert_eq!(flock_holder_in(text, 0xfd01, 5678), Some(4321));
        assert_eq!(
            flock_holder_in(text, 0xfd01, 99),
            None,
            "a POSIX lock is not a flock"
        );
        assert_eq!(flock_holder_in(text, 0xfd01, 42), None, "an unreadable pid");
        assert_eq!(flock_holder_in(text, 0x0801, 5678), None, "another device");
    }
}
