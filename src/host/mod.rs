//! Every side effect on the host goes through here: path resolution under the host root (which
//! refuses to escape it), atomic writes with an explicit mode, and removal.

pub mod apparmor;
pub mod bundle;
mod files;
pub mod kmod;
pub mod mounts;
pub mod netlink;
pub mod networkd;
pub mod nm;
pub mod ovs;
pub mod packages;
pub mod paths;
pub mod probe;
pub mod proc;
pub mod run;
pub mod sysctl;
pub mod systemd;

pub use files::*;

use crate::error::{input, precondition};
use anyhow::{Context, Result};

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Longest symlink chain we follow, as the kernel's ELOOP limit.
const MAX_SYMLINKS: usize = 40;

/// The host's `/`, as this process sees it (`/` on a host, `/host` in a container).
#[derive(Debug, Clone)]
pub struct HostRoot {
    root: PathBuf,
}

/// A file's identity as we record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub sha256: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl HostRoot {
    pub fn new(root: &Path) -> Result<Self> {
        let root = fs::canonicalize(root).map_err(|e| {
            input(format!(
                "host root {}: {e}; pass an existing directory with --host-root or NCP_HOST_ROOT",
                root.display()
            ))
        })?;
        if !root.is_dir() {
            return Err(input(format!(
                "host root {} is not a directory",
                root.display()
            )));
        }
        Ok(HostRoot { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a host path (absolute, as the host sees it) to the path this process must use,
    /// following symlinks the way the kernel would but refusing any that lead outside the root.
    /// Components that do not exist yet are appended as they are.
    pub fn resolve(&self, host_path: &str) -> Result<PathBuf> {
        let mut todo: VecDeque<OsString> = components(Path::new(host_path))?;
        let mut cur = self.root.clone();
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                if cur == self.root {
                    return Err(precondition(format!(
                        "host path {host_path} climbs above the host root {} with `..`",
                        self.root.display()
                    )));
                }
                cur.pop();
                continue;
            }
            let next = cur.join(&c);
            let meta = match fs::symlink_metadata(&next) {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    cur = next;
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("inspecting {}", next.display())),
            };
            if !meta.file_type().is_symlink() {
                cur = next;
                continue;
            }
            hops += 1;
            if hops > MAX_SYMLINKS {
                return Err(precondition(format!(
                    "host path {host_path}: too many symlinks (loop?) at {}",
                    next.display()
                )));
            }
            let target = fs::read_link(&next)
                .with_context(|| format!("reading symlink {}", next.display()))?;
            let mut rest = components(&target)?;
            if target.is_absolute() {
                // A link on the host names a host path (`/var/run -> /run` on Debian and
                // Ubuntu): read it under the host root, as chroot would.
                cur = self.root.clone();
            } else if climbs_out(&cur, &self.root, &rest) {
                return Err(self.escape(host_path, &next, &target));
            }
            rest.extend(todo);
            todo = rest;
        }
        Ok(cur)
    }

    fn escape(&self, host_path: &str, link: &Path, target: &Path) -> anyhow::Error {
        precondition(format!(
            "host path {host_path} goes through the symlink {} -> {}, which points outside the host root {}; \
             refusing to follow it. Point the link inside the host root (or run with the right --host-root)",
            link.display(),
            target.display(),
            self.root.display()
        ))
    }

    /// Reads a host file; `None` when it does not exist. Anything but a regular file is
    /// refused by name (a FIFO would block the read forever).
    pub fn read(&self, host_path: &str) -> Result<Option<Vec<u8>>> {
        read_regular(&self.resolve(host_path)?)
    }

    pub fn exists(&self, host_path: &str) -> Result<bool> {
        let p = self.resolve(host_path)?;
        Ok(fs::symlink_metadata(p).is_ok())
    }

    pub fn is_dir(&self, host_path: &str) -> Result<bool> {
        Ok(self.resolve(host_path)?.is_dir())
    }

    /// Hash and mode of a regular host file, `None` when absent.
    pub fn file_state(&self, host_path: &str) -> Result<Option<FileState>> {
        let p = self.resolve(host_path)?;
        let Some((meta, bytes)) = read_regular_with_meta(&p)? else {
            return Ok(None);
        };
        Ok(Some(FileState {
            sha256: sha256_hex(&bytes),
            mode: meta.permissions().mode() & 0o7777,
            uid: std::os::unix::fs::MetadataExt::uid(&meta),
            gid: std::os::unix::fs::MetadataExt::gid(&meta),
        }))
    }

    /// The directories of `host_dir` that do not exist yet, outermost first.
    pub fn missing_dirs(&self, host_dir: &str) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        let mut cur = Some(Path::new(host_dir));
        while let Some(d) = cur {
            let s = d.to_string_lossy();
            if self.exists(&s)? {
                break;
            }
            missing.push(s.into_owned());
            cur = d.parent();
        }
        missing.reverse();
        Ok(missing)
    }

    /// The host path of a path of this process: one under the host root, or a host directory
    /// a container mounts at another path (NCP's nsx-ovs: its /etc/openvswitch is the host's
    /// /var/run/nsx-ujo/openvswitch-db), found in the mount table and checked to be the same
    /// directory. `None` for anything else, which no host path names.
    pub fn host_path_of(&self, p: &Path) -> Option<String> {
        match p.strip_prefix(&self.root) {
            Ok(rest) => Some(format!("/{}", rest.display())),
            Err(_) => {
                // A file's directory is what a mount shows; the file may not exist yet.
                let (dir, name) = match p.file_name() {
                    Some(n) if !p.is_dir() => (p.parent()?, Some(n)),
                    _ => (p, None),
                };
                let d = mounts::host_path(self, dir)?;
                Some(match name {
                    Some(n) => format!("{}/{}", d.trim_end_matches('/'), n.to_string_lossy()),
                    None => d,
                })
            }
        }
    }

    /// Whether the host path itself (its last component, not what it names) is a symlink.
    pub fn is_symlink(&self, host_path: &str) -> Result<bool> {
        let p = Path::new(host_path);
        let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
            return Ok(false);
        };
        let here = self.resolve(&parent.to_string_lossy())?.join(name);
        Ok(fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink()))
    }

    /// Refuses a directory path one of whose components is a symlink to nothing (an operator's
    /// `/etc/cni/net.d -> /data/cni/net.d` on a node where /data is not mounted): writing
    /// there would create directories where the link points, or fail half way. Checked in
    /// plans, before anything changes.
    pub fn check_no_dangling_link(&self, host_dir: &str) -> Result<()> {
        let mut prefix = PathBuf::from("/");
        for c in components(Path::new(host_dir))? {
            let parent = self.resolve(&prefix.to_string_lossy())?;
            prefix.push(&c);
            let here = parent.join(&c);
            let is_link = fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink());
            if is_link && !self.resolve(&prefix.to_string_lossy())?.exists() {
                let target = fs::read_link(&here).unwrap_or_default();
                return Err(precondition(format!(
                    "{} is a symlink to {}, which does not exist (under the host root {}): \
                     create the directory it names, or remove the link, then run again",
                    prefix.display(),
                    target.display(),
                    self.root.display()
                )));
            }
        }
        Ok(())
    }

    /// Creates the missing directories of `host_dir` (mode 0755) and returns the host paths it
    /// created, outermost first, so that they can be recorded and removed again.
    pub fn create_dirs(&self, host_dir: &str) -> Result<Vec<String>> {
        let mut made = Vec::new();
        for d in self.missing_dirs(host_dir)? {
            let p = self.resolve(&d)?;
            match fs::create_dir(&p) {
                Ok(()) => {}
                // Another run made it between our look and our mkdir: it is theirs to record.
                Err(e) if e.kind() == ErrorKind::AlreadyExists && p.is_dir() => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("creating directory {}", p.display()))
                }
            }
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("setting mode of {}", p.display()))?;
            made.push(d);
        }
        Ok(made)
    }

    /// Writes a host file atomically: a temp file in the same directory with the final mode,
    /// fsync, rename over the target, fsync the directory. A rename never writes into the old
    /// inode, so replacing a binary that is running works (no "text file busy").
    /// The parent directory must exist (see `create_dirs`).
    pub fn write_atomic(&self, host_path: &str, bytes: &[u8], mode: u32) -> Result<()> {
        write_atomic_at(&self.resolve(host_path)?, bytes, mode)
    }

    /// Gives a host file (not what a symlink names) an owner and group.
    pub fn set_owner(&self, host_path: &str, uid: u32, gid: u32) -> Result<()> {
        let p = self.resolve(host_path)?;
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
            .with_context(|| format!("giving {} the owner {uid}:{gid}", p.display()))
    }

    /// Removes the temp files a killed run left beside a host file (see `temp_name`).
    pub fn sweep_temps(&self, host_path: &str) -> Result<()> {
        let p = self.resolve(host_path)?;
        match (p.parent(), p.file_name()) {
            (Some(dir), Some(name)) => sweep_temps_of(dir, &name.to_string_lossy()),
            _ => Ok(()),
        }
    }

    /// Removes a host file if present; returns whether it was there.
    pub fn remove_file(&self, host_path: &str) -> Result<bool> {
        let p = self.resolve(host_path)?;
        match fs::remove_file(&p) {
            Ok(()) => {
                if let Some(dir) = p.parent() {
                    fsync_dir(dir)?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }

    /// Removes a directory only if it is empty; returns whether it was removed.
    pub fn remove_empty_dir(&self, host_path: &str) -> Result<bool> {
        let p = self.resolve(host_path)?;
        match fs::remove_dir(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => Ok(false),
            Err(e) => Err(e).with_context(|| format!("removing directory {}", p.display())),
        }
    }
}

/// The components of a path, without the root and `.`.
fn components(p: &Path) -> Result<VecDeque<OsString>> {
    let mut out = VecDeque::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => out.push_back(OsString::from("..")),
            Component::Normal(n) => out.push_back(n.to_os_string()),
            Component::Prefix(_) => return Err(input(format!("unsupported path {}", p.display()))),
        }
    }
    Ok(out)
}

