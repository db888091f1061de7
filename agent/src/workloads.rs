//! Workloads that our references break: the pods of a connection's listed workloads that
//! cannot start because of something the connection added to their pod template (the
//! `envFrom` Secret, the ServiceAccount, the Key Vault CSI volume).
//!
//! - A missing Secret: the kubelet leaves the container waiting with reason
//!   `CreateContainerConfigError` and the message `secret "<name>" not found`. For a Key Vault
//!   CSI connection the Secret is the one the Secrets Store CSI driver syncs when it mounts the
//!   pod's volume: without the driver (or without its secret sync) nothing ever writes it.
//! - A missing ServiceAccount: the kubelet (the embedded cluster's) waits with
//!   `CreateContainerConfigError` naming the ServiceAccount; Kubernetes' admission refuses the
//!   pod, and the controller reports `FailedCreate` with `serviceaccount "<name>" not found`
//!   (an Event on the ReplicaSet, StatefulSet, DaemonSet or Job).
//! - A CSI volume that cannot be mounted: the pod stays `Pending` and the kubelet posts
//!   `FailedMount` events naming the volume.
//!
//! The pods of a workload are found by their owner chain, with nothing read but pods: a
//! Deployment's pods are owned by ReplicaSet `<deployment>-<pod-template-hash label>`, a
//! StatefulSet's and a DaemonSet's by the workload itself, a CronJob's by a Job
//! `<cronjob>-<schedule time>`. Only pods that carry the reference are considered, so pods
//! of an older template (before the connection) are never blamed on it.
//!
//! The decisions are pure ([`broken`], and [`event_queries`]: which Events the leading agent
//! asks for); [`read`] reads the pods (and, when allowed, the events) of a namespace for the
//! commands, [`read_listed`] the pods and only those Events for the agent.

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use sc_model::{AuthType, Connection, WorkloadKind, WorkloadRef};
use serde::Serialize;
use serde_json::Value;

/// The reason of the agent's Warning event on `sc-requests`.
pub const EVENT_REASON: &str = "WorkloadBroken";

/// What a connection adds to the pod template of its listed workloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct References {
    /// The connection.
    pub connection: String,
    /// The namespace of the connection's objects and workloads.
    pub namespace: String,
    /// The listed workloads.
    pub workloads: Vec<WorkloadRef>,
    /// The Secret every container gets through `envFrom`.
    pub secret: Option<String>,
    /// Whether the Secrets Store CSI driver writes that Secret (Key Vault CSI with
    /// `syncSecret`), not sc-job.
    pub secret_synced_by_csi: bool,
    /// The pod's ServiceAccount (workload identity).
    pub service_account: Option<String>,
    /// The CSI volume's name and its SecretProviderClass.
    pub csi_volume: Option<(String, String)>,
}

impl References {
    /// What `conn` adds to its workloads.
    pub fn of(conn: &Connection) -> References {
        let d = conn.desired();
        References {
            connection: conn.name().to_string(),
            namespace: d.namespace.clone(),
            workloads: d.workloads.clone(),
            secret_synced_by_csi: d.patch.env_from_secret.is_some()
                && d.secret.is_none()
                && conn.spec.auth_type == AuthType::KeyvaultCsi,
            secret: d.patch.env_from_secret.clone(),
            service_account: d.patch.service_account.clone(),
            csi_volume: d
                .patch
                .csi_volume
                .as_ref()
                .map(|v| (v.volume_name.clone(), v.secret_provider_class.clone())),
        }
    }
}

/// A pod (or, when Kubernetes refused to create it, a workload) failing on a reference the
/// connection added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Broken {
    /// The connection.
    pub connection: String,
    /// `Pod namespace/name`, or the object that could not create its pods.
    pub object: String,
    /// The listed workload, as `Kind namespace/name`.
    pub workload: String,
    /// The reference, as `Kind namespace/name`.
    pub reference: String,
    /// What is wrong (the kubelet's or the controller's message; never a value).
    pub problem: String,
    /// What to do.
    pub remedy: String,
}

fn owners(obj: &Value) -> impl Iterator<Item = (&str, &str)> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default(),
                o["name"].as_str().unwrap_or_default(),
            )
        })
}

/// Whether `owner` (kind, name) is the direct owner of `w`'s pods.
fn owner_is(w: &WorkloadRef, kind: &str, name: &str, pod_template_hash: Option<&str>) -> bool {
    match w.kind {
        WorkloadKind::Deployment => {
            kind == "ReplicaSet"
                && pod_template_hash.is_some_and(|h| name == format!("{}-{h}", w.name))
        }
        WorkloadKind::StatefulSet => kind == "StatefulSet" && name == w.name,
        WorkloadKind::DaemonSet => kind == "DaemonSet" && name == w.name,
        WorkloadKind::CronJob => {
            kind == "Job"
                && name
                    .strip_prefix(&w.name)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        }
    }
}

