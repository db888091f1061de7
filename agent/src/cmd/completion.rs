//! `sc-agent completion SHELL`: a shell completion script for sc-agent's commands.

use clap::{Args, ValueEnum};
use std::process::ExitCode;

/// The shells a completion script is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// bash (needs the bash-completion package).
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// Arguments of `sc-agent completion`.
#[derive(Debug, Args)]
#[command(after_help = "Install:\n  \
    bash: sc-agent completion bash > ~/.local/share/bash-completion/completions/sc-agent\n  \
    zsh:  sc-agent completion zsh > \"${fpath[1]}/_sc-agent\"  (then: autoload -U compinit && compinit)\n  \
    fish: sc-agent completion fish > ~/.config/fish/completions/sc-agent.fish")]
pub struct CompletionArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The completion script of `cmd` (called `bin` on the command line) for `shell`.
pub fn script(shell: Shell, cmd: &mut clap::Command, bin: &str) -> Vec<u8> {
    let mut out = Vec::new();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, cmd, bin, &mut out),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, cmd, bin, &mut out),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, cmd, bin, &mut out),
    }
    out
}

/// Prints the completion script.
pub fn run(args: &CompletionArgs, mut cmd: clap::Command, bin: &str) -> ExitCode {
    use std::io::Write;
    let text = script(args.shell, &mut cmd, bin);
    match std::io::stdout().lock().write_all(&text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the completion script failed: {e}");
            ExitCode::FAILURE
        }
    }
}
