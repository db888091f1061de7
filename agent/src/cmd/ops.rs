//! Operator commands against a cluster: `list`, `show`, `list-configuration` and `snippet`.
//! They read the request objects and the metadata ConfigMaps; none prints a credential.

use crate::contract::{
    self, DEFAULT_NAMESPACE, METADATA_SELECTOR, Metadata, PROTECTED_SECRET, REQUESTS_CONFIGMAP,
    Requests,
};
use crate::kubeconn::ClusterArgs;
use crate::shards::Shards;
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::sync::Arc;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
}

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
}

impl Snapshot {
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
        // The change set in flight makes its connections Applying; without read access to it
        // they show as Pending.
        if let Ok(Some(cs)) = cms.get_opt(contract::CHANGESET_CONFIGMAP).await
            && let Some(cs) = contract::in_flight_changeset(&cs)
        {
            contract::mark_applying(&mut metadata, &cs);
        }
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
        })
    }

    /// The metadata of a connection.
    pub fn metadata(&self, name: &str) -> Option<&Metadata> {
        self.metadata.iter().find(|m| m.connection == name)
    }

    /// Why the agent ignores a requested connection that has no metadata of its own: its
    /// metadata ConfigMap name belongs to another connection (`Some(owner)`), or it gives no
    /// valid name (`Some("")`). `None` when it is not ignored.
    pub fn ignored_for(&self, name: &str) -> Option<String> {
        if self.metadata(name).is_some() || !self.is_requested(name) {
            return None;
        }
        let cm = crate::contract::metadata_name(name);
        if cm.len() == crate::contract::METADATA_PREFIX.len()
            || !sc_model::names::is_dns_subdomain(&cm)
        {
            return Some(String::new());
        }
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

fn not_requested(name: &str, ns: &str) -> anyhow::Error {
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

/// The row of one connection in `list`.
fn row(name: &str, snapshot: &Snapshot) -> Value {
    let m = snapshot.metadata(name);
    let spec = m
        .and_then(|m| m.spec())
        .or_else(|| {
            snapshot.requests.as_ref().map(|r| {
                let mut v = r.connections[name].clone();
                if let Value::Object(o) = &mut v {
                    o.remove("secrets");
                }
                v
            })
        })
        .unwrap_or(Value::Null);
    let phase = match m {
        Some(m) => m.phase(None).as_str(),
        None if snapshot.ignored_for(name).is_some() => "Failed",
        None => "Pending",
    };
    let objects: Vec<Value> = m
        .and_then(|m| m.status.as_ref())
        .map(|s| {
            s.objects
                .iter()
                .map(|o| json!({"kind": o.kind, "namespace": o.namespace, "name": o.name}))
                .collect()
        })
        .unwrap_or_default();
    let text = |k: &str| spec[k].as_str().unwrap_or("").to_string();
    json!({
        "name": name,
        "namespace": if text("namespace").is_empty() { "default".to_string() } else { text("namespace") },
        "target": text("targetType"),
        "auth": text("authType"),
        "client": text("clientType"),
        "phase": phase,
        "objects": objects,
    })
}

/// The connection names known from the requests and the metadata, sorted.
fn names(snapshot: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> = snapshot
        .metadata
        .iter()
        .map(|m| m.connection.clone())
        .filter(|n| !n.is_empty())
        .collect();
    if let Some(Value::Object(m)) = snapshot.requests.as_ref().map(|r| &r.connections) {
        out.extend(m.keys().cloned());
    }
    out.sort();
    out.dedup();
    out
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", parts.join("   ").trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// `sc-agent list`.
pub fn list(args: &ListArgs) -> ExitCode {
    block_on(async {
        let c = &args.common;
        let client = c.cluster.client().await?;
        let snapshot = Snapshot::load(&client, &c.namespace, false).await?;
        let rows: Vec<Value> = names(&snapshot).iter().map(|n| row(n, &snapshot)).collect();
        match c.output {
            Output::Json => print_json(&Value::Array(rows)),
            Output::Text => {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                        vec![
                            s("name"),
                            s("namespace"),
                            s("target"),
                            s("auth"),
                            s("client"),
                            s("phase"),
                            r["objects"].as_array().map_or(0, Vec::len).to_string(),
                        ]
                    })
                    .collect();
                if table.is_empty() {
                    eprintln!("no connections in namespace {}", c.namespace);
                } else {
                    print_table(
                        &[
                            "NAME",
                            "NAMESPACE",
                            "TARGET",
                            "AUTH",
                            "CLIENT",
                            "PHASE",
                            "OBJECTS",
                        ],
                        &table,
                    );
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `sc-agent show NAME`.
pub fn show(args: &NameArgs) -> ExitCode {
    block_on(async {
        let c = &args.common;
        let client = c.cluster.client().await?;
        let snapshot = Snapshot::load(&client, &c.namespace, false).await?;
        let name = &args.name;
        let m = snapshot.metadata(name);
        if m.is_none() && !snapshot.is_requested(name) {
            return Err(not_requested(name, &c.namespace));
        }
        let r = row(name, &snapshot);
        // A connection the agent ignores has no status of its own: say why.
        let ignored = snapshot.ignored_for(name).map(|owner| {
            let message = if owner.is_empty() {
                format!("connections.{name}: the name has no letter or digit, so no metadata ConfigMap can record it: the agent ignores it")
            } else {
                format!(
                    "connections.{name}: maps to the same metadata ConfigMap {} (and Secret name) as connection {owner}: the agent ignores it",
                    crate::contract::metadata_name(name)
                )
            };
            json!({"phase": "Failed", "error": {
                "reason": "NameClash",
                "message": message,
                "remedy": "rename the connection (names that differ only in '_' or case map to the same objects) and upgrade the release",
            }})
        });
        let v = json!({
            "name": name,
            "phase": r["phase"],
            "metadata": m.map(|m| format!("{}/{}", c.namespace, m.configmap)),
            "spec": m.and_then(|m| m.spec()),
            "requested": m.and_then(|m| m.requested.clone()),
            "status": match m.and_then(|m| m.status.clone()) {
                Some(status) => json!(status.as_ref()),
                None => ignored.unwrap_or(Value::Null),
            },
            "journal": m.map(|m| m.journal.clone()).unwrap_or_default(),
        });
        match c.output {
            Output::Json => print_json(&v),
            Output::Text => print_show(&v),
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print_show(v: &Value) {
    let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
    println!("Name:       {}", s(&v["name"]));
    println!("Phase:      {}", s(&v["phase"]));
    println!("Metadata:   ConfigMap {}", s(&v["metadata"]));
    let spec = &v["spec"];
    println!("Namespace:  {}", s(&spec["namespace"]));
    println!("Target:     {}", s(&spec["targetType"]));
    println!("Auth:       {}", s(&spec["authType"]));
    println!("Client:     {}", s(&spec["clientType"]));
    if let Some(r) = v["requested"].as_object() {
        println!(
            "Requested:  revision {}, hash {}",
            r.get("revision").unwrap_or(&Value::Null),
            r.get("hash").and_then(Value::as_str).unwrap_or("")
        );
    }
    let status = &v["status"];
    if status.is_object() {
        println!(
            "Applied:    {} (revision {}, at {})",
            status["appliedHash"].as_str().unwrap_or("nothing yet"),
            status["revision"],
            s(&status["time"])
        );
        if let Some(objects) = status["objects"].as_array().filter(|o| !o.is_empty()) {
            println!("Objects:");
            for o in objects {
                println!(
                    "  {} {}/{}",
                    s(&o["kind"]),
                    s(&o["namespace"]),
                    s(&o["name"])
                );
            }
        }
        if status["error"].is_object() {
            let e = &status["error"];
            println!("Error:      {}: {}", s(&e["reason"]), s(&e["message"]));
            println!("Remedy:     {}", s(&e["remedy"]));
        }
    }
    if let Some(journal) = v["journal"].as_array().filter(|j| !j.is_empty()) {
        println!("Journal:");
        for e in journal {
            let err = if e["error"].is_object() {
                format!(
                    ": {}: {}",
                    s(&e["error"]["reason"]),
                    s(&e["error"]["message"])
                )
            } else {
                String::new()
            };
            println!(
                "  {}  {}  {}{err}",
                s(&e["time"]),
                s(&e["job"]),
                s(&e["result"])
            );
        }
    }
}

/// `sc-agent list-configuration NAME`: the keys of the connection's Secret with their
/// non-secret values; credential keys (and any key the model does not know) show "".
pub fn list_configuration(args: &NameArgs) -> ExitCode {
    block_on(async {
        let c = &args.common;
        let client = c.cluster.client().await?;
        let snapshot = Snapshot::load(&client, &c.namespace, true).await?;
        let conn = snapshot.connection(&args.name)?;
        let mut live: Option<std::collections::BTreeMap<String, Vec<u8>>> = None;
        if let Some(secret_name) = conn.secret_name() {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &conn.spec.namespace);
            match secrets.get_opt(&secret_name).await {
                Ok(Some(s)) => {
                    live = Some(
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0))
                            .collect(),
                    )
                }
                Ok(None) => eprintln!(
                    "warning: Secret {}/{secret_name} does not exist; showing the requested values",
                    conn.spec.namespace
                ),
                Err(e) => eprintln!(
                    "warning: reading Secret {}/{secret_name} failed ({}); showing the requested values",
                    conn.spec.namespace,
                    api_reason(&e)
                ),
            }
        }
        let mut rows: Vec<Value> = Vec::new();
        for k in &conn.keys {
            let value = if k.value.is_secret() {
                String::new()
            } else {
                match &live {
                    Some(data) => data
                        .get(&k.name)
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default(),
                    None => k.value.expose().to_string(),
                }
            };
            rows.push(json!({"name": k.name, "value": value, "description": k.description}));
        }
        if let Some(data) = &live {
            for key in data.keys() {
                if !conn.keys.iter().any(|k| &k.name == key) {
                    // Unknown to the model: never show its value.
                    rows.push(json!({"name": key, "value": "", "description": "not set by the connection"}));
                }
            }
        }
        match c.output {
            Output::Json => print_json(&json!({"name": conn.name(), "configurations": rows})),
            Output::Text => {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r["name"].as_str().unwrap_or("").to_string(),
                            format!("{:?}", r["value"].as_str().unwrap_or("")),
                        ]
                    })
                    .collect();
                print_table(&["KEY", "VALUE"], &table);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `sc-agent snippet NAME`: a sample Deployment using the connection.
pub fn snippet(args: &NameArgs) -> ExitCode {
    block_on(async {
        let c = &args.common;
        let client = c.cluster.client().await?;
        let snapshot = Snapshot::load(&client, &c.namespace, false).await?;
        let name = &args.name;
        let spec = snapshot
            .metadata(name)
            .and_then(|m| m.spec())
            .or_else(|| {
                snapshot
                    .requests
                    .as_ref()
                    .and_then(|r| r.connections.get(name).cloned())
            })
            .ok_or_else(|| not_requested(name, &c.namespace))?;
        let deployment = snippet_object(name, &spec);
        match c.output {
            Output::Json => print_json(&deployment),
            Output::Text => {
                let yaml = serde_saphyr::to_string(&deployment)
                    .map_err(|e| anyhow::anyhow!("rendering YAML failed: {e}"))?;
                print!("{yaml}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The sample Deployment of a connection given its non-secret spec.
pub fn snippet_object(name: &str, spec: &Value) -> Value {
    use sc_model::names;
    use sc_model::render::{CSI_DRIVER, CSI_MOUNT_PREFIX, WI_USE_LABEL};
    let ns = spec["namespace"].as_str().unwrap_or("default");
    let auth = spec["authType"].as_str().unwrap_or("");
    let params = &spec["parameters"];
    let truthy = |k: &str| {
        params[k]
            .as_str()
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "1"))
    };
    let csi = auth == "keyvaultCsi";
    let wi = auth == "workloadIdentity" || (csi && truthy("useWorkloadIdentity"));
    let app = format!("{}-app", names::fit_dns_label(&names::compact_name(name)));
    let mut container = json!({
        "name": "app",
        "image": "<your image>",
    });
    if !csi || truthy("syncSecret") {
        container["envFrom"] = json!([{"secretRef": {"name": names::secret_name(name)}}]);
    }
    let mut labels = json!({"app": app});
    let mut pod = json!({"containers": [container]});
    if wi {
        if let Some(client_id) = params["clientId"].as_str() {
            pod["serviceAccountName"] = json!(names::service_account_name(client_id));
        }
        labels[WI_USE_LABEL] = json!("true");
    }
    if csi {
        let volume = names::csi_volume_name(name);
        pod["volumes"] = json!([{
            "name": volume,
            "csi": {
                "driver": CSI_DRIVER,
                "readOnly": true,
                "volumeAttributes": {"secretProviderClass": names::secret_provider_class_name(name)},
            },
        }]);
        pod["containers"][0]["volumeMounts"] = json!([{
            "name": volume,
            "mountPath": format!("{CSI_MOUNT_PREFIX}/{name}"),
            "readOnly": true,
        }]);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_wire_the_secret_and_the_workload_identity() {
        let spec = json!({
            "name": "blob1", "namespace": "apps", "authType": "workloadIdentity",
            "parameters": {"clientId": "00000000-0000-0000-0000-000000000001"},
        });
        let d = snippet_object("blob1", &spec);
        let pod = &d["spec"]["template"];
        assert_eq!(
            pod["metadata"]["labels"]["azure.workload.identity/use"],
            "true"
        );
        assert_eq!(
            pod["spec"]["serviceAccountName"],
            "sc-account-00000000-0000-0000-0000-000000000001"
        );
        assert_eq!(
            pod["spec"]["containers"][0]["envFrom"][0]["secretRef"]["name"],
            "sc-blob1-secret"
        );
        assert_eq!(d["metadata"]["namespace"], "apps");
        let plain = snippet_object("db", &json!({"authType": "secret"}));
        assert!(
            plain["spec"]["template"]["metadata"]["labels"]
                .get("azure.workload.identity/use")
                .is_none()
        );
        assert!(
            plain["spec"]["template"]["spec"]
                .get("serviceAccountName")
                .is_none()
        );
    }
}
