//! `sc-agent run`: the long-running agent.

use crate::contract::DEFAULT_NAMESPACE;
use crate::jobspec::AgentConfig;
use crate::kubeconn::ClusterArgs;
use crate::reconcile::plan::Backoff;
use crate::runtime::{self, RunSettings};
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `sc-agent run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file rendered by the chart.
    #[arg(long, value_name = "FILE", default_value = "/etc/sc-agent/config.json")]
    pub config: std::path::PathBuf,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub listen: std::net::SocketAddr,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
    /// The namespace of the extension (default: $POD_NAMESPACE, the configured release
    /// namespace, then sc-system).
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// This replica's identity in the Lease (default: $POD_NAME, else host name and a random
    /// suffix).
    #[arg(long, value_name = "ID")]
    pub identity: Option<String>,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    pub lease_duration: u64,
    /// Seconds before expiry at which the leader renews the Lease.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub lease_grace: u64,
    /// Milliseconds to collect a burst of changes before acting.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub debounce_ms: u64,
    /// First retry delay of a transiently failed sc-job, in seconds (doubles per failure).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub retry_base: u64,
    /// Longest retry delay, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub retry_max: u64,
    /// Most connections one change set (one sc-job run) carries; more pending changes follow
    /// in the next runs. At most the default, which keeps the change set under the API
    /// server's 1 MiB limit per object.
    #[arg(long, value_name = "N", default_value_t = crate::contract::MAX_CHANGESET_CONNECTIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..=crate::contract::MAX_CHANGESET_CONNECTIONS as u64))]
    pub changeset_limit: u64,
    /// Drift repairs of one connection allowed within --drift-window; one more drift makes
    /// it Failed with reason Contested (until its request changes or `sc-agent reapply`).
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=100))]
    pub drift_repairs: u64,
    /// The window of --drift-repairs, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub drift_window: u64,
    /// Seconds between two looks at the Secrets of applied connections (a deleted or edited
    /// ServiceAccount or SecretProviderClass is seen at once, through a watch).
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub drift_interval: u64,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs the agent until SIGTERM.
pub fn run(args: &RunArgs) -> ExitCode {
    init_logging(&args.log_level);
    runtime::limit_malloc_arenas();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_async(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "the agent stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run_async(args: &RunArgs) -> anyhow::Result<()> {
    if args.lease_grace == 0 || args.lease_grace >= args.lease_duration {
        anyhow::bail!(
            "--lease-grace ({}) must be at least 1 and less than --lease-duration ({})",
            args.lease_grace,
            args.lease_duration
        );
    }
    let config = AgentConfig::load(&args.config)?;
    let namespace = args
        .namespace
        .clone()
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| config.release.namespace.clone())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "sc-agent".to_string());
            format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
        });
    let client = args.cluster.client().await?;
    tracing::info!(%namespace, %identity, listen = %args.listen, "starting");
    runtime::run(
        client,
        RunSettings {
            config,
            namespace,
            listen: args.listen,
            identity,
            lease_duration: args.lease_duration,
            lease_grace: args.lease_grace,
            debounce: Duration::from_millis(args.debounce_ms),
            changeset_limit: args.changeset_limit as usize,
            drift_limits: crate::reconcile::drift::DriftLimits {
                repairs: args.drift_repairs as usize,
                window: args.drift_window as i64,
                interval: args.drift_interval as i64,
            },
            backoff: Backoff {
                base: Duration::from_secs(args.retry_base.max(1)),
                max: Duration::from_secs(args.retry_max.max(args.retry_base.max(1))),
            },
        },
    )
    .await
}
