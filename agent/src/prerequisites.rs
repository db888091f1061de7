//! Preflight checks: what a connection needs from the cluster that sc-extension does not
//! install, so a missing piece is a finding instead of a silent failure.
//!
//! - workload identity (a ServiceAccount `sc-account-<clientId>`) needs the Azure Workload
//!   Identity webhook, which injects the token into the pods: its
//!   MutatingWebhookConfiguration (`azure-wi-webhook-mutating-webhook-configuration`, as the
//!   upstream chart and the AKS add-on name it, or any webhook named `*azure-workload-identity*`);
//! - Key Vault with the CSI driver needs the Secrets Store CSI driver (CSIDriver
//!   `secrets-store.csi.k8s.io`) and its SecretProviderClass API;
//! - sc-job and the agent need a node they may run on: a pod `PodScheduled=False` with reason
//!   `Unschedulable` (every node tainted `CriticalAddonsOnly`, say) is reported with the
//!   `tolerations` value to set.
//!
//! A check that RBAC or the API server refuses is reported as not made, never as missing.
//! The decisions are pure (`findings`, `unschedulable`); `observe` and `scheduling` read.

use crate::jobspec::JobConfig;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::core::PartialObjectMeta;
use sc_model::{AuthType, Connection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// The MutatingWebhookConfiguration of the Azure Workload Identity webhook.
pub const WI_WEBHOOK_CONFIGURATION: &str = "azure-wi-webhook-mutating-webhook-configuration";
/// What the webhook's name contains (`mutation.azure-workload-identity.io`).
pub const WI_WEBHOOK_NAME_PART: &str = "azure-workload-identity";
/// The CSIDriver of the Secrets Store CSI driver.
pub const CSI_DRIVER: &str = "secrets-store.csi.k8s.io";
/// The API of SecretProviderClass.
pub const SPC_GROUP_VERSION: &str = "secrets-store.csi.x-k8s.io/v1";
/// The reason of the Warning event on `sc-requests`.
pub const EVENT_REASON: &str = "PrerequisiteMissing";
/// The reason of the Warning event on `sc-requests` for a pod of the release no node accepts.
pub const UNSCHEDULABLE_REASON: &str = "Unschedulable";

/// Whether a prerequisite is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// It is there.
    Present,
    /// It is not.
    Absent,
    /// The check could not be made: why (RBAC, the API server).
    Unknown(String),
}

/// What the cluster has, as far as the checks could tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The workload-identity webhook.
    pub webhook: Presence,
    /// The CSIDriver `secrets-store.csi.k8s.io`.
    pub csi_driver: Presence,
    /// The SecretProviderClass API.
    pub spc_api: Presence,
}

/// The connections that need each prerequisite.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Connections using workload identity.
    pub workload_identity: Vec<String>,
    /// Connections using the Key Vault CSI driver.
    pub keyvault_csi: Vec<String>,
}

impl Needs {
    /// What `connections` need.
    pub fn of<'a>(connections: impl IntoIterator<Item = &'a Connection>) -> Needs {
        let mut n = Needs::default();
        for c in connections {
            if c.workload_identity_client_id().is_some() {
                n.workload_identity.push(c.name().to_string());
            }
            if c.spec.auth_type == AuthType::KeyvaultCsi {
                n.keyvault_csi.push(c.name().to_string());
            }
        }
        n
    }

    /// Whether nothing is needed.
    pub fn is_empty(&self) -> bool {
        self.workload_identity.is_empty() && self.keyvault_csi.is_empty()
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The object checked, as `Kind name` or `Kind namespace/name`.
    pub object: String,
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub remedy: String,
    /// `true`: it is missing; `false`: the check could not be made.
    pub missing: bool,
    /// The connections concerned (empty for scheduling).
    pub connections: Vec<String>,
}

fn finding(
    object: &str,
    presence: &Presence,
    what: &str,
    remedy: &str,
    conns: &[String],
) -> Option<Finding> {
    let list = conns.join(", ");
    match presence {
        Presence::Present => None,
        Presence::Absent => Some(Finding {
            object: object.to_string(),
            problem: format!("{what} is not installed; needed by {list}"),
            remedy: remedy.to_string(),
            missing: true,
            connections: conns.to_vec(),
        }),
        Presence::Unknown(why) => Some(Finding {
            object: object.to_string(),
            problem: format!(
                "could not check whether {what} is installed ({why}); needed by {list}"
            ),
            remedy: format!(
                "grant the agent the read (the chart's ClusterRole sc-agent-prerequisites-<namespace>), or check by hand; if it is missing: {remedy}"
            ),
            missing: false,
            connections: conns.to_vec(),
        }),
    }
}

