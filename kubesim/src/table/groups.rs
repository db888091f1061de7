//! The API server's printers for the kinds of the policy, networking, admissionregistration,
//! storage, scheduling, autoscaling and discovery groups (`pkg/printers/internalversion`).

use serde_json::{Value, json};

use super::CREATED_DESC;
use super::printers::{Column, arr, format_selector, int, s, since};

const NAME: Column = ("Name", "string", "name", super::NAME_DESC, 0);
const AGE: Column = ("Age", "string", "", CREATED_DESC, 0);
const WEBHOOKS: Column = (
    "Webhooks",
    "integer",
    "",
    "Webhooks indicates the number of webhooks registered in this configuration",
    0,
);

/// A printer of these groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupPrinter {
    PodDisruptionBudget,
    NetworkPolicy,
    Ingress,
    IngressClass,
    Webhooks,
    CsiDriver,
    StorageClass,
    PriorityClass,
    HorizontalPodAutoscaler,
    EndpointSlice,
}

impl GroupPrinter {
    pub(super) fn for_resource(group: &str, resource: &str) -> Option<Self> {
        Some(match (group, resource) {
            ("policy", "poddisruptionbudgets") => Self::PodDisruptionBudget,
            ("networking.k8s.io", "networkpolicies") => Self::NetworkPolicy,
            ("networking.k8s.io", "ingresses") => Self::Ingress,
            ("networking.k8s.io", "ingressclasses") => Self::IngressClass,
            (
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations" | "validatingwebhookconfigurations",
            ) => Self::Webhooks,
            ("storage.k8s.io", "csidrivers") => Self::CsiDriver,
            ("storage.k8s.io", "storageclasses") => Self::StorageClass,
            ("scheduling.k8s.io", "priorityclasses") => Self::PriorityClass,
            ("autoscaling", "horizontalpodautoscalers") => Self::HorizontalPodAutoscaler,
            ("discovery.k8s.io", "endpointslices") => Self::EndpointSlice,
            _ => return None,
        })
    }

