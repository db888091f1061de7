//! Connecting to a cluster: an explicit kubeconfig and context, else the usual inference
//! (`KUBECONFIG`, `~/.kube/config`, then the in-cluster ServiceAccount).

use anyhow::Context as _;
use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Options selecting the cluster, shared by every command that talks to one.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// The kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl ClusterArgs {
    /// A client for the selected cluster.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading the kubeconfig {} failed", path.display()))?;
                kube::Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .with_context(|| format!("loading the kubeconfig {} failed", path.display()))?
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .context("loading the kubeconfig failed")?,
            None => kube::Config::infer().await.context(
                "finding a cluster failed: set KUBECONFIG or pass --kubeconfig (or run in a pod)",
            )?,
        };
        kube::Client::try_from(config).context("creating the Kubernetes client failed")
    }
}
