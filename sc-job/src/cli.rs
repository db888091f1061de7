//! Command-line flags of sc-job.

use clap::{Parser, ValueEnum};

/// How log lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One plain line per step, for `kubectl logs`.
    Text,
    /// The same events as JSON lines, for machines.
    Json,
}

/// sc-job: materializes a change set of service connections in the cluster.
///
/// Reads the change set written by sc-agent, the request ConfigMap and the protected Secret
/// from the API server, then, per connection, applies (server-side apply, field manager
/// `sc-job`) its Secret, workload-identity ServiceAccount, SecretProviderClass and workload
/// patches, or deletes them, records each result in the connection's metadata ConfigMap and,
/// when everything succeeded, deletes its own Job.
///
/// Exit codes: 0 every connection applied or deleted; 1 some connections failed; 2 the change
/// set (or the request it refers to) is unusable.
#[derive(Debug, Clone, Parser)]
#[command(name = "sc-job", version, about, long_about)]
pub struct Args {
    /// Namespace of the change set, the requests, the protected Secret, the metadata
    /// ConfigMaps and the Job. Default: $POD_NAMESPACE, else the namespace of the
    /// kubeconfig's current context, else the pod's service account namespace, else
    /// sc-system.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,

    /// ConfigMap holding the change set (key `changeset.json`).
    #[arg(long, value_name = "NAME", default_value = "sc-changeset")]
    pub changeset: String,

    /// ConfigMap holding the non-secret connection requests (key `connections.json`).
    #[arg(long, value_name = "NAME", default_value = "sc-requests")]
    pub requests: String,

    /// Secret holding the protected settings (key `connections.json`); read through the API
    /// only, never from arguments or the environment.
    #[arg(long, value_name = "NAME", default_value = "sc-protected")]
    pub protected: String,

    /// Name of the Job running sc-job, deleted after a fully successful run.
    #[arg(long, value_name = "NAME", default_value = "sc-job")]
    pub job_name: String,

    /// Keep the Job after a successful run (for debugging).
    #[arg(long)]
    pub keep: bool,

    /// A guarded namespace (`kube-system`, `kube-public`, `kube-node-lease`, the run's own
    /// namespace) that connections may target all the same: the chart's
    /// `security.allowedNamespaces` and `rbac.namespaces`, passed by sc-agent. Repeat or
    /// separate with commas. A connection to any other guarded namespace is refused.
    #[arg(long = "allowed-namespace", value_name = "NS", value_delimiter = ',')]
    pub allowed_namespaces: Vec<String>,

    /// Log format: `text` (one plain line per step) or `json` (one JSON object per line).
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}
