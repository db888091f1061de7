//! sc-agent: the sc-extension agent and its operator commands.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cmd;

/// The sc-extension agent: turns connection requests into Secrets, workload-identity
/// ServiceAccounts and SecretProviderClasses, and answers questions about them.
#[derive(Debug, Parser)]
#[command(name = "sc-agent", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The commands of sc-agent.
#[derive(Debug, Subcommand)]
enum Command {
    /// Show the documented configuration keys per target, auth type and client type.
    Catalog(cmd::catalog::CatalogArgs),
    /// Show the objects a values file would produce, or its validation errors (no cluster needed).
    Plan(cmd::plan::PlanArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Catalog(args) => cmd::catalog::run(&args),
        Command::Plan(args) => cmd::plan::run(&args),
    }
}