/// The listed workload a pod belongs to.
fn workload_of<'a>(refs: &'a References, pod: &Value) -> Option<&'a WorkloadRef> {
    let hash = pod["metadata"]["labels"]["pod-template-hash"].as_str();
    refs.workloads
        .iter()
        .find(|w| owners(pod).any(|(kind, name)| owner_is(w, kind, name, hash)))
}

/// The listed workload whose controller (`kind`/`name`, the object of a `FailedCreate`
/// event) creates its pods.
fn workload_of_controller<'a>(
    refs: &'a References,
    kind: &str,
    name: &str,
) -> Option<&'a WorkloadRef> {
    refs.workloads.iter().find(|w| match w.kind {
        // The ReplicaSet's name ends in its pod-template hash, which the event does not name.
        WorkloadKind::Deployment => {
            kind == "ReplicaSet"
                && name
                    .strip_prefix(&w.name)
                    .and_then(|r| r.strip_prefix('-'))
                    .is_some_and(|h| !h.is_empty() && !h.contains('-'))
        }
        _ => owner_is(w, kind, name, None),
    })
}

fn has_env_from(pod: &Value, secret: &str) -> bool {
    ["initContainers", "containers"].iter().any(|k| {
        pod["spec"][k].as_array().into_iter().flatten().any(|c| {
            c["envFrom"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["secretRef"]["name"].as_str() == Some(secret))
        })
    })
}

fn has_csi_volume(pod: &Value, volume: &str, spc: &str) -> bool {
    pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| {
            v["name"].as_str() == Some(volume)
                && v["csi"]["volumeAttributes"]["secretProviderClass"].as_str() == Some(spc)
        })
}

/// The waiting messages of containers stuck in `CreateContainerConfigError`.
fn config_errors(pod: &Value) -> Vec<&str> {
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|k| pod["status"][k].as_array().into_iter().flatten())
        .filter(|s| s["state"]["waiting"]["reason"] == "CreateContainerConfigError")
        .filter_map(|s| s["state"]["waiting"]["message"].as_str())
        .collect()
}

/// Whether a pod has not finished starting: not terminal, not being deleted, not running.
fn starting(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && matches!(pod["status"]["phase"].as_str(), None | Some("Pending"))
}

/// Whether a message says a ServiceAccount is not found (the kubelet's "service account",
/// admission's `serviceaccount "x" not found`).
fn names_missing_sa(message: &str, sa: &str) -> bool {
    message.contains(&format!("\"{sa}\"")) && message.contains("not found")
        || message.contains(&format!("service account {sa}")) && message.contains("not found")
        || message.contains(&format!("/{sa}:")) && message.contains("not found")
}

