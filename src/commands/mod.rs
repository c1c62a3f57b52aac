//! Dispatch: build the context, run the command, print the report, pick the exit code.

mod apparmor;
mod cleanup;
mod cni;
mod config;
mod demo;
mod inject;
mod install;
mod monitor;
mod ovs;
mod persist;
mod status;
mod uplink;

use crate::cli::{Cli, Command, ConfigCommand, Output, OvsCommand, UplinkCommand};
use crate::config::{Config, Inputs, Settings};
use crate::error::kind_of;
use crate::host::HostRoot;
use crate::report::{Progress, Report, Status};
use crate::steps::StepFailed;
use anyhow::Result;

/// What a command hands back besides its step reports.
pub struct Outcome {
    pub code: i32,
    /// Extra text after the step summary (status tables, config listings).
    pub text: String,
    pub details: Option<serde_json::Value>,
}

impl Outcome {
    pub fn ok() -> Self {
        Outcome {
            code: 0,
            text: String::new(),
            details: None,
        }
    }
}

pub struct Env<'a> {
    pub cli: &'a Cli,
    pub host: HostRoot,
    /// With provenance, for `config show` and the start line.
    pub config: Config,
    pub settings: Settings,
    pub progress: &'a Progress,
}

impl Env<'_> {
    /// The context every step runs in.
    pub fn ctx(&self) -> crate::steps::Ctx<'_> {
        crate::steps::Ctx {
            host: &self.host,
            settings: &self.settings,
            dry_run: self.cli.dry_run(),
            progress: self.progress,
        }
    }
}

pub fn run(cli: Cli) -> i32 {
    if let Command::Inject { image, file } = &cli.command {
        return inject::run(image, file.as_deref());
    }
    let progress = Progress::new(cli.quiet, cli.verbose);
    let mut report = Report::new(
        command_name(&cli.command),
        cli.dry_run(),
        &cli.host_root.display().to_string(),
    );
    let deferred = defer_signals(&cli.command);
    let result = check_root(&cli)
        .and_then(|()| build_env(&cli, &progress))
        .and_then(|env| {
            // Configuration warnings go into the report, which prints them once at the end.
            report.warnings.extend(env.config.warnings.iter().cloned());
            if !matches!(cli.command, Command::Ovs(OvsCommand::Health { .. })) {
                progress.info(&start_line(&env));
            }
            dispatch(&env, &mut report)
        });
    progress.finish();
    if let Some(sig) = deferred.as_ref().and_then(Deferred::received) {
        report.warnings.push(format!(
            "{sig} arrived while the host was being changed; the run finished first, so nothing \
             is left half done"
        ));
    }
    let mut text = String::new();
    match result {
        Ok(outcome) => {
            report.exit_code = outcome.code;
            // Automation tells "changed" from "converged" by the code alone.
            let changed = report.steps.iter().any(|s| s.status == Status::Changed);
            if cli.detailed_exit_codes && outcome.code == 0 && changed {
                report.exit_code = 4;
            }
            report.details = outcome.details;
            text = outcome.text;
        }
        Err(e) => {
            report.exit_code = kind_of(&e).map_or(3, |k| k.exit_code());
            if let Some(failed) = e.downcast_ref::<StepFailed>() {
                report.steps.push((*failed.0).clone());
            }
            report.error = Some(crate::error::render(&e));
            eprintln!("error: {}", crate::error::render(&e));
        }
    }
    match cli.output {
        Output::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: cannot print the report as JSON: {e}"),
        },
        Output::Text => {
            print!("{}", report.render_text());
            print!("{text}");
        }
    }
    report.exit_code
}

/// A command line clap refuses: help and version print as clap prints them (exit 0); a usage
/// error is exit 2, and with `--output json` it is also a JSON report, so that automation
/// reading stdout gets one even for a mistyped flag.
pub fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return 0;
    }
    if !wants_json(std::env::args()) {
        let _ = e.print();
        return 2;
    }
    let message = e.render().to_string();
    let mut report = Report::new("", false, "");
    report.exit_code = 2;
    report.error = Some(format!("usage: {}", message.trim()));
    eprint!("{message}");
    match serde_json::to_string_pretty(&report) {
        Ok(s) => println!("{s}"),
        Err(err) => eprintln!("error: cannot print the report as JSON: {err}"),
    }
    2
}