/// Whether a relative symlink target, read in `cur`, climbs above `root` with its `..`s.
fn climbs_out(cur: &Path, root: &Path, rest: &VecDeque<OsString>) -> bool {
    let mut depth = cur
        .strip_prefix(root)
        .map(|p| p.components().count())
        .unwrap_or(0) as i64;
    for c in rest {
        if c == ".." {
            depth -= 1;
            if depth < 0 {
                return true;
            }
        } else {
            depth += 1;
        }
    }
    false
}

/// A field of the host's `/etc/os-release` (quotes removed), if the file and field exist.
/// Read from the host root: a container's own os-release describes the image, not the node.
pub fn os_release_field(host: &HostRoot, key: &str) -> Option<String> {
    let text = String::from_utf8(host.read(paths::OS_RELEASE).ok()??).ok()?;
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// A host root in a temporary directory, for unit tests.
#[cfg(test)]
pub(crate) fn temp_root() -> (tempfile::TempDir, HostRoot) {
    let t = tempfile::tempdir().unwrap();
    let h = HostRoot::new(t.path()).unwrap();
    (t, h)
}

#[cfg(test)]
mod tests {
    use super::temp_root as root;
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn plain_path_resolves_under_root() {
        let (_t, h) = root();
        assert_eq!(h.resolve("/etc/x").unwrap(), h.root().join("etc/x"));
    }

    #[test]
    fn dotdot_above_root_is_refused() {
        let (_t, h) = root();
        assert!(h.resolve("/etc/../../x").is_err());
        assert_eq!(h.resolve("/etc/../x").unwrap(), h.root().join("x"));
    }

    #[test]
    fn relative_link_inside_root_is_followed() {
        let (_t, h) = root();
        fs::create_dir_all(h.root().join("var/lib/cni")).unwrap();
        fs::create_dir_all(h.root().join("etc")).unwrap();
        symlink("../var/lib/cni", h.root().join("etc/cni")).unwrap();
        assert_eq!(
            h.resolve("/etc/cni/net.d").unwrap(),
            h.root().join("var/lib/cni/net.d")
        );
    }

    #[test]
    fn relative_links_climbing_out_of_root_are_refused() {
        let (_t, h) = root();
        fs::create_dir_all(h.root().join("etc")).unwrap();
        symlink("../../..", h.root().join("etc/rel")).unwrap();
        let e = h.resolve("/etc/rel/f").unwrap_err().to_string();
        assert!(e.contains("outside the host root"), "{e}");
    }

    #[test]
    fn absolute_links_are_host_paths_read_under_the_root() {
        let (_t, h) = root();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir_all(h.root().join("etc")).unwrap();
        symlink(outside.path(), h.root().join("etc/abs")).unwrap();
        let under = h.root().join(outside.path().strip_prefix("/").unwrap());
        assert_eq!(h.resolve("/etc/abs/f").unwrap(), under.join("f"));
    }

    /// The links of a stock Debian or Ubuntu root, seen through `--host-root`.
    #[test]
    fn a_debian_layout_resolves_under_the_root() {
        let (_t, h) = root();
        for d in ["run/lock", "var", "usr/lib", "usr/bin"] {
            fs::create_dir_all(h.root().join(d)).unwrap();
        }
        symlink("/run", h.root().join("var/run")).unwrap();
        symlink("/run/lock", h.root().join("var/lock")).unwrap();
        symlink("usr/lib", h.root().join("lib")).unwrap();
        symlink("usr/bin", h.root().join("bin")).unwrap();
        let r = h.root();
        assert_eq!(
            h.resolve("/var/run/openvswitch/db.sock").unwrap(),
            r.join("run/openvswitch/db.sock")
        );
        assert_eq!(h.resolve("/var/lock/x").unwrap(), r.join("run/lock/x"));
        assert_eq!(h.resolve("/lib/x").unwrap(), r.join("usr/lib/x"));
        assert_eq!(h.resolve("/bin/sh").unwrap(), r.join("usr/bin/sh"));
        // A relative hop after an absolute one still cannot climb out.
        symlink("../../..", h.root().join("run/up")).unwrap();
        assert!(h.resolve("/var/run/up/x").is_err());
    }

    #[test]
    fn link_loop_is_refused() {
        let (_t, h) = root();
        symlink("b", h.root().join("a")).unwrap();
        symlink("a", h.root().join("b")).unwrap();
        assert!(h.resolve("/a/x").is_err());
    }

    #[test]
    fn atomic_write_sets_exact_mode_and_replaces() {
        let (_t, h) = root();
        h.create_dirs("/opt/cni/bin").unwrap();
        h.write_atomic("/opt/cni/bin/x", b"one", 0o755).unwrap();
        h.write_atomic("/opt/cni/bin/x", b"two", 0o644).unwrap();
        let st = h.file_state("/opt/cni/bin/x").unwrap().unwrap();
        assert_eq!(st.mode, 0o644);
        assert_eq!(st.sha256, sha256_hex(b"two"));
        let names: Vec<_> = fs::read_dir(h.root().join("opt/cni/bin"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("x")], "no temp file left behind");
    }

    #[test]
    fn create_dirs_reports_only_what_it_made() {
        let (_t, h) = root();
        fs::create_dir_all(h.root().join("etc")).unwrap();
        let made = h.create_dirs("/etc/cni/net.d").unwrap();
        assert_eq!(
            made,
            vec!["/etc/cni".to_string(), "/etc/cni/net.d".to_string()]
        );
        assert!(h.create_dirs("/etc/cni/net.d").unwrap().is_empty());
    }
}