/// The pods (and controllers) of the connection's listed workloads failing on a reference it
/// added. `pods` and `events` are those of the connection's namespace (as JSON objects);
/// `release_ns` is the extension's namespace (for the remedy's command).
pub fn broken(
    refs: &References,
    pods: &[Value],
    events: &[Value],
    release_ns: &str,
) -> Vec<Broken> {
    let ns = &refs.namespace;
    let conn = &refs.connection;
    let reapply = format!("sc-agent reapply {conn} -n {release_ns}");
    let mut out: Vec<Broken> = Vec::new();
    let mut push = |b: Broken| {
        if !out
            .iter()
            .any(|o| o.object == b.object && o.reference == b.reference)
        {
            out.push(b);
        }
    };
    for pod in pods {
        let Some(w) = workload_of(refs, pod) else {
            continue;
        };
        if !starting(pod) {
            continue;
        }
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let object = format!("Pod {ns}/{pod_name}");
        let workload = format!("{} {ns}/{}", w.kind.as_str(), w.name);
        let errors = config_errors(pod);
        if let Some(secret) = refs.secret.as_deref().filter(|s| has_env_from(pod, s)) {
            // The kubelet's `secret "x" not found` (the API's `secrets "x" not found`).
            let wanted = [
                format!("secret \"{secret}\" not found"),
                format!("secrets \"{secret}\" not found"),
            ];
            if let Some(m) = errors
                .iter()
                .find(|m| wanted.iter().any(|w| m.contains(w.as_str())))
            {
                let remedy = match (&refs.secret_synced_by_csi, &refs.csi_volume) {
                    (true, Some((volume, spc))) => format!(
                        "the Secrets Store CSI driver writes Secret {secret} when it mounts the pod's volume {volume} (SecretProviderClass {spc}, secretObjects): install the driver with secret sync (AKS: az aks enable-addons --addons azure-keyvault-secrets-provider; the driver's helm chart: --set syncSecret.enabled=true) and keep the volume mounted; on a cluster without the driver, drop the workload from connections.{conn}.workloads"
                    ),
                    _ => format!(
                        "the connection's Secret is gone: {reapply} (the pod starts once it exists)"
                    ),
                };
                push(Broken {
                    connection: conn.clone(),
                    object: object.clone(),
                    workload: workload.clone(),
                    reference: format!("Secret {ns}/{secret}"),
                    problem: format!(
                        "its containers cannot start (CreateContainerConfigError): {m}"
                    ),
                    remedy,
                });
            }
        }
        if let Some(sa) = refs.service_account.as_deref()
            && pod["spec"]["serviceAccountName"].as_str() == Some(sa)
            && let Some(m) = errors.iter().find(|m| names_missing_sa(m, sa))
        {
            push(Broken {
                connection: conn.clone(),
                object: object.clone(),
                workload: workload.clone(),
                reference: format!("ServiceAccount {ns}/{sa}"),
                problem: format!("its containers cannot start (CreateContainerConfigError): {m}"),
                remedy: format!(
                    "the connection's ServiceAccount is gone: {reapply} (the pod starts once it exists)"
                ),
            });
        }
        if let Some((volume, spc)) = refs
            .csi_volume
            .as_ref()
            .filter(|(v, s)| has_csi_volume(pod, v, s))
        {
            let mount = events.iter().rev().find(|e| {
                e["reason"] == "FailedMount"
                    && involved(e).0 == "Pod"
                    && involved(e).1 == pod_name
                    && message(e).contains(&format!("\"{volume}\""))
            });
            if let Some(e) = mount {
                push(Broken {
                    connection: conn.clone(),
                    object: object.clone(),
                    workload: workload.clone(),
                    reference: format!("SecretProviderClass {ns}/{spc} (CSI volume {volume})"),
                    problem: format!(
                        "the CSI volume cannot be mounted (FailedMount): {}",
                        message(e)
                    ),
                    remedy: format!(
                        "install the Secrets Store CSI driver and its Azure provider (kubectl get csidriver {}), check SecretProviderClass {spc} and that its identity may read the vault; kubectl describe pod {pod_name} -n {ns}; on a cluster without the driver, drop the workload from connections.{conn}.workloads",
                        crate::prerequisites::CSI_DRIVER
                    ),
                });
            }
        }
    }
    // Kubernetes refuses a pod whose ServiceAccount does not exist: the controller reports it.
    if let Some(sa) = refs.service_account.as_deref() {
        for e in events {
            let (kind, name) = involved(e);
            if e["reason"] != "FailedCreate" || !names_missing_sa(message(e), sa) {
                continue;
            }
            let Some(w) = workload_of_controller(refs, kind, name) else {
                continue;
            };
            // Events outlive the problem: once the controller has a pod, it was fixed.
            if pods.iter().any(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && owners(p).any(|(k, n)| k == kind && n == name)
            }) {
                continue;
            }
            push(Broken {
                connection: conn.clone(),
                object: format!("{kind} {ns}/{name}"),
                workload: format!("{} {ns}/{}", w.kind.as_str(), w.name),
                reference: format!("ServiceAccount {ns}/{sa}"),
                problem: format!("it cannot create its pods (FailedCreate): {}", message(e)),
                remedy: format!(
                    "the connection's ServiceAccount is gone: {reapply} (the controller retries)"
                ),
            });
        }
    }
    out
}

fn involved(e: &Value) -> (&str, &str) {
    // core/v1 `involvedObject`, events.k8s.io/v1 `regarding`.
    let o = if e["involvedObject"].is_object() {
        &e["involvedObject"]
    } else {
        &e["regarding"]
    };
    (
        o["kind"].as_str().unwrap_or_default(),
        o["name"].as_str().unwrap_or_default(),
    )
}

fn message(e: &Value) -> &str {
    e["message"]
        .as_str()
        .or_else(|| e["note"].as_str())
        .unwrap_or_default()
}

/// What [`read`] found in a namespace.
#[derive(Debug, Default)]
pub struct Namespace {
    /// The pods, as JSON objects.
    pub pods: Vec<Value>,
    /// The core/v1 Events (empty when not read).
    pub events: Vec<Value>,
}

/// The core/v1 API of `kind` (`plural`) in namespace `ns`.
fn core_api(client: &kube::Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", kind), plural);
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar)
}

/// An object read through [`core_api`], as JSON (its metadata included).
fn as_json(o: DynamicObject) -> Value {
    let mut v = o.data;
    if let Ok(m) = serde_json::to_value(&o.metadata) {
        v["metadata"] = m;
    }
    v
}