/// Whether the raw arguments ask for JSON output (`--output json` or `--output=json`).
fn wants_json(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<String> = args.collect();
    args.iter().any(|a| a == "--output=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--output" && w[1] == "json")
}

/// The first line of a run: what runs, on which host root, from which configuration.
fn start_line(env: &Env) -> String {
    let mut sources: Vec<String> = Vec::new();
    for r in env.config.values.values() {
        let s = match &r.source {
            crate::config::Source::Default => continue,
            crate::config::Source::Env(_) => "environment".to_string(),
            crate::config::Source::Flag(_) => "flags".to_string(),
            other => other.to_string(),
        };
        if !sources.contains(&s) {
            sources.push(s);
        }
    }
    sources.push("defaults".into());
    format!(
        "ncp-bootstrap {} {}{}: host root {}, configuration from {}",
        env!("CARGO_PKG_VERSION"),
        command_name(&env.cli.command),
        if env.cli.dry_run() { " (dry run)" } else { "" },
        env.host.root().display(),
        sources.join(", ")
    )
}

fn build_env<'a>(cli: &'a Cli, progress: &'a Progress) -> Result<Env<'a>> {
    let host = HostRoot::new(&cli.host_root)?;
    let mut inputs = Inputs {
        config_file: cli.config.clone(),
        ncp_ini: cli.ncp_ini.clone(),
        flags: Vec::new(),
        env: Inputs::from_process_env(),
    };
    if let Some(b) = bundle_flag(&cli.command) {
        inputs
            .flags
            .push(("cni.bundle", "--bundle", b.display().to_string()));
    }
    if let Command::Install(a) | Command::Cni(a) = &cli.command {
        if a.force {
            inputs.flags.push(("cni.force", "--force", "true".into()));
        }
        if a.allow_demo_bundle {
            inputs.flags.push((
                "cni.allow_demo_bundle",
                "--allow-demo-bundle",
                "true".into(),
            ));
        }
    }
    if let Command::Persist {
        format, take_over, ..
    } = &cli.command
    {
        if let Some(f) = format {
            inputs.flags.push(("persist.format", "--format", f.clone()));
        }
        if *take_over {
            inputs
                .flags
                .push(("persist.take_over", "--take-over", "true".into()));
        }
    }
    if let Command::Uplink(UplinkCommand::Attach(a)) = &cli.command {
        if a.allow_expiring_lease {
            inputs.flags.push((
                "node.allow_expiring_lease",
                "--allow-expiring-lease",
                "true".into(),
            ));
        }
    }
    if let Some(u) = uplink_flags(&cli.command) {
        if let Some(v) = &u.uplink {
            inputs.flags.push(("node.uplink", "--uplink", v.clone()));
        }
        if let Some(v) = &u.bridge {
            inputs.flags.push(("node.bridge", "--bridge", v.clone()));
        }
    }
    let config = Config::load(&host, &inputs)?;
    let settings = Settings::from_config(&config)?;
    Ok(Env {
        cli,
        host,
        config,
        settings,
        progress,
    })
}

fn bundle_flag(c: &Command) -> Option<&std::path::PathBuf> {
    match c {
        Command::Install(a) | Command::Cni(a) => a.bundle.bundle.as_ref(),
        Command::Apparmor(a) => a.bundle.bundle.as_ref(),
        Command::Status(b) => b.bundle.as_ref(),
        _ => None,
    }
}

fn uplink_flags(c: &Command) -> Option<&crate::cli::UplinkArgs> {
    match c {
        Command::Uplink(
            UplinkCommand::Attach(crate::cli::AttachArgs { link: u, .. })
            | UplinkCommand::Detach(u),
        ) => Some(u),
        Command::Persist { link, .. } => Some(link),
        _ => None,
    }
}

/// Whether a command changes the host when it is not a dry run.
fn changes_host(c: &Command) -> bool {
    !matches!(
        c,
        Command::Status(_)
            | Command::Config(_)
            | Command::Ovs(OvsCommand::Health { .. })
            | Command::Inject { .. }
    )
}

