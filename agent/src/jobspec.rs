//! The agent's configuration file (rendered by the chart) and the Job `sc-job` built from it.

use crate::contract::{
    CHANGESET_CONFIGMAP, CHANGESET_ID_ANNOTATION, JOB_NAME, REQUESTS_CONFIGMAP,
    REVISION_ANNOTATION, labels,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// `config.json` of the agent.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentConfig {
    /// The request ConfigMap (`sc-requests`).
    pub requests_config_map: Option<String>,
    /// The protected Secret (`sc-protected`).
    pub protected_secret: Option<String>,
    /// How to run sc-job.
    pub job: JobConfig,
    /// The Helm release.
    pub release: ReleaseConfig,
    /// The namespaces whose materialized objects the agent watches for drift (the chart's
    /// `rbac.namespaces`); empty: every namespace.
    pub watch_namespaces: Vec<String>,
    /// Whether the agent watches the materialized Secrets by label, metadata only (the chart's
    /// `agent.drift.watchSecrets`, which grants `list`/`watch` on Secrets); otherwise it reads
    /// them by name every drift interval.
    pub watch_secrets: bool,
    /// The guarded namespaces connections may target all the same (the chart's
    /// `security.allowedNamespaces`); see [`AgentConfig::guard`].
    pub allowed_namespaces: Vec<String>,
}

/// The Helm release the agent belongs to.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct ReleaseConfig {
    /// The release name.
    pub name: Option<String>,
    /// The release namespace.
    pub namespace: Option<String>,
}

/// How the Job `sc-job` runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobConfig {
    /// The sc-job image.
    pub image: String,
    /// Its pull policy.
    pub image_pull_policy: Option<String>,
    /// The ServiceAccount of its pod.
    pub service_account_name: String,
    /// Seconds after which it is stopped.
    pub active_deadline_seconds: Option<i64>,
    /// Pod retries.
    pub backoff_limit: Option<i32>,
    /// Container resources.
    pub resources: Value,
    /// `[{name}]`.
    pub image_pull_secrets: Value,
    /// Pod placement.
    pub node_selector: Value,
    /// Pod placement.
    pub tolerations: Value,
    /// Pod placement.
    pub affinity: Value,
    /// Pod priority.
    pub priority_class_name: Option<String>,
    /// The pod's securityContext; null or empty: [`default_pod_security_context`].
    pub pod_security_context: Value,
    /// The container's securityContext; null or empty: [`default_security_context`].
    pub security_context: Value,
    /// The guarded namespaces sc-job lets connections target (`--allowed-namespace`); set by
    /// the agent from [`AgentConfig::guard`], not read from the file.
    #[serde(skip)]
    pub allowed_namespaces: Vec<String>,
}

/// The sc-job pod's securityContext unless the chart sets `job.podSecurityContext`: the
/// restricted Pod Security profile, as the image's user.
pub fn default_pod_security_context() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// The sc-job container's securityContext unless the chart sets `job.securityContext`: the
/// restricted Pod Security profile.
pub fn default_security_context() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            image: "sc-job".to_string(),
            image_pull_policy: None,
            service_account_name: JOB_NAME.to_string(),
            active_deadline_seconds: Some(600),
            backoff_limit: Some(0),
            resources: Value::Null,
            image_pull_secrets: Value::Null,
            node_selector: Value::Null,
            tolerations: Value::Null,
            affinity: Value::Null,
            priority_class_name: None,
            pod_security_context: Value::Null,
            security_context: Value::Null,
            allowed_namespaces: Vec::new(),
        }
    }
}

impl AgentConfig {
    /// The namespaces explicitly allowed although guarded: `security.allowedNamespaces` and
    /// `rbac.namespaces` (sorted, without duplicates or empty names).
    pub fn allowed_namespaces(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&String> = self
            .allowed_namespaces
            .iter()
            .chain(&self.watch_namespaces)
            .filter(|n| !n.is_empty())
            .collect();
        set.into_iter().cloned().collect()
    }

    /// The guard of connections in the release namespace `ns` ([`sc_model::NamespaceGuard`]).
    pub fn guard(&self, ns: &str) -> sc_model::NamespaceGuard {
        sc_model::NamespaceGuard::new(Some(ns), self.allowed_namespaces())
    }