/// Reads the pods of `ns` and, when `with_events`, its Events (an Event list refused is read
/// as none: the pods' own status still tells a missing Secret or ServiceAccount).
pub async fn read(client: &kube::Client, ns: &str, with_events: bool) -> Result<Namespace, String> {
    let pods = core_api(client, ns, "Pod", "pods")
        .list(&ListParams::default())
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) => {
                format!("listing pods in namespace {ns}: {} ({})", s.message, s.code)
            }
            other => format!("listing pods in namespace {ns}: {other}"),
        })?
        .items
        .into_iter()
        .map(as_json)
        .collect();
    let events = if with_events {
        match core_api(client, ns, "Event", "events")
            .list(&ListParams::default())
            .await
        {
            Ok(l) => l.items.into_iter().map(as_json).collect(),
            Err(_) => Vec::new(),
        }
    } else {
        Vec::new()
    };
    Ok(Namespace { pods, events })
}

/// One list of core/v1 Events by the leading agent: a field selector on the involved object
/// and the reason, so the API server sends only events [`broken`] can use.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventQuery {
    /// `involvedObject.kind`.
    pub kind: &'static str,
    /// `involvedObject.name`, when one object is meant.
    pub name: Option<String>,
    /// `reason`.
    pub reason: &'static str,
}

impl EventQuery {
    /// The list's field selector.
    pub fn field_selector(&self) -> String {
        let name = self
            .name
            .as_ref()
            .map(|n| format!(",involvedObject.name={n}"))
            .unwrap_or_default();
        format!(
            "involvedObject.kind={}{name},reason={}",
            self.kind, self.reason
        )
    }

    /// Whether the list returns event `e` (what the API server does with the selector).
    #[cfg(test)]
    fn matches(&self, e: &Value) -> bool {
        let (kind, name) = involved(e);
        kind == self.kind
            && self.name.as_deref().is_none_or(|n| n == name)
            && e["reason"] == self.reason
    }
}

/// Up to this many objects of one kind are asked about one by one (by name); beyond, their
/// events are asked for in one list by kind and reason.
pub const NAMED_EVENT_QUERIES: usize = 8;

/// The Events lists that give [`broken`] every event it can use about `refs` (the connections
/// of one namespace), given the namespace's `pods`; none when no listed workload can fail on
/// something only an Event tells:
///
/// - `FailedMount` of each starting pod of a listed workload that carries the connection's
///   CSI volume (by the pod's name);
/// - `FailedCreate` of the controllers of the listed workloads of a connection that sets the
///   ServiceAccount (Kubernetes' admission refuses their pods while it is missing). A refused
///   controller has no pod that could tell it is starting, and the ReplicaSet of a Deployment
///   and the Job of a CronJob are named by a template hash or a schedule time: those are asked
///   for by kind (`ReplicaSet`, `Job`), a StatefulSet or DaemonSet by its name.
///
/// Past [`NAMED_EVENT_QUERIES`] objects of one kind, one list by kind and reason.
pub fn event_queries(refs: &[&References], pods: &[Value]) -> Vec<EventQuery> {
    // (kind, reason) -> the names, `None` when every object of the kind is meant.
    let mut wanted: std::collections::BTreeMap<(&'static str, &'static str), Option<Vec<String>>> =
        std::collections::BTreeMap::new();
    let mut want = |kind: &'static str, reason: &'static str, name: Option<&str>| {
        let entry = wanted
            .entry((kind, reason))
            .or_insert_with(|| Some(Vec::new()));
        match (entry.as_mut(), name) {
            (Some(names), Some(n)) => {
                if !names.iter().any(|x| x == n) {
                    names.push(n.to_string());
                }
            }
            (Some(_), None) => *entry = None,
            (None, _) => {}
        }
    };
    for r in refs {
        if let Some((volume, spc)) = &r.csi_volume {
            for pod in pods.iter().filter(|p| {
                starting(p) && has_csi_volume(p, volume, spc) && workload_of(r, p).is_some()
            }) {
                want("Pod", "FailedMount", pod["metadata"]["name"].as_str());
            }
        }
        if r.service_account.is_some() {
            for w in &r.workloads {
                match w.kind {
                    WorkloadKind::Deployment => want("ReplicaSet", "FailedCreate", None),
                    WorkloadKind::CronJob => want("Job", "FailedCreate", None),
                    kind => want(kind.as_str(), "FailedCreate", Some(&w.name)),
                }
            }
        }
    }
    let mut out = Vec::new();
    for ((kind, reason), names) in wanted {
        match names {
            Some(names) if names.len() <= NAMED_EVENT_QUERIES => {
                out.extend(names.into_iter().map(|n| EventQuery {
                    kind,
                    name: Some(n),
                    reason,
                }))
            }
            _ => out.push(EventQuery {
                kind,
                name: None,
                reason,
            }),
        }
    }
    out
}

