//! Scenario helpers: an embedded cluster with the objects the chart and sc-agent write, and
//! the real sc-job binary run against it.

#![allow(dead_code)]

use kubesim::cluster::{Cluster, WriteOptions};
use kubesim::store::ResKey;
use kubesim::{Kubesim, Options};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The release namespace.
pub const NS: &str = "sc-system";
/// How long any wait may take.
pub const WAIT: Duration = Duration::from_secs(60);

/// The sc-job binary under test.
pub fn sc_job_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sc-job"))
}

/// A kubesim whose kubelet runs the image `.../sc-job:<tag>` as the binary under test, with
/// the release namespace created.
pub async fn start() -> Kubesim {
    let bin_dir = sc_job_bin()
        .parent()
        .expect("binary directory")
        .to_path_buf();
    let ks = Kubesim::start(Options {
        bin_dir: Some(bin_dir),
        ..Default::default()
    })
    .await
    .expect("kubesim starts");
    create_namespace(&ks.cluster(), NS);
    ks
}

/// The resource of a kind used in these tests.
pub fn res(kind: &str) -> ResKey {
    let (group, plural) = match kind {
        "Secret" => ("", "secrets"),
        "ConfigMap" => ("", "configmaps"),
        "ServiceAccount" => ("", "serviceaccounts"),
        "Namespace" => ("", "namespaces"),
        "Pod" => ("", "pods"),
        "Event" => ("", "events"),
        "Deployment" => ("apps", "deployments"),
        "Job" => ("batch", "jobs"),
        "SecretProviderClass" => ("secrets-store.csi.x-k8s.io", "secretproviderclasses"),
        "CustomResourceDefinition" => ("apiextensions.k8s.io", "customresourcedefinitions"),
        "Role" => ("rbac.authorization.k8s.io", "roles"),
        "RoleBinding" => ("rbac.authorization.k8s.io", "rolebindings"),
        "ClusterRole" => ("rbac.authorization.k8s.io", "clusterroles"),
        "ClusterRoleBinding" => ("rbac.authorization.k8s.io", "clusterrolebindings"),
        other => panic!("no resource for {other}"),
    };
    ResKey::new(group, plural)
}

/// Creates `obj` (its kind from the object).
pub fn create(c: &Cluster, obj: Value) -> Value {
    let kind = obj["kind"].as_str().expect("kind").to_string();
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    c.create(&res(&kind), &ns, obj, &WriteOptions::default())
        .unwrap_or_else(|e| panic!("creating a {kind} failed: {e:?}"))
}

/// The object, if it exists.
pub fn get(c: &Cluster, kind: &str, ns: &str, name: &str) -> Option<Value> {
    c.get(&res(kind), ns, name).ok()
}

/// Every object of `kind` in `ns` (all namespaces when `None`).
pub fn list(c: &Cluster, kind: &str, ns: Option<&str>) -> Vec<Value> {
    c.list(&res(kind), ns, &Default::default())
        .expect("list")
        .items
}

/// Creates a namespace.
pub fn create_namespace(c: &Cluster, name: &str) {
    create(
        c,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    );
}

/// `metadata.resourceVersion`.
pub fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Creates the SecretProviderClass CRD (what the Key Vault Secrets Provider add-on installs).
pub fn create_spc_crd(c: &Cluster) {
    create(
        c,
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "secretproviderclasses.secrets-store.csi.x-k8s.io"},
            "spec": {
                "group": "secrets-store.csi.x-k8s.io",
                "scope": "Namespaced",
                "names": {"plural": "secretproviderclasses", "singular": "secretproviderclass",
                          "kind": "SecretProviderClass", "listKind": "SecretProviderClassList"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                              "schema": {"openAPIV3Schema": {"type": "object",
                                  "x-kubernetes-preserve-unknown-fields": true}}}],
            },
        }),
    );
}

/// The connections of a scenario, as the chart values give them (secrets inline): written as
/// the chart renders them (requests ConfigMap without secrets, protected Secret with them).
pub fn write_requests(c: &Cluster, connections: &Value, revision: u64) {
    let mut requests = Map::new();
    let mut protected = Map::new();
    for (name, conn) in connections.as_object().expect("connections map") {
        let mut conn = conn.clone();
        if let Some(s) = conn.as_object_mut().and_then(|m| m.remove("secrets")) {
            protected.insert(name.clone(), json!({"secrets": s}));
        }
        requests.insert(name.clone(), conn);
    }
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "sc-requests", "namespace": NS,
                     "labels": {"app.kubernetes.io/managed-by": "Helm"},
                     "annotations": {"sc-extension.io/revision": revision.to_string()}},
        "data": {"connections.json": Value::Object(requests).to_string()},
    });
    put(c, cm);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "sc-protected", "namespace": NS},
        "type": "Opaque",
        "stringData": {"connections.json": Value::Object(protected).to_string()},
    });
    put(c, secret);
}

