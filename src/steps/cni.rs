//! CNI install: copy the NSX plugin and its conflist from the bundle when the host's
//! `nsxBuildVersion` is older, add the loopback plugin and conf only where absent, and remove a
//! legacy `nsx-cni` package first. With `cni.portmap` (NCP's `use_ncp_portmap`) the bundle's
//! portmap plugin too, never over one that is not ours; with the key off, ours goes.

use super::{Action, Ctx, Plan, Step};
use crate::error::input;
use crate::host::bundle::{check_bundle_file, read_bundle_file};
use crate::host::packages::{self as legacy_pkg, Detection, LegacyPackage};
use crate::host::{paths, sha256_hex, HostRoot};
use crate::ledger::{install_file, take_backup, write_backup, Entry, Ledger};
use crate::version::NsxVersion;
use anyhow::{Context, Result};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

pub const NAME: &str = "cni";
pub const VERSION_FIELD: &str = "nsxBuildVersion";

/// A file the bundle provides, in the order it is installed: binaries before configs, because
/// runtimes watch `net.d` and may load a conflist as soon as it appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleFile {
    pub path: &'static str,
    pub mode: u32,
    /// Installed only when absent, never overwritten.
    pub only_if_absent: bool,
}

pub const FILES: [BundleFile; 4] = [
    BundleFile {
        path: paths::NSX_PLUGIN,
        mode: 0o755,
        only_if_absent: false,
    },
    BundleFile {
        path: paths::LOOPBACK_PLUGIN,
        mode: 0o755,
        only_if_absent: true,
    },
    BundleFile {
        path: paths::NSX_CONFLIST,
        mode: 0o644,
        only_if_absent: false,
    },
    BundleFile {
        path: paths::LOOPBACK_CONF,
        mode: 0o644,
        only_if_absent: true,
    },
];

/// NCP's portmap plugin: installed where absent, kept current while it is ours.
pub const PORTMAP: BundleFile = BundleFile {
    path: paths::PORTMAP_PLUGIN,
    mode: 0o755,
    only_if_absent: true,
};

pub struct Cni {
    pub bundle: PathBuf,
}

#[derive(Debug)]
pub enum CniAction {
    RemovePackage(LegacyPackage),
    Install {
        file: BundleFile,
        source: PathBuf,
        replace: bool,
        why: String,
    },
    /// Our portmap, with `cni.portmap` turned off: undone as cleanup would, and forgotten.
    RemovePortmap {
        entry: Entry,
        undo: crate::ledger::FileUndo,
    },
}

impl Action for CniAction {
    fn describe(&self) -> String {
        match self {
            CniAction::RemovePackage(p) => format!(
                "remove legacy package {} {} with {} ({} owned file(s))",
                legacy_pkg::PACKAGE,
                p.version,
                p.manager,
                p.files.len()
            ),
            CniAction::Install { file, replace, .. } => format!(
                "{} {} (mode {:04o})",
                if *replace { "replace" } else { "install" },
                file.path,
                file.mode
            ),
            CniAction::RemovePortmap { undo, .. } => undo.describe(),
        }
    }

    fn why(&self) -> String {
        match self {
            CniAction::RemovePackage(_) => {
                "earlier NCP releases installed NSX CNI as a package; it must not own our files"
                    .into()
            }
            CniAction::Install { why, .. } => why.clone(),
            CniAction::RemovePortmap { .. } => format!(
                "cni.portmap is off (ncp.ini [nsx_node_agent] use_ncp_portmap) and {} is ours",
                paths::PORTMAP_PLUGIN
            ),
        }
    }
}

/// What the host's conflist says.
#[derive(Debug)]
pub enum HostConflist {
    Absent,
    Invalid(ConflistError),
    Version(NsxVersion),
}

impl Cni {
    pub fn from_ctx(ctx: &Ctx) -> Self {
        Cni {
            bundle: ctx.settings.bundle.clone(),
        }
    }

    fn source(&self, f: &BundleFile) -> PathBuf {
        self.bundle.join(f.path.trim_start_matches('/'))
    }