/// SIGTERM, SIGINT and SIGHUP held off while a command changes the host (`uplink attach` in the
/// middle of its move would otherwise leave addresses on both links and half the routes
/// moved): each sets a flag instead of ending the process, and the run finishes (or rolls
/// back) as it would have. `ovs run` watches its own flags; `demo` stops on Ctrl-C by itself.
struct Deferred {
    flags: Vec<(&'static str, std::sync::Arc<std::sync::atomic::AtomicBool>)>,
}

impl Deferred {
    /// The first of the held signals that arrived, if any.
    fn received(&self) -> Option<&'static str> {
        self.flags
            .iter()
            .find(|(_, f)| f.load(std::sync::atomic::Ordering::Relaxed))
            .map(|(n, _)| *n)
    }
}

fn defer_signals(c: &Command) -> Option<Deferred> {
    if !changes_host(c) || matches!(c, Command::Ovs(_) | Command::Monitor | Command::Demo) {
        return None;
    }
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut flags = Vec::new();
    for (name, sig) in [("SIGTERM", SIGTERM), ("SIGINT", SIGINT), ("SIGHUP", SIGHUP)] {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A signal that cannot be held keeps its default action: no worse than before.
        if signal_hook::flag::register(sig, std::sync::Arc::clone(&flag)).is_ok() {
            flags.push((name, flag));
        }
    }
    Some(Deferred { flags })
}

/// Refused up front: a non-root run would otherwise fail half way, at the first file it
/// creates ("Permission denied", exit 3), after planning against a host it cannot change.
fn check_root(cli: &Cli) -> Result<()> {
    let uid = nix::unistd::geteuid();
    if changes_host(&cli.command) && !cli.dry_run() && !uid.is_root() {
        return Err(crate::error::precondition(format!(
            "`ncp-bootstrap {}` changes the host and must run as root (uid {uid} now); run it \
             with sudo, or add --dry-run to see what it would do",
            command_name(&cli.command),
        )));
    }
    Ok(())
}

fn dispatch(env: &Env, report: &mut Report) -> Result<Outcome> {
    match &env.cli.command {
        Command::Install(_) => install::run(env, report),
        Command::Cni(_) => cni::run(env, report),
        Command::Status(_) => status::run(env, report),
        Command::Cleanup {
            legacy,
            forget_missing_backups,
            forget_missing_uplink,
            ..
        } => cleanup::run(
            env,
            *legacy,
            crate::steps::undo::Forget {
                backups: *forget_missing_backups,
                uplink: *forget_missing_uplink,
            },
            report,
        ),
        Command::Config(ConfigCommand::Show) => config::show(env),
        Command::Config(ConfigCommand::Set { key, value, .. }) => config::set(env, key, value),
        Command::Apparmor(_) => apparmor::run(env, report),
        Command::Ovs(OvsCommand::Run) => ovs::ovs_run(env),
        Command::Ovs(OvsCommand::Health { ready }) => ovs::ovs_health(env, *ready),
        Command::Uplink(UplinkCommand::Attach(_)) => uplink::run(env, true, report),
        Command::Uplink(UplinkCommand::Detach(_)) => uplink::run(env, false, report),
        Command::Persist { apply, .. } => persist::run(env, *apply, report),
        Command::Demo => demo::run(env),
        Command::Inject { .. } => Err(anyhow::anyhow!(
            "inject runs before the context is built (commands::run)"
        )),
        Command::Monitor => monitor::run(env),
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Install(_) => "install",
        Command::Cni(_) => "cni",
        Command::Apparmor(_) => "apparmor",
        Command::Ovs(OvsCommand::Run) => "ovs run",
        Command::Ovs(OvsCommand::Health { .. }) => "ovs health",
        Command::Uplink(UplinkCommand::Attach(_)) => "uplink attach",
        Command::Uplink(UplinkCommand::Detach(_)) => "uplink detach",
        Command::Persist { .. } => "persist",
        Command::Cleanup { .. } => "cleanup",
        Command::Status(_) => "status",
        Command::Config(ConfigCommand::Show) => "config show",
        Command::Config(ConfigCommand::Set { .. }) => "config set",
        Command::Demo => "demo",
        Command::Inject { .. } => "inject",
        Command::Monitor => "monitor",
    }
}
