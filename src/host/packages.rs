//! The `nsx-cni` deb/rpm of earlier NCP releases. NCP's bootstrap removes it from the package
//! database; we do that with the host's own package tool pointed at the host root, which deletes
//! only the files the package owned (never the rest of `/etc/cni/net.d`).

use super::{paths, run, HostRoot};
use anyhow::{Context, Result};
use std::fmt;
use std::path::PathBuf;

pub const PACKAGE: &str = "nsx-cni";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Dpkg,
    Rpm,
}

impl fmt::Display for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Manager::Dpkg => "dpkg",
            Manager::Rpm => "rpm",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyPackage {
    pub manager: Manager,
    /// The database the tool must use, as a host path (`--dbpath` for rpm, whose default
    /// differs between builds: Debian's rpm uses `~/.rpmdb`).
    pub db: String,
    pub version: String,
    /// Host paths of the files (not directories) the package owns that exist now.
    pub files: Vec<String>,
    pub tool: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    Absent,
    Found(LegacyPackage),
    /// The database says it may be there, but we cannot act on it; the text says why.
    CannotAct(String),
}

pub fn detect(host: &HostRoot) -> Result<Detection> {
    if let Some(d) = detect_dpkg(host)? {
        return Ok(d);
    }
    detect_rpm(host)
}

fn detect_dpkg(host: &HostRoot) -> Result<Option<Detection>> {
    let Some(status) = host.read(paths::DPKG_STATUS)? else {
        return Ok(None);
    };
    let status = String::from_utf8_lossy(&status);
    let Some(version) = dpkg_installed_version(&status) else {
        return Ok(None);
    };
    let Ok(tool) = which::which("dpkg") else {
        return Ok(Some(Detection::CannotAct(format!(
            "the host's dpkg database ({}) lists {PACKAGE} {version}, but `dpkg` is not on PATH; \
             the package stays registered (remove it on the host with `dpkg --purge {PACKAGE}`)",
            paths::DPKG_STATUS
        ))));
    };
    let mut files = Vec::new();
    for list in dpkg_list_files(host)? {
        let text = host.read(&list)?.unwrap_or_default();
        for line in String::from_utf8_lossy(&text).lines() {
            let p = line.trim();
            if p.starts_with('/') && p != "/." && owned_file_present(host, p)? {
                files.push(p.to_string());
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(Some(Detection::Found(LegacyPackage {
        manager: Manager::Dpkg,
        db: "/var/lib/dpkg".into(),
        version,
        files,
        tool,
    })))
}

/// The version of `nsx-cni` in a dpkg status file, when the package is known in any state other
/// than "not-installed" (a removed package with config files left is still in the database).
pub fn dpkg_installed_version(status: &str) -> Option<String> {
    for stanza in status.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(|v| v.trim().to_string())
            })
        };
        if field("Package").as_deref() != Some(PACKAGE) {
            continue;
        }
        let state = field("Status").unwrap_or_default();
        if state.ends_with("not-installed") {
            continue;
        }
        return Some(field("Version").unwrap_or_else(|| "unknown".into()));
    }
    None
}

/// `nsx-cni.list` or, on multi-arch hosts, `nsx-cni:<arch>.list`.
fn dpkg_list_files(host: &HostRoot) -> Result<Vec<String>> {
    let dir = host.resolve(paths::DPKG_INFO_DIR)?;
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(_) => return Ok(out),
    };
    for e in entries {
        let name = e
            .with_context(|| format!("listing {}", dir.display()))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        let is_ours = name == format!("{PACKAGE}.list")
            || (name.starts_with(&format!("{PACKAGE}:")) && name.ends_with(".list"));
        if is_ours {
            out.push(format!("{}/{name}", paths::DPKG_INFO_DIR));
        }
    }
    Ok(out)
}

fn owned_file_present(host: &HostRoot, p: &str) -> Result<bool> {
    let real = match host.resolve(p) {
        Ok(r) => r,
        // A path the package lists through a link that leaves the root is not ours to touch.
        Err(_) => return Ok(false),
    };
    Ok(std::fs::symlink_metadata(real)
        .map(|m| !m.is_dir())
        .unwrap_or(false))
}

fn detect_rpm(host: &HostRoot) -> Result<Detection> {
    let mut db = None;
    for d in paths::RPM_DB_DIRS {
        if db.is_none() && host.is_dir(d)? {
            db = Some(d.to_string());
        }
    }
    let Some(db) = db else {
        return Ok(Detection::Absent);
    };
    let Ok(tool) = which::which("rpm") else {
        return Ok(Detection::CannotAct(format!(
            "the host has an rpm database but `rpm` is not on PATH, so whether {PACKAGE} is \
             installed cannot be checked; on the host run `rpm -q {PACKAGE}` and `rpm -e {PACKAGE}`"
        )));
    };
    let root = host.root().to_string_lossy().into_owned();
    let q = run::run(
        &tool,
        [
            "--root",
            &root,
            "--dbpath",
            &db,
            "-q",
            "--qf",
            "%{VERSION}-%{RELEASE}\\n",
            PACKAGE,
        ],
    );
    let q = match q {
        Ok(q) => q,
        Err(e) if format!("{e}").contains("is not installed") => return Ok(Detection::Absent),
        Err(e) => {
            return Ok(Detection::CannotAct(format!(
                "could not query the host's rpm database {db} for {PACKAGE}: {e:#}"
            )))
        }
    };
    let version = q.stdout.trim().to_string();
    let listed = run::run(&tool, ["--root", &root, "--dbpath", &db, "-ql", PACKAGE])?;
    let mut files = Vec::new();
    for p in listed.stdout.lines().map(str::trim) {
        if p.starts_with('/') && owned_file_present(host, p)? {
            files.push(p.to_string());
        }
    }
    files.sort();
    Ok(Detection::Found(LegacyPackage {
        manager: Manager::Rpm,
        db,
        version,
        files,
        tool,
    }))
}

/// Removes the package with its own tool, which deletes the files it owned and nothing else.
pub fn remove(host: &HostRoot, pkg: &LegacyPackage) -> Result<()> {
    let root = host.root().to_string_lossy().into_owned();
    match pkg.manager {
        Manager::Dpkg => run::run(
            &pkg.tool,
            [format!("--root={root}"), "--purge".into(), PACKAGE.into()],
        ),
        // Scripts of the old package would run chrooted into the host and may expect services
        // that are gone; the files are what matter.
        Manager::Rpm => run::run(
            &pkg.tool,
            [
                "--root",
                &root,
                "--dbpath",
                &pkg.db,
                "-e",
                "--nodeps",
                "--noscripts",
                PACKAGE,
            ],
        ),
    }
    .with_context(|| {
        format!(
            "removing the legacy package {PACKAGE} {} with {}",
            pkg.version, pkg.manager
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_states() {
        let s = "Package: foo\nStatus: install ok installed\nVersion: 1\n\nPackage: nsx-cni\nStatus: install ok installed\nVersion: 3.0.1\n";
        assert_eq!(dpkg_installed_version(s).as_deref(), Some("3.0.1"));
        let s = "Package: nsx-cni\nStatus: deinstall ok config-files\nVersion: 3.0.1\n";
        assert_eq!(dpkg_installed_version(s).as_deref(), Some("3.0.1"));
        let s = "Package: nsx-cni\nStatus: purge ok not-installed\n";
        assert_eq!(dpkg_installed_version(s), None);
        let s = "Package: nsx-cni-extra\nStatus: install ok installed\nVersion: 1\n";
        assert_eq!(dpkg_installed_version(s), None);
    }
}