    /// Checks the bundle before anything is written and returns its version.
    pub fn bundle_version(&self, allow_demo: bool) -> Result<NsxVersion> {
        let mut missing = Vec::new();
        for f in &FILES {
            if check_bundle_file(&self.bundle, f.path)?.is_none() {
                missing.push(self.source(f).display().to_string());
            }
        }
        if !missing.is_empty() {
            return Err(input(format!(
                "bundle file(s) missing: {}; the bundle (config cni.bundle, flag --bundle) must \
                 mirror the host with {}",
                missing.join(", "),
                FILES.map(|f| f.path).join(", ")
            )));
        }
        let marker = self.bundle.join(paths::DEMO_BUNDLE_MARKER);
        if !allow_demo && marker.symlink_metadata().is_ok() {
            return Err(input(demo_refused(&marker)));
        }
        let conflist = self.source(&FILES[2]);
        let bytes = read_bundle_file(&self.bundle, FILES[2].path)?.unwrap_or_default();
        conflist_version(&bytes)
            .map_err(|why| input(format!("bundle file {}: {why}", conflist.display())))
    }
}

/// Why a conflist yields no `nsxBuildVersion`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConflistError {
    #[error("not valid JSON ({0})")]
    Json(String),
    #[error("field `nsxBuildVersion` is {0}, not a string")]
    NotAString(String),
    #[error("field `nsxBuildVersion` = `{value}` is not a version: {err}")]
    NotAVersion {
        value: String,
        err: crate::version::VersionError,
    },
    #[error("no `nsxBuildVersion` field (top level or in `plugins`)")]
    Missing,
    #[error("`nsxBuildVersion` appears with different values ({0} and {1})")]
    Differ(NsxVersion, NsxVersion),
}

/// The `nsxBuildVersion` of a conflist: at the top level or in any entry of `plugins`.
pub fn conflist_version(bytes: &[u8]) -> Result<NsxVersion, ConflistError> {
    let json: Json =
        serde_json::from_slice(bytes).map_err(|e| ConflistError::Json(e.to_string()))?;
    let mut found: Vec<&Json> = json.get(VERSION_FIELD).into_iter().collect();
    if let Some(plugins) = json.get("plugins").and_then(Json::as_array) {
        found.extend(plugins.iter().filter_map(|p| p.get(VERSION_FIELD)));
    }
    let mut versions = Vec::new();
    for v in found {
        let s = v
            .as_str()
            .ok_or_else(|| ConflistError::NotAString(v.to_string()))?;
        let parsed = NsxVersion::parse(s).map_err(|err| ConflistError::NotAVersion {
            value: s.into(),
            err,
        })?;
        versions.push(parsed);
    }
    let first = versions.first().cloned().ok_or(ConflistError::Missing)?;
    if let Some(other) = versions.iter().find(|v| **v != first) {
        return Err(ConflistError::Differ(first, other.clone()));
    }
    Ok(first)
}

/// Network configs in `/etc/cni/net.d` that sort before `10-nsx.conflist`. Container runtimes
/// (containerd and CRI-O, through libcni) use the first `.conf`, `.conflist` or `.json` file by
/// name, so any of these puts another plugin in charge of pod networking.
pub fn configs_before_ours(host: &HostRoot) -> Result<Vec<String>> {
    let dir = host.resolve(paths::CNI_NET_DIR)?;
    let ours = Path::new(paths::NSX_CONFLIST)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut before: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            [".conf", ".conflist", ".json"]
                .iter()
                .any(|ext| n.ends_with(ext))
                && n.as_bytes() < ours.as_bytes()
        })
        .map(|n| format!("{}/{n}", paths::CNI_NET_DIR))
        .collect();
    before.sort();
    Ok(before)
}

/// The warning (and status drift) for configs that sort first.
pub fn shadowed_warning(before: &[String]) -> String {
    format!(
        "{} sort{} before {}: the container runtime uses the first network config by name, so \
         NSX is not in charge of pod networking. ncp-bootstrap leaves {} alone (not its own): \
         remove {}, or rename {} to sort after 10-nsx.conflist",
        before.join(", "),
        if before.len() == 1 { "s" } else { "" },
        paths::NSX_CONFLIST,
        if before.len() == 1 { "it" } else { "them" },
        if before.len() == 1 { "it" } else { "them" },
        if before.len() == 1 { "it" } else { "them" },
    )
}

/// Why the host's newer CNI stays, with the way to roll back.
fn demo_refused(marker: &Path) -> String {
    format!(
        "the bundle is a demo bundle ({} exists): its {} is a placeholder that sets up no pod \
         network, so installing it would leave this node unable to run pods. Build the image with \
         the NCP release's {} and {} in bundle/ (units/container/README.md), or, on a test node \
         only, set cni.allow_demo_bundle = true (env NCP_BOOTSTRAP_CNI_ALLOW_DEMO_BUNDLE=true, or \
         --allow-demo-bundle)",
        marker.display(),
        paths::NSX_PLUGIN,
        paths::NSX_PLUGIN,
        paths::NSX_CONFLIST
    )
}

