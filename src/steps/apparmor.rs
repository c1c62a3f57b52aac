//! AppArmor: install `/etc/apparmor.d/ncp-apparmor` from the bundle and load the profile it
//! defines (`node-agent-apparmor` unless `apparmor.profile` says otherwise) in enforce mode.
//!
//! The parser is always given the host's paths (base and include dir, the securityfs mount) so
//! that it works the same from a container whose host root is `/host`. It runs with `-K` (no
//! cache): a cache file would be one more host change to track, and the host's own AppArmor
//! service compiles the profile from /etc/apparmor.d at boot anyway.

use super::{Action, Ctx, Plan, Step};
use crate::error::{input, precondition};
use crate::host::{paths, sha256_hex, HostRoot};
use crate::ledger::install_file;
use crate::ledger::{Entry, Ledger};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub const NAME: &str = "apparmor";
use crate::host::apparmor::{loaded_mode, module_enabled, Parser, ENABLED};

use crate::config::AppArmorMode as Mode;

/// The pod annotation a DaemonSet container needs to run under the profile (clusters before
/// Kubernetes 1.30).
pub fn annotation(container: &str, profile: &str) -> String {
    format!("container.apparmor.security.beta.kubernetes.io/{container}: localhost/{profile}")
}

/// The container's security-context field for the profile (Kubernetes 1.30 and later).
pub fn app_armor_profile(profile: &str) -> String {
    format!("securityContext.appArmorProfile: {{type: Localhost, localhostProfile: {profile}}}")
}

pub struct AppArmor {
    pub mode: Mode,
    pub profile: String,
    pub bundle: PathBuf,
}

#[derive(Debug)]
pub enum AppArmorAction {
    InstallFile { source: PathBuf, replace: bool },
    Load { was_loaded: bool },
}

impl Action for AppArmorAction {
    fn describe(&self) -> String {
        match self {
            AppArmorAction::InstallFile { replace, .. } => format!(
                "{} {} (mode 0644)",
                if *replace { "replace" } else { "install" },
                paths::APPARMOR_PROFILE_FILE
            ),
            AppArmorAction::Load { .. } => format!(
                "load {} with apparmor_parser -r (enforce mode)",
                paths::APPARMOR_PROFILE_FILE
            ),
        }
    }

    fn why(&self) -> String {
        match self {
            AppArmorAction::InstallFile { replace: true, .. } => {
                "the host's profile file differs from the bundle's".into()
            }
            AppArmorAction::InstallFile { .. } => "the profile file is absent".into(),
            AppArmorAction::Load { was_loaded: true } => {
                "the kernel's copy may be older than the file, or not in enforce mode".into()
            }
            AppArmorAction::Load { .. } => "the kernel does not list the profile".into(),
        }
    }
}

impl AppArmor {
    pub fn from_ctx(ctx: &Ctx) -> Self {
        AppArmor {
            mode: ctx.settings.apparmor_mode,
            profile: ctx.settings.apparmor_profile.clone(),
            bundle: ctx.settings.bundle.clone(),
        }
    }

    fn validate(&self, host: &HostRoot, source: &Path) -> Result<()> {
        let parser = Parser::find(host)?;
        let names = parser.names(source).map_err(|e| {
            input(format!(
                "bundle file {} does not parse: {e:#}",
                source.display()
            ))
        })?;
        if !names.contains(&self.profile) {
            return Err(input(format!(
                "bundle file {} defines the profile(s) {:?}, not `{}` (config apparmor.profile); \
                 fix the file or the config so that they agree",
                source.display(),
                names,
                self.profile
            )));
        }
        parser.check(source).map_err(|e| {
            input(format!(
                "bundle file {} does not compile: {e:#}",
                source.display()
            ))
        })
    }

    fn source(&self) -> PathBuf {
        self.bundle
            .join(paths::APPARMOR_PROFILE_FILE.trim_start_matches('/'))
    }
}

impl Step for AppArmor {
    type Action = AppArmorAction;