    /// The Job settings, with the namespaces sc-job lets connections target although guarded.
    pub fn job_config(&self) -> JobConfig {
        let mut job = self.job.clone();
        job.allowed_namespaces = self.allowed_namespaces();
        job
    }

    /// Reads and parses the configuration file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<AgentConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "reading the configuration {} failed: {e}; pass --config with the file the chart mounts",
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "the configuration {} is not valid ({e}); it is rendered by the chart's agent-config.yaml",
                path.display()
            )
        })
    }
}

/// A JSON value unless it is null or empty.
fn non_empty(v: &Value) -> Option<&Value> {
    match v {
        Value::Null => None,
        Value::Object(m) if m.is_empty() => None,
        Value::Array(a) if a.is_empty() => None,
        Value::String(s) if s.is_empty() => None,
        other => Some(other),
    }
}

/// The arguments of sc-job.
fn job_args(config: &JobConfig) -> Vec<String> {
    let mut args = vec![format!("--changeset={CHANGESET_CONFIGMAP}")];
    if !config.allowed_namespaces.is_empty() {
        args.push(format!(
            "--allowed-namespace={}",
            config.allowed_namespaces.join(",")
        ));
    }
    args
}

/// The Job `sc-job` for a change set: the configured security contexts (restricted unless the
/// chart overrides them), no secret, owned by the request ConfigMap (`owner_uid`).
pub fn job_object(
    config: &JobConfig,
    namespace: &str,
    changeset_id: &str,
    revision: i64,
    owner_uid: &str,
) -> Value {
    let mut container = json!({
        "name": JOB_NAME,
        "image": config.image,
        "args": job_args(config),
        "env": [{
            "name": "POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        }],
        "securityContext": non_empty(&config.security_context)
            .cloned()
            .unwrap_or_else(default_security_context),
    });
    if let Some(p) = config
        .image_pull_policy
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        container["imagePullPolicy"] = json!(p);
    }
    if let Some(r) = non_empty(&config.resources) {
        container["resources"] = r.clone();
    }
    let mut pod = json!({
        "restartPolicy": "Never",
        "serviceAccountName": config.service_account_name,
        "automountServiceAccountToken": true,
        "securityContext": non_empty(&config.pod_security_context)
            .cloned()
            .unwrap_or_else(default_pod_security_context),
        "containers": [container],
    });
    for (key, value) in [
        ("imagePullSecrets", &config.image_pull_secrets),
        ("nodeSelector", &config.node_selector),
        ("tolerations", &config.tolerations),
        ("affinity", &config.affinity),
    ] {
        if let Some(v) = non_empty(value) {
            pod[key] = v.clone();
        }
    }
    if let Some(p) = config
        .priority_class_name
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        pod["priorityClassName"] = json!(p);
    }
    let mut spec = json!({
        "template": {
            "metadata": {"labels": labels("job")},
            "spec": pod,
        },
    });
    if let Some(b) = config.backoff_limit {
        spec["backoffLimit"] = json!(b);
    }
    if let Some(d) = config.active_deadline_seconds.filter(|d| *d > 0) {
        spec["activeDeadlineSeconds"] = json!(d);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": JOB_NAME,
            "namespace": namespace,
            "labels": labels("job"),
            "annotations": {
                CHANGESET_ID_ANNOTATION: changeset_id,
                REVISION_ANNOTATION: revision.to_string(),
            },
            "ownerReferences": [owner_reference(owner_uid)],
        },
        "spec": spec,
    })
}

