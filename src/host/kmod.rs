//! Kernel modules on the host: what a module file is (its `.modinfo`), which `openvswitch` is
//! loaded (`/sys/module`), who uses it, and kmod's tools run on the host's module tree.
//!
//! NSX's OVS module is told apart from the distribution's by `srcversion`: an out-of-tree module
//! with a `MODULE_VERSION` carries one, and the kernel shows the loaded module's in
//! `/sys/module/openvswitch/srcversion`. Distribution kernels build in-tree modules without it
//! (no `CONFIG_MODULE_SRCVERSION_ALL`), so a loaded module without one is never ours.

use crate::host::{run, HostRoot};
use anyhow::{Context, Result};
use netlink_packet_route::address::AddressScope;
use std::path::Path;

/// The module OVS's kernel datapath is.
pub const OVS_MODULE: &str = "openvswitch";

/// Where ours go, under `/lib/modules/<release>/`: depmod searches `updates` before the
/// kernel's own tree on Debian and Ubuntu (its default and `ubuntu.conf`) and on RHEL
/// (`dist.conf`: `search updates extra built-in weak-updates`), so a module there overrides the
/// in-tree one of the same name everywhere. A directory of our own never collides with DKMS's
/// files (`updates/dkms`).
pub const OVERRIDE_DIR: &str = "updates/nsx-ovs";

/// What the kernel's `release` loads modules from (a host path).
pub fn modules_dir(release: &str) -> String {
    format!("/lib/modules/{release}")
}

/// The host path a bundle module file named `file` is installed at.
pub fn installed_path(release: &str, file: &str) -> String {
    format!("{}/{OVERRIDE_DIR}/{file}", modules_dir(release))
}

/// A module file's `.modinfo` fields that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModInfo {
    pub name: Option<String>,
    pub srcversion: Option<String>,
    pub version: Option<String>,
    /// `<release> SMP …`: the kernel it was built for.
    pub vermagic: Option<String>,
}

impl ModInfo {
    /// The kernel release it was built for (vermagic's first word).
    pub fn release(&self) -> Option<&str> {
        self.vermagic.as_deref()?.split_whitespace().next()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModInfoError {
    #[error("not an ELF file ({0})")]
    NotElf(String),
    #[error("no .modinfo section: not a kernel module")]
    NoModinfo,
}

/// Reads a module file's `.modinfo` (NUL-separated `key=value` strings, what `modinfo` prints).
pub fn modinfo(bytes: &[u8]) -> std::result::Result<ModInfo, ModInfoError> {
    use elf::endian::AnyEndian;
    let file = elf::ElfBytes::<AnyEndian>::minimal_parse(bytes)
        .map_err(|e| ModInfoError::NotElf(e.to_string()))?;
    let header = file
        .section_header_by_name(".modinfo")
        .map_err(|e| ModInfoError::NotElf(e.to_string()))?
        .ok_or(ModInfoError::NoModinfo)?;
    let (data, _) = file
        .section_data(&header)
        .map_err(|e| ModInfoError::NotElf(e.to_string()))?;
    Ok(parse_modinfo(data))
}

fn parse_modinfo(data: &[u8]) -> ModInfo {
    let mut info = ModInfo {
        name: None,
        srcversion: None,
        version: None,
        vermagic: None,
    };
    for field in data.split(|b| *b == 0) {
        let Some((key, value)) = std::str::from_utf8(field)
            .ok()
            .and_then(|f| f.split_once('='))
        else {
            continue;
        };
        let slot = match key {
            "name" => &mut info.name,
            "srcversion" => &mut info.srcversion,
            "version" => &mut info.version,
            "vermagic" => &mut info.vermagic,
            _ => continue,
        };
        *slot = Some(value.trim().to_string());
    }
    info
}

/// The module name the kernel uses for a file (`vport-geneve.ko` → `vport_geneve`).
pub fn module_name(file: &str) -> String {
    file.trim_end_matches(".ko").replace('-', "_")
}

/// The running kernel's release: the host's `/proc/sys/kernel/osrelease`, else this process's
/// own (a container shares the host's kernel). Checked, since it becomes a path.
pub fn kernel_release(host: &HostRoot) -> Result<String> {
    let text = match host.read("/proc/sys/kernel/osrelease")? {
        Some(b) => String::from_utf8_lossy(&b).trim().to_string(),
        None => nix::sys::utsname::uname()
            .context("uname")?
            .release()
            .to_string_lossy()
            .into_owned(),
    };
    valid_release(&text).then_some(text.clone()).ok_or_else(|| {
        anyhow::anyhow!(
            "the kernel release {text:?} is not one a module directory can be named after"
        )
    })
}

pub fn valid_release(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r != "."
        && r != ".."
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
}

/// A loaded module as `/sys/module/<name>` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub srcversion: Option<String>,
    pub version: Option<String>,
    /// Modules that depend on it (`holders/`), by kernel name.
    pub holders: Vec<String>,
}

impl Loaded {
    /// How `status` and the logs name it.
    pub fn describe(&self) -> String {
        match (&self.version, &self.srcversion) {
            (_, None) => "the distribution's (no srcversion)".into(),
            (Some(v), Some(s)) => format!("version {v}, srcversion {s}"),
            (None, Some(s)) => format!("srcversion {s}"),
        }
    }
}

/// The loaded module `name`, or `None`. Built-in modules have no `refcnt`/`holders`; they are
/// reported as loaded with what they show.
pub fn loaded(host: &HostRoot, name: &str) -> Result<Option<Loaded>> {
    let dir = format!("/sys/module/{name}");
    if !host.is_dir(&dir)? {
        return Ok(None);
    }
    let field = |f: &str| -> Result<Option<String>> {
        Ok(host
            .read(&format!("{dir}/{f}"))?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .filter(|s| !s.is_empty()))
    };
    let holders_dir = host.resolve(&format!("{dir}/holders"))?;
    let mut holders: Vec<String> = match std::fs::read_dir(&holders_dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("listing {}", holders_dir.display())),
    };
    holders.sort();
    Ok(Some(Loaded {
        srcversion: field("srcversion")?,
        version: field("version")?,
        holders,
    }))
}