/// The findings for what `needs` asks of what was `observed`.
pub fn findings(needs: &Needs, observed: &Observed) -> Vec<Finding> {
    let mut out = Vec::new();
    if !needs.workload_identity.is_empty() {
        out.extend(finding(
            &format!("MutatingWebhookConfiguration {WI_WEBHOOK_CONFIGURATION}"),
            &observed.webhook,
            "the Azure Workload Identity webhook",
            "enable workload identity (AKS: az aks update --enable-oidc-issuer --enable-workload-identity; elsewhere: helm install workload-identity-webhook from https://azure.github.io/azure-workload-identity/charts); without it pods get no token",
            &needs.workload_identity,
        ));
    }
    if !needs.keyvault_csi.is_empty() {
        out.extend(finding(
            &format!("CSIDriver {CSI_DRIVER}"),
            &observed.csi_driver,
            "the Secrets Store CSI driver",
            "enable the Azure Key Vault Secrets Provider (AKS: az aks enable-addons --addons azure-keyvault-secrets-provider; Arc: the extension Microsoft.AzureKeyVaultSecretsProvider)",
            &needs.keyvault_csi,
        ));
        out.extend(finding(
            &format!("API {SPC_GROUP_VERSION} secretproviderclasses"),
            &observed.spc_api,
            "the SecretProviderClass API (CRD secretproviderclasses.secrets-store.csi.x-k8s.io)",
            "install the Secrets Store CSI driver with its CRDs (the Azure Key Vault Secrets Provider add-on or extension installs both)",
            &needs.keyvault_csi,
        ));
    }
    out
}

/// Whether a MutatingWebhookConfiguration is the Azure Workload Identity webhook's.
pub fn is_wi_webhook(mwc: &Value) -> bool {
    if mwc["metadata"]["name"].as_str() == Some(WI_WEBHOOK_CONFIGURATION) {
        return true;
    }
    mwc["webhooks"].as_array().into_iter().flatten().any(|w| {
        w["name"]
            .as_str()
            .is_some_and(|n| n.contains(WI_WEBHOOK_NAME_PART))
    })
}

fn refused(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

/// Reads what `needs` asks about (nothing when it asks nothing).
pub async fn observe(client: &kube::Client, needs: &Needs) -> Observed {
    let mut o = Observed {
        webhook: Presence::Present,
        csi_driver: Presence::Present,
        spc_api: Presence::Present,
    };
    if !needs.workload_identity.is_empty() {
        let gvk = GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
        );
        let ar = ApiResource::from_gvk_with_plural(&gvk, "mutatingwebhookconfigurations");
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        o.webhook = match api.list(&ListParams::default()).await {
            Ok(list) => {
                let found = list.items.iter().any(|m| {
                    let mut v = m.data.clone();
                    v["metadata"]["name"] = m.metadata.name.clone().unwrap_or_default().into();
                    is_wi_webhook(&v)
                });
                if found {
                    Presence::Present
                } else {
                    Presence::Absent
                }
            }
            Err(e) => Presence::Unknown(format!(
                "listing mutatingwebhookconfigurations: {}",
                refused(&e)
            )),
        };
    }
    if !needs.keyvault_csi.is_empty() {
        let gvk = GroupVersionKind::gvk("storage.k8s.io", "v1", "CSIDriver");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "csidrivers");
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        o.csi_driver = match api.get_opt(CSI_DRIVER).await {
            Ok(Some(_)) => Presence::Present,
            Ok(None) => Presence::Absent,
            Err(e) => Presence::Unknown(format!("reading CSIDriver {CSI_DRIVER}: {}", refused(&e))),
        };
        o.spc_api = match client.list_api_group_resources(SPC_GROUP_VERSION).await {
            Ok(list)
                if list
                    .resources
                    .iter()
                    .any(|r| r.name == "secretproviderclasses") =>
            {
                Presence::Present
            }
            Ok(_) => Presence::Absent,
            Err(kube::Error::Api(s)) if s.code == 404 => Presence::Absent,
            Err(e) => {
                Presence::Unknown(format!("discovery of {SPC_GROUP_VERSION}: {}", refused(&e)))
            }
        };
    }
    o
}

