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

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
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
mod workloads;

/// The sc-extension agent: turns connection requests into Secrets, workload-identity
/// ServiceAccounts and SecretProviderClasses, and answers questions about them.
#[derive(Debug, Parser)]
#[command(
    name = "sc-agent",
    version,
    about,
    long_about = None,
    after_help = "The operator commands print -o text, json or yaml. Durations are Go durations \
                  (90s, 1m30s, 2h, 500ms) or a bare number of seconds.\n\
                  As a kubectl plugin: a link named kubectl-sc on PATH makes `kubectl sc <command>`.\n\
                  Shell completion: sc-agent completion bash|zsh|fish."
)]
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
    Run(Box<cmd::run::RunArgs>),
    /// List the connections with their target, auth, client, phase and objects.
    List(cmd::args::ListArgs),
    /// Show a connection: its spec, status, journal of runs, and pods of its workloads failing
    /// on a reference it added.
    Show(cmd::args::NameArgs),
    /// List the configuration keys of a connection with their non-secret values.
    ListConfiguration(cmd::args::NameArgs),
    /// Check the cluster objects of a connection for drift, and the pods of its workloads for a
    /// missing Secret, ServiceAccount or CSI volume it added (exit code 1 on a finding).
    Validate(cmd::args::NameArgs),
    /// Run a connection (or --all) again through sc-job, as requested: restores drifted
    /// objects and clears a Contested failure.
    Reapply(cmd::reapply::ReapplyArgs),
    /// Print a sample workload wired to a connection.
    Snippet(cmd::args::NameArgs),
    /// Wait until every connection of a Helm revision is Ready, or one failed.
    Wait(cmd::wait::WaitArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completion(cmd::completion::CompletionArgs),
}

/// The executable name under which kubectl runs sc-agent as its plugin `kubectl sc`.
const PLUGIN_EXECUTABLE: &str = "kubectl-sc";

/// Whether this process was started as `kubectl-sc` (by kubectl, as `kubectl sc ...`, or
/// directly).
fn invoked_as_plugin(argv0: Option<&std::ffi::OsStr>) -> bool {
    argv0
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|f| f == PLUGIN_EXECUTABLE)
}

/// Lets an operator command end quietly when its reader goes away (`sc-agent show x | head`),
/// as other command-line tools do, instead of panicking on the failed print. Not for the
/// agent, which must outlive closed connections (its sockets never raise SIGPIPE anyway).
fn quiet_end_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restores the default disposition of SIGPIPE before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The command line, named `kubectl sc` in usage and help when run as the kubectl plugin.
fn command(plugin: bool) -> clap::Command {
    let cmd = Cli::command();
    if plugin {
        cmd.bin_name("kubectl sc").display_name("kubectl sc")
    } else {
        cmd
    }
}

fn main() -> ExitCode {
    let plugin = invoked_as_plugin(std::env::args_os().next().as_deref());
    let matches = command(plugin).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if !matches!(cli.command, Command::Run(_)) {
        quiet_end_on_closed_pipe();
    }
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
        Command::Completion(args) => {
            let bin = if plugin {
                PLUGIN_EXECUTABLE
            } else {
                "sc-agent"
            };
            cmd::completion::run(&args, command(false), bin)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmd::completion::{Shell, script};

    fn help_of(cmd: &mut clap::Command, sub: &str) -> String {
        cmd.build();
        cmd.find_subcommand_mut(sub)
            .expect("the subcommand exists")
            .render_help()
            .to_string()
    }

    #[test]
    fn the_plugin_is_named_kubectl_sc() {
        assert!(invoked_as_plugin(Some(
            "/usr/local/bin/kubectl-sc".as_ref()
        )));
        assert!(invoked_as_plugin(Some("kubectl-sc".as_ref())));
        assert!(!invoked_as_plugin(Some("/usr/bin/sc-agent".as_ref())));
        assert!(!invoked_as_plugin(Some("kubectl-sc-other".as_ref())));
        assert!(!invoked_as_plugin(None));
        let help = help_of(&mut command(true), "list");
        assert!(help.contains("Usage: kubectl sc list"), "{help}");
        let help = help_of(&mut command(false), "list");
        assert!(help.contains("Usage: sc-agent list"), "{help}");
    }

    #[test]
    fn the_plugin_parses_as_sc_agent_does() {
        let args = ["list", "-n", "ns1", "-o", "yaml"];
        let plugin = command(true)
            .try_get_matches_from(std::iter::once("kubectl-sc").chain(args))
            .unwrap();
        let plain = command(false)
            .try_get_matches_from(std::iter::once("sc-agent").chain(args))
            .unwrap();
        let a = format!("{:?}", Cli::from_arg_matches(&plugin).unwrap());
        let b = format!("{:?}", Cli::from_arg_matches(&plain).unwrap());
        assert_eq!(a, b);
    }

    #[test]
    fn completion_scripts_name_the_commands() {
        let subcommands: Vec<String> = command(false)
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert!(subcommands.len() >= 11, "{subcommands:?}");
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(script(shell, &mut command(false), "sc-agent")).unwrap();
            assert!(!text.trim().is_empty(), "{shell:?}");
            for sub in &subcommands {
                assert!(text.contains(sub.as_str()), "{shell:?} lacks {sub}");
            }
            let output_flag = if shell == Shell::Fish {
                "-l output"
            } else {
                "--output"
            };
            assert!(text.contains(output_flag), "{shell:?}");
        }
    }
}
