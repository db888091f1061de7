//! Scenario helpers: an embedded cluster whose kubelet runs the sc-job image as the sc-job
//! binary, the objects the chart renders, and the real sc-agent binary run against it.

#![allow(dead_code)]

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kubesim::testing::wait_until;
use kubesim::{Kubesim, Options};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The release namespace.
pub const NS: &str = "sc-system";
/// How long any wait may take.
pub const WAIT: Duration = Duration::from_secs(90);

/// The sc-agent binary under test.
pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sc-agent"))
}

/// The sc-job binary next to it (built by `cargo build -p sc-job`).
pub fn job_bin() -> PathBuf {
    let p = agent_bin().with_file_name("sc-job");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build -p sc-job` first",
        p.display()
    );
    p
}

/// A kubesim whose kubelet maps the image `.../sc-job:<tag>` to the sc-job binary, with the
/// release namespace, sc-job's ServiceAccount and RBAC as the chart renders them.
pub async fn start() -> Kubesim {
    let bin_dir = job_bin().parent().expect("binary directory").to_path_buf();
    let ks = Kubesim::start(Options {
        bin_dir: Some(bin_dir),
        ..Default::default()
    })
    .await
    .expect("kubesim starts");
    let client = ks.client();
    for ns in [NS, "apps"] {
        create(
            &client,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await;
    }
    install_job_rbac(&client).await;
    ks
}

/// The API of any kind used here.
pub fn dynamic(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    ns: &str,
) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let lower = kind.to_lowercase();
    let plural = if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    };
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(group, version, kind),
        &plural,
    );
    if ns.is_empty() {
        Api::all_with(client.clone(), &ar)
    } else {
        Api::namespaced_with(client.clone(), ns, &ar)
    }
}

/// Creates `obj`.
pub async fn create(client: &kube::Client, obj: Value) {
    let api = dynamic(
        client,
        obj["apiVersion"].as_str().unwrap(),
        obj["kind"].as_str().unwrap(),
        obj["metadata"]["namespace"].as_str().unwrap_or(""),
    );
    let o: DynamicObject = serde_json::from_value(obj.clone()).unwrap();
    api.create(&PostParams::default(), &o)
        .await
        .unwrap_or_else(|e| panic!("creating {} failed: {e}", obj["metadata"]["name"]));
}

async fn install_job_rbac(client: &kube::Client) {
    create(client, json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sc-job", "namespace": NS}})).await;
    create(
        client,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "sc-job", "namespace": NS},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "update", "patch"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["sc-protected"], "verbs": ["get"]},
            {"apiGroups": ["batch"], "resources": ["jobs"], "resourceNames": ["sc-job"], "verbs": ["get", "delete"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        ]}),
    )
    .await;
    create(
        client,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "sc-job", "namespace": NS},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sc-job"},
               "subjects": [{"kind": "ServiceAccount", "name": "sc-job", "namespace": NS}]}),
    )
    .await;
    create(
        client,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "sc-job-sc-system"},
        "rules": [
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get", "create", "patch", "delete"]},
            {"apiGroups": ["secrets-store.csi.x-k8s.io"], "resources": ["secretproviderclasses"], "verbs": ["get", "create", "patch", "delete"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["get", "patch"]},
            {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["get", "patch"]},
        ]}),
    )
    .await;
    create(
        client,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "sc-job-sc-system"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sc-job-sc-system"},
               "subjects": [{"kind": "ServiceAccount", "name": "sc-job", "namespace": NS}]}),
    )
    .await;
}

/// Creates the SecretProviderClass CRD (what the Key Vault Secrets Provider add-on installs).
pub async fn create_spc_crd(client: &kube::Client) {
    create(
        client,
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
    )
    .await;
}

/// The workload-identity webhook's MutatingWebhookConfiguration and the Secrets Store CSI
/// driver's CSIDriver, as their charts name them (the prerequisites `validate` checks).
pub async fn create_prerequisites(client: &kube::Client) {
    create(
        client,
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "azure-wi-webhook-mutating-webhook-configuration"},
            "webhooks": [{
                "name": "mutation.azure-workload-identity.io",
                "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "clientConfig": {"service": {"name": "azure-wi-webhook-webhook-service",
                                             "namespace": "kube-system", "path": "/mutate-v1-pod"}},
            }],
        }),
    )
    .await;
    create(
        client,
        json!({
            "apiVersion": "storage.k8s.io/v1",
            "kind": "CSIDriver",
            "metadata": {"name": "secrets-store.csi.k8s.io"},
            "spec": {"podInfoOnMount": true, "attachRequired": false},
        }),
    )
    .await;
}

/// The agent's ServiceAccount and Role as the chart renders them (`templates/rbac-agent.yaml`).
pub async fn install_agent_rbac(client: &kube::Client) {
    create(client, json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sc-agent", "namespace": NS}})).await;
    create(
        client,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "sc-agent", "namespace": NS},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["sc-protected"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["sc-agent"], "verbs": ["get", "update", "patch"]},
        ]}),
    )
    .await;
    create(
        client,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "sc-agent", "namespace": NS},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sc-agent"},
               "subjects": [{"kind": "ServiceAccount", "name": "sc-agent", "namespace": NS}]}),
    )
    .await;
}

/// Writes the connections (secrets inline, as in the chart values) as the chart renders them:
/// ConfigMap `sc-requests` without secrets and Secret `sc-protected` with them.
pub async fn write_requests(client: &kube::Client, connections: &Value, revision: u64) {
    let mut requests = Map::new();
    let mut protected = Map::new();
    for (name, conn) in connections.as_object().expect("connections map") {
        let mut conn = conn.clone();
        if let Some(s) = conn.as_object_mut().and_then(|m| m.remove("secrets")) {
            protected.insert(name.clone(), json!({"secrets": s}));
        }
        requests.insert(name.clone(), conn);
    }
    let pp = PatchParams::apply("helm").force();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "sc-requests", "namespace": NS,
                     "labels": {"app.kubernetes.io/managed-by": "Helm"},
                     "annotations": {"sc-extension.io/revision": revision.to_string()}},
        "data": {"connections.json": Value::Object(requests).to_string()},
    });
    cms.patch("sc-requests", &pp, &Patch::Apply(&cm))
        .await
        .expect("writing sc-requests");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "sc-protected", "namespace": NS,
                     "annotations": {"sc-extension.io/revision": revision.to_string()}},
        "type": "Opaque",
        "stringData": {"connections.json": Value::Object(protected).to_string()},
    });
    secrets
        .patch("sc-protected", &pp, &Patch::Apply(&secret))
        .await
        .expect("writing sc-protected");
}

/// The content hash of a connection, as sc-agent computes it (keyed by the uid of
/// `sc-protected`, empty without it).
pub async fn hash_of(client: &kube::Client, connections: &Value, name: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let key = secrets
        .get_opt("sc-protected")
        .await
        .expect("reading sc-protected")
        .and_then(|s| s.metadata.uid)
        .unwrap_or_default();
    sc_model::check_connections_keyed(connections, &key)
        .into_iter()
        .find(|c| c.name == name)
        .expect("connection")
        .hash
}

/// Waits until `connection` is applied with its hash over `connections`.
pub async fn wait_applied_as(client: &kube::Client, connections: &Value, connection: &str) {
    let hash = hash_of(client, connections, connection).await;
    wait_applied(client, connection, &hash).await;
}

/// The parsed `key` of the metadata ConfigMap of `connection`, if present.
pub async fn metadata(client: &kube::Client, connection: &str, key: &str) -> Option<Value> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let cm = cms
        .get_opt(&sc_model::names::metadata_config_map_name(connection))
        .await
        .ok()??;
    serde_json::from_str(cm.data?.get(key)?).ok()
}

/// Waits until the applied hash of `connection` is `hash`.
pub async fn wait_applied(client: &kube::Client, connection: &str, hash: &str) {
    wait_until(
        WAIT,
        &format!("{connection} applied with hash {hash}"),
        || async {
            let s = metadata(client, connection, "status.json").await?;
            (s["appliedHash"] == hash && s["phase"] == "Ready").then_some(())
        },
    )
    .await
}

/// Waits until Job `sc-job` does not exist.
pub async fn wait_no_job(client: &kube::Client) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    wait_until(WAIT, "Job sc-job to be gone", || async {
        matches!(jobs.get_opt("sc-job").await, Ok(None)).then_some(())
    })
    .await
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `sc-agent run`.
pub struct Agent {
    pub child: tokio::process::Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The configuration the chart renders, with the sc-job image the kubelet maps to the binary.
pub fn agent_config() -> Value {
    json!({
        "requestsConfigMap": "sc-requests",
        "protectedSecret": "sc-protected",
        "job": {
            "image": "ghcr.io/sc-extension/sc-job:0.1.0",
            "imagePullPolicy": "IfNotPresent",
            "serviceAccountName": "sc-job",
            "activeDeadlineSeconds": 120,
            "backoffLimit": 0,
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
            "imagePullSecrets": [],
            "nodeSelector": {},
            "tolerations": [],
            "affinity": {},
            "priorityClassName": "",
        },
        "release": {"name": "sc", "namespace": NS},
        "azure": {},
    })
}

impl Agent {
    /// Starts an agent with `identity` and extra flags.
    pub async fn start(ks: &Kubesim, identity: &str, extra: &[&str]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(&config, agent_config().to_string()).unwrap();
        let log = dir.path().join("agent.log");
        let port = free_port();
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = tokio::process::Command::new(agent_bin())
            .arg("run")
            .arg(format!("--config={}", config.display()))
            .arg(format!("--listen=127.0.0.1:{port}"))
            .args([
                "--log-level=info,sc_agent=debug",
                "-n",
                NS,
                "--identity",
                identity,
            ])
            .args(["--lease-duration=4", "--lease-grace=1", "--debounce=200ms"])
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", ks.tools_home())
            .env("KUBECONFIG", ks.kubeconfig_path())
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .expect("sc-agent starts");
        Agent {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET on the agent's endpoint `path`: (status, body).
    pub async fn http(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    }

    /// Waits until /readyz answers 200.
    pub async fn wait_ready(&self) {
        wait_until(WAIT, "the agent's /readyz", || async {
            matches!(self.http("/readyz").await, Some((200, _))).then_some(())
        })
        .await
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends SIGTERM and waits for the exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id()?;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .ok()?
            .ok()?;
        status.code()
    }
}

/// What an sc-agent command printed.
#[derive(Debug)]
pub struct Cli {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `sc-agent <args>` against `ks`.
pub async fn cli(ks: &Kubesim, args: &[&str]) -> Cli {
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(agent_bin())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", ks.tools_home())
            .arg(format!("--kubeconfig={}", ks.kubeconfig_path().display()))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("sc-agent finishes in time")
    .expect("sc-agent runs");
    Cli {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every Job `sc-job` seen by a watch: how many were created and the most alive at once.
#[derive(Debug, Default)]
pub struct JobHistory {
    pub created: Vec<String>,
    pub alive: std::collections::BTreeSet<String>,
    pub max_alive: usize,
}

/// Records the life of every Job in the release namespace until the returned handle drops.
pub fn watch_jobs(client: &kube::Client) -> (Arc<Mutex<JobHistory>>, tokio::task::JoinHandle<()>) {
    let history = Arc::new(Mutex::new(JobHistory::default()));
    let h = history.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let task = tokio::spawn(async move {
        let stream = watcher(jobs, watcher::Config::default());
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let Ok(ev) = ev else { continue };
            let mut h = h.lock().unwrap();
            match ev {
                watcher::Event::Apply(j) | watcher::Event::InitApply(j) => {
                    let uid = j.metadata.uid.clone().unwrap_or_default();
                    if h.alive.insert(uid.clone()) {
                        h.created.push(uid);
                    }
                    h.max_alive = h.max_alive.max(h.alive.len());
                }
                watcher::Event::Delete(j) => {
                    let uid = j.metadata.uid.clone().unwrap_or_default();
                    h.alive.remove(&uid);
                }
                _ => {}
            }
        }
    });
    (history, task)
}

/// The events recorded on ConfigMap sc-requests: (reason, note).
pub async fn events(client: &kube::Client) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), NS);
    api.list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("sc-requests"))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}