/// The prerequisite findings of `connections`, read live.
pub async fn check<'a>(
    client: &kube::Client,
    connections: impl IntoIterator<Item = &'a Connection>,
) -> Vec<Finding> {
    let needs = Needs::of(connections);
    if needs.is_empty() {
        return Vec::new();
    }
    findings(&needs, &observe(client, &needs).await)
}

/// The `PodScheduled` condition of a pod no node accepts (`False`, reason `Unschedulable`).
fn is_unschedulable(p: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
}

/// The pods that no node accepts (`PodScheduled=False`, reason `Unschedulable`), each a
/// finding naming the scheduler's message and the `tolerations` value.
pub fn unschedulable(pods: &[Pod]) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in pods {
        let Some(cond) = is_unschedulable(p) else {
            continue;
        };
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let message = cond.message.clone().unwrap_or_default();
        let taint_hint = if message.contains("CriticalAddonsOnly") {
            " (every node is tainted CriticalAddonsOnly: --set tolerations[0].key=CriticalAddonsOnly,tolerations[0].operator=Exists)"
        } else {
            ""
        };
        out.push(Finding {
            object: format!("Pod {ns}/{name}"),
            problem: format!("no node can run it: {}", if message.is_empty() { "Unschedulable" } else { &message }),
            remedy: format!("let the release's pods run on a node: set the chart values tolerations (for the taints the message names){taint_hint}, nodeSelector or affinity, then helm upgrade"),
            missing: true,
            connections: Vec::new(),
        });
    }
    out
}

/// The unschedulable pods in the extension's namespace (sc-job, the agent, the hooks); a
/// finding that the check could not be made when pods cannot be listed.
pub async fn scheduling(client: &kube::Client, ns: &str) -> Vec<Finding> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    match api.list(&ListParams::default()).await {
        Ok(list) => unschedulable(&list.items),
        Err(e) => vec![Finding {
            object: format!("Pods in namespace {ns}"),
            problem: format!(
                "could not check whether the pods of sc-job and the agent can be scheduled ({})",
                refused(&e)
            ),
            remedy: format!(
                "kubectl get pods -n {ns}; kubectl describe pod <name> -n {ns} shows why a pod is Pending"
            ),
            missing: false,
            connections: Vec::new(),
        }],
    }
}

/// The requested connections of the namespace's requests (every shard, without the protected
/// settings: the checks need no secret), or why they cannot be read.
pub async fn requested_connections(
    client: &kube::Client,
    ns: &str,
) -> Result<(Arc<ConfigMap>, Vec<Connection>), String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let first = match api.get_opt(sc_contract::REQUESTS_CONFIGMAP).await {
        Ok(Some(cm)) => Arc::new(cm),
        Ok(None) => {
            return Err(format!(
                "ConfigMap {ns}/{} does not exist",
                sc_contract::REQUESTS_CONFIGMAP
            ));
        }
        Err(e) => {
            return Err(format!(
                "reading ConfigMap {ns}/{}: {}",
                sc_contract::REQUESTS_CONFIGMAP,
                refused(&e)
            ));
        }
    };
    let shards = sc_contract::shards::gather(first.clone(), "ConfigMap", |name| {
        let api = &api;
        async move { api.get_opt(&name).await }
    })
    .await;
    let public = match shards {
        sc_contract::shards::Shards::Complete(all) => all,
        sc_contract::shards::Shards::Incomplete(why)
        | sc_contract::shards::Shards::Invalid(why) => return Err(why),
    };
    let requests = sc_contract::Requests::from_objects(&public, &[], "")?;
    Ok((
        first,
        crate::workloads::public_connections(&requests.connections),
    ))
}

/// Whether a finding is about a pod no node accepts (from [`unschedulable`]).
pub fn is_unschedulable_pod(f: &Finding) -> bool {
    f.missing && f.object.starts_with("Pod ")
}