/// The pid in the name of a temp file depmod writes before renaming it into place
/// (`modules.dep.bin.<pid>.<usec>.<sec>`), or `None` for any other name.
pub fn depmod_temp_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("modules.")?;
    let mut parts = rest.rsplitn(4, '.');
    let (sec, usec, pid, index) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(sec) && digits(usec) && digits(pid) && !index.is_empty())
        .then(|| pid.parse().ok())
        .flatten()
}

/// kmod's tools, pointed at the host's module tree (`/lib/modules` under the host root).
pub struct Kmod<'a> {
    host: &'a HostRoot,
}

impl<'a> Kmod<'a> {
    pub fn new(host: &'a HostRoot) -> Self {
        Kmod { host }
    }

    fn root(&self) -> String {
        self.host.root().to_string_lossy().into_owned()
    }

    /// Rebuilds `modules.dep` and its kin for `release`, so that modprobe finds what is (and is
    /// no longer) under `updates/`.
    /// A depmod killed with us (children die with the tool) leaves its temp files; those of
    /// depmods no longer alive are removed after ours has run, so that the tree ends as depmod
    /// alone would leave it.
    pub fn depmod(&self, release: &str) -> Result<()> {
        let depmod = run::find_tool("depmod", "index the host's kernel modules")?;
        run::run(&depmod, ["-b", &self.root(), release])?;
        let dir = self.host.resolve(&modules_dir(release))?;
        for e in std::fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = depmod_temp_pid(&name)
                .is_some_and(|pid| !crate::host::proc::alive_here(pid))
                && e.file_type().is_ok_and(|t| t.is_file());
            if stale {
                std::fs::remove_file(e.path())
                    .with_context(|| format!("removing {}", e.path().display()))?;
            }
        }
        Ok(())
    }

    /// `modprobe <name>` on the host's tree: whichever file depmod ranks first.
    pub fn load(&self, name: &str) -> Result<()> {
        let modprobe = run::find_tool("modprobe", "load a kernel module")?;
        run::run(&modprobe, ["-d", &self.root(), name]).map(|_| ())
    }

    /// The file `modprobe <name>` would load for `release` now, as a host path, read from the
    /// binary index modprobe itself uses (`--show-depends`: a `modules.dep` text file written by
    /// a depmod that was killed before its `.bin` files proves nothing). `None`: none found.
    pub fn resolves_to(&self, release: &str, name: &str) -> Result<Option<String>> {
        let modprobe = run::find_tool("modprobe", "find a kernel module")?;
        let root = self.root();
        let Ok(out) = run::run(
            &modprobe,
            ["-d", root.as_str(), "-S", release, "--show-depends", name],
        ) else {
            return Ok(None);
        };
        let Some(path) = out
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("insmod "))
            .next_back()
            .map(str::trim)
        else {
            return Ok(None);
        };
        Ok(Some(
            self.host
                .host_path_of(Path::new(path))
                .unwrap_or_else(|| path.to_string()),
        ))
    }

    /// Unloads the loaded `openvswitch`, once its users are checked to be none: the kernel
    /// datapaths a stopped ovs-vswitchd left (each holds the module) are deleted, then exactly
    /// the modules that hold it and the module itself (`rmmod`: never the dependencies the
    /// kernel had loaded for them, which may serve others).
    pub fn unload_ovs(&self, loaded: &Loaded) -> Result<()> {
        crate::host::ovs::datapath::delete_orphans()
            .context("deleting the kernel datapath before unloading openvswitch")?;
        let rmmod = run::find_tool("rmmod", "unload a kernel module")?;
        for n in loaded
            .holders
            .iter()
            .map(String::as_str)
            .chain([OVS_MODULE])
        {
            run::run(&rmmod, [n]).with_context(|| format!("unloading module {n}"))?;
        }
        Ok(())
    }
}