    pub(super) fn columns(self) -> Vec<Column> {
        match self {
            Self::PodDisruptionBudget => vec![
                NAME,
                (
                    "Min Available",
                    "string",
                    "",
                    "The minimum number of pods that must be available simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
                    0,
                ),
                (
                    "Max Unavailable",
                    "string",
                    "",
                    "The maximum number of pods that may be unavailable simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
                    0,
                ),
                (
                    "Allowed Disruptions",
                    "integer",
                    "",
                    "Number of pod disruptions that are currently allowed.",
                    0,
                ),
                AGE,
            ],
            Self::NetworkPolicy => vec![
                NAME,
                (
                    "Pod-Selector",
                    "string",
                    "",
                    "Select the pods to which this NetworkPolicy object applies.",
                    0,
                ),
                AGE,
            ],
            Self::Ingress => vec![
                NAME,
                (
                    "Class",
                    "string",
                    "",
                    "The name of the IngressClass resource that should be used for additional configuration",
                    0,
                ),
                (
                    "Hosts",
                    "string",
                    "",
                    "Hosts that incoming requests are matched against before the ingress rule",
                    0,
                ),
                (
                    "Address",
                    "string",
                    "",
                    "Address is a list containing ingress points for the load-balancer",
                    0,
                ),
                (
                    "Ports",
                    "string",
                    "",
                    "Ports of TLS configurations that open",
                    0,
                ),
                AGE,
            ],
            Self::IngressClass => vec![
                NAME,
                (
                    "Controller",
                    "string",
                    "",
                    "Controller that is responsible for handling this class",
                    0,
                ),
                (
                    "Parameters",
                    "string",
                    "",
                    "A reference to a resource with additional parameters",
                    0,
                ),
                AGE,
            ],
            Self::Webhooks => vec![NAME, WEBHOOKS, AGE],
            Self::CsiDriver => vec![
                NAME,
                (
                    "AttachRequired",
                    "boolean",
                    "",
                    "attachRequired indicates this CSI volume driver requires an attach operation.",
                    0,
                ),
                (
                    "PodInfoOnMount",
                    "boolean",
                    "",
                    "podInfoOnMount indicates this CSI volume driver requires additional pod information during mount operations.",
                    0,
                ),
                (
                    "StorageCapacity",
                    "boolean",
                    "",
                    "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report.",
                    0,
                ),
                (
                    "TokenRequests",
                    "string",
                    "",
                    "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication.",
                    0,
                ),
                (
                    "RequiresRepublish",
                    "boolean",
                    "",
                    "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume.",
                    0,
                ),
                (
                    "Modes",
                    "string",
                    "",
                    "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports.",
                    0,
                ),
                AGE,
            ],
            Self::StorageClass => vec![
                NAME,
                (
                    "Provisioner",
                    "string",
                    "",
                    "provisioner indicates the type of the provisioner.",
                    0,
                ),
                (
                    "ReclaimPolicy",
                    "string",
                    "",
                    "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.",
                    0,
                ),
                (
                    "VolumeBindingMode",
                    "string",
                    "",
                    "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used.",
                    0,
                ),
                (
                    "AllowVolumeExpansion",
                    "string",
                    "",
                    "allowVolumeExpansion shows whether the storage class allow volume expand.",
                    0,
                ),
                AGE,
            ],
            Self::PriorityClass => vec![
                NAME,
                (
                    "Value",
                    "integer",
                    "",
                    "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.",
                    0,
                ),
                (
                    "Global-Default",
                    "boolean",
                    "",
                    "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
                    0,
                ),
                AGE,
                (
                    "PreemptionPolicy",
                    "string",
                    "",
                    "preemptionPolicy is the Policy for preempting pods with lower priority.",
                    0,
                ),
            ],
            Self::HorizontalPodAutoscaler => vec![
                NAME,
                (
                    "Reference",
                    "string",
                    "",
                    "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource.",
                    0,
                ),
                (
                    "Targets",
                    "string",
                    "",
                    "metrics contains the specifications for which to use to calculate the desired replica count.",
                    0,
                ),
                (
                    "MinPods",
                    "string",
                    "",
                    "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
                    0,
                ),
                (
                    "MaxPods",
                    "string",
                    "",
                    "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
                    0,
                ),
                (
                    "Replicas",
                    "string",
                    "",
                    "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
                    0,
                ),
                AGE,
            ],
            Self::EndpointSlice => vec![
                NAME,
                (
                    "AddressType",
                    "string",
                    "",
                    "addressType specifies the type of address carried by this EndpointSlice.",
                    0,
                ),
                (
                    "Ports",
                    "string",
                    "",
                    "ports specifies the list of network ports exposed by each endpoint in this slice.",
                    0,
                ),
                (
                    "Endpoints",
                    "string",
                    "",
                    "endpoints is a list of unique endpoints in this slice.",
                    0,
                ),
                AGE,
            ],
        }
    }

