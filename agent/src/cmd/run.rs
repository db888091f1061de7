//! `sc-agent run`: the long-running agent.

use super::duration::{go_format, parse_duration, parse_seconds};
use crate::contract::DEFAULT_NAMESPACE;
use crate::jobspec::AgentConfig;
use crate::kubeconn::ClusterArgs;
use crate::reconcile::plan::Backoff;
use crate::runtime::{self, RunSettings};
use clap::{Args, ValueEnum};
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
    /// Log format: `text` (lines for people) or `json` (one JSON object a line, with
    /// `timestamp`, `level`, `target` and `fields`).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How long a Lease stays valid without renewal: whole seconds as a Go duration (`15s`)
    /// or a bare number of seconds.
    #[arg(long, value_name = "DURATION", default_value = "15s",
          value_parser = |s: &str| parse_seconds(s, 1, 3600))]
    pub lease_duration: Duration,
    /// How long before expiry the leader renews the Lease (`5s`, or seconds).
    #[arg(long, value_name = "DURATION", default_value = "5s",
          value_parser = |s: &str| parse_seconds(s, 1, 3600))]
    pub lease_grace: Duration,
    /// How long to collect a burst of changes before acting: a Go duration (`500ms`, `2s`).
    /// A change of the requests that arrived whole (every shard and the protected Secret at
    /// one revision) is acted on at once.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_duration,
          conflicts_with = "debounce_ms")]
    pub debounce: Duration,
    /// The same as --debounce, in milliseconds (kept for compatibility).
    #[arg(long, value_name = "MS", hide = true)]
    pub debounce_ms: Option<u64>,
    /// First retry delay of a transiently failed sc-job (doubles per failure): a Go
    /// duration (`10s`, `1m`) or a bare number of seconds.
    #[arg(long, value_name = "DURATION", default_value = "10s",
          value_parser = |s: &str| parse_seconds(s, 1, 86400))]
    pub retry_base: Duration,
    /// Longest retry delay (`10m`, or seconds).
    #[arg(long, value_name = "DURATION", default_value = "10m",
          value_parser = |s: &str| parse_seconds(s, 1, 86400))]
    pub retry_max: Duration,
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
    /// The window of --drift-repairs: a Go duration (`10m`, `1h`) or a bare number of
    /// seconds, from 1s to 24h.
    #[arg(long, value_name = "DURATION", default_value = "10m",
          value_parser = |s: &str| parse_seconds(s, 1, 86400))]
    pub drift_window: Duration,
    /// Time between two looks at the Secrets of applied connections (a deleted or edited
    /// ServiceAccount or SecretProviderClass is seen at once, through a watch): a Go
    /// duration (`30s`, `1m`) or a bare number of seconds, from 1s to 1h.
    #[arg(long, value_name = "DURATION", default_value = "30s",
          value_parser = |s: &str| parse_seconds(s, 1, 3600))]
    pub drift_interval: Duration,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// The format of the agent's log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Plain text lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the agent until SIGTERM.
pub fn run(args: &RunArgs) -> ExitCode {
    init_logging(&args.log_level, args.log_format);
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
    if args.lease_grace >= args.lease_duration {
        anyhow::bail!(
            "--lease-grace ({}) must be less than --lease-duration ({})",
            go_format(args.lease_grace),
            go_format(args.lease_duration)
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
            lease_duration: args.lease_duration.as_secs(),
            lease_grace: args.lease_grace.as_secs(),
            debounce: args
                .debounce_ms
                .map_or(args.debounce, Duration::from_millis),
            changeset_limit: args.changeset_limit as usize,
            drift_limits: crate::reconcile::drift::DriftLimits {
                repairs: args.drift_repairs as usize,
                window: args.drift_window.as_secs() as i64,
                interval: args.drift_interval.as_secs() as i64,
            },
            backoff: Backoff {
                base: args.retry_base,
                max: args.retry_max.max(args.retry_base),
            },
        },
    )
    .await
}
