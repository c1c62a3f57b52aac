//! Where a directory of this process lies on the host when it is not under the host root: a
//! container's own mount of a host directory at another path. NCP's `nsx-ovs` mounts the host's
//! `/var/run/nsx-ujo` (subPath `openvswitch-db`) at `/etc/openvswitch`, while the host's own
//! `/etc/openvswitch` is under the host root (`/host/etc/openvswitch`). A record naming the
//! container's path would, read under the host root, name the host's other database.
//!
//! The mount table says it: the mount holding the directory names its filesystem (device) and
//! the directory within it (`root`); a mount of the same filesystem under the host root then
//! gives the host path. Each candidate is checked to be the very same directory (device and
//! inode) before it is used: the table is input like any other.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`, the fields used here.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// `major:minor` of the filesystem.
    pub dev: String,
    /// The directory of the filesystem that is mounted.
    pub root: PathBuf,
    /// Where it is mounted.
    pub point: PathBuf,
}

/// Parses mountinfo text; lines that do not have the fields are skipped (the kernel writes
/// them, but what is read back is checked all the same).
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (dev, root, point) = (f.get(2)?, f.get(3)?, f.get(4)?);
            (dev.contains(':') && root.starts_with('/') && point.starts_with('/')).then(|| Mount {
                dev: dev.to_string(),
                root: PathBuf::from(unescape(root)),
                point: PathBuf::from(unescape(point)),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The host paths that may name directory `dir` of this process, given the mount table and the
/// host root's path: the mount that holds `dir` (the last of those with the longest mount
/// point, which is the one on top), and every mount of the same filesystem under the host root
/// that shows the part of it `dir` is in.
pub fn candidates(mounts: &[Mount], host_root: &Path, dir: &Path) -> Vec<String> {
    let Some(holder) = mounts
        .iter()
        .filter(|m| dir.starts_with(&m.point))
        .max_by_key(|m| m.point.components().count())
    else {
        return Vec::new();
    };
    let holder = mounts
        .iter()
        .rev()
        .find(|m| m.point == holder.point)
        .unwrap_or(holder);
    let Ok(rest) = dir.strip_prefix(&holder.point) else {
        return Vec::new();
    };
    let source = holder.root.join(rest);
    mounts
        .iter()
        .filter(|m| m.dev == holder.dev && m.point.starts_with(host_root))
        .filter_map(|m| {
            let inside = source.strip_prefix(&m.root).ok()?;
            let at = m.point.strip_prefix(host_root).ok()?.join(inside);
            Some(format!("/{}", at.display()))
        })
        .collect()
}

/// The host path of `dir` (outside the host root `host`), checked to be the same directory.
pub fn host_path(host: &super::HostRoot, dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = std::fs::metadata(dir).ok()?;
    // The table names mount points with links resolved (/var/run/openvswitch is mounted on
    // /run/openvswitch where /var/run links to /run).
    let dir = std::fs::canonicalize(dir).ok()?;
    candidates(&parse(&text), host.root(), &dir)
        .into_iter()
        .find(|c| {
            host.resolve(c)
                .ok()
                .and_then(|p| std::fs::metadata(p).ok())
                .is_some_and(|m| m.dev() == want.dev() && m.ino() == want.ino())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mount table of NCP's nsx-ovs container as podman shows it (abridged): the host's `/`
    /// at /host with its /run submount, and the host's /run/nsx-ujo/openvswitch-db at
    /// /etc/openvswitch.
    const NSX_OVS: &str = "\
1200 1100 0:120 / / rw,relatime - overlay overlay rw
1201 1200 253:1 / /host rw,relatime - ext4 /dev/vda1 rw
1202 1201 0:25 / /host/run rw,nosuid,nodev - tmpfs tmpfs rw,mode=755
1203 1200 0:25 /nsx-ujo/openvswitch-db /etc/openvswitch rw,nosuid,nodev - tmpfs tmpfs rw
1204 1200 253:1 /etc/with\\040space /etc/space rw - ext4 /dev/vda1 rw
garbage
";

    #[test]
    fn a_container_mount_of_a_host_directory_is_found_under_the_host_root() {
        let m = parse(NSX_OVS);
        assert_eq!(m.len(), 5, "{m:#?}");
        let host = Path::new("/host");
        assert_eq!(
            candidates(&m, host, Path::new("/etc/openvswitch")),
            ["/run/nsx-ujo/openvswitch-db"]
        );
        assert_eq!(
            candidates(&m, host, Path::new("/etc/openvswitch/sub")),
            ["/run/nsx-ujo/openvswitch-db/sub"]
        );
        // A path with an escaped space, on the root filesystem mounted at /host.
        assert_eq!(
            candidates(&m, host, Path::new("/etc/space")),
            ["/etc/with space"]
        );
        // The container's own files are on no host filesystem.
        assert!(candidates(&m, host, Path::new("/usr/bin")).is_empty());
    }

    #[test]
    fn the_mount_on_top_holds_the_directory() {
        let m = parse(
            "1 0 0:1 / / rw - overlay o rw\n\
             2 1 8:1 / /host rw - ext4 d rw\n\
             3 1 8:1 /a /etc/x rw - ext4 d rw\n\
             4 1 8:1 /b /etc/x rw - ext4 d rw\n",
        );
        assert_eq!(
            candidates(&m, Path::new("/host"), Path::new("/etc/x")),
            ["/b"]
        );
    }
}