    pub(super) fn cells(self, obj: &Value, now: i64) -> Vec<Value> {
        let name = json!(s(obj, "/metadata/name"));
        let age = json!(since(obj.pointer("/metadata/creationTimestamp"), now));
        match self {
            Self::PodDisruptionBudget => vec![
                name,
                json!(int_or_string(obj.pointer("/spec/minAvailable"))),
                json!(int_or_string(obj.pointer("/spec/maxUnavailable"))),
                json!(int(obj, "/status/disruptionsAllowed")),
                age,
            ],
            Self::NetworkPolicy => vec![
                name,
                json!(format_selector(obj.pointer("/spec/podSelector"))),
                age,
            ],
            Self::Ingress => {
                let class = match s(obj, "/spec/ingressClassName") {
                    "" => "<none>",
                    c => c,
                };
                let ports = if arr(obj, "/spec/tls").is_empty() {
                    "80"
                } else {
                    "80, 443"
                };
                vec![
                    name,
                    json!(class),
                    json!(ingress_hosts(arr(obj, "/spec/rules"))),
                    json!(load_balancer(arr(obj, "/status/loadBalancer/ingress"))),
                    json!(ports),
                    age,
                ]
            }
            Self::IngressClass => {
                let parameters = match obj.pointer("/spec/parameters").filter(|p| p.is_object()) {
                    None => "<none>".to_string(),
                    Some(p) => {
                        let mut kind = s(p, "/kind").to_string();
                        if let Some(g) = p.get("apiGroup").and_then(Value::as_str) {
                            kind = format!("{kind}.{g}");
                        }
                        format!("{kind}/{}", s(p, "/name"))
                    }
                };
                vec![
                    name,
                    json!(s(obj, "/spec/controller")),
                    json!(parameters),
                    age,
                ]
            }
            Self::Webhooks => vec![name, json!(arr(obj, "/webhooks").len()), age],
            Self::CsiDriver => {
                let flag = |ptr: &str, default: bool| {
                    obj.pointer(ptr).and_then(Value::as_bool).unwrap_or(default)
                };
                let modes: Vec<&str> = arr(obj, "/spec/volumeLifecycleModes")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                let audiences: Vec<&str> = arr(obj, "/spec/tokenRequests")
                    .iter()
                    .map(|t| s(t, "/audience"))
                    .collect();
                vec![
                    name,
                    json!(flag("/spec/attachRequired", true)),
                    json!(flag("/spec/podInfoOnMount", false)),
                    json!(flag("/spec/storageCapacity", false)),
                    json!(if audiences.is_empty() {
                        "<unset>".to_string()
                    } else {
                        audiences.join(",")
                    }),
                    json!(flag("/spec/requiresRepublish", false)),
                    json!(if modes.is_empty() {
                        "<none>".to_string()
                    } else {
                        modes.join(",")
                    }),
                    age,
                ]
            }
            Self::StorageClass => {
                let is_default = |key: &str| {
                    obj.pointer("/metadata/annotations")
                        .and_then(|a| a.get(key))
                        .and_then(Value::as_str)
                        == Some("true")
                };
                let mut shown = s(obj, "/metadata/name").to_string();
                if is_default("storageclass.kubernetes.io/is-default-class")
                    || is_default("storageclass.beta.kubernetes.io/is-default-class")
                {
                    shown.push_str(" (default)");
                }
                let or = |ptr: &str, default: &'static str| match s(obj, ptr) {
                    "" => default.to_string(),
                    v => v.to_string(),
                };
                vec![
                    json!(shown),
                    json!(s(obj, "/provisioner")),
                    json!(or("/reclaimPolicy", "Delete")),
                    json!(or("/volumeBindingMode", "Immediate")),
                    json!(
                        obj.pointer("/allowVolumeExpansion")
                            .and_then(Value::as_bool)
                            .unwrap_or(false)
                    ),
                    age,
                ]
            }
            Self::PriorityClass => vec![
                name,
                json!(int(obj, "/value")),
                json!(
                    obj.pointer("/globalDefault")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                ),
                age,
                json!(match s(obj, "/preemptionPolicy") {
                    "" => "<unset>",
                    p => p,
                }),
            ],
            Self::HorizontalPodAutoscaler => {
                let min = match obj.pointer("/spec/minReplicas").and_then(Value::as_i64) {
                    Some(m) => m.to_string(),
                    None => "<unset>".to_string(),
                };
                vec![
                    name,
                    json!(format!(
                        "{}/{}",
                        s(obj, "/spec/scaleTargetRef/kind"),
                        s(obj, "/spec/scaleTargetRef/name")
                    )),
                    json!(hpa_targets(
                        arr(obj, "/spec/metrics"),
                        arr(obj, "/status/currentMetrics")
                    )),
                    json!(min),
                    json!(int(obj, "/spec/maxReplicas")),
                    json!(int(obj, "/status/currentReplicas")),
                    age,
                ]
            }
            Self::EndpointSlice => {
                let ports: Vec<String> = arr(obj, "/ports")
                    .iter()
                    .map(
                        |p| match (p.get("port").and_then(Value::as_i64), s(p, "/name")) {
                            (Some(n), _) => n.to_string(),
                            (None, "") => "*".to_string(),
                            (None, n) => n.to_string(),
                        },
                    )
                    .collect();
                let addresses: Vec<String> = arr(obj, "/endpoints")
                    .iter()
                    .flat_map(|e| arr(e, "/addresses").iter())
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect();
                vec![
                    name,
                    json!(s(obj, "/addressType")),
                    json!(with_more(&ports)),
                    json!(with_more(&addresses)),
                    age,
                ]
            }
        }
    }
}