/// What keeps the loaded `openvswitch` from being swapped safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InUse {
    /// An ovs-vswitchd runs on it.
    Switch { pid: u32 },
    /// A port of its datapath carries addresses (the node's, on the bridge): unloading would
    /// take them away.
    Addresses { link: String },
    /// A module we do not ship depends on it.
    Holder { module: String },
}

impl InUse {
    pub fn describe(&self) -> String {
        match self {
            InUse::Switch { pid } => format!("ovs-vswitchd (pid {pid}) runs on it"),
            InUse::Addresses { link } => format!(
                "{link}, a port of its datapath, carries addresses that unloading it would take \
                 away"
            ),
            InUse::Holder { module } => {
                format!("the module {module}, which ncp-bootstrap does not ship, depends on it")
            }
        }
    }
}

/// Who uses the loaded `openvswitch`, besides holders named in `ours` (the vport modules we
/// unload with it). Empty: it can be swapped without taking anything down.
pub fn users(host: &HostRoot, loaded: &Loaded, ours: &[String]) -> Result<Vec<InUse>> {
    let mut found = Vec::new();
    if let Some(pid) = crate::host::proc::find(host, "ovs-vswitchd")? {
        found.push(InUse::Switch { pid });
    }
    let mut nl = crate::host::netlink::Netlink::open()?;
    let ports: Vec<(u32, String)> = nl
        .links()?
        .into_iter()
        .filter(|l| l.kind.as_deref() == Some(OVS_MODULE))
        .map(|l| (l.index, l.name))
        .collect();
    if !ports.is_empty() {
        // A bridge that is up has an IPv6 link-local address of its own: not the node's.
        let node_addresses = nl
            .addresses()?
            .into_iter()
            .filter(|a| a.header.scope != AddressScope::Link);
        for a in node_addresses {
            if let Some((_, name)) = ports.iter().find(|(i, _)| *i == a.header.index) {
                let link = InUse::Addresses { link: name.clone() };
                if !found.contains(&link) {
                    found.push(link);
                }
            }
        }
    }
    for h in &loaded.holders {
        if !ours.contains(h) {
            found.push(InUse::Holder { module: h.clone() });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_fields_are_read_from_nul_separated_pairs() {
        let data = b"version=2.17.0-nsx\0license=GPL\0srcversion=ABC123\0\0\0name=openvswitch\0vermagic=6.1.0-57-amd64 SMP preempt mod_unload modversions \0junk\0";
        let info = parse_modinfo(data);
        assert_eq!(info.srcversion.as_deref(), Some("ABC123"));
        assert_eq!(info.version.as_deref(), Some("2.17.0-nsx"));
        assert_eq!(info.name.as_deref(), Some("openvswitch"));
        assert_eq!(info.release(), Some("6.1.0-57-amd64"));
    }

    #[test]
    fn a_file_that_is_not_a_module_is_named_so() {
        assert!(matches!(
            modinfo(b"#!/bin/sh\n"),
            Err(ModInfoError::NotElf(_))
        ));
        // A real ELF without .modinfo: this test binary's own file is one.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(modinfo(&me), Err(ModInfoError::NoModinfo));
    }

    #[test]
    fn releases_that_would_escape_a_path_are_refused() {
        assert!(valid_release("6.1.0-57-amd64"));
        assert!(valid_release("5.14.0-427.13.1.el9_4.x86_64"));
        for bad in ["", "..", "6.1/../../etc", "a b", "x\n"] {
            assert!(!valid_release(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_depmods_temp_names_are_taken_for_its_temp_files() {
        assert_eq!(
            depmod_temp_pid("modules.dep.bin.1066.990266.1796554836"),
            Some(1066)
        );
        assert_eq!(depmod_temp_pid("modules.alias.42.1.2"), Some(42));
        for other in [
            "modules.dep.bin",
            "modules.dep",
            "modules.order",
            "modules.builtin.modinfo",
            "modules.1.2.3",
            "modules.dep.bin.x.1.2",
            "kernel",
        ] {
            assert_eq!(depmod_temp_pid(other), None, "{other}");
        }
    }

    #[test]
    fn kernel_names_replace_dashes() {
        assert_eq!(module_name("vport-geneve.ko"), "vport_geneve");
        assert_eq!(
            installed_path("6.1.0-57-amd64", "openvswitch.ko"),
            "/lib/modules/6.1.0-57-amd64/updates/nsx-ovs/openvswitch.ko"
        );
    }

    #[test]
    fn the_loaded_module_is_read_from_sysfs_under_the_host_root() {
        let (_t, h) = crate::host::temp_root();
        assert_eq!(loaded(&h, OVS_MODULE).unwrap(), None);
        h.create_dirs("/sys/module/openvswitch/holders/vport_geneve")
            .unwrap();
        h.write_atomic("/sys/module/openvswitch/srcversion", b"ABC\n", 0o444)
            .unwrap();
        let l = loaded(&h, OVS_MODULE).unwrap().unwrap();
        assert_eq!(l.srcversion.as_deref(), Some("ABC"));
        assert_eq!(l.holders, vec!["vport_geneve".to_string()]);
        assert_eq!(l.describe(), "srcversion ABC");
    }
}
