//! Helpers for integration tests: temporary host roots, bundles, snapshots, running the binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_ncp-bootstrap");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary with a clean environment: no NCP_* variables from the caller leak in.
pub fn run(args: &[&str]) -> Run {
    run_env(args, &[])
}

pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("NCP_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run ncp-bootstrap");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn conflist(version: &str) -> String {
    format!(
        "{{\"cniVersion\":\"0.4.0\",\"name\":\"nsx\",\"plugins\":[{{\"type\":\"nsx\",\"nsxBuildVersion\":\"{version}\"}}]}}\n"
    )
}

/// A bundle with the given version. Its `nsx` plugin is a stand-in script (the real one ships
/// only with NCP releases); its loopback plugin is the real one from containernetworking-plugins
/// when installed.
pub fn bundle(dir: &Path, version: &str) -> PathBuf {
    let b = dir.join("bundle");
    fs::create_dir_all(b.join("opt/cni/bin")).unwrap();
    fs::create_dir_all(b.join("etc/cni/net.d")).unwrap();
    fs::create_dir_all(b.join("etc/apparmor.d")).unwrap();
    write(
        &b.join("opt/cni/bin/nsx"),
        format!("#!/bin/sh\necho nsx {version}\n").as_bytes(),
        0o755,
    );
    let lo = Path::new("/usr/lib/cni/loopback");
    let lo_bytes = if lo.exists() {
        fs::read(lo).unwrap()
    } else {
        b"#!/bin/sh\n".to_vec()
    };
    write(&b.join("opt/cni/bin/loopback"), &lo_bytes, 0o755);
    write(
        &b.join("etc/cni/net.d/10-nsx.conflist"),
        conflist(version).as_bytes(),
        0o644,
    );
    let lo_conf = fs::read(Path::new(REPO).join("distro/cni/99-loopback.conf")).unwrap();
    write(&b.join("etc/cni/net.d/99-loopback.conf"), &lo_conf, 0o644);
    let profile = Path::new(REPO).join("distro/ubuntu/apparmor/ncp-apparmor");
    let profile = fs::read(profile).unwrap_or_else(|_| b"# profile\n".to_vec());
    write(&b.join("etc/apparmor.d/ncp-apparmor"), &profile, 0o644);
    b
}

pub fn write(p: &Path, bytes: &[u8], mode: u32) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(p, bytes).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Every entry under a tree: mode and content hash (or link target), plus mtime when asked.
pub fn snapshot(root: &Path, with_mtime: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, with_mtime, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, with_mtime: bool, out: &mut BTreeMap<String, String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let e = e.unwrap();
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let m = fs::symlink_metadata(&p).unwrap();
        let mut desc = format!("mode={:o}", m.mode());
        if with_mtime {
            desc.push_str(&format!(" mtime={}.{}", m.mtime(), m.mtime_nsec()));
        }
        if m.file_type().is_symlink() {
            desc.push_str(&format!(" link={}", fs::read_link(&p).unwrap().display()));
        } else if m.is_file() {
            let bytes = fs::read(&p).unwrap();
            desc.push_str(&format!(" len={} hash={:x}", bytes.len(), fnv(&bytes)));
        }
        out.insert(rel, desc);
        if m.is_dir() {
            walk(root, &p, with_mtime, out);
        }
    }
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100000001b3)
    })
}

pub fn is_root() -> bool {
    // SAFETY-free: read our uid from /proc.
    fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `ncp-bootstrap --host-root HOST <cmd> --bundle BUNDLE <rest…>`
pub fn with_bundle(cmd: &str, host: &Path, bundle: &Path, rest: &[&str]) -> Run {
    let (h, b) = (host.display().to_string(), bundle.display().to_string());
    let mut v = vec!["--host-root", h.as_str(), cmd, "--bundle", b.as_str()];
    v.extend_from_slice(rest);
    run(&v)
}

/// Skips a test whose tools are missing on a developer's machine; in CI (`CI` set) the set-up
/// must have installed them, so a missing tool fails instead of passing silently.
pub fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("required in CI but missing: {why}");
    }
    eprintln!("SKIP: {why}");
}
pub mod netlab;

/// Compares two line-oriented states and panics with only the lines that differ.
pub fn assert_same(got: &str, want: &str, what: &str) {
    if got == want {
        return;
    }
    let g: std::collections::BTreeSet<&str> = got.lines().collect();
    let w: std::collections::BTreeSet<&str> = want.lines().collect();
    let extra: Vec<&&str> = g.difference(&w).collect();
    let missing: Vec<&&str> = w.difference(&g).collect();
    panic!("{what}\nunexpected: {extra:#?}\nmissing: {missing:#?}");
}

/// Checks FILES with kubernetes-validate (PyPI) `--strict` against the Kubernetes 1.30 schemas
/// (the first with securityContext.appArmorProfile) and the newest it knows, each file to
/// pass; false, after saying so, when it is not installed.
pub fn kubernetes_validate(files: &[PathBuf]) -> bool {
    // Run as a module: it does not depend on a console-script shim being on PATH.
    let installed = Command::new("python3")
        .args(["-c", "import kubernetes_validate"])
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        skip("kubernetes-validate (PyPI) not installed");
        return false;
    }
    for version in [&["-k", "1.30.0"][..], &[]] {
        let out = Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict"])
            .args(version)
            .args(files)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{version:?}: {text}");
        assert_eq!(
            text.matches(" passed for resource ").count(),
            files.len(),
            "{version:?}: {text}"
        );
    }
    true
}

/// The container NAME of a pod spec's LIST (`containers`, `initContainers`); the test fails
/// without it.
pub fn container<'a>(spec: &'a serde_yaml::Value, list: &str, name: &str) -> &'a serde_yaml::Value {
    spec[list]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {list} {name}"))
}