/// What the leading agent reads in namespace `ns` to find the broken workloads of `refs` (the
/// connections there are picked): its pods, and the Events [`event_queries`] names, each list
/// with its field selector. An Event list refused is read as none (logged): the pods' own
/// status still tells a missing Secret or ServiceAccount.
pub async fn read_listed(
    client: &kube::Client,
    ns: &str,
    refs: &[References],
) -> Result<Namespace, String> {
    let here: Vec<&References> = refs.iter().filter(|r| r.namespace == ns).collect();
    let mut n = read(client, ns, false).await?;
    let events = core_api(client, ns, "Event", "events");
    for q in event_queries(&here, &n.pods) {
        let lp = ListParams::default().fields(&q.field_selector());
        match events.list(&lp).await {
            Ok(l) => n.events.extend(l.items.into_iter().map(as_json)),
            Err(e) => {
                tracing::debug!(namespace = %ns, error = %e, "listing events failed; the pods' status only");
                break;
            }
        }
    }
    Ok(n)
}

/// The connections of a `connections` subtree read without their protected settings: a
/// connection that lists workloads and whose only errors are missing `secrets` is resolved
/// (alone) with a placeholder for each, which reaches no object: the names of its Secret,
/// ServiceAccount, SecretProviderClass and workloads do not depend on them.
pub fn public_connections(connections: &Value) -> Vec<Connection> {
    let mut out = Vec::new();
    // Only the connections that list workloads are resolved again: the others need no name.
    let mut filled = serde_json::Map::new();
    for check in sc_model::check_connections_keyed(connections, "") {
        if let Some(c) = check.connection {
            out.push(c);
            continue;
        }
        let raw = &connections[&check.name];
        let lists_workloads = ["workloads", "workload"]
            .iter()
            .any(|k| raw[k].as_array().is_some_and(|a| !a.is_empty()));
        let prefix = format!("connections.{}.secrets.", check.name);
        let missing: Option<Vec<&str>> = check
            .errors
            .iter()
            .map(|e| {
                e.path
                    .strip_prefix(&prefix)
                    .filter(|p| !p.contains('.') && e.message.starts_with("missing"))
            })
            .collect();
        if let Some(missing) = missing.filter(|m| lists_workloads && !m.is_empty()) {
            let mut raw = raw.clone();
            for p in missing {
                raw["secrets"][p] = Value::String("placeholder".into());
            }
            filled.insert(check.name.clone(), raw);
        }
    }
    if !filled.is_empty() {
        out.extend(
            sc_model::check_connections_keyed(&Value::Object(filled), "")
                .into_iter()
                .filter_map(|c| c.connection),
        );
    }
    out
}