/// An `intstr.IntOrString` as printed, `N/A` when unset.
fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "N/A".to_string(),
    }
}

/// `listWithMoreString`: the first three, `+ N more...`, `<unset>` when empty.
fn with_more(items: &[String]) -> String {
    const MAX: usize = 3;
    if items.is_empty() {
        return "<unset>".to_string();
    }
    let shown = items[..items.len().min(MAX)].join(",");
    if items.len() > MAX {
        format!("{shown} + {} more...", items.len() - MAX)
    } else {
        shown
    }
}

/// `formatHosts`: up to three hosts, `*` when no rule names one.
fn ingress_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        let host = s(rule, "/host");
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let shown = list.join(",");
    if more {
        format!("{shown} + {} more...", rules.len() - MAX)
    } else {
        shown
    }
}

/// `ingressLoadBalancerStatusStringer` (not wide): IPs and hostnames, cut at 16 characters.
fn load_balancer(ingress: &[Value]) -> String {
    let list: Vec<&str> = ingress
        .iter()
        .flat_map(|i| [s(i, "/ip"), s(i, "/hostname")])
        .filter(|v| !v.is_empty())
        .collect();
    let r = list.join(",");
    if r.len() > 16 {
        format!("{}...", &r[..13])
    } else {
        r
    }
}

/// `formatHPAMetrics`: `cpu: <current>/<target>` per metric, at most three.
fn hpa_targets(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let mut list = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let quantity = |v: Option<&Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let unknown = || "<unknown>".to_string();
        let entry = match s(spec, "/type") {
            "Resource" | "ContainerResource" => {
                let key = if s(spec, "/type") == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let src = &spec[key];
                let cur = status.map(|st| &st[key]["current"]);
                let metric = s(src, "/name");
                if let Some(target) = quantity(src.pointer("/target/averageValue")) {
                    let current = cur
                        .and_then(|c| quantity(c.get("averageValue")))
                        .unwrap_or_else(unknown);
                    format!("{metric}: {current}/{target}")
                } else {
                    let current = cur
                        .and_then(|c| c.get("averageUtilization"))
                        .and_then(Value::as_i64)
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(unknown);
                    let target = src
                        .pointer("/target/averageUtilization")
                        .and_then(Value::as_i64)
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(|| "<auto>".to_string());
                    format!("{metric}: {current}/{target}")
                }
            }
            kind @ ("Pods" | "Object" | "External") => {
                let key = match kind {
                    "Pods" => "pods",
                    "Object" => "object",
                    _ => "external",
                };
                let target = &spec[key]["target"];
                let target = quantity(target.get("averageValue"))
                    .or_else(|| quantity(target.get("value")))
                    .unwrap_or_else(unknown);
                let current = status
                    .map(|st| &st[key]["current"])
                    .and_then(|c| {
                        quantity(c.get("averageValue")).or_else(|| quantity(c.get("value")))
                    })
                    .unwrap_or_else(unknown);
                format!("{current}/{target}")
            }
            _ => "<unknown type>".to_string(),
        };
        list.push(entry);
    }
    if list.len() > 3 {
        let more = list.len() - 3;
        list.truncate(3);
        format!("{} + {more} more...", list.join(", "))
    } else {
        list.join(", ")
    }
}