/// The label a command prints before a finding.
pub fn label(f: &Finding) -> &'static str {
    if is_unschedulable_pod(f) {
        "UNSCHEDULABLE"
    } else if f.missing {
        "MISSING"
    } else {
        "UNCHECKED"
    }
}

/// The pods of `ns`; nothing when they cannot be listed (logged).
async fn release_pods(client: &kube::Client, ns: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => {
            tracing::debug!(error = %refused(&e), "listing the pods of the release failed");
            Vec::new()
        }
    }
}

/// The uids of the Jobs `sc-job` whose pods among `pods` no node accepts.
pub fn unschedulable_job_uids(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter(|p| is_unschedulable(p).is_some())
        .flat_map(|p| p.metadata.owner_references.iter().flatten())
        .filter(|o| {
            o.kind == "Job" && o.name == sc_contract::JOB_NAME && o.controller == Some(true)
        })
        .map(|o| o.uid.clone())
        .collect()
}

/// Whether `job`'s pods are placed otherwise (node selector, tolerations, affinity, priority
/// class) than a Job built from `config` now would be: the chart's placement values changed
/// since the Job was created.
pub fn placement_changed(job: &Job, config: &JobConfig) -> bool {
    let Ok(want) = serde_json::from_value::<Job>(crate::jobspec::job_object(config, "", "", 0, ""))
    else {
        return false;
    };
    let pod = |j: &Job| j.spec.as_ref().and_then(|s| s.template.spec.clone());
    let (Some(have), Some(want)) = (pod(job), pod(&want)) else {
        return false;
    };
    let empty = |v: Option<Vec<_>>| v.filter(|v: &Vec<_>| !v.is_empty());
    let map = |v: Option<std::collections::BTreeMap<String, String>>| v.filter(|m| !m.is_empty());
    let text = |v: Option<String>| v.filter(|s| !s.is_empty());
    empty(have.tolerations) != empty(want.tolerations)
        || map(have.node_selector) != map(want.node_selector)
        || have.affinity != want.affinity
        || text(have.priority_class_name) != text(want.priority_class_name)
}

/// Deletes Job `sc-job` when a pod of it waits for a node and the chart's placement values
/// changed since it was created (`helm upgrade --set tolerations...`, as the finding's remedy
/// says): it never ran, and the agent creates it again with the new placement.
async fn replace_stuck_job(
    client: &kube::Client,
    ns: &str,
    pods: &[Pod],
    config: &JobConfig,
) -> Option<String> {
    let stuck = unschedulable_job_uids(pods);
    if stuck.is_empty() {
        return None;
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let job = jobs.get_opt(sc_contract::JOB_NAME).await.ok()??;
    if job.metadata.deletion_timestamp.is_some()
        || !job.metadata.uid.as_ref().is_some_and(|u| stuck.contains(u))
        || !placement_changed(&job, config)
    {
        return None;
    }
    let dp = kube::api::DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Background),
        preconditions: job
            .metadata
            .uid
            .clone()
            .map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
        ..Default::default()
    };
    match jobs.delete(sc_contract::JOB_NAME, &dp).await {
        Ok(_) => Some(format!(
            "the pod of Job {ns}/{} could not be scheduled and the chart's placement values (tolerations, nodeSelector, affinity, priorityClassName) changed since it was created: deleted it, it is created again with them",
            sc_contract::JOB_NAME
        )),
        Err(e) => {
            tracing::warn!(error = %refused(&e), "replacing the unschedulable Job failed");
            None
        }
    }
}

/// The pods of `pods` not reported yet (`reported` holds the objects already reported and
/// is left with those still unschedulable): each pod once, however many checks see it.
pub fn newly_unschedulable(pods: &[Finding], reported: &mut Vec<String>) -> Vec<Finding> {
    let new: Vec<Finding> = pods
        .iter()
        .filter(|f| !reported.contains(&f.object))
        .cloned()
        .collect();
    *reported = pods.iter().map(|f| f.object.clone()).collect();
    new
}

