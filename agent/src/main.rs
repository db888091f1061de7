//! sc-agent: the sc-extension agent and its operator commands.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use sc_contract as contract;
use sc_contract::shards;

mod cmd;
mod controller;
mod diff;
mod jobspec;
mod kubeconn;
mod server;

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
    /// Run the agent: watch the requests and run sc-job for each change (in the cluster).
    Run(cmd::run::RunArgs),
    /// List the connections with their target, auth, client, phase and objects.
    List(cmd::ops::ListArgs),
    /// Show a connection: its spec, status and journal of runs.
    Show(cmd::ops::NameArgs),
    /// List the configuration keys of a connection with their non-secret values.
    ListConfiguration(cmd::ops::NameArgs),
    /// Check the cluster objects of a connection for drift (exit code 1 on drift).
    Validate(cmd::ops::NameArgs),
    /// Print a sample workload wired to a connection.
    Snippet(cmd::ops::NameArgs),
    /// Wait until every connection of a Helm revision is Ready, or one failed.
    Wait(cmd::wait::WaitArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Catalog(args) => cmd::catalog::run(&args),
        Command::Plan(args) => cmd::plan::run(&args),
        Command::Run(args) => cmd::run::run(&args),
        Command::List(args) => cmd::ops::list(&args),
        Command::Show(args) => cmd::ops::show(&args),
        Command::ListConfiguration(args) => cmd::ops::list_configuration(&args),
        Command::Validate(args) => cmd::validate::run(&args),
        Command::Snippet(args) => cmd::ops::snippet(&args),
        Command::Wait(args) => cmd::wait::run(&args),
    }
}
