use clap::Parser;

fn main() {
    let cli = ncp_bootstrap::cli::Cli::parse();
    std::process::exit(ncp_bootstrap::commands::run(cli));
}
