//! The command-line contract. Other issues and the project's checks rely on it exactly.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const GLOBAL: &str = "Global options (for every command, before or after it)";

const EXIT_CODES: &str = "\
Exit codes:
  0  done, or already converged
  1  status found drift
  2  bad input, precondition or usage error; nothing was changed
  3  a step failed while applying; what was done is recorded, and the
     message says how to recover
  4  with --detailed-exit-codes: done, and something was changed

Examples:
  ncp-bootstrap install --bundle /opt/ncp/bundle
  ncp-bootstrap --host-root /host status
  ncp-bootstrap cleanup --dry-run";

#[derive(Debug, Parser)]
#[command(
    name = "ncp-bootstrap",
    version,
    about = "Prepare a Kubernetes node for NSX (NCP): CNI, AppArmor, OVS, uplink, persistent \
             network config, and a full cleanup",
    after_help = EXIT_CODES,
    max_term_width = 80
)]
pub struct Cli {
    /// The host's `/` (`/host` in a container); every host path is resolved under it
    #[arg(
        long,
        env = "NCP_HOST_ROOT",
        default_value = "/",
        global = true,
        value_name = "DIR",
        help_heading = GLOBAL
    )]
    pub host_root: PathBuf,
    /// Config file (TOML) [default: <host-root>/etc/ncp-bootstrap/config.toml if present]
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// ncp.ini to read uplink and bridge from [default: /etc/nsx-ujo/ncp.ini if present]
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub ncp_ini: Option<PathBuf>,
    /// Report format on stdout
    #[arg(long, value_enum, default_value_t = Output::Text, global = true, help_heading = GLOBAL)]
    pub output: Output,
    /// More detail on stderr
    #[arg(short, long, global = true, conflicts_with = "quiet", help_heading = GLOBAL)]
    pub verbose: bool,
    /// Only warnings and errors on stderr
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// Exit 4 when something was changed, 0 only when already converged
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub detailed_exit_codes: bool,
    /// Accepted before the command too, for scripts written that way
    #[arg(long, hide = true)]
    pub dry_run: bool,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// `--dry-run`, given before the command or after it.
    pub fn dry_run(&self) -> bool {
        let own = match &self.command {
            Command::Install(a) | Command::Cni(a) => a.dry.dry_run,
            Command::Apparmor(a) => a.dry.dry_run,
            Command::Uplink(
                UplinkCommand::Attach(AttachArgs { link: u, .. }) | UplinkCommand::Detach(u),
            ) => u.dry.dry_run,
            Command::Persist { link, .. } => link.dry.dry_run,
            Command::Cleanup { dry, .. } => dry.dry_run,
            Command::Config(ConfigCommand::Set { dry, .. }) => dry.dry_run,
            Command::Status(_)
            | Command::Ovs(_)
            | Command::Monitor
            | Command::Config(ConfigCommand::Show)
            | Command::Demo
            | Command::Inject { .. } => false,
        };
        own || self.dry_run
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DryRun {
    /// Print the plan (each change, and why) and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BundleArgs {
    /// Bundle directory that mirrors the host (config cni.bundle, env
    /// NCP_BOOTSTRAP_CNI_BUNDLE)
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub bundle: BundleArgs,
    /// Install the bundle's CNI even when the host's is newer: a rollback (config cni.force,
    /// env NCP_BOOTSTRAP_CNI_FORCE)
    #[arg(long)]
    pub force: bool,
    /// Install the CNI from a demo bundle (an image built without the NCP release's plugin):
    /// for test nodes only (config cni.allow_demo_bundle, env NCP_BOOTSTRAP_CNI_ALLOW_DEMO_BUNDLE)
    #[arg(long)]
    pub allow_demo_bundle: bool,
    #[command(flatten)]
    pub dry: DryRun,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ApparmorArgs {
    #[command(flatten)]
    pub bundle: BundleArgs,
    #[command(flatten)]
    pub dry: DryRun,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UplinkArgs {
    /// The uplink, node-if (config node.uplink, env NCP_BOOTSTRAP_NODE_UPLINK)
    #[arg(long, value_name = "IF")]
    pub uplink: Option<String>,
    /// The OVS bridge (config node.bridge, env NCP_BOOTSTRAP_NODE_BRIDGE)
    #[arg(long, value_name = "BR")]
    pub bridge: Option<String>,
    #[command(flatten)]
    pub dry: DryRun,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub link: UplinkArgs,
    /// Move DHCP/SLAAC addresses that nothing will renew on the bridge (config
    /// node.allow_expiring_lease)
    #[arg(long)]
    pub allow_expiring_lease: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The init-container job: every bootstrap step that is enabled
    #[command(
        after_help = "Example:\n  ncp-bootstrap --host-root /host install --bundle /opt/ncp/bundle"
    )]
    Install(InstallArgs),
    /// Install the CNI plugin files only
    #[command(after_help = "Example:\n  ncp-bootstrap cni --bundle /opt/ncp/bundle --dry-run")]
    Cni(InstallArgs),
    /// Install and load the AppArmor profile only
    #[command(after_help = "Example:\n  ncp-bootstrap apparmor --bundle /opt/ncp/bundle")]
    Apparmor(ApparmorArgs),
    /// Containerized OVS
    #[command(subcommand)]
    Ovs(OvsCommand),
    /// Move addresses and routes between node-if and the bridge
    #[command(subcommand)]
    Uplink(UplinkCommand),
    /// Long-running: give node-if its addresses back when nsx-ovs has been gone for
    /// monitor.grace_seconds (the bootstrap DaemonSet's main container)
    #[command(after_help = "Example:\n  ncp-bootstrap --host-root /host monitor")]
    Monitor,
    /// Write persistent network config for node-if
    #[command(
        after_help = "Example:\n  ncp-bootstrap persist --uplink eth1 --format netplan --dry-run"
    )]
    Persist {
        #[command(flatten)]
        link: UplinkArgs,
        /// auto, ifupdown, netplan, ifcfg or nm-keyfile (config persist.format, env
        /// NCP_BOOTSTRAP_PERSIST_FORMAT)
        #[arg(long)]
        format: Option<String>,
        /// Also apply the written config with the host's network tool
        #[arg(long)]
        apply: bool,
        /// When another netplan file (cloud-init's 50-cloud-init.yaml) defines node-if, move
        /// that definition into ours and turn cloud-init's network rendering off, both
        /// recorded for cleanup (config persist.take_over)
        #[arg(long)]
        take_over: bool,
    },
    /// Undo everything recorded
    #[command(after_help = "Example:\n  ncp-bootstrap --host-root /host cleanup --dry-run")]
    Cleanup {
        /// No ledger: follow NCP's documented node cleanup
        #[arg(long)]
        legacy: bool,
        /// Drop file entries whose backup is missing, leaving those files as they are now (the
        /// host's original content is lost); without it such entries stay and cleanup exits 3
        #[arg(long, conflicts_with = "legacy")]
        forget_missing_backups: bool,
        /// Drop a recorded attach whose uplink no longer exists (renamed or removed NIC),
        /// moving nothing; without it such a cleanup exits 2, as its --dry-run does
        #[arg(long, conflicts_with = "legacy")]
        forget_missing_uplink: bool,
        #[command(flatten)]
        dry: DryRun,
    },
    /// What is installed, what drifted (exit 1 on drift)
    #[command(after_help = "Example:\n  ncp-bootstrap --host-root /host status --output json")]
    Status(BundleArgs),
    /// Show or change the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// A sandboxed run of the whole story
    Demo,
    /// Print NCP's DaemonSets with ncp-bootstrap in their nsx-ncp-bootstrap,
    /// nsx-host-ovs-monitor and nsx-ovs containers (everything else as NCP wrote it)
    #[command(
        after_help = "Examples:\n  kubectl get ds -n nsx-system nsx-ncp-bootstrap nsx-node-agent -o yaml \\\n    | ncp-bootstrap inject --image registry.example.com/ncp-bootstrap:1.0 | kubectl apply -f -\n  ncp-bootstrap inject --image IMAGE -f ncp-ubuntu.yaml > ncp-ubuntu-injected.yaml"
    )]
    Inject {
        /// The ncp-bootstrap image the three containers run
        #[arg(long)]
        image: String,
        /// NCP's manifests (multi-document YAML, or a `kind: List`); `-` or none: standard input
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OvsCommand {
    /// The nsx-ovs container entrypoint (foreground)
    #[command(
        after_help = "Example (the nsx-ovs container):\n  ncp-bootstrap --host-root /host ovs run"
    )]
    Run,
    /// Liveness check for `ovs run` (with --ready, the readiness check)
    #[command(
        after_help = "Examples:\n  ncp-bootstrap --host-root /host ovs health          (liveness)\n  ncp-bootstrap --host-root /host ovs health --ready  (readiness)"
    )]
    Health {
        /// Readiness: also fail while no uplink is known (none configured, none with ofport 1),
        /// so that a pod with nothing attached never reports Ready; liveness does not, since
        /// OVS itself is fine and a restart would change nothing
        #[arg(long)]
        ready: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UplinkCommand {
    /// Move addresses/routes node-if -> bridge
    #[command(
        after_help = "Example:\n  ncp-bootstrap uplink attach --uplink eth1 --bridge br-int"
    )]
    Attach(AttachArgs),
    /// Move them back
    #[command(after_help = "Example:\n  ncp-bootstrap uplink detach --uplink eth1")]
    Detach(UplinkArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// The effective config, each value with where it came from
    #[command(after_help = "Example:\n  ncp-bootstrap config show --output json")]
    Show,
    /// Change the config file, keeping its comments and layout
    #[command(
        after_help = "Example:\n  ncp-bootstrap config set probe.targets gateway,10.0.0.1:6443"
    )]
    Set {
        /// The key to set
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(
            crate::config::KEYS.iter().map(|k| k.name)
        ))]
        key: String,
        /// Its value, as text (lists comma-separated)
        value: String,
        #[command(flatten)]
        dry: DryRun,
    },
}