    fn name(&self) -> &'static str {
        NAME
    }

    fn plan(&self, ctx: &Ctx) -> Result<Plan<AppArmorAction>> {
        if self.mode == Mode::Off {
            return Ok(Plan::skip("apparmor.mode = off"));
        }
        if !module_enabled(ctx.host)? {
            if self.mode == Mode::Auto {
                let os = crate::host::os_release_field(ctx.host, "PRETTY_NAME")
                    .or_else(|| crate::host::os_release_field(ctx.host, "NAME"))
                    .map_or(String::new(), |n| format!(" ({n})"));
                return Ok(Plan::skip(format!(
                    "AppArmor is not enabled on this host{os}: {ENABLED} is not `Y`; nothing to \
                     load (apparmor.mode = auto)"
                )));
            }
            return Err(precondition(format!(
                "apparmor.mode = required, but AppArmor is not enabled on this host ({ENABLED} \
                 under the host root is not `Y`). Check with `cat /sys/module/apparmor/parameters/enabled` \
                 and `/etc/init.d/apparmor status`. Without AppArmor, remove the annotation \
                 `{}` from the node agent DaemonSet and run its containers with `privileged: true`, \
                 or set apparmor.mode = auto",
                annotation("<container>", &self.profile)
            )));
        }
        if !ctx.host.is_dir(paths::APPARMOR_DIR)? {
            return Err(precondition(format!(
                "AppArmor is enabled but {} does not exist under the host root; the AppArmor \
                 service must be installed and running (`/etc/init.d/apparmor status`)",
                paths::APPARMOR_DIR
            )));
        }
        let source = self.source();
        let bytes = crate::host::bundle::read_bundle_file(&self.bundle, paths::APPARMOR_PROFILE_FILE)?
            .ok_or_else(|| {
                input(format!(
                    "bundle file {} is missing; the bundle (cni.bundle, --bundle) must carry etc/apparmor.d/ncp-apparmor",
                    source.display()
                ))
            })?;
        let mut plan = Plan::new();
        plan.notes.push(format!(
            "container field (Kubernetes 1.30+): {}; pod annotation (older): {}",
            app_armor_profile(&self.profile),
            annotation("<container>", &self.profile)
        ));
        let on_host = ctx.host.file_state(paths::APPARMOR_PROFILE_FILE)?;
        let same = on_host
            .as_ref()
            .is_some_and(|s| s.sha256 == sha256_hex(&bytes) && s.mode == 0o644);
        let loaded = loaded_mode(ctx.host, &self.profile)?;
        if same && loaded.as_deref() == Some("enforce") {
            return Ok(plan);
        }
        // Something will change: only now pay for the parser, and prove the bundle's profile
        // compiles and defines the configured name before anything is written.
        self.validate(ctx.host, &source)?;
        if !same {
            plan.actions.push(AppArmorAction::InstallFile {
                source,
                replace: on_host.is_some(),
            });
        }
        if !same || loaded.as_deref() != Some("enforce") {
            plan.actions.push(AppArmorAction::Load {
                was_loaded: loaded.is_some(),
            });
        }
        Ok(plan)
    }

    fn apply(
        &self,
        ctx: &Ctx,
        action: &AppArmorAction,
        ledger: &mut Ledger,
        _report: &mut crate::report::StepReport,
    ) -> Result<()> {
        match action {
            AppArmorAction::InstallFile { source, .. } => {
                let bytes = crate::host::bundle::read_bundle_file(
                    &self.bundle,
                    paths::APPARMOR_PROFILE_FILE,
                )?
                .with_context(|| format!("bundle file {} vanished", source.display()))?;
                install_file(
                    ctx.host,
                    NAME,
                    paths::APPARMOR_PROFILE_FILE,
                    &bytes,
                    0o644,
                    ledger,
                )
            }
            AppArmorAction::Load { was_loaded } => {
                let parser = Parser::find(ctx.host)?;
                let already = ledger.entries.iter().any(
                    |e| matches!(e, Entry::ProfileLoaded { name, .. } if *name == self.profile),
                );
                if !already {
                    let reload_from = match ledger.file(paths::APPARMOR_PROFILE_FILE) {
                        Some(Entry::File {
                            before: crate::ledger::Before::Replaced { backup, .. },
                            ..
                        }) if *was_loaded => Some(backup.clone()),
                        _ => None,
                    };
                    ledger.record(
                        ctx.host,
                        Entry::ProfileLoaded {
                            step: NAME.into(),
                            name: self.profile.clone(),
                            was_loaded: *was_loaded,
                            reload_from,
                        },
                    )?;
                }
                let file = ctx.host.resolve(paths::APPARMOR_PROFILE_FILE)?;
                parser.load(&file)
            }
        }
    }
}

