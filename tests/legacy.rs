//! Removal of the legacy `nsx-cni` package with the real dpkg and rpm, in temporary roots.

mod common;
use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_removed_and_foreign_kept(host: &Path, bundle: &Path, manager: &str) {
    let foreign = b"{\"cniVersion\":\"0.4.0\",\"name\":\"other\",\"type\":\"bridge\"}\n";
    write(&host.join("etc/cni/net.d/20-other.conf"), foreign, 0o644);
    let r = with_bundle("install", host, bundle, &["--output", "json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["steps"][2]["name"], "cni");
    let first = &j["steps"][2]["changes"][0]["action"];
    assert!(
        first
            .as_str()
            .unwrap()
            .starts_with("remove legacy package nsx-cni 3.0.1"),
        "{first}"
    );
    assert!(
        !host.join("etc/cni/net.d/10-nsx.conf").exists(),
        "the package's own conf is gone"
    );
    assert_eq!(
        fs::read(host.join("etc/cni/net.d/20-other.conf")).unwrap(),
        foreign,
        "foreign conf survives"
    );
    assert_eq!(
        fs::read(host.join("opt/cni/bin/nsx")).unwrap(),
        fs::read(bundle.join("opt/cni/bin/nsx")).unwrap()
    );
    let ledger = fs::read_to_string(host.join("var/lib/ncp-bootstrap/ledger.json")).unwrap();
    assert!(
        ledger.contains("\"package_removed\"")
            && ledger.contains(&format!("\"manager\": \"{manager}\"")),
        "{ledger}"
    );
    assert_eq!(
        fs::read_to_string(host.join("var/lib/ncp-bootstrap/backup/etc/cni/net.d/10-nsx.conf"))
            .unwrap(),
        "{\"legacy\":true}\n"
    );
    // A second run finds nothing left to do.
    let again = with_bundle("install", host, bundle, &[]);
    assert_eq!(again.code, 0);
    assert!(again.stdout.contains("converged"), "{}", again.stdout);
}

#[test]
fn dpkg_installed_nsx_cni_is_removed_without_touching_other_files() {
    if !have("dpkg-deb") || !have("dpkg") {
        skip("dpkg-deb/dpkg not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("pkg");
    write(&pkg.join("DEBIAN/control"), b"Package: nsx-cni\nVersion: 3.0.1\nArchitecture: all\nMaintainer: test <t@example.invalid>\nDescription: legacy NSX CNI (test package)\n", 0o644);
    write(
        &pkg.join("opt/cni/bin/nsx"),
        b"#!/bin/sh\necho legacy\n",
        0o755,
    );
    write(
        &pkg.join("etc/cni/net.d/10-nsx.conf"),
        b"{\"legacy\":true}\n",
        0o644,
    );
    let deb = tmp.path().join("nsx-cni.deb");
    sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&pkg)
        .arg(&deb));
    let host = tmp.path().join("host");
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        fs::create_dir_all(host.join(d)).unwrap();
    }
    fs::write(host.join("var/lib/dpkg/status"), "").unwrap();
    fs::write(host.join("var/lib/dpkg/available"), "").unwrap();
    sh(Command::new("dpkg")
        .arg(format!("--root={}", host.display()))
        .arg("-i")
        .arg(&deb));
    let bundle = bundle(tmp.path(), "4.1.0");
    assert_removed_and_foreign_kept(&host, &bundle, "dpkg");
    let status = fs::read_to_string(host.join("var/lib/dpkg/status")).unwrap();
    assert!(
        !status.contains("Package: nsx-cni"),
        "still in the dpkg database: {status}"
    );
}

#[test]
fn rpm_installed_nsx_cni_is_removed_without_touching_other_files() {
    if !have("rpmbuild") || !have("rpm") {
        skip("rpm/rpmbuild not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("rpmbuild");
    let spec = top.join("SPECS/nsx-cni.spec");
    write(&spec, b"Name: nsx-cni\nVersion: 3.0.1\nRelease: 1\nSummary: legacy NSX CNI (test package)\nLicense: none\nBuildArch: noarch\n%description\ntest\n%install\nmkdir -p %{buildroot}/opt/cni/bin %{buildroot}/etc/cni/net.d\nprintf '#!/bin/sh\\necho legacy\\n' > %{buildroot}/opt/cni/bin/nsx\nchmod 755 %{buildroot}/opt/cni/bin/nsx\necho '{\"legacy\":true}' > %{buildroot}/etc/cni/net.d/10-nsx.conf\n%files\n/opt/cni/bin/nsx\n/etc/cni/net.d/10-nsx.conf\n", 0o644);
    sh(Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("-bb")
        .arg(&spec));
    let rpm = top.join("RPMS/noarch/nsx-cni-3.0.1-1.noarch.rpm");
    let host = tmp.path().join("host");
    fs::create_dir_all(host.join("var/lib/rpm")).unwrap();
    let root = host.display().to_string();
    sh(Command::new("rpm").args(["--root", &root, "--dbpath", "/var/lib/rpm", "--initdb"]));
    sh(Command::new("rpm")
        .args([
            "--root",
            &root,
            "--dbpath",
            "/var/lib/rpm",
            "-i",
            "--nodeps",
        ])
        .arg(&rpm));
    let bundle = bundle(tmp.path(), "4.1.0");
    assert_removed_and_foreign_kept(&host, &bundle, "rpm");
    let q = Command::new("rpm")
        .args(["--root", &root, "--dbpath", "/var/lib/rpm", "-q", "nsx-cni"])
        .output()
        .unwrap();
    assert!(!q.status.success(), "still in the rpm database");
}