/// Checks the prerequisites of the requested connections every `every` while this replica
/// leads, and publishes a Warning event `PrerequisiteMissing` on `sc-requests` for each
/// finding that is new (and a Normal `PrerequisitesMet` once all are resolved), and a
/// Warning event `Unschedulable` for each pod of the release (sc-job, the agent, the hooks)
/// that no node accepts, once per pod. `requests_changed` is woken after a step that saw new
/// request objects: the connections are resolved again then, not at the next check, so the
/// work a change causes is done with it and the agent at rest does none.
pub async fn watch(
    client: kube::Client,
    ns: String,
    identity: String,
    leader: tokio::sync::watch::Receiver<bool>,
    every: std::time::Duration,
    job: JobConfig,
    requests_changed: Arc<tokio::sync::Notify>,
) {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let reporter = Reporter {
        controller: sc_contract::FIELD_MANAGER.to_string(),
        instance: Some(identity),
    };
    let mut published: Vec<Finding> = Vec::new();
    let mut reported_pods: Vec<String> = Vec::new();
    let mut broken = BrokenSeen::default();
    // What the checks need of the requested connections, by the resourceVersion of
    // `sc-requests`: not the connections themselves (thousands of them would stay resident).
    let mut resolved: Option<(String, Arc<Resolved>)> = None;
    let mut tick = tokio::time::interval(every);
    loop {
        let check = tokio::select! {
            _ = tick.tick() => true,
            _ = requests_changed.notified() => false,
        };
        if !*leader.borrow() {
            published.clear();
            reported_pods.clear();
            broken = BrokenSeen::default();
            continue;
        }
        let current = match resolve(&client, &ns, &mut resolved).await {
            Ok(current) => current,
            Err(why) => {
                tracing::debug!(%why, "prerequisite checks skipped");
                continue;
            }
        };
        if !check {
            // Woken by a change: the connections are resolved, the checks wait for the tick.
            continue;
        }
        let now = if current.needs.is_empty() {
            Vec::new()
        } else {
            findings(&current.needs, &observe(&client, &current.needs).await)
        };
        let reference = current.reference.clone();
        let recorder = Recorder::new(client.clone(), reporter.clone());
        for f in now.iter().filter(|f| !published.contains(f)) {
            tracing::warn!(object = %f.object, problem = %f.problem, "prerequisite missing");
            let ev = warning(f, EVENT_REASON, "CheckPrerequisites");
            if let Err(e) = recorder.publish(&ev, &reference).await {
                tracing::warn!(error = %e, "publishing an event failed");
            }
        }
        let mut live_pods = release_pods(&client, &ns).await;
        if let Some(note) = replace_stuck_job(&client, &ns, &live_pods, &job).await {
            // Its pods go with it: nothing to report about them.
            live_pods.retain(|p| {
                !p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "Job" && o.name == sc_contract::JOB_NAME)
            });
            tracing::info!(%note, "replaced Job {}", sc_contract::JOB_NAME);
            let ev = Event {
                type_: EventType::Normal,
                reason: "JobReplaced".to_string(),
                note: Some(note),
                action: "CheckScheduling".to_string(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&ev, &reference).await {
                tracing::warn!(error = %e, "publishing an event failed");
            }
        }
        let pods = unschedulable(&live_pods);
        for f in newly_unschedulable(&pods, &mut reported_pods) {
            tracing::warn!(object = %f.object, problem = %f.problem, "a pod of the release cannot be scheduled");
            let ev = warning(&f, UNSCHEDULABLE_REASON, "CheckScheduling");
            if let Err(e) = recorder.publish(&ev, &reference).await {
                tracing::warn!(error = %e, "publishing an event failed");
            }
        }
        if now.is_empty() && !published.is_empty() {
            let ev = Event {
                type_: EventType::Normal,
                reason: "PrerequisitesMet".to_string(),
                note: Some(
                    "every prerequisite of the requested connections is installed".to_string(),
                ),
                action: "CheckPrerequisites".to_string(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&ev, &reference).await {
                tracing::warn!(error = %e, "publishing an event failed");
            }
        }
        published = now;
        broken
            .publish(&client, &ns, &current.workloads, &recorder, &reference)
            .await;
    }
}

/// The connections resolved for the checks, again only when `sc-requests` changed since
/// `resolved` (a metadata-only read; helm writes it with every revision, its shards with it):
/// resolving thousands of connections every look would be most of the agent's idle work.
async fn resolve(
    client: &kube::Client,
    ns: &str,
    resolved: &mut Option<(String, Arc<Resolved>)>,
) -> Result<Arc<Resolved>, String> {
    let version = Api::<PartialObjectMeta<ConfigMap>>::namespaced(client.clone(), ns)
        .get_metadata_opt(sc_contract::REQUESTS_CONFIGMAP)
        .await
        .ok()
        .flatten()
        .and_then(|m| m.metadata.resource_version);
    if let (Some((was, current)), Some(now)) = (&*resolved, &version)
        && was == now
    {
        return Ok(current.clone());
    }
    let (requests, connections) = requested_connections(client, ns).await?;
    let current = Arc::new(Resolved::of(&requests, &connections));
    drop((requests, connections));
    crate::runtime::release_free_memory();
    *resolved = version.map(|v| (v, current.clone()));
    Ok(current)
}

/// What the periodic checks need of the requested connections: the connections that need a
/// prerequisite, what those that list workloads add to them, and `sc-requests` to publish
/// the events on.
struct Resolved {
    reference: k8s_openapi::api::core::v1::ObjectReference,
    needs: Needs,
    workloads: Vec<crate::workloads::References>,
}

impl Resolved {
    fn of(requests: &ConfigMap, connections: &[Connection]) -> Resolved {
        use kube::Resource as _;
        Resolved {
            reference: requests.object_ref(&()),
            needs: Needs::of(connections),
            workloads: connections
                .iter()
                .map(crate::workloads::References::of)
                .filter(|r| !r.workloads.is_empty())
                .collect(),
        }
    }
}

/// The Warning event of finding `f`: its object, problem and remedy, with the object as the
/// related object. Events of one reason and action on `sc-requests` would otherwise be one
/// series (the recorder's key), and a second finding would only count as the first again.
fn warning(f: &Finding, reason: &str, action: &str) -> kube::runtime::events::Event {
    use kube::runtime::events::{Event, EventType};
    Event {
        type_: EventType::Warning,
        reason: reason.to_string(),
        note: Some(
            format!("{}: {}; remedy: {}", f.object, f.problem, f.remedy)
                .chars()
                .take(1000)
                .collect(),
        ),
        action: action.to_string(),
        secondary: related(&f.object),
    }
}

/// A reference to the object of a finding (`Kind namespace/name`, or `Kind name` for the
/// cluster-scoped kinds a finding names); `None` for anything else.
fn related(object: &str) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
    let (kind, rest) = object.split_once(' ')?;
    let (namespace, name) = match rest.split_once('/') {
        Some((ns, name)) => (Some(ns.to_string()), name),
        None => (None, rest),
    };
    let api_version = match (kind, &namespace) {
        ("Pod", Some(_)) => "v1",
        ("Job" | "CronJob", Some(_)) => "batch/v1",
        ("Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet", Some(_)) => "apps/v1",
        ("MutatingWebhookConfiguration", None) => "admissionregistration.k8s.io/v1",
        ("CSIDriver", None) => "storage.k8s.io/v1",
        _ => return None,
    };
    Some(k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(api_version.to_string()),
        kind: Some(kind.to_string()),
        namespace,
        name: Some(name.to_string()),
        ..Default::default()
    })
}

