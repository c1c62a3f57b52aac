//! The command-line contract. Other issues and the project's checks rely on it exactly.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "ncp-bootstrap",
    version,
    about = "Prepare a Kubernetes node for NSX (NCP): CNI, AppArmor, OVS, uplink, persistent \
             network config, and a full cleanup",
    max_term_width = 80
)]
pub struct Cli {
    /// The host's `/` (`/host` in a container); every host path is resolved under it
    #[arg(
        long,
        env = "NCP_HOST_ROOT",
        default_value = "/",
        global = true,
        value_name = "DIR"
    )]
    pub host_root: PathBuf,
    /// Config file (TOML) [default: <host-root>/etc/ncp-bootstrap/config.toml if present]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// ncp.ini to read uplink and bridge from [default: /etc/nsx-ujo/ncp.ini if present]
    #[arg(long, global = true, value_name = "FILE")]
    pub ncp_ini: Option<PathBuf>,
    /// Print the plan (each change, and why) and change nothing
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Report format on stdout
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
    /// More detail on stderr
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Only warnings and errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BundleArgs {
    /// Bundle directory that mirrors the host (config cni.bundle)
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Install the bundle's CNI even when the host's is newer
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UplinkArgs {
    /// The uplink, node-if (config node.uplink)
    #[arg(long, value_name = "IF")]
    pub uplink: Option<String>,
    /// The OVS bridge (config node.bridge)
    #[arg(long, value_name = "BR")]
    pub bridge: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The init-container job: every bootstrap step that is enabled
    Install(BundleArgs),
    /// Install the CNI plugin files only
    Cni(BundleArgs),
    /// Install and load the AppArmor profile only
    Apparmor(BundleArgs),
    /// Containerized OVS
    #[command(subcommand)]
    Ovs(OvsCommand),
    /// Move addresses and routes between node-if and the bridge
    #[command(subcommand)]
    Uplink(UplinkCommand),
    /// Write persistent network config for node-if
    Persist {
        #[command(flatten)]
        link: UplinkArgs,
        /// auto, ifupdown, netplan, ifcfg or nm-keyfile (config persist.format)
        #[arg(long)]
        format: Option<String>,
        /// Also apply the written config with the host's network tool
        #[arg(long)]
        apply: bool,
    },
    /// Undo everything recorded
    Cleanup {
        /// No ledger: follow NCP's documented node cleanup
        #[arg(long)]
        legacy: bool,
        /// Drop file entries whose backup is missing, leaving those files as they are now (the
        /// host's original content is lost); without it such entries stay and cleanup exits 3
        #[arg(long, conflicts_with = "legacy")]
        forget_missing_backups: bool,
    },
    /// What is installed, what drifted (exit 1 on drift)
    Status(BundleArgs),
    /// Show or change the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// A sandboxed run of the whole story
    Demo,
}

#[derive(Debug, Subcommand)]
pub enum OvsCommand {
    /// The nsx-ovs container entrypoint (foreground)
    Run,
    /// Liveness check for `ovs run`
    Health,
}

#[derive(Debug, Subcommand)]
pub enum UplinkCommand {
    /// Move addresses/routes node-if -> bridge
    Attach(UplinkArgs),
    /// Move them back
    Detach(UplinkArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// The effective config, each value with where it came from
    Show,
    /// Change the config file, keeping its comments and layout
    Set { key: String, value: String },
}