pub fn downgrade_refused(host: &NsxVersion, bundle: &NsxVersion) -> String {
    format!(
        "host nsxBuildVersion {host} is newer than the bundle's {bundle}; not downgrading. To roll \
         back to the bundle's, set cni.force = true (env NCP_BOOTSTRAP_CNI_FORCE=true, or --force)"
    )
}

pub fn host_conflist(host: &HostRoot) -> Result<HostConflist> {
    Ok(match host.read(paths::NSX_CONFLIST)? {
        None => HostConflist::Absent,
        Some(b) => match conflist_version(&b) {
            Ok(v) => HostConflist::Version(v),
            Err(why) => HostConflist::Invalid(why),
        },
    })
}

impl Step for Cni {
    type Action = CniAction;

    fn name(&self) -> &'static str {
        NAME
    }

    fn plan(&self, ctx: &Ctx) -> Result<Plan<CniAction>> {
        let bundle_version = self.bundle_version(ctx.settings.cni_allow_demo_bundle)?;
        let mut plan = Plan::new();
        let mut going: Vec<String> = Vec::new();
        match legacy_pkg::detect(ctx.host)? {
            Detection::Absent => {}
            Detection::CannotAct(why) => plan.warnings.push(why),
            Detection::Found(pkg) => {
                going = pkg.files.clone();
                plan.actions.push(CniAction::RemovePackage(pkg));
            }
        }
        let present =
            |p: &str| -> Result<bool> { Ok(!going.iter().any(|g| g == p) && ctx.host.exists(p)?) };

        let conflist = if present(paths::NSX_CONFLIST)? {
            host_conflist(ctx.host)?
        } else {
            HostConflist::Absent
        };
        let nsx_why = match &conflist {
            HostConflist::Absent => Some("the host has no 10-nsx.conflist".to_string()),
            HostConflist::Invalid(why) => {
                plan.warnings.push(format!(
                    "host {} {why}; it is backed up and replaced",
                    paths::NSX_CONFLIST
                ));
                Some(format!("the host's conflist is unusable ({why})"))
            }
            HostConflist::Version(h) if *h < bundle_version => Some(format!(
                "host nsxBuildVersion {h} is older than the bundle's {bundle_version}"
            )),
            HostConflist::Version(h) if *h > bundle_version && ctx.settings.cni_force => Some(format!(
                "host nsxBuildVersion {h} is newer than the bundle's {bundle_version}; cni.force downgrades"
            )),
            HostConflist::Version(h) if *h > bundle_version => {
                plan.warnings.push(downgrade_refused(h, &bundle_version));
                None
            }
            HostConflist::Version(_) => None,
        };

        // A plugin before the conflists that may chain it (NCP's conflist can name portmap).
        self.plan_portmap(ctx, &mut plan)?;
        for f in FILES {
            let source = self.source(&f);
            let exists = present(f.path)?;
            let why = if f.only_if_absent {
                (!exists).then(|| format!("{} is absent (it is never overwritten)", f.path))
            } else if let Some(why) = &nsx_why {
                Some(why.clone())
            } else if !exists {
                // The conflist is current but the plugin it names is gone: the node cannot run pods.
                Some(format!(
                    "{} is missing although the conflist is current",
                    f.path
                ))
            } else {
                None
            };
            let Some(why) = why else { continue };
            if let Some(dir) = std::path::Path::new(f.path).parent() {
                ctx.host.check_no_dangling_link(&dir.to_string_lossy())?;
            }
            // A file already identical to the bundle's (e.g. written before a crash) is done.
            if exists && same_as(ctx.host, &self.bundle, f)? {
                continue;
            }
            plan.actions.push(CniAction::Install {
                file: f,
                source,
                replace: exists,
                why,
            });
        }
        let before = configs_before_ours(ctx.host)?;
        if !before.is_empty() {
            plan.warnings.push(shadowed_warning(&before));
        }
        plan.notes
            .push(format!("bundle nsxBuildVersion {bundle_version}"));
        Ok(plan)
    }

    fn apply(
        &self,
        ctx: &Ctx,
        action: &CniAction,
        ledger: &mut Ledger,
        _report: &mut crate::report::StepReport,
    ) -> Result<()> {
        match action {
            CniAction::RemovePackage(pkg) => remove_package(ctx.host, pkg, ledger),
            CniAction::RemovePortmap { entry, undo } => {
                ctx.host.sweep_temps(PORTMAP.path)?;
                undo.apply(ctx.host)?;
                ledger.forget(ctx.host, entry)
            }
            CniAction::Install { file, source, .. } => {
                let bytes = read_bundle_file(&self.bundle, file.path)?
                    .with_context(|| format!("bundle file {} vanished", source.display()))?;
                install_file(ctx.host, NAME, file.path, &bytes, file.mode, ledger)
            }
        }
    }
}