/// The inverse of a `profile_loaded` entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Undo {
    Unload {
        name: String,
    },
    /// The host had its own profile of that name: it is loaded again from its file.
    Reload {
        name: String,
        from: String,
    },
    /// Loaded before ncp-bootstrap: it stays loaded.
    LeftLoaded {
        name: String,
    },
    NotLoaded {
        name: String,
    },
}

impl Undo {
    /// Plans it (read only); `None` for any other entry.
    pub fn plan(host: &HostRoot, entry: &Entry) -> Result<Option<Undo>> {
        let Entry::ProfileLoaded {
            name,
            was_loaded,
            reload_from,
            ..
        } = entry
        else {
            return Ok(None);
        };
        let name = name.clone();
        Ok(Some(match (was_loaded, reload_from) {
            (_, Some(from)) => Undo::Reload {
                name,
                from: from.clone(),
            },
            (true, None) => Undo::LeftLoaded { name },
            (false, None) if loaded_mode(host, &name)?.is_none() => Undo::NotLoaded { name },
            (false, None) => Undo::Unload { name },
        }))
    }

    pub fn describe(&self) -> String {
        match self {
            Undo::Unload { name } => {
                format!("unload AppArmor profile {name} (apparmor_parser -R)")
            }
            Undo::Reload { name, from } => {
                format!("reload the host's earlier AppArmor profile {name} from {from}")
            }
            Undo::LeftLoaded { name } => {
                format!("AppArmor profile {name} was loaded before ncp-bootstrap; left loaded")
            }
            Undo::NotLoaded { name } => format!("AppArmor profile {name} is not loaded"),
        }
    }

    pub fn apply(&self, host: &HostRoot) -> Result<()> {
        match self {
            Undo::Unload { name } => Parser::find(host)?.unload(name),
            Undo::Reload { from, .. } => Parser::find(host)?.load(&host.resolve(from)?),
            Undo::LeftLoaded { .. } | Undo::NotLoaded { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::testing::host;

    #[test]
    fn a_profile_is_unloaded_only_when_we_loaded_it_and_it_is_loaded() {
        let (_t, h) = crate::host::temp_root();
        let e = |was_loaded| Entry::ProfileLoaded {
            step: "apparmor".into(),
            name: "node-agent-apparmor".into(),
            was_loaded,
            reload_from: None,
        };
        let plan = |e: &Entry| Undo::plan(&h, e).unwrap().unwrap();
        assert!(matches!(plan(&e(false)), Undo::NotLoaded { .. }));
        h.create_dirs("/sys/kernel/security/apparmor").unwrap();
        h.write_atomic(
            crate::host::apparmor::PROFILES,
            b"node-agent-apparmor (enforce)\n",
            0o644,
        )
        .unwrap();
        assert!(matches!(plan(&e(false)), Undo::Unload { .. }));
        assert!(matches!(plan(&e(true)), Undo::LeftLoaded { .. }));
    }

    #[test]
    fn off_and_hosts_without_apparmor_are_skipped_naming_the_host() {
        let h = host(&[("NCP_BOOTSTRAP_APPARMOR_MODE", "off")]);
        let plan = AppArmor::from_ctx(&h.ctx()).plan(&h.ctx()).unwrap();
        assert_eq!(plan.skipped.as_deref(), Some("apparmor.mode = off"));

        let h = host(&[]);
        h.write(
            crate::host::paths::OS_RELEASE,
            b"NAME=\"Rocky Linux\"\nPRETTY_NAME=\"Rocky Linux 9.3\"\n",
        );
        let plan = AppArmor::from_ctx(&h.ctx()).plan(&h.ctx()).unwrap();
        let why = plan.skipped.unwrap();
        assert!(
            why.contains("(Rocky Linux 9.3)") && why.contains(ENABLED),
            "{why}"
        );

        let h = host(&[("NCP_BOOTSTRAP_APPARMOR_MODE", "required")]);
        let e = crate::steps::testing::plan_err(&AppArmor::from_ctx(&h.ctx()), &h);
        assert_eq!(
            crate::error::kind_of(&e),
            Some(crate::error::Kind::Precondition)
        );
    }
}