/// The broken pods already reported (by object and reference), so each is reported once.
#[derive(Default)]
struct BrokenSeen(Vec<(String, String)>);

impl BrokenSeen {
    /// Reads the pods of the connections' namespaces (and the few Events that tell what pods
    /// cannot: `workloads::read_listed`) and publishes a Warning event `WorkloadBroken` on
    /// `sc-requests` for each pod (or controller) newly failing on a reference a connection
    /// added.
    async fn publish(
        &mut self,
        client: &kube::Client,
        ns: &str,
        refs: &[crate::workloads::References],
        recorder: &kube::runtime::events::Recorder,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
    ) {
        use crate::workloads;
        use kube::runtime::events::{Event, EventType};
        let mut namespaces: Vec<&str> = refs.iter().map(|r| r.namespace.as_str()).collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        let mut now = Vec::new();
        let mut unread = Vec::new();
        for app_ns in namespaces {
            match workloads::read_listed(client, app_ns, refs).await {
                Ok(n) => {
                    for r in refs.iter().filter(|r| r.namespace == app_ns) {
                        now.extend(workloads::broken(r, &n.pods, &n.events, ns));
                    }
                }
                Err(why) => {
                    tracing::debug!(%why, "the pods of the listed workloads were not checked");
                    unread.push(app_ns.to_string());
                }
            }
        }
        for b in &now {
            let key = (b.object.clone(), b.reference.clone());
            if self.0.contains(&key) {
                continue;
            }
            tracing::warn!(object = %b.object, reference = %b.reference, connection = %b.connection, "workload broken");
            let ev = Event {
                type_: EventType::Warning,
                reason: workloads::EVENT_REASON.to_string(),
                note: Some(
                    format!(
                        "connection {}: {} of {} fails on {}: {}; remedy: {}",
                        b.connection, b.object, b.workload, b.reference, b.problem, b.remedy
                    )
                    .chars()
                    .take(1000)
                    .collect(),
                ),
                action: "CheckWorkloads".to_string(),
                // The broken object: events of one reason and action on `sc-requests` are one
                // series unless they name different related objects.
                secondary: related(&b.object),
            };
            if let Err(e) = recorder.publish(&ev, reference).await {
                tracing::warn!(error = %e, "publishing an event failed");
            }
        }
        // Keep what is still broken, and what could not be looked at this time.
        let ns_of = |object: &str| {
            object
                .split_once(' ')
                .and_then(|(_, rest)| rest.split_once('/'))
                .map(|(n, _)| n.to_string())
                .unwrap_or_default()
        };
        self.0.retain(|(object, _)| unread.contains(&ns_of(object)));
        self.0
            .extend(now.into_iter().map(|b| (b.object, b.reference)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_finding_event_names_its_object_as_the_related_object() {
        let f = |object: &str| Finding {
            object: object.into(),
            problem: "p".into(),
            remedy: "r".into(),
            missing: true,
            connections: vec![],
        };
        let related_of =
            |object: &str| warning(&f(object), EVENT_REASON, "CheckPrerequisites").secondary;
        let webhook = related_of(&format!(
            "MutatingWebhookConfiguration {WI_WEBHOOK_CONFIGURATION}"
        ))
        .expect("the webhook configuration");
        let csi = related_of(&format!("CSIDriver {CSI_DRIVER}")).expect("the CSI driver");
        assert_ne!(webhook, csi, "two findings, one event series");
        assert_eq!(csi.api_version.as_deref(), Some("storage.k8s.io/v1"));
        assert_eq!(
            (csi.namespace, csi.name.as_deref()),
            (None, Some(CSI_DRIVER))
        );
        let pod = related_of("Pod sc-system/sc-job-abc").expect("the pod");
        assert_eq!(
            (
                pod.api_version.as_deref(),
                pod.namespace.as_deref(),
                pod.name.as_deref()
            ),
            (Some("v1"), Some("sc-system"), Some("sc-job-abc"))
        );
        // An API or a list of pods is no object to refer to.
        assert_eq!(
            related_of(&format!("API {SPC_GROUP_VERSION} secretproviderclasses")),
            None
        );
        assert_eq!(related_of("Pods in namespace sc-system"), None);
    }

    use serde_json::json;

    fn needs() -> Needs {
        Needs {
            workload_identity: vec!["sql_conn".into()],
            keyvault_csi: vec!["kv".into()],
        }
    }

    #[test]
    fn missing_and_unknown_are_told_apart() {
        let all = Observed {
            webhook: Presence::Present,
            csi_driver: Presence::Present,
            spc_api: Presence::Present,
        };
        assert!(findings(&needs(), &all).is_empty());
        let f = findings(
            &needs(),
            &Observed {
                webhook: Presence::Absent,
                ..all.clone()
            },
        );
        assert_eq!(f.len(), 1);
        assert!(f[0].missing && f[0].object.contains(WI_WEBHOOK_CONFIGURATION));
        assert!(
            f[0].problem.contains("sql_conn") && f[0].remedy.contains("enable-workload-identity")
        );
        let f = findings(
            &needs(),
            &Observed {
                csi_driver: Presence::Unknown("forbidden (403)".into()),
                ..all.clone()
            },
        );
        assert_eq!(f.len(), 1);
        assert!(
            !f[0].missing
                && f[0].problem.starts_with("could not check")
                && f[0].problem.contains("403")
        );
        // Nothing needed, nothing reported.
        let none = Observed {
            webhook: Presence::Absent,
            csi_driver: Presence::Absent,
            spc_api: Presence::Absent,
        };
        assert!(findings(&Needs::default(), &none).is_empty());
        assert_eq!(findings(&needs(), &none).len(), 3);
    }

    #[test]
    fn the_webhook_is_found_by_its_configuration_or_webhook_name() {
        assert!(is_wi_webhook(
            &json!({"metadata": {"name": WI_WEBHOOK_CONFIGURATION}})
        ));
        assert!(is_wi_webhook(
            &json!({"metadata": {"name": "custom"}, "webhooks": [{"name": "mutation.azure-workload-identity.io"}]})
        ));
        assert!(!is_wi_webhook(
            &json!({"metadata": {"name": "istio-sidecar-injector"}, "webhooks": [{"name": "sidecar-injector.istio.io"}]})
        ));
    }

    #[test]
    fn each_unschedulable_pod_is_reported_once() {
        let f = |name: &str| Finding {
            object: format!("Pod sc-system/{name}"),
            problem: "no node can run it".into(),
            remedy: "set tolerations".into(),
            missing: true,
            connections: Vec::new(),
        };
        let mut reported = Vec::new();
        assert_eq!(newly_unschedulable(&[f("a")], &mut reported), [f("a")]);
        assert!(newly_unschedulable(&[f("a")], &mut reported).is_empty());
        assert_eq!(
            newly_unschedulable(&[f("a"), f("b")], &mut reported),
            [f("b")]
        );
        // Scheduled, then unschedulable again (a new pod of the same name): reported again.
        assert!(newly_unschedulable(&[], &mut reported).is_empty());
        assert_eq!(newly_unschedulable(&[f("a")], &mut reported), [f("a")]);
        assert!(is_unschedulable_pod(&f("a")) && label(&f("a")) == "UNSCHEDULABLE");
    }

    #[test]
    fn a_stuck_job_is_replaced_only_when_the_placement_changed() {
        let config = |tolerations: Value| JobConfig {
            tolerations,
            ..JobConfig::default()
        };
        let job = |c: &JobConfig| -> Job {
            serde_json::from_value(crate::jobspec::job_object(c, "sc-system", "id", 2, "uid"))
                .unwrap()
        };
        let none = config(Value::Null);
        let critical = config(json!([{"key": "CriticalAddonsOnly", "operator": "Exists"}]));
        assert!(!placement_changed(&job(&none), &none));
        assert!(!placement_changed(&job(&none), &config(json!([]))));
        assert!(placement_changed(&job(&none), &critical));
        assert!(!placement_changed(&job(&critical), &critical));
        let pod = |owner: &str, reason: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                    "name": owner, "uid": "u", "controller": true}]},
                "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": reason}]}
            }))
            .unwrap()
        };
        assert_eq!(
            unschedulable_job_uids(&[pod("sc-job", "Unschedulable")]),
            ["u"]
        );
        assert!(unschedulable_job_uids(&[pod("sc-wait", "Unschedulable")]).is_empty());
        assert!(unschedulable_job_uids(&[pod("sc-job", "SchedulingGated")]).is_empty());
    }

    #[test]
    fn unschedulable_pods_name_the_tolerations_value() {
        let pod = |name: &str, status: &str, reason: &str, message: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "sc-system"},
                "status": {"conditions": [{"type": "PodScheduled", "status": status, "reason": reason, "message": message}]}
            }))
            .unwrap()
        };
        let pods = vec![
            pod(
                "sc-job-abc",
                "False",
                "Unschedulable",
                "0/3 nodes are available: 3 node(s) had untolerated taint {CriticalAddonsOnly: true}.",
            ),
            pod("sc-agent-1", "True", "", ""),
            pod("sc-wait-x", "False", "SchedulingGated", ""),
        ];
        let f = unschedulable(&pods);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].object, "Pod sc-system/sc-job-abc");
        assert!(f[0].problem.contains("CriticalAddonsOnly"));
        assert!(
            f[0].remedy.contains("tolerations")
                && f[0]
                    .remedy
                    .contains("tolerations[0].key=CriticalAddonsOnly")
        );
    }
}