impl Cni {
    /// The portmap plugin: NCP's bootstrap installs it with `use_ncp_portmap = True` and NCP's
    /// cleanup removes it. Ours is what the ledger records with our bytes still there; any
    /// other portmap (the distribution's, another CNI's) is the host's and is never touched.
    fn plan_portmap(&self, ctx: &Ctx, plan: &mut Plan<CniAction>) -> Result<()> {
        let path = PORTMAP.path;
        let ledger = crate::ledger::Ledger::load(ctx.host)?;
        let recorded = ledger.file(path).cloned();
        let check = match &recorded {
            Some(e) => e.check(ctx.host)?,
            None => crate::ledger::FileCheck::NotRecorded,
        };
        if !ctx.settings.cni_portmap {
            if let Some(entry) = recorded {
                if let Some(undo) = crate::ledger::FileUndo::plan(ctx.host, &entry, false)? {
                    plan.actions.push(CniAction::RemovePortmap { entry, undo });
                }
            }
            return Ok(());
        }
        let source = check_bundle_file(&self.bundle, path)?.ok_or_else(|| {
            input(format!(
                "cni.portmap is on (ncp.ini [nsx_node_agent] use_ncp_portmap = True) but the \
                 bundle {} has no {}: use the NCP release's bundle, which carries it, or turn \
                 use_ncp_portmap off",
                self.bundle.display(),
                path.trim_start_matches('/')
            ))
        })?;
        ctx.host.check_no_dangling_link(paths::CNI_BIN_DIR)?;
        let exists = ctx.host.exists(path)?;
        if exists && same_as(ctx.host, &self.bundle, PORTMAP)? {
            return Ok(());
        }
        let why = match (exists, check) {
            (false, _) => format!("cni.portmap is on and the host has no {path}"),
            (true, c) if c.content_ours() => {
                format!("{path} is ours and the bundle's differs")
            }
            (true, crate::ledger::FileCheck::NotRecorded) => {
                plan.notes.push(format!(
                    "{path} is not ours (installed by something else): it is kept, and the \
                     bundle's is not installed"
                ));
                return Ok(());
            }
            (true, _) => {
                plan.warnings.push(format!(
                    "{path} was changed since ncp-bootstrap installed it: it is kept as it is"
                ));
                return Ok(());
            }
        };
        plan.actions.push(CniAction::Install {
            file: PORTMAP,
            source,
            replace: exists,
            why,
        });
        Ok(())
    }
}

fn same_as(host: &HostRoot, bundle: &Path, f: BundleFile) -> Result<bool> {
    let Some(state) = host.file_state(f.path)? else {
        return Ok(false);
    };
    let bytes = read_bundle_file(bundle, f.path)?.unwrap_or_default();
    Ok(state.sha256 == sha256_hex(&bytes) && state.mode == f.mode)
}

