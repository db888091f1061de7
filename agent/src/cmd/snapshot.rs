//! What the operator commands read from the cluster: the requests (with the protected inputs
//! when a command needs them) and the metadata ConfigMaps.

use super::args::CommonArgs;
use crate::contract::{
    self, METADATA_SELECTOR, Metadata, PROTECTED_SECRET, REQUESTS_CONFIGMAP, Requests,
};
use crate::shards::Shards;
use anyhow::Context as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::ListParams;
use std::sync::Arc;

/// What the cluster says about the connections.
pub struct Snapshot {
    /// The namespace of the extension.
    pub namespace: String,
    /// The requests with the protected inputs (when readable).
    pub requests: Option<Requests>,
    /// Why the protected inputs could not be read, if so.
    pub protected_error: Option<String>,
    /// The metadata ConfigMaps.
    pub metadata: Vec<Metadata>,
    /// The change set in flight (not concluded), when readable.
    pub in_flight: Option<contract::ChangeSet>,
}

impl Snapshot {
    /// Connects to the cluster `args` name and reads the snapshot of its namespace (with the
    /// protected inputs when `protected`); the client is returned for further reads.
    pub async fn connect(
        args: &CommonArgs,
        protected: bool,
    ) -> anyhow::Result<(kube::Client, Snapshot)> {
        let client = args.cluster.client().await?;
        let snapshot = Snapshot::load(&client, &args.namespace, protected).await?;
        Ok((client, snapshot))
    }

    /// Reads the requests (with the protected inputs when `protected`) and the metadata.
    pub async fn load(
        client: &kube::Client,
        ns: &str,
        protected: bool,
    ) -> anyhow::Result<Snapshot> {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let mut metadata = cms
            .list(&ListParams::default().labels(METADATA_SELECTOR))
            .await
            .with_context(|| format!("listing the metadata ConfigMaps in namespace {ns} failed"))?
            .items
            .iter()
            .map(Metadata::from_configmap)
            .collect::<Vec<_>>();
        // The change set in flight makes its connections Applying (those without metadata
        // too: no run has recorded them yet); without read access to it they show as Pending.
        let mut in_flight = match cms.get_opt(contract::CHANGESET_CONFIGMAP).await {
            Ok(Some(cs)) => contract::in_flight_changeset(&cs),
            _ => None,
        };
        if let Some(cs) = &mut in_flight {
            contract::mark_applying(&mut metadata, cs);
            // Looked up by name for each connection (`phase`).
            cs.connections.sort_by(|a, b| a.name.cmp(&b.name));
        }
        // Looked up by connection for each connection (`metadata`).
        metadata.sort_by(|a, b| a.connection.cmp(&b.connection));
        let requests_cm = cms
            .get_opt(REQUESTS_CONFIGMAP)
            .await
            .with_context(|| format!("reading ConfigMap {ns}/{REQUESTS_CONFIGMAP} failed"))?;
        let mut protected_error = None;
        let mut protected_shards = Vec::new();
        let mut hash_key = String::new();
        if protected && requests_cm.is_some() {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
            match secrets.get_opt(PROTECTED_SECRET).await {
                Ok(s) => {
                    hash_key = contract::hash_key(s.as_ref());
                    if let Some(s) = s {
                        let shards = crate::shards::gather(Arc::new(s), "Secret", |name| {
                            let api = &secrets;
                            async move { api.get_opt(&name).await }
                        });
                        match shards.await {
                            Shards::Complete(all) => protected_shards = all,
                            Shards::Incomplete(why) | Shards::Invalid(why) => {
                                protected_error = Some(why)
                            }
                        }
                    }
                }
                Err(e) => {
                    protected_error = Some(format!(
                        "reading Secret {ns}/{PROTECTED_SECRET} failed: {}",
                        api_reason(&e)
                    ))
                }
            }
        }
        let requests = match requests_cm {
            Some(cm) => {
                let shards = crate::shards::gather(Arc::new(cm), "ConfigMap", |name| {
                    let api = &cms;
                    async move { api.get_opt(&name).await }
                });
                let public = match shards.await {
                    Shards::Complete(all) => all,
                    Shards::Incomplete(why) | Shards::Invalid(why) => {
                        anyhow::bail!("the requests in namespace {ns} cannot be read: {why}")
                    }
                };
                Some(
                    Requests::from_objects(&public, &protected_shards, &hash_key)
                        .map_err(anyhow::Error::msg)?,
                )
            }
            None => None,
        };
        Ok(Snapshot {
            namespace: ns.to_string(),
            requests,
            protected_error,
            metadata,
            in_flight,
        })
    }

