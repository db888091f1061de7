//! The API server's printers (`pkg/printers/internalversion`) for the built-in kinds.

use serde_json::{Map, Value, json};

use super::{CREATED_DESC, NAME_DESC, human_duration};
use crate::selector::LabelSelector;

const SELECTOR_DESC: &str = "A label query over pods that should match the pod count.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";
const CONTAINERS_DESC: &str = "Names of each container in the template.";
/// Unix seconds of an RFC 3339 timestamp.
fn parse_time(v: Option<&Value>) -> Option<i64> {
    let s = v?.as_str()?;
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// `translateTimestampSince`: `<unknown>` for a missing time.
pub(super) fn since(v: Option<&Value>, now: i64) -> String {
    match parse_time(v) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

pub(super) fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn int(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

pub(super) fn arr<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    obj.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn obj_len(obj: &Value, ptr: &str) -> usize {
    obj.pointer(ptr)
        .and_then(Value::as_object)
        .map_or(0, Map::len)
}

/// `layoutContainerCells`: names and images joined with commas.
fn containers(obj: &Value, ptr: &str) -> (Value, Value) {
    let cs = arr(obj, ptr);
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

/// `metav1.FormatLabelSelector`.
pub(super) fn format_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|v| !v.is_null()) else {
        return "<none>".to_string();
    };
    match LabelSelector::from_json(sel) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s.to_string(),
        Err(_) => "<error>".to_string(),
    }
}

/// `labels.FormatLabels`: `k=v,...` sorted by key, `<none>` when empty.
fn format_labels(map: Option<&Value>) -> String {
    let Some(map) = map.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

fn condition_true(obj: &Value, ptr: &str, ty: &str) -> bool {
    arr(obj, ptr)
        .iter()
        .find(|c| s(c, "/type") == ty)
        .is_some_and(|c| s(c, "/status") == "True")
}

pub(super) type Column = (&'static str, &'static str, &'static str, &'static str, u32);

const NAME: Column = ("Name", "string", "name", NAME_DESC, 0);
const AGE: Column = ("Age", "string", "", CREATED_DESC, 0);
const CONTAINERS: Column = ("Containers", "string", "", CONTAINERS_DESC, 1);
const IMAGES: Column = ("Images", "string", "", IMAGES_DESC, 1);
const SELECTOR: Column = ("Selector", "string", "", SELECTOR_DESC, 1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Printer {
    Pod,
    Job,
    CronJob,
    Deployment,
    ReplicaSet,
    ReplicationController,
    StatefulSet,
    DaemonSet,
    ConfigMap,
    Secret,
    ServiceAccount,
    Service,
    Namespace,
    Event,
    Lease,
    Binding,
    ApiService,
    ComponentStatus,
    Default,
}

impl Printer {
    pub(super) fn for_resource(group: &str, resource: &str) -> Self {
        match (group, resource) {
            ("", "pods") => Self::Pod,
            ("batch", "jobs") => Self::Job,
            ("batch", "cronjobs") => Self::CronJob,
            ("apps", "deployments") => Self::Deployment,
            ("apps", "replicasets") => Self::ReplicaSet,
            ("", "replicationcontrollers") => Self::ReplicationController,
            ("apiregistration.k8s.io", "apiservices") => Self::ApiService,
            ("", "componentstatuses") => Self::ComponentStatus,
            ("apps", "statefulsets") => Self::StatefulSet,
            ("apps", "daemonsets") => Self::DaemonSet,
            ("", "configmaps") => Self::ConfigMap,
            ("", "secrets") => Self::Secret,
            ("", "serviceaccounts") => Self::ServiceAccount,
            ("", "services") => Self::Service,
            ("", "namespaces") => Self::Namespace,
            ("", "events") | ("events.k8s.io", "events") => Self::Event,
            ("coordination.k8s.io", "leases") => Self::Lease,
            ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => Self::Binding,
            _ => Self::Default,
        }
    }

    pub(super) fn columns(self) -> Vec<Column> {
        match self {
            Self::Pod => vec![
                NAME,
                (
                    "Ready",
                    "string",
                    "",
                    "The aggregate readiness state of this pod for accepting traffic.",
                    0,
                ),
                (
                    "Status",
                    "string",
                    "",
                    "The aggregate status of the containers in this pod.",
                    0,
                ),
                (
                    "Restarts",
                    "string",
                    "",
                    "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                    0,
                ),
                AGE,
                (
                    "IP",
                    "string",
                    "",
                    "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                    1,
                ),
                (
                    "Node",
                    "string",
                    "",
                    "NodeName indicates in which node this pod is scheduled.",
                    1,
                ),
                (
                    "Nominated Node",
                    "string",
                    "",
                    "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
                    1,
                ),
                (
                    "Readiness Gates",
                    "string",
                    "",
                    "If specified, all readiness gates will be evaluated for pod readiness.",
                    1,
                ),
            ],
            Self::Job => vec![
                NAME,
                ("Status", "string", "", "Status of the job.", 0),
                (
                    "Completions",
                    "string",
                    "",
                    "The number of pods which reached phase Succeeded.",
                    0,
                ),
                (
                    "Duration",
                    "string",
                    "",
                    "Time required to complete the job.",
                    0,
                ),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
            ],
            Self::CronJob => vec![
                NAME,
                (
                    "Schedule",
                    "string",
                    "",
                    "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
                    0,
                ),
                (
                    "Timezone",
                    "string",
                    "",
                    "The time zone name for the given schedule.",
                    0,
                ),
                (
                    "Suspend",
                    "boolean",
                    "",
                    "This flag tells the controller to suspend subsequent executions.",
                    0,
                ),
                (
                    "Active",
                    "integer",
                    "",
                    "A list of pointers to currently running jobs.",
                    0,
                ),
                (
                    "Last Schedule",
                    "string",
                    "",
                    "Information when was the last time the job was successfully scheduled.",
                    0,
                ),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
            ],
            Self::Deployment => vec![
                NAME,
                (
                    "Ready",
                    "string",
                    "",
                    "Number of the pod with ready state",
                    0,
                ),
                (
                    "Up-to-date",
                    "string",
                    "",
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                    0,
                ),
                (
                    "Available",
                    "string",
                    "",
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                    0,
                ),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
            ],
            Self::ReplicaSet | Self::ReplicationController => vec![
                NAME,
                (
                    "Desired",
                    "integer",
                    "",
                    "Replicas is the number of desired replicas.",
                    0,
                ),
                (
                    "Current",
                    "integer",
                    "",
                    "Replicas is the most recently observed number of replicas.",
                    0,
                ),
                (
                    "Ready",
                    "integer",
                    "",
                    "The number of ready replicas for this replica set.",
                    0,
                ),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
            ],
            Self::StatefulSet => vec![
                NAME,
                (
                    "Ready",
                    "string",
                    "",
                    "Number of the pod with ready state",
                    0,
                ),
                AGE,
                CONTAINERS,
                IMAGES,
            ],
            Self::DaemonSet => vec![
                NAME,
                (
                    "Desired",
                    "integer",
                    "",
                    "The total number of nodes that should be running the daemon pod.",
                    0,
                ),
                (
                    "Current",
                    "integer",
                    "",
                    "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
                    0,
                ),
                (
                    "Ready",
                    "integer",
                    "",
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
                    0,
                ),
                (
                    "Up-to-date",
                    "integer",
                    "",
                    "The total number of nodes that are running updated daemon pod",
                    0,
                ),
                (
                    "Available",
                    "integer",
                    "",
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
                    0,
                ),
                (
                    "Node Selector",
                    "string",
                    "",
                    "NodeSelector is a selector which must be true for the pod to fit on a node.",
                    0,
                ),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
            ],
            Self::ConfigMap => vec![
                NAME,
                (
                    "Data",
                    "string",
                    "",
                    "Data contains the configuration data.",
                    0,
                ),
                AGE,
            ],
            Self::Secret => vec![
                NAME,
                (
                    "Type",
                    "string",
                    "",
                    "Used to facilitate programmatic handling of secret data.",
                    0,
                ),
                ("Data", "string", "", "Data contains the secret data.", 0),
                AGE,
            ],
            Self::ServiceAccount => vec![
                NAME,
                (
                    "Secrets",
                    "string",
                    "",
                    "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
                    0,
                ),
                AGE,
            ],
            Self::Service => vec![
                NAME,
                (
                    "Type",
                    "string",
                    "",
                    "type determines how the Service is exposed.",
                    0,
                ),
                (
                    "Cluster-IP",
                    "string",
                    "",
                    "clusterIP is the IP address of the service and is usually assigned randomly.",
                    0,
                ),
                (
                    "External-IP",
                    "string",
                    "",
                    "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
                    0,
                ),
                (
                    "Port(s)",
                    "string",
                    "",
                    "The list of ports that are exposed by this service.",
                    0,
                ),
                AGE,
                (
                    "Selector",
                    "string",
                    "",
                    "Route service traffic to pods with label keys and values matching this selector.",
                    1,
                ),
            ],
            Self::Namespace => vec![
                NAME,
                ("Status", "string", "", "The status of the namespace", 0),
                AGE,
            ],
            Self::Event => vec![
                (
                    "Last Seen",
                    "string",
                    "",
                    "The time at which the most recent occurrence of this event was recorded.",
                    0,
                ),
                (
                    "Type",
                    "string",
                    "",
                    "Type of this event (Normal, Warning), new types could be added in the future",
                    0,
                ),
                (
                    "Reason",
                    "string",
                    "",
                    "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
                    0,
                ),
                (
                    "Object",
                    "string",
                    "",
                    "The object that this event is about.",
                    0,
                ),
                (
                    "Subobject",
                    "string",
                    "",
                    "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
                    1,
                ),
                (
                    "Source",
                    "string",
                    "",
                    "The component reporting this event. Should be a short machine understandable string.",
                    1,
                ),
                (
                    "Message",
                    "string",
                    "",
                    "A human-readable description of the status of this operation.",
                    0,
                ),
                (
                    "First Seen",
                    "string",
                    "",
                    "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
                    1,
                ),
                (
                    "Count",
                    "string",
                    "",
                    "The number of times this event has occurred.",
                    1,
                ),
                ("Name", "string", "name", NAME_DESC, 1),
            ],
            Self::Lease => vec![
                NAME,
                (
                    "Holder",
                    "string",
                    "",
                    "holderIdentity contains the identity of the holder of a current lease.",
                    0,
                ),
                AGE,
            ],
            Self::Binding => vec![
                NAME,
                (
                    "Role",
                    "string",
                    "",
                    "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
                    0,
                ),
                AGE,
                ("Users", "string", "", "Users in the roleBinding", 1),
                ("Groups", "string", "", "Groups in the roleBinding", 1),
                (
                    "ServiceAccounts",
                    "string",
                    "",
                    "ServiceAccounts in the roleBinding",
                    1,
                ),
            ],
            Self::ApiService => vec![
                NAME,
                (
                    "Service",
                    "string",
                    "",
                    "The reference to the service that hosts this API endpoint.",
                    0,
                ),
                (
                    "Available",
                    "string",
                    "",
                    "Whether this service is available.",
                    0,
                ),
                AGE,
            ],
            Self::ComponentStatus => vec![
                NAME,
                (
                    "Status",
                    "string",
                    "",
                    "Status of the component conditions",
                    0,
                ),
                (
                    "Message",
                    "string",
                    "",
                    "Message of the component conditions",
                    0,
                ),
                (
                    "Error",
                    "string",
                    "",
                    "Error of the component conditions",
                    0,
                ),
            ],
            Self::Default => vec![NAME, ("Created At", "date", "", CREATED_DESC, 0)],
        }
    }

    pub(super) fn row_conditions(self, obj: &Value) -> Option<Value> {
        if self != Self::Pod {
            return None;
        }
        let (reason, message) = match s(obj, "/status/phase") {
            "Succeeded" => ("Succeeded", "The pod has completed successfully."),
            "Failed" => ("Failed", "The pod failed."),
            _ => return None,
        };
        Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
    }

    pub(super) fn cells(self, obj: &Value, now: i64) -> Vec<Value> {
        let name = json!(s(obj, "/metadata/name"));
        let age = json!(since(obj.pointer("/metadata/creationTimestamp"), now));
        match self {
            Self::Pod => pod_cells(obj, now),
            Self::Job => {
                let succeeded = int(obj, "/status/succeeded");
                let completions = match obj.pointer("/spec/completions").and_then(Value::as_i64) {
                    Some(c) => format!("{succeeded}/{c}"),
                    None => {
                        let parallelism = int(obj, "/spec/parallelism");
                        if parallelism > 1 {
                            format!("{succeeded}/1 of {parallelism}")
                        } else {
                            format!("{succeeded}/1")
                        }
                    }
                };
                let start = parse_time(obj.pointer("/status/startTime"));
                let end = parse_time(obj.pointer("/status/completionTime"));
                let duration = match (start, end) {
                    (None, _) => String::new(),
                    (Some(st), None) => human_duration(now - st),
                    (Some(st), Some(en)) => human_duration(en - st),
                };
                let cond = |t| condition_true(obj, "/status/conditions", t);
                let status = if cond("Complete") {
                    "Complete"
                } else if cond("Failed") {
                    "Failed"
                } else if obj.pointer("/metadata/deletionTimestamp").is_some() {
                    "Terminating"
                } else if cond("Suspended") {
                    "Suspended"
                } else if cond("FailureTarget") {
                    "FailureTarget"
                } else if cond("SuccessCriteriaMet") {
                    "SuccessCriteriaMet"
                } else {
                    "Running"
                };
                let (names, images) = containers(obj, "/spec/template/spec/containers");
                vec![
                    name,
                    json!(status),
                    json!(completions),
                    json!(duration),
                    age,
                    names,
                    images,
                    json!(format_selector(obj.pointer("/spec/selector"))),
                ]
            }
            Self::CronJob => {
                let last = match obj.pointer("/status/lastScheduleTime") {
                    Some(t) if !t.is_null() => since(Some(t), now),
                    _ => "<none>".to_string(),
                };
                let tz = obj
                    .pointer("/spec/timeZone")
                    .and_then(Value::as_str)
                    .unwrap_or("<none>");
                // As the API server's printBoolPtr: a string, `<unset>` when absent.
                let suspend = match obj.pointer("/spec/suspend").and_then(Value::as_bool) {
                    Some(true) => "True",
                    Some(false) => "False",
                    None => "<unset>",
                };
                let (names, images) =
                    containers(obj, "/spec/jobTemplate/spec/template/spec/containers");
                vec![
                    name,
                    json!(s(obj, "/spec/schedule")),
                    json!(tz),
                    json!(suspend),
                    json!(arr(obj, "/status/active").len()),
                    json!(last),
                    age,
                    names,
                    images,
                    json!(format_selector(
                        obj.pointer("/spec/jobTemplate/spec/selector")
                    )),
                ]
            }
            Self::Deployment => {
                let (names, images) = containers(obj, "/spec/template/spec/containers");
                vec![
                    name,
                    json!(format!(
                        "{}/{}",
                        int(obj, "/status/readyReplicas"),
                        int(obj, "/spec/replicas")
                    )),
                    json!(int(obj, "/status/updatedReplicas")),
                    json!(int(obj, "/status/availableReplicas")),
                    age,
                    names,
                    images,
                    json!(format_selector(obj.pointer("/spec/selector"))),
                ]
            }
            Self::ReplicaSet => {
                let (names, images) = containers(obj, "/spec/template/spec/containers");
                vec![
                    name,
                    json!(int(obj, "/spec/replicas")),
                    json!(int(obj, "/status/replicas")),
                    json!(int(obj, "/status/readyReplicas")),
                    age,
                    names,
                    images,
                    json!(format_selector(obj.pointer("/spec/selector"))),
                ]
            }
            Self::ReplicationController => {
                let (names, images) = containers(obj, "/spec/template/spec/containers");
                vec![
                    name,
                    json!(int(obj, "/spec/replicas")),
                    json!(int(obj, "/status/replicas")),
                    json!(int(obj, "/status/readyReplicas")),
                    age,
                    names,
                    images,
                    json!(format_labels(obj.pointer("/spec/selector"))),
                ]
            }
            Self::ApiService => {
                let service = match obj.pointer("/spec/service").filter(|v| !v.is_null()) {
                    Some(svc) => format!("{}/{}", s(svc, "/namespace"), s(svc, "/name")),
                    None => "Local".to_string(),
                };
                let available = arr(obj, "/status/conditions")
                    .iter()
                    .find(|c| c["type"] == "Available")
                    .map(|c| match (s(c, "/status"), s(c, "/reason")) {
                        ("True", _) => "True".to_string(),
                        (st, "") => st.to_string(),
                        (st, reason) => format!("{st} ({reason})"),
                    })
                    .unwrap_or_else(|| "Unknown".to_string());
                vec![name, json!(service), json!(available), age]
            }
            Self::ComponentStatus => {
                let conditions = arr(obj, "/conditions");
                let healthy = conditions.iter().filter(|c| c["type"] == "Healthy");
                let (mut status, mut message, mut error) = (Vec::new(), Vec::new(), Vec::new());
                for c in healthy {
                    status.push(if c["status"] == "True" {
                        "Healthy"
                    } else {
                        "Unhealthy"
                    });
                    if !s(c, "/message").is_empty() {
                        message.push(s(c, "/message"));
                    }
                    if !s(c, "/error").is_empty() {
                        error.push(s(c, "/error"));
                    }
                }
                let status = if status.is_empty() {
                    "Unknown".to_string()
                } else {
                    status.join(",")
                };
                vec![
                    name,
                    json!(status),
                    json!(message.join(",")),
                    json!(error.join(",")),
                ]
            }
            Self::StatefulSet => {
                let (names, images) = containers(obj, "/spec/template/spec/containers");
                vec![
                    name,
                    json!(format!(
                        "{}/{}",
                        int(obj, "/status/readyReplicas"),
                        int(obj, "/spec/replicas")
                    )),
                    age,
                    names,
                    images,
                ]
            }
            Self::DaemonSet => {
                let (names, images) = containers(obj, "/spec/template/spec/containers");
                vec![
                    name,
                    json!(int(obj, "/status/desiredNumberScheduled")),
                    json!(int(obj, "/status/currentNumberScheduled")),
                    json!(int(obj, "/status/numberReady")),
                    json!(int(obj, "/status/updatedNumberScheduled")),
                    json!(int(obj, "/status/numberAvailable")),
                    json!(format_labels(
                        obj.pointer("/spec/template/spec/nodeSelector")
                    )),
                    age,
                    names,
                    images,
                    json!(format_selector(obj.pointer("/spec/selector"))),
                ]
            }
            Self::ConfigMap => vec![
                name,
                json!(obj_len(obj, "/data") + obj_len(obj, "/binaryData")),
                age,
            ],
            Self::Secret => {
                // The API server counts `data` after `stringData` has been merged into it.
                let mut keys: Vec<&String> = Vec::new();
                for ptr in ["/data", "/stringData"] {
                    if let Some(m) = obj.pointer(ptr).and_then(Value::as_object) {
                        keys.extend(m.keys());
                    }
                }
                keys.sort();
                keys.dedup();
                vec![name, json!(s(obj, "/type")), json!(keys.len()), age]
            }
            Self::ServiceAccount => vec![name, json!(arr(obj, "/secrets").len()), age],
            Self::Service => service_cells(obj, name, age),
            Self::Namespace => vec![name, json!(s(obj, "/status/phase")), age],
            Self::Event => event_cells(obj, now),
            Self::Lease => vec![name, json!(s(obj, "/spec/holderIdentity")), age],
            Self::Binding => {
                let mut users = Vec::new();
                let mut groups = Vec::new();
                let mut sas = Vec::new();
                for subject in arr(obj, "/subjects") {
                    let n = s(subject, "/name");
                    match s(subject, "/kind") {
                        "User" => users.push(n.to_string()),
                        "Group" => groups.push(n.to_string()),
                        "ServiceAccount" => {
                            sas.push(format!("{}/{n}", s(subject, "/namespace")));
                        }
                        _ => {}
                    }
                }
                vec![
                    name,
                    json!(format!(
                        "{}/{}",
                        s(obj, "/roleRef/kind"),
                        s(obj, "/roleRef/name")
                    )),
                    age,
                    json!(users.join(", ")),
                    json!(groups.join(", ")),
                    json!(sas.join(", ")),
                ]
            }
            Self::Default => {
                let created = parse_time(obj.pointer("/metadata/creationTimestamp"))
                    .and_then(|t| jiff::Timestamp::from_second(t).ok())
                    .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
                vec![name, json!(created)]
            }
        }
    }
}

/// `printPod`: READY, STATUS (with the kubelet's reasons), RESTARTS, and the wide columns.
fn pod_cells(pod: &Value, now: i64) -> Vec<Value> {
    let phase = s(pod, "/status/phase");
    let mut reason = match s(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if arr(pod, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }
    let init_specs = arr(pod, "/spec/initContainers");
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|c| s(c, "/name") == name && s(c, "/restartPolicy") == "Always")
    };
    let total = arr(pod, "/spec/containers").len()
        + init_specs
            .iter()
            .filter(|c| s(c, "/restartPolicy") == "Always")
            .count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<i64> = None;
    let mut last_sidecar_restart: Option<i64> = None;
    let finished = |st: &Value| parse_time(st.pointer("/lastState/terminated/finishedAt"));
    let mut initializing = false;
    for (i, st) in arr(pod, "/status/initContainerStatuses").iter().enumerate() {
        restarts += int(st, "/restartCount");
        if let Some(t) = finished(st) {
            last_restart = last_restart.max(Some(t));
        }
        let name = s(st, "/name");
        if restartable(name) {
            sidecar_restarts += int(st, "/restartCount");
            if let Some(t) = finished(st) {
                last_sidecar_restart = last_sidecar_restart.max(Some(t));
            }
        }
        let terminated = st.pointer("/state/terminated").filter(|v| !v.is_null());
        let waiting_reason = s(st, "/state/waiting/reason");
        if terminated.is_some_and(|t| int(t, "/exitCode") == 0) {
            continue;
        }
        if restartable(name) && st.get("started").and_then(Value::as_bool) == Some(true) {
            if st.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = match s(t, "/reason") {
                "" if int(t, "/signal") != 0 => format!("Init:Signal:{}", int(t, "/signal")),
                "" => format!("Init:ExitCode:{}", int(t, "/exitCode")),
                r => format!("Init:{r}"),
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }
    if !initializing || condition_true(pod, "/status/conditions", "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for st in arr(pod, "/status/containerStatuses").iter().rev() {
            restarts += int(st, "/restartCount");
            if let Some(t) = finished(st) {
                last_restart = last_restart.max(Some(t));
            }
            let waiting = s(st, "/state/waiting/reason");
            let terminated = st.pointer("/state/terminated").filter(|v| !v.is_null());
            let running = st.pointer("/state/running").is_some_and(|v| !v.is_null());
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                reason = match s(t, "/reason") {
                    "" if int(t, "/signal") != 0 => format!("Signal:{}", int(t, "/signal")),
                    "" => format!("ExitCode:{}", int(t, "/exitCode")),
                    r => r.to_string(),
                };
            } else if st.get("ready").and_then(Value::as_bool) == Some(true) && running {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "/status/conditions", "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }
    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if deleting && s(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }
    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };
    let none_if_empty = |v: &str| {
        if v.is_empty() {
            "<none>".to_string()
        } else {
            v.to_string()
        }
    };
    let ip = pod
        .pointer("/status/podIPs/0/ip")
        .and_then(Value::as_str)
        .unwrap_or("");
    let gates = arr(pod, "/spec/readinessGates");
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates
            .iter()
            .filter(|g| {
                arr(pod, "/status/conditions")
                    .iter()
                    .find(|c| s(c, "/type") == s(g, "/conditionType"))
                    .is_some_and(|c| s(c, "/status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        json!(s(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(since(pod.pointer("/metadata/creationTimestamp"), now)),
        json!(none_if_empty(ip)),
        json!(none_if_empty(s(pod, "/spec/nodeName"))),
        json!(none_if_empty(s(pod, "/status/nominatedNodeName"))),
        json!(gates_cell),
    ]
}

/// `printService`.
fn service_cells(svc: &Value, name: Value, age: Value) -> Vec<Value> {
    let ty = match s(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = arr(svc, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| "<none>".to_string());
    let external: Vec<&str> = arr(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external_ip = match ty {
        "ClusterIP" | "NodePort" if !external.is_empty() => external.join(","),
        "ClusterIP" | "NodePort" => "<none>".to_string(),
        "LoadBalancer" => {
            let mut lb: Vec<String> = arr(svc, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| match (s(i, "/ip"), s(i, "/hostname")) {
                    ("", "") => None,
                    ("", h) => Some(h.to_string()),
                    (ip, _) => Some(ip.to_string()),
                })
                .collect();
            lb.sort();
            lb.dedup();
            lb.extend(external.iter().map(|e| e.to_string()));
            if lb.is_empty() {
                "<pending>".to_string()
            } else {
                lb.join(",")
            }
        }
        "ExternalName" => s(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = match s(p, "/protocol") {
                "" => "TCP",
                pr => pr,
            };
            let node_port = int(p, "/nodePort");
            if node_port > 0 {
                format!("{}:{node_port}/{proto}", int(p, "/port"))
            } else {
                format!("{}/{proto}", int(p, "/port"))
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        name,
        json!(ty),
        json!(cluster_ip),
        json!(external_ip),
        json!(ports),
        age,
        json!(format_labels(svc.pointer("/spec/selector"))),
    ]
}

/// `printEvent`, for core/v1 and events.k8s.io/v1 events.
fn event_cells(ev: &Value, now: i64) -> Vec<Value> {
    let pick = |a: &str, b: &str| {
        ev.pointer(a)
            .filter(|v| !v.is_null())
            .or_else(|| ev.pointer(b).filter(|v| !v.is_null()))
    };
    let first = match pick("/firstTimestamp", "/deprecatedFirstTimestamp") {
        Some(t) => since(Some(t), now),
        None => since(ev.pointer("/eventTime"), now),
    };
    let mut last = match pick("/lastTimestamp", "/deprecatedLastTimestamp") {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = pick("/count", "/deprecatedCount")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(series) = ev.get("series").filter(|v| !v.is_null()) {
        last = since(series.get("lastObservedTime"), now);
        count = int(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let involved = pick("/involvedObject", "/regarding")
        .cloned()
        .unwrap_or(Value::Null);
    let kind = s(&involved, "/kind").to_lowercase();
    let target = match s(&involved, "/name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = match s(ev, "/source/component") {
        "" => match s(ev, "/deprecatedSource/component") {
            "" => s(ev, "/reportingController"),
            c => c,
        },
        c => c,
    };
    let host = match s(ev, "/source/host") {
        "" => match s(ev, "/deprecatedSource/host") {
            "" => s(ev, "/reportingInstance"),
            h => h,
        },
        h => h,
    };
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    let message = match s(ev, "/message") {
        "" => s(ev, "/note"),
        m => m,
    };
    vec![
        json!(last),
        json!(s(ev, "/type")),
        json!(s(ev, "/reason")),
        json!(target),
        json!(s(&involved, "/fieldPath")),
        json!(source),
        json!(message.trim()),
        json!(first),
        json!(count),
        json!(s(ev, "/metadata/name")),
    ]
}
