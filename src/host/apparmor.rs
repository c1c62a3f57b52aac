//! The host's AppArmor: whether the module is enabled, which profiles the kernel has loaded,
//! and `apparmor_parser` pointed at the host's directories.

use crate::host::{paths, run, HostRoot};
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use super::paths::{
    APPARMOR_ENABLED as ENABLED, APPARMOR_PROFILES as PROFILES, APPARMOR_SECURITYFS as SECURITYFS,
};

/// Whether the host kernel has AppArmor enabled.
pub fn module_enabled(host: &HostRoot) -> Result<bool> {
    Ok(host
        .read(ENABLED)?
        .is_some_and(|b| String::from_utf8_lossy(&b).trim() == "Y"))
}

/// The mode the kernel lists a profile in (`enforce`, `complain`, …), if loaded.
pub fn loaded_mode(host: &HostRoot, profile: &str) -> Result<Option<String>> {
    let Some(bytes) = host.read(PROFILES)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.lines().find_map(|l| {
        let (name, mode) = l.rsplit_once(" (")?;
        (name == profile).then(|| mode.trim_end_matches(')').to_string())
    }))
}

/// `apparmor_parser`, always pointed at the host's directories.
pub struct Parser {
    tool: PathBuf,
    base: PathBuf,
    securityfs: PathBuf,
}

impl Parser {
    pub fn find(host: &HostRoot) -> Result<Parser> {
        Ok(Parser {
            tool: run::find_tool("apparmor_parser", "load the AppArmor profile")?,
            base: host.resolve(paths::APPARMOR_DIR)?,
            securityfs: host.resolve(SECURITYFS)?,
        })
    }

    fn args(&self, extra: &[&str], file: Option<&Path>) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "-K".into(),
            "--base".into(),
            self.base.clone().into(),
            "-I".into(),
            self.base.clone().into(),
            "-f".into(),
            self.securityfs.clone().into(),
        ];
        a.extend(extra.iter().map(OsString::from));
        if let Some(f) = file {
            a.push(f.into());
        }
        a
    }

    /// The profile names a file defines (parsed only, nothing loaded).
    pub fn names(&self, file: &Path) -> Result<Vec<String>> {
        let out = run::run(&self.tool, self.args(&["-N"], Some(file)))?;
        Ok(out
            .stdout
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// Compiles without loading: proves the kernel would be handed valid policy.
    pub fn check(&self, file: &Path) -> Result<()> {
        run::run(&self.tool, self.args(&["-Q"], Some(file))).map(|_| ())
    }

    pub fn load(&self, file: &Path) -> Result<()> {
        run::run(&self.tool, self.args(&["-r"], Some(file))).map(|_| ())
    }

    /// Unloads by name (a stub profile on stdin names it): works even when the profile file
    /// is already gone.
    pub fn unload(&self, profile: &str) -> Result<()> {
        let out = duct::cmd(&self.tool, self.args(&["-R"], None))
            .stdin_bytes(format!("profile {profile} {{}}\n"))
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .with_context(|| format!("running {} -R", self.tool.display()))?;
        if !out.status.success() {
            anyhow::bail!(
                "`apparmor_parser -R` for profile {profile} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}