    /// The phase of a connection given the hash of its current request when known: `Deleted`
    /// when the requests no longer name it (its removal is pending until sc-job records it,
    /// then the agent deletes its metadata), else derived from its metadata, or for a
    /// connection no run has recorded yet, `Applying` while the change set in flight carries
    /// it and `Pending` otherwise.
    pub fn phase(&self, name: &str, hash: Option<&str>) -> contract::ConnectionPhase {
        if self.requests.is_some() && !self.is_requested(name) {
            return contract::ConnectionPhase::Deleted;
        }
        match self.metadata(name) {
            Some(m) => m.phase(hash),
            None => {
                let carried = self.in_flight.as_ref().and_then(|cs| {
                    let i = cs
                        .connections
                        .binary_search_by(|c| c.name.as_str().cmp(name))
                        .ok()?;
                    Some(&cs.connections[i])
                });
                contract::phase_if_carried(carried, hash)
            }
        }
    }

    /// The metadata of a connection (sorted by connection when loaded: no scan, so that a
    /// command over thousands of connections stays linear).
    pub fn metadata(&self, name: &str) -> Option<&Metadata> {
        match self
            .metadata
            .binary_search_by(|m| m.connection.as_str().cmp(name))
        {
            Ok(i) => Some(&self.metadata[i]),
            Err(_) => None,
        }
    }

    /// Why the agent ignores a requested connection that has no metadata of its own: its
    /// metadata ConfigMap name belongs to another connection (`Some(owner)`), or it gives no
    /// valid name (`Some("")`). `None` when it is not ignored.
    pub fn ignored_for(&self, name: &str) -> Option<String> {
        if self.metadata(name).is_some() || !self.is_requested(name) {
            return None;
        }
        if !crate::reconcile::desired::has_metadata_name(name) {
            return Some(String::new());
        }
        let cm = crate::contract::metadata_name(name);
        self.metadata
            .iter()
            .find(|m| m.configmap == cm && m.connection != name)
            .map(|m| m.connection.clone())
    }

    /// Whether the requests name the connection.
    pub fn is_requested(&self, name: &str) -> bool {
        self.requests
            .as_ref()
            .is_some_and(|r| r.connections.get(name).is_some())
    }

    /// The resolved connection (needs the protected inputs), or why it is not available.
    pub fn connection(&self, name: &str) -> anyhow::Result<sc_model::Connection> {
        let Some(requests) = &self.requests else {
            anyhow::bail!(
                "ConfigMap {}/{REQUESTS_CONFIGMAP} does not exist: is the extension installed in namespace {}? (use -n)",
                self.namespace,
                self.namespace
            );
        };
        if let Some(e) = &self.protected_error {
            anyhow::bail!("{e}; this command needs get on that Secret");
        }
        let check = sc_model::check_connections_keyed(&requests.connections, &requests.hash_key)
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| not_requested(name, &self.namespace))?;
        if !check.is_valid() {
            let errors: Vec<String> = check.errors.iter().map(ToString::to_string).collect();
            anyhow::bail!(
                "connection {name} is invalid:\n  {}\nfix the values and upgrade the release",
                errors.join("\n  ")
            );
        }
        check
            .connection
            .ok_or_else(|| anyhow::anyhow!("connection {name} could not be resolved"))
    }
}

/// The error of a command about a connection the requests do not name.
pub fn not_requested(name: &str, ns: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "no connection {name} in the requests of namespace {ns}: see `sc-agent list -n {ns}`"
    )
}

/// A short reason of an API error, without response bodies.
pub fn api_reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}