fn remove_package(host: &HostRoot, pkg: &LegacyPackage, ledger: &mut Ledger) -> Result<()> {
    let mut taken = Vec::new();
    for p in &pkg.files {
        taken.push(take_backup(host, p)?);
    }
    // Recorded before the backups are written, so that a kill in between leaves no backup that
    // the ledger does not know of.
    ledger.record(
        host,
        Entry::PackageRemoved {
            step: NAME.into(),
            manager: pkg.manager.to_string(),
            package: legacy_pkg::PACKAGE.into(),
            version: pkg.version.clone(),
            backups: taken.iter().map(|(b, _)| b.clone()).collect(),
        },
    )?;
    for (b, bytes) in &taken {
        write_backup(host, b, bytes)?;
    }
    legacy_pkg::remove(host, pkg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::testing::{host, TestHost};

    fn with_bundle(version: &str, env: &[(&str, &str)]) -> (TestHost, Cni) {
        let h = host(env);
        let bundle = h.dir.path().join("bundle");
        for (f, body) in [
            (paths::NSX_PLUGIN, "#!/bin/sh\n".to_string()),
            (paths::LOOPBACK_PLUGIN, "#!/bin/sh\n".to_string()),
            (
                paths::NSX_CONFLIST,
                format!("{{\"plugins\":[{{\"type\":\"nsx\",\"nsxBuildVersion\":\"{version}\"}}]}}"),
            ),
            (paths::LOOPBACK_CONF, "{}".to_string()),
        ] {
            let p = bundle.join(f.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        let cni = Cni { bundle };
        (h, cni)
    }

    fn lines(plan: &Plan<CniAction>) -> Vec<String> {
        plan.actions.iter().map(|a| a.describe()).collect()
    }

    #[test]
    fn a_bare_host_gets_every_file_binaries_first() {
        let (h, cni) = with_bundle("4.1.0", &[]);
        let plan = cni.plan(&h.ctx()).unwrap();
        assert_eq!(
            lines(&plan),
            [
                "install /opt/cni/bin/nsx (mode 0755)",
                "install /opt/cni/bin/loopback (mode 0755)",
                "install /etc/cni/net.d/10-nsx.conflist (mode 0644)",
                "install /etc/cni/net.d/99-loopback.conf (mode 0644)",
            ]
        );
    }

    #[test]
    fn a_newer_host_is_kept_unless_forced_and_a_first_config_is_named() {
        let newer = r#"{"plugins":[{"type":"nsx","nsxBuildVersion":"4.2"}]}"#;
        let (h, cni) = with_bundle("4.1.0", &[]);
        h.write(paths::NSX_CONFLIST, newer.as_bytes());
        h.write(paths::NSX_PLUGIN, b"x");
        h.write(paths::LOOPBACK_PLUGIN, b"x");
        h.write(paths::LOOPBACK_CONF, b"{}");
        h.write("/etc/cni/net.d/05-other.conf", b"{}");
        let plan = cni.plan(&h.ctx()).unwrap();
        assert!(plan.actions.is_empty());
        assert!(plan
            .warnings
            .iter()
            .any(|w| w.contains("NCP_BOOTSTRAP_CNI_FORCE")));
        assert!(plan
            .warnings
            .iter()
            .any(|w| w.contains("05-other.conf sorts before")));
        let (h2, cni) = with_bundle("4.1.0", &[("NCP_BOOTSTRAP_CNI_FORCE", "yes")]);
        h2.write(paths::NSX_CONFLIST, newer.as_bytes());
        let plan = cni.plan(&h2.ctx()).unwrap();
        assert!(lines(&plan)
            .contains(&"replace /etc/cni/net.d/10-nsx.conflist (mode 0644)".to_string()));
    }

    #[test]
    fn a_demo_bundle_is_refused_unless_allowed() {
        let (h, cni) = with_bundle("4.1.0", &[]);
        std::fs::write(cni.bundle.join(paths::DEMO_BUNDLE_MARKER), "demo\n").unwrap();
        let Err(e) = cni.plan(&h.ctx()) else {
            panic!("a demo bundle was accepted")
        };
        let e = format!("{e:#}");
        assert!(e.contains("demo bundle"), "{e}");
        assert!(
            e.contains("NCP_BOOTSTRAP_CNI_ALLOW_DEMO_BUNDLE=true"),
            "{e}"
        );
        let (h2, cni2) = with_bundle("4.1.0", &[("NCP_BOOTSTRAP_CNI_ALLOW_DEMO_BUNDLE", "true")]);
        std::fs::write(cni2.bundle.join(paths::DEMO_BUNDLE_MARKER), "demo\n").unwrap();
        assert_eq!(cni2.plan(&h2.ctx()).unwrap().actions.len(), 4);
    }

    #[test]
    fn version_in_plugins_or_top() {
        let v = |s: &str| conflist_version(s.as_bytes());
        assert_eq!(
            v(r#"{"nsxBuildVersion":"4.1.0"}"#).unwrap(),
            NsxVersion::parse("4.1").unwrap()
        );
        assert!(v(r#"{"plugins":[{"type":"nsx","nsxBuildVersion":"4.1.0.2"}]}"#).is_ok());
        assert!(v(r#"{"plugins":[{"type":"nsx"}]}"#)
            .unwrap_err()
            .to_string()
            .contains("no `nsxBuildVersion`"));
        assert!(v(r#"{"nsxBuildVersion":4.1}"#)
            .unwrap_err()
            .to_string()
            .contains("not a string"));
        assert!(v(r#"{"nsxBuildVersion":"4.1.O.1"}"#)
            .unwrap_err()
            .to_string()
            .contains("4.1.O.1"));
        assert!(v(r#"{"nsxBuildVersion":"4.1","plugins":[{"nsxBuildVersion":"4.2"}]}"#).is_err());
        assert!(matches!(v("{").unwrap_err(), ConflistError::Json(_)));
    }
}
