use clap::Parser;

fn main() {
    let cli = match ncp_bootstrap::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => std::process::exit(ncp_bootstrap::commands::usage_error(e)),
    };
    std::process::exit(ncp_bootstrap::commands::run(cli));
}