/// The broken pods of `conn`'s listed workloads, read live (nothing when it lists none or
/// adds nothing to them); `Err` says why the pods could not be read.
pub async fn check(
    client: &kube::Client,
    conn: &Connection,
    release_ns: &str,
    with_events: bool,
) -> Result<Vec<Broken>, String> {
    let refs = References::of(conn);
    if refs.workloads.is_empty()
        || (refs.secret.is_none() && refs.service_account.is_none() && refs.csi_volume.is_none())
    {
        return Ok(Vec::new());
    }
    let n = read(client, &refs.namespace, with_events).await?;
    Ok(broken(&refs, &n.pods, &n.events, release_ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs() -> References {
        References {
            connection: "blob".into(),
            namespace: "apps".into(),
            workloads: vec![
                WorkloadRef {
                    kind: WorkloadKind::Deployment,
                    name: "web".into(),
                },
                WorkloadRef {
                    kind: WorkloadKind::CronJob,
                    name: "nightly".into(),
                },
            ],
            secret: Some("sc-blob-secret".into()),
            secret_synced_by_csi: false,
            service_account: None,
            csi_volume: None,
        }
    }

    /// A pod of ReplicaSet `owner` (label pod-template-hash `hash`) with one container.
    fn pod(name: &str, owner: (&str, &str), hash: &str, spec: Value, status: Value) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "apps",
                         "labels": {"app": "web", "pod-template-hash": hash},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner.0, "name": owner.1, "controller": true}]},
            "spec": spec,
            "status": status,
        })
    }

    fn env_from(secret: &str) -> Value {
        json!({"containers": [{"name": "app", "image": "alpine", "envFrom": [{"secretRef": {"name": secret}}]}]})
    }

    fn waiting(reason: &str, message: &str) -> Value {
        json!({"phase": "Pending", "containerStatuses": [{"name": "app", "ready": false,
               "state": {"waiting": {"reason": reason, "message": message}}}]})
    }

    #[test]
    fn connections_without_their_protected_settings_still_name_their_objects() {
        let conns = public_connections(&json!({
            "blob": {"namespace": "apps", "targetType": "storage-blob", "authType": "secret",
                     "clientType": "python", "parameters": {"accountName": "acct"},
                     "workloads": [{"kind": "Deployment", "name": "web"}]},
            "bad": {"targetType": "storage-blob", "authType": "nope"},
        }));
        assert_eq!(conns.len(), 1);
        let r = References::of(&conns[0]);
        assert_eq!(r.secret.as_deref(), Some("sc-blob-secret"));
        assert_eq!(r.workloads.len(), 1);
    }

    #[test]
    fn a_missing_secret_names_the_pod_the_reference_and_reapply() {
        let p = pod(
            "web-5d8f9c7b4-abcde",
            ("ReplicaSet", "web-5d8f9c7b4"),
            "5d8f9c7b4",
            env_from("sc-blob-secret"),
            waiting(
                "CreateContainerConfigError",
                "secret \"sc-blob-secret\" not found",
            ),
        );
        let b = broken(&refs(), std::slice::from_ref(&p), &[], "sc-system");
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(b[0].object, "Pod apps/web-5d8f9c7b4-abcde");
        let mut api_form = p;
        api_form["status"]["containerStatuses"][0]["state"]["waiting"]["message"] =
            json!("secrets \"sc-blob-secret\" not found");
        assert_eq!(broken(&refs(), &[api_form], &[], "sc-system").len(), 1);
        assert_eq!(b[0].workload, "Deployment apps/web");
        assert_eq!(b[0].reference, "Secret apps/sc-blob-secret");
        assert!(b[0].problem.contains("secret \"sc-blob-secret\" not found"));
        assert!(b[0].remedy.contains("sc-agent reapply blob -n sc-system"));
    }

    #[test]
    fn only_our_reference_on_our_workloads_counts() {
        let failing = waiting(
            "CreateContainerConfigError",
            "secret \"sc-blob-secret\" not found",
        );
        let cases = [
            // Another Secret is missing: not ours to report.
            pod(
                "web-1-a",
                ("ReplicaSet", "web-1"),
                "1",
                env_from("user-secret"),
                waiting(
                    "CreateContainerConfigError",
                    "secret \"user-secret\" not found",
                ),
            ),
            // A ReplicaSet of another Deployment (web-api) whose name starts like ours.
            pod(
                "web-api-7-a",
                ("ReplicaSet", "web-api-7"),
                "7",
                env_from("sc-blob-secret"),
                failing.clone(),
            ),
            // An unlisted workload's pod.
            pod(
                "db-0",
                ("StatefulSet", "db"),
                "x",
                env_from("sc-blob-secret"),
                failing.clone(),
            ),
            // Running, or image trouble: not a reference of ours.
            pod(
                "web-1-b",
                ("ReplicaSet", "web-1"),
                "1",
                env_from("sc-blob-secret"),
                json!({"phase": "Running"}),
            ),
            pod(
                "web-1-c",
                ("ReplicaSet", "web-1"),
                "1",
                env_from("sc-blob-secret"),
                waiting("ErrImagePull", "pull access denied"),
            ),
        ];
        assert_eq!(broken(&refs(), &cases, &[], "sc-system"), vec![]);
        // A pod of the CronJob's Job is found through the Job's name.
        let job_pod = pod(
            "nightly-29000000-x",
            ("Job", "nightly-29000000"),
            "",
            env_from("sc-blob-secret"),
            failing,
        );
        let b = broken(&refs(), &[job_pod], &[], "sc-system");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].workload, "CronJob apps/nightly");
    }

    #[test]
    fn the_csi_synced_secret_points_at_the_driver() {
        let r = References {
            connection: "kv_csi".into(),
            namespace: "apps".into(),
            workloads: vec![WorkloadRef {
                kind: WorkloadKind::Deployment,
                name: "web".into(),
            }],
            secret: Some("sc-kvcsi-secret".into()),
            secret_synced_by_csi: true,
            service_account: None,
            csi_volume: Some(("sc-kvcsi-kv".into(), "sc-kvcsi-spc".into())),
        };
        let mut spec = env_from("sc-kvcsi-secret");
        spec["volumes"] = json!([{"name": "sc-kvcsi-kv", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true,
                                  "volumeAttributes": {"secretProviderClass": "sc-kvcsi-spc"}}}]);
        let p = pod(
            "web-9-a",
            ("ReplicaSet", "web-9"),
            "9",
            spec.clone(),
            waiting(
                "CreateContainerConfigError",
                "secret \"sc-kvcsi-secret\" not found",
            ),
        );
        let b = broken(&r, &[p], &[], "sc-system");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].reference, "Secret apps/sc-kvcsi-secret");
        assert!(
            b[0].remedy
                .contains("Secrets Store CSI driver writes Secret sc-kvcsi-secret")
        );
        assert!(b[0].remedy.contains("syncSecret.enabled=true"));
        assert!(b[0].remedy.contains("connections.kv_csi.workloads"));
        // On a real cluster without the driver the volume fails first: FailedMount.
        let p = pod(
            "web-9-b",
            ("ReplicaSet", "web-9"),
            "9",
            spec,
            waiting("ContainerCreating", ""),
        );
        let ev = json!({"reason": "FailedMount", "type": "Warning",
            "involvedObject": {"kind": "Pod", "name": "web-9-b", "namespace": "apps"},
            "message": "MountVolume.SetUp failed for volume \"sc-kvcsi-kv\" : kubernetes.io/csi: mounter.SetUpAt failed to get CSI client: driver name secrets-store.csi.k8s.io not found in the list of registered CSI drivers"});
        let b = broken(&r, &[p], &[ev], "sc-system");
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(
            b[0].reference,
            "SecretProviderClass apps/sc-kvcsi-spc (CSI volume sc-kvcsi-kv)"
        );
        assert!(
            b[0].problem
                .contains("not found in the list of registered CSI drivers")
        );
    }

    #[test]
    fn a_missing_service_account_in_the_pod_or_refused_by_admission() {
        let sa = "sc-account-7d3e9c1a";
        let r = References {
            service_account: Some(sa.into()),
            secret: None,
            ..refs()
        };
        let mut spec = env_from("x");
        spec["serviceAccountName"] = json!(sa);
        // The embedded cluster's kubelet.
        let p = pod(
            "web-2-a",
            ("ReplicaSet", "web-2"),
            "2",
            spec,
            waiting(
                "CreateContainerConfigError",
                &format!(
                    "error looking up service account apps/{sa}: serviceaccounts \"{sa}\" not found"
                ),
            ),
        );
        let b = broken(&r, &[p], &[], "sc-system");
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(b[0].reference, format!("ServiceAccount apps/{sa}"));
        // Kubernetes: the ReplicaSet cannot create the pod.
        let ev = json!({"reason": "FailedCreate", "type": "Warning",
            "involvedObject": {"kind": "ReplicaSet", "name": "web-6c9f8", "namespace": "apps"},
            "message": format!("Error creating: pods \"web-6c9f8-\" is forbidden: error looking up service account apps/{sa}: serviceaccount \"{sa}\" not found")});
        let b = broken(&r, &[], std::slice::from_ref(&ev), "sc-system");
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(b[0].object, "ReplicaSet apps/web-6c9f8");
        assert_eq!(b[0].workload, "Deployment apps/web");
        // Once the ReplicaSet has a pod, the event is history.
        let created = pod(
            "web-6c9f8-a",
            ("ReplicaSet", "web-6c9f8"),
            "6c9f8",
            json!({}),
            json!({"phase": "Running"}),
        );
        assert_eq!(
            broken(&r, &[created], std::slice::from_ref(&ev), "sc-system"),
            vec![]
        );
        // Another Deployment's ReplicaSet is not ours.
        let mut other = ev;
        other["involvedObject"]["name"] = json!("web-api-6c9f8");
        assert_eq!(broken(&r, &[], &[other], "sc-system"), vec![]);
    }

    /// A Key Vault CSI connection listing Deployment web, and a workload-identity connection
    /// listing a Deployment, a StatefulSet and a CronJob; pods and events of both kinds of
    /// failure, and events of others.
    fn mixed() -> (Vec<References>, Vec<Value>, Vec<Value>) {
        let sa = "sc-account-7d3e9c1a";
        let csi = References {
            connection: "kv".into(),
            secret: None,
            csi_volume: Some(("sc-kv-kv".into(), "sc-kv-spc".into())),
            ..refs()
        };
        let wi = References {
            connection: "bus".into(),
            secret: None,
            service_account: Some(sa.into()),
            workloads: vec![
                WorkloadRef {
                    kind: WorkloadKind::Deployment,
                    name: "api".into(),
                },
                WorkloadRef {
                    kind: WorkloadKind::StatefulSet,
                    name: "db".into(),
                },
                WorkloadRef {
                    kind: WorkloadKind::CronJob,
                    name: "nightly".into(),
                },
            ],
            ..refs()
        };
        let mut spec = env_from("x");
        spec["volumes"] = json!([{"name": "sc-kv-kv", "csi": {"driver": "secrets-store.csi.k8s.io",
                                  "volumeAttributes": {"secretProviderClass": "sc-kv-spc"}}}]);
        let pods = vec![
            pod(
                "web-9-a",
                ("ReplicaSet", "web-9"),
                "9",
                spec.clone(),
                waiting("ContainerCreating", ""),
            ),
            pod(
                "web-9-b",
                ("ReplicaSet", "web-9"),
                "9",
                spec.clone(),
                json!({"phase": "Running"}),
            ),
            pod(
                "other-1-a",
                ("ReplicaSet", "other-1"),
                "1",
                spec,
                waiting("ContainerCreating", ""),
            ),
        ];
        let ev = |reason: &str, kind: &str, name: &str, message: String| {
            json!({"reason": reason, "type": "Warning",
                   "involvedObject": {"kind": kind, "name": name, "namespace": "apps"},
                   "message": message})
        };
        let mount = |pod: &str| {
            ev("FailedMount", "Pod", pod, "MountVolume.SetUp failed for volume \"sc-kv-kv\" : driver name secrets-store.csi.k8s.io not found".into())
        };
        let refused = |kind: &str, name: &str| {
            ev(
                "FailedCreate",
                kind,
                name,
                format!(
                    "Error creating: pods \"{name}-\" is forbidden: error looking up service account apps/{sa}: serviceaccount \"{sa}\" not found"
                ),
            )
        };
        let events = vec![
            mount("web-9-a"),
            mount("web-9-b"),
            mount("other-1-a"),
            refused("ReplicaSet", "api-6c9f8"),
            refused("StatefulSet", "db"),
            refused("Job", "nightly-29000000"),
            refused("StatefulSet", "cache"),
            ev("Pulled", "Pod", "web-9-a", "pulled".into()),
            ev("BackOff", "Pod", "web-9-a", "back-off".into()),
        ];
        (vec![csi, wi], pods, events)
    }

    #[test]
    fn the_agent_asks_only_for_the_events_broken_uses() {
        let (refs, pods, events) = mixed();
        let all: Vec<&References> = refs.iter().collect();
        let queries = event_queries(&all, &pods);
        let selectors: Vec<String> = queries.iter().map(EventQuery::field_selector).collect();
        assert_eq!(
            selectors,
            [
                "involvedObject.kind=Job,reason=FailedCreate",
                // Only the starting pod of the listed workload that carries the CSI volume.
                "involvedObject.kind=Pod,involvedObject.name=web-9-a,reason=FailedMount",
                "involvedObject.kind=ReplicaSet,reason=FailedCreate",
                "involvedObject.kind=StatefulSet,involvedObject.name=db,reason=FailedCreate",
            ]
        );
        // What the lists return decides exactly what every event decides.
        let returned: Vec<Value> = events
            .iter()
            .filter(|e| queries.iter().any(|q| q.matches(e)))
            .cloned()
            .collect();
        assert!(returned.len() < events.len());
        for r in &refs {
            let want = broken(r, &pods, &events, "sc-system");
            assert!(!want.is_empty(), "{}", r.connection);
            assert_eq!(broken(r, &pods, &returned, "sc-system"), want);
        }
        let objects: Vec<String> = refs
            .iter()
            .flat_map(|r| broken(r, &pods, &returned, "sc-system"))
            .map(|b| b.object)
            .collect();
        assert_eq!(
            objects,
            [
                "Pod apps/web-9-a",
                "ReplicaSet apps/api-6c9f8",
                "StatefulSet apps/db",
                "Job apps/nightly-29000000"
            ]
        );
    }

    #[test]
    fn no_event_is_asked_for_without_a_reference_only_events_tell() {
        let (_, pods, _) = mixed();
        // A Secret only: the pods' status tells it.
        assert_eq!(event_queries(&[&refs()], &pods), vec![]);
        // The CSI connection's pods all running (or gone): nothing to ask.
        let (refs, _, _) = mixed();
        let running: Vec<Value> = pods
            .iter()
            .cloned()
            .map(|mut p| {
                p["status"] = json!({"phase": "Running"});
                p
            })
            .collect();
        assert_eq!(event_queries(&[&refs[0]], &running), vec![]);
        assert_eq!(event_queries(&[&refs[0]], &[]), vec![]);
    }

    #[test]
    fn many_objects_of_a_kind_are_asked_for_in_one_list() {
        let (refs, pods, _) = mixed();
        let many: Vec<Value> = (0..=NAMED_EVENT_QUERIES)
            .map(|i| {
                let mut p = pods[0].clone();
                p["metadata"]["name"] = json!(format!("web-9-{i}"));
                p
            })
            .collect();
        let q = event_queries(&[&refs[0]], &many);
        assert_eq!(
            q,
            [EventQuery {
                kind: "Pod",
                name: None,
                reason: "FailedMount"
            }]
        );
        assert_eq!(
            q[0].field_selector(),
            "involvedObject.kind=Pod,reason=FailedMount"
        );
        assert_eq!(
            event_queries(&[&refs[0]], &many[..NAMED_EVENT_QUERIES]).len(),
            NAMED_EVENT_QUERIES
        );
    }
}