/// Creates `obj`, or replaces it when it exists.
pub fn put(c: &Cluster, mut obj: Value) {
    let kind = obj["kind"].as_str().expect("kind").to_string();
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let name = obj["metadata"]["name"].as_str().expect("name").to_string();
    match get(c, &kind, &ns, &name) {
        None => {
            create(c, obj);
        }
        Some(live) => {
            obj["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
            c.update(&res(&kind), &ns, &name, obj, &WriteOptions::default())
                .unwrap_or_else(|e| panic!("updating {kind} {name} failed: {e:?}"));
        }
    }
}

/// The key of the content hashes: the uid of `sc-protected` (empty without it).
pub fn hash_key(c: &Cluster) -> String {
    get(c, "Secret", NS, "sc-protected")
        .and_then(|s| s["metadata"]["uid"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The content hashes sc-agent computes (sc-model over requests and secrets, keyed by the
/// uid of `sc-protected`).
pub fn hashes(c: &Cluster, connections: &Value) -> std::collections::BTreeMap<String, String> {
    let set =
        sc_model::validate_connections_keyed(connections, &hash_key(c)).expect("valid connections");
    set.connections()
        .iter()
        .map(|c| (c.name().to_string(), c.hash.clone()))
        .collect()
}

/// Writes the change set: `apply` (with the hashes of `connections`) and `delete` names.
pub fn write_changeset(
    c: &Cluster,
    id: &str,
    revision: u64,
    connections: &Value,
    apply: &[&str],
    delete: &[&str],
) {
    let valid = sc_model::validate_connections_keyed(connections, &hash_key(c)).ok();
    let mut entries = Vec::new();
    for name in apply {
        let hash = valid
            .as_ref()
            .and_then(|s| s.get(name))
            .map(|c| c.hash.clone())
            .unwrap_or_default();
        entries.push(json!({"name": name, "hash": hash, "action": "apply"}));
    }
    for name in delete {
        entries.push(json!({"name": name, "hash": "", "action": "delete"}));
    }
    let cs = json!({"id": id, "revision": revision, "connections": entries});
    put(
        c,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "sc-changeset", "namespace": NS,
                         "labels": {"app.kubernetes.io/managed-by": "sc-extension"}},
            "data": {"changeset.json": cs.to_string()},
        }),
    );
}

/// Writes requests and a change set applying every connection.
pub fn request_all(c: &Cluster, id: &str, revision: u64, connections: &Value) {
    write_requests(c, connections, revision);
    let names: Vec<&str> = connections
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    write_changeset(c, id, revision, connections, &names, &[]);
}

/// What a run of sc-job printed.
#[derive(Debug)]
pub struct JobRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl JobRun {
    /// Panics with both streams unless it exited with `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "sc-job exited {} (expected {code})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// Runs sc-job as a local process against `ks` (namespace sc-system) with `extra` flags.
pub async fn run_job(ks: &Kubesim, extra: &[&str]) -> JobRun {
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(sc_job_bin())
            .args(["--namespace", NS])
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", ks.tools_home())
            .env("KUBECONFIG", ks.kubeconfig_path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("sc-job finishes in time")
    .expect("sc-job runs");
    JobRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The parsed `key` (JSON) of the metadata ConfigMap of `connection`.
pub fn metadata(c: &Cluster, connection: &str, key: &str) -> Value {
    let name = sc_model::names::metadata_config_map_name(connection);
    let cm = get(c, "ConfigMap", NS, &name)
        .unwrap_or_else(|| panic!("metadata ConfigMap {name} exists"));
    serde_json::from_str(
        cm["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has {key}")),
    )
    .expect("JSON")
}

/// The decoded data of a Secret.
pub fn secret_data(obj: &Value) -> std::collections::BTreeMap<String, String> {
    use base64::Engine;
    obj["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap();
            (k.clone(), String::from_utf8(bytes).unwrap())
        })
        .collect()
}

/// Fails when any of `values` occurs in `text` (named `what`).
pub fn assert_no_secret(what: &str, text: &str, values: &[&str]) {
    for v in values {
        assert!(!text.contains(v), "{what} contains a secret value");
    }
}

/// Every ConfigMap of the cluster, serialized.
pub fn all_config_maps(c: &Cluster) -> String {
    Value::Array(list(c, "ConfigMap", None)).to_string()
}

/// A shared handle to the cluster.
pub fn cluster(ks: &Kubesim) -> Arc<Cluster> {
    ks.cluster()
}
