//! sc-agent: the sc-extension agent and its operator commands.
//!
//! Agent layout:
//! - `reconcile`: one reconcile step as stages, each in the file named for it: `observe` (the
//!   watch stores, the request shards and the live change set into one `Observed` value),
//!   `plan` (pure: every decision and every write to make, unit-tested from fixtures) and
//!   `act` (the writes); `desired` derives what the requests want per connection.
//! - `runtime`: the process around the steps: HTTP endpoints (`server`), signals, allocator
//!   tuning, the Lease and the debounced loop.
//! - `cmd`: the subcommands, one module each, with what the operator commands share.
//! - `contract`, `shards`: the sc-contract crate (the formats exchanged with the chart and
//!   sc-job, defined once for both binaries); `jobspec`: the Job
//!   and the configuration file; `kubeconn`: the cluster connection of the commands.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use sc_contract as contract;
use sc_contract::shards;

mod cmd;
mod federated;
mod jobspec;
mod kubeconn;
mod prerequisites;
mod reconcile;
mod report;
mod runtime;
mod schema;
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
    List(cmd::args::ListArgs),
    /// Show a connection: its spec, status and journal of runs.
    Show(cmd::args::NameArgs),
    /// List the configuration keys of a connection with their non-secret values.
    ListConfiguration(cmd::args::NameArgs),
    /// Check the cluster objects of a connection for drift (exit code 1 on drift).
    Validate(cmd::args::NameArgs),
    /// Run a connection (or --all) again through sc-job, as requested: restores drifted
    /// objects and clears a Contested failure.
    Reapply(cmd::reapply::ReapplyArgs),
    /// Print a sample workload wired to a connection.
    Snippet(cmd::args::NameArgs),
    /// Wait until every connection of a Helm revision is Ready, or one failed.
    Wait(cmd::wait::WaitArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Catalog(args) => cmd::catalog::run(&args),
        Command::Plan(args) => cmd::plan::run(&args),
        Command::Run(args) => cmd::run::run(&args),
        Command::List(args) => cmd::list::run(&args),
        Command::Show(args) => cmd::show::run(&args),
        Command::ListConfiguration(args) => cmd::list_configuration::run(&args),
        Command::Validate(args) => cmd::validate::run(&args),
        Command::Reapply(args) => cmd::reapply::run(&args),
        Command::Snippet(args) => cmd::snippet::run(&args),
        Command::Wait(args) => cmd::wait::run(&args),
    }
}