/// The owner reference to the request ConfigMap that every agent-created object carries.
pub fn owner_reference(uid: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": REQUESTS_CONFIGMAP,
        "uid": uid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_follows_the_chart_configuration() {
        let cfg: AgentConfig = serde_json::from_value(json!({
            "requestsConfigMap": "sc-requests",
            "protectedSecret": "sc-protected",
            "job": {
                "image": "reg.example/sc-job:1.2.3",
                "imagePullPolicy": "IfNotPresent",
                "serviceAccountName": "sc-job",
                "activeDeadlineSeconds": 300,
                "backoffLimit": 0,
                "resources": {"limits": {"memory": "128Mi"}},
                "imagePullSecrets": [{"name": "pull"}],
                "nodeSelector": {},
                "tolerations": [],
                "affinity": {},
                "priorityClassName": "",
            },
            "release": {"name": "sc", "namespace": "sc-system"},
            "azure": {},
        }))
        .unwrap();
        let job = job_object(&cfg.job, "sc-system", "id-1", 7, "uid-1");
        let k: k8s_openapi::api::batch::v1::Job = serde_json::from_value(job.clone()).unwrap();
        assert_eq!(k.metadata.name.as_deref(), Some("sc-job"));
        let spec = k.spec.unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(300));
        assert_eq!(spec.backoff_limit, Some(0));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("sc-job"));
        assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "pull");
        assert!(pod.node_selector.is_none() && pod.tolerations.is_none());
        let c = &pod.containers[0];
        assert_eq!(
            c.args.as_ref().unwrap(),
            &vec!["--changeset=sc-changeset".to_string()]
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
            &vec!["ALL".to_string()]
        );
        assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(
            job["metadata"]["annotations"]["sc-extension.io/changeset-id"],
            "id-1"
        );
        // No secret material and no connection content in the spec.
        let text = job.to_string();
        assert!(!text.contains("secretKeyRef") && !text.contains("secretRef"));
        assert!(!text.contains("connections"));
    }

    #[test]
    fn security_contexts_default_to_restricted() {
        // No securityContext in the configuration (a chart before they were values), null or
        // empty: the restricted profile.
        for extra in [
            json!({}),
            json!({"podSecurityContext": null, "securityContext": {}}),
        ] {
            let mut job = json!({"image": "sc-job"});
            job.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let cfg: JobConfig = serde_json::from_value(job).unwrap();
            let obj = job_object(&cfg, "sc-system", "id", 1, "uid");
            let pod = &obj["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"], default_pod_security_context());
            assert_eq!(
                pod["containers"][0]["securityContext"],
                default_security_context()
            );
            assert_eq!(pod["securityContext"]["runAsUser"], 65532);
            assert_eq!(
                pod["containers"][0]["securityContext"]["capabilities"]["drop"],
                json!(["ALL"])
            );
        }
    }

    #[test]
    fn security_contexts_are_taken_from_the_configuration() {
        let pod_sc = json!({
            "runAsNonRoot": true, "runAsUser": 1001, "runAsGroup": 1001, "fsGroup": 1001,
            "seccompProfile": {"type": "RuntimeDefault"},
        });
        let sc = json!({
            "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]}, "seLinuxOptions": {"level": "s0:c123,c456"},
        });
        let cfg: JobConfig = serde_json::from_value(json!({
            "image": "sc-job",
            "podSecurityContext": pod_sc,
            "securityContext": sc,
        }))
        .unwrap();
        let job = job_object(&cfg, "sc-system", "id", 1, "uid");
        let k: k8s_openapi::api::batch::v1::Job = serde_json::from_value(job.clone()).unwrap();
        let pod = k.spec.unwrap().template.spec.unwrap();
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_user, Some(1001));
        assert_eq!(psc.fs_group, Some(1001));
        let csc = pod.containers[0].security_context.as_ref().unwrap();
        assert_eq!(
            csc.se_linux_options.as_ref().unwrap().level.as_deref(),
            Some("s0:c123,c456")
        );
        // Exactly what was configured, nothing added.
        assert_eq!(job["spec"]["template"]["spec"]["securityContext"], pod_sc);
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["securityContext"],
            sc
        );
    }

    #[test]
    fn the_allowed_namespaces_reach_sc_job() {
        let cfg: AgentConfig = serde_json::from_value(json!({
            "watchNamespaces": ["apps", "kube-system"],
            "allowedNamespaces": ["kube-public", "apps", ""],
        }))
        .unwrap();
        assert_eq!(
            cfg.allowed_namespaces(),
            vec!["apps", "kube-public", "kube-system"]
        );
        let guard = cfg.guard("sc-system");
        assert!(guard.is_guarded("sc-system") && guard.is_guarded("kube-node-lease"));
        assert!(!guard.is_guarded("kube-system") && !guard.is_guarded("kube-public"));
        let job = job_object(&cfg.job_config(), "sc-system", "id-1", 7, "uid-1");
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["args"],
            json!([
                "--changeset=sc-changeset",
                "--allowed-namespace=apps,kube-public,kube-system"
            ])
        );
        // A configuration without the key (an earlier chart) allows nothing more.
        let old: AgentConfig = serde_json::from_value(json!({"job": {}})).unwrap();
        assert!(old.allowed_namespaces().is_empty());
        assert!(old.guard("sc-system").is_guarded("kube-system"));
    }
}
