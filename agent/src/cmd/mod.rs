//! The sc-agent commands, one module each, and what the operator commands share: their
//! arguments (`args`), how they print (`output`) and what they read (`snapshot`).

pub mod args;
pub mod catalog;
pub mod completion;
pub mod duration;
pub mod list;
pub mod list_configuration;
pub mod output;
pub mod plan;
pub mod reapply;
pub mod run;
pub mod show;
pub mod snapshot;
pub mod snippet;
pub mod validate;
pub mod wait;

use std::process::ExitCode;

/// Exit code of a command given invalid input (bad values, unknown names).
pub const EXIT_INVALID: u8 = 2;

/// Exit code when the command could not do its work (cluster unreachable, unknown name).
pub const EXIT_ERROR: u8 = 2;

/// Runs an async command body on a fresh runtime, printing its error.
pub fn block_on(f: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime failed: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match rt.block_on(f) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
