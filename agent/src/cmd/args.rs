//! The arguments the operator commands share: the cluster, the namespace, the output format,
//! and the connection name.

use super::output::Output;
use crate::contract::DEFAULT_NAMESPACE;
use crate::kubeconn::ClusterArgs;
use clap::Args;

/// Options of every operator command.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The namespace of the extension.
    #[arg(short = 'n', long, value_name = "NS", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Arguments of `sc-agent list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Arguments of the commands about one connection.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The connection name.
    pub name: String,
    #[command(flatten)]
    pub common: CommonArgs,
}
