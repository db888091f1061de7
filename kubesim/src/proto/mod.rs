//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`): the `k8s\0` envelope with a
//! `runtime.Unknown` message, decoded to the JSON object the rest of the server handles.
//!
//! client-go's typed clients (inside kubectl and helm) send protobuf for the kinds they know;
//! the kinds those tools create that way are decoded here with the `k8s-pb` messages and
//! converted to the JSON the same client would have sent: Secret, ConfigMap, Namespace,
//! ServiceAccount, Service, DeleteOptions, TokenRequest, Job, CronJob, Deployment,
//! PodDisruptionBudget (`kubectl create pdb`) and the RBAC kinds. Fields the Go encoder
//! writes for non-pointer zero values (`""`, `0`, `false`) are dropped, as `omitempty` drops
//! them from JSON. Pod template fields this module does not convert are refused with
//! [`ProtoError::Unsupported`] rather than silently lost.
//!
//! An empty body is not an envelope: callers treat an empty DELETE body as "no options".

mod json;
mod pod;
#[cfg(test)]
mod tests;

use json::{J, int_or_string, label_selector, local_ref, object_meta};
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use pod::{job_spec, pod_template};
use prost::Message;
use serde_json::{Map, Value, json};

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The body does not start with `k8s\0` (an empty body included).
    #[error("the body is not a Kubernetes protobuf envelope")]
    NotEnvelope,
    /// A kind (or a field of it) this server does not decode from protobuf (answered with 415).
    #[error("decoding {0} from protobuf is not supported; send application/json")]
    Unsupported(String),
    /// The envelope or the message inside does not parse.
    #[error("malformed protobuf body: {0}")]
    Malformed(String),
}

/// Decode a protobuf body into a JSON object with `apiVersion` and `kind`.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtoError::NotEnvelope)?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(rest)
        .map_err(|e| ProtoError::Malformed(format!("runtime.Unknown envelope: {e}")))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if let Some(enc) = unknown
        .content_encoding
        .as_deref()
        .filter(|e| !e.is_empty())
    {
        return Err(ProtoError::Unsupported(format!(
            "{kind} with content encoding {enc}"
        )));
    }
    let raw = unknown.raw.unwrap_or_default();
    let body = decode_raw(&api_version, &kind, &raw)?;
    let mut out = Map::new();
    let api_version = if api_version.is_empty() && kind == "DeleteOptions" {
        "meta.k8s.io/v1".to_string()
    } else {
        api_version
    };
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    if let Value::Object(fields) = body {
        out.extend(fields);
    }
    Ok(Value::Object(out))
}

/// Wrap an encoded message in the `k8s\0` envelope, as client-go sends it.
pub fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some(api_version.to_string()),
            kind: Some(kind.to_string()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

fn parse<M: Message + Default>(kind: &str, raw: &[u8]) -> Result<M, ProtoError> {
    M::decode(raw).map_err(|e| ProtoError::Malformed(format!("{kind}: {e}")))
}

fn decode_raw(api_version: &str, kind: &str, raw: &[u8]) -> Result<Value, ProtoError> {
    use k8s_pb::api::{apps, authentication, batch, rbac};
    Ok(match (api_version, kind) {
        (_, "DeleteOptions") => delete_options(&parse(kind, raw)?),
        ("v1", "Secret") => secret(&parse(kind, raw)?),
        ("v1", "ConfigMap") => config_map(&parse(kind, raw)?),
        ("v1", "Namespace") => namespace(&parse(kind, raw)?),
        ("v1", "ServiceAccount") => service_account(&parse(kind, raw)?),
        ("v1", "Service") => service(&parse(kind, raw)?),
        ("policy/v1", "PodDisruptionBudget") => {
            let pdb: k8s_pb::api::policy::v1::PodDisruptionBudget = parse(kind, raw)?;
            J::default()
                .m("metadata", &pdb.metadata, object_meta)
                .m("spec", &pdb.spec, |s| {
                    J::default()
                        .m("minAvailable", &s.min_available, int_or_string)
                        .m("selector", &s.selector, label_selector)
                        .m("maxUnavailable", &s.max_unavailable, int_or_string)
                        .ps(
                            "unhealthyPodEvictionPolicy",
                            &s.unhealthy_pod_eviction_policy,
                        )
                        .done()
                })
                .done()
        }
        ("authentication.k8s.io/v1", "TokenRequest") => {
            token_request(&parse::<authentication::v1::TokenRequest>(kind, raw)?)
        }
        ("batch/v1", "Job") => {
            let job: batch::v1::Job = parse(kind, raw)?;
            J::default()
                .m("metadata", &job.metadata, object_meta)
                .r("spec", job.spec.as_ref().map(job_spec).transpose()?)
                .done()
        }
        ("batch/v1", "CronJob") => {
            let cj: batch::v1::CronJob = parse(kind, raw)?;
            let spec = match &cj.spec {
                None => None,
                Some(s) => Some(
                    J::default()
                        .s("schedule", &s.schedule)
                        .ps("timeZone", &s.time_zone)
                        .pi("startingDeadlineSeconds", s.starting_deadline_seconds)
                        .s("concurrencyPolicy", &s.concurrency_policy)
                        .pb("suspend", s.suspend)
                        .r(
                            "jobTemplate",
                            s.job_template
                                .as_ref()
                                .map(|t| -> Result<Value, ProtoError> {
                                    Ok(J::default()
                                        .m("metadata", &t.metadata, object_meta)
                                        .r("spec", t.spec.as_ref().map(job_spec).transpose()?)
                                        .done())
                                })
                                .transpose()?,
                        )
                        .pi(
                            "successfulJobsHistoryLimit",
                            s.successful_jobs_history_limit,
                        )
                        .pi("failedJobsHistoryLimit", s.failed_jobs_history_limit)
                        .done(),
                ),
            };
            J::default()
                .m("metadata", &cj.metadata, object_meta)
                .r("spec", spec)
                .done()
        }
        ("apps/v1", "Deployment") => {
            let d: apps::v1::Deployment = parse(kind, raw)?;
            let spec = match &d.spec {
                None => None,
                Some(s) => Some(
                    J::default()
                        .pi("replicas", s.replicas)
                        .m("selector", &s.selector, label_selector)
                        .r(
                            "template",
                            s.template.as_ref().map(pod_template).transpose()?,
                        )
                        .m("strategy", &s.strategy, |st| {
                            J::default()
                                .s("type", &st.r#type)
                                .m("rollingUpdate", &st.rolling_update, |ru| {
                                    J::default()
                                        .m("maxUnavailable", &ru.max_unavailable, int_or_string)
                                        .m("maxSurge", &ru.max_surge, int_or_string)
                                        .done()
                                })
                                .done()
                        })
                        .i("minReadySeconds", s.min_ready_seconds)
                        .pi("revisionHistoryLimit", s.revision_history_limit)
                        .b("paused", s.paused)
                        .pi("progressDeadlineSeconds", s.progress_deadline_seconds)
                        .done(),
                ),
            };
            J::default()
                .m("metadata", &d.metadata, object_meta)
                .r("spec", spec)
                .done()
        }
        ("rbac.authorization.k8s.io/v1", "Role") => {
            let r: rbac::v1::Role = parse(kind, raw)?;
            J::default()
                .m("metadata", &r.metadata, object_meta)
                .ms("rules", &r.rules, policy_rule)
                .done()
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            let r: rbac::v1::ClusterRole = parse(kind, raw)?;
            J::default()
                .m("metadata", &r.metadata, object_meta)
                .ms("rules", &r.rules, policy_rule)
                .m("aggregationRule", &r.aggregation_rule, |a| {
                    J::default()
                        .ms(
                            "clusterRoleSelectors",
                            &a.cluster_role_selectors,
                            label_selector,
                        )
                        .done()
                })
                .done()
        }
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            let b: rbac::v1::RoleBinding = parse(kind, raw)?;
            binding(&b.metadata, &b.subjects, &b.role_ref)
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            let b: rbac::v1::ClusterRoleBinding = parse(kind, raw)?;
            binding(&b.metadata, &b.subjects, &b.role_ref)
        }
        _ => {
            let what = if api_version.is_empty() {
                kind.to_string()
            } else {
                format!("{api_version} {kind}")
            };
            return Err(ProtoError::Unsupported(what));
        }
    })
}

fn delete_options(d: &meta::DeleteOptions) -> Value {
    J::default()
        .pi("gracePeriodSeconds", d.grace_period_seconds)
        .m("preconditions", &d.preconditions, |p| {
            J::default()
                .ps("uid", &p.uid)
                .ps("resourceVersion", &p.resource_version)
                .done()
        })
        .pb("orphanDependents", d.orphan_dependents)
        .ps("propagationPolicy", &d.propagation_policy)
        .list("dryRun", &d.dry_run)
        .pb(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            d.ignore_store_read_error_with_cluster_breaking_potential,
        )
        .done()
}

fn secret(s: &core::Secret) -> Value {
    J::default()
        .m("metadata", &s.metadata, object_meta)
        .pb("immutable", s.immutable)
        .bytes_map("data", &s.data)
        .map("stringData", &s.string_data)
        .s("type", &s.r#type)
        .done()
}

fn config_map(c: &core::ConfigMap) -> Value {
    J::default()
        .m("metadata", &c.metadata, object_meta)
        .pb("immutable", c.immutable)
        .map("data", &c.data)
        .bytes_map("binaryData", &c.binary_data)
        .done()
}

fn namespace(n: &core::Namespace) -> Value {
    J::default()
        .m("metadata", &n.metadata, object_meta)
        .m("spec", &n.spec, |s| {
            J::default().list("finalizers", &s.finalizers).done()
        })
        .m("status", &n.status, |s| {
            J::default().s("phase", &s.phase).done()
        })
        .done()
}

fn service_account(sa: &core::ServiceAccount) -> Value {
    J::default()
        .m("metadata", &sa.metadata, object_meta)
        .ms("secrets", &sa.secrets, object_reference)
        .ms("imagePullSecrets", &sa.image_pull_secrets, |r| {
            local_ref(&Some(r.clone()))
        })
        .pb(
            "automountServiceAccountToken",
            sa.automount_service_account_token,
        )
        .done()
}

fn object_reference(r: &core::ObjectReference) -> Value {
    J::default()
        .s("kind", &r.kind)
        .s("namespace", &r.namespace)
        .s("name", &r.name)
        .s("uid", &r.uid)
        .s("apiVersion", &r.api_version)
        .s("resourceVersion", &r.resource_version)
        .s("fieldPath", &r.field_path)
        .done()
}

fn service(svc: &core::Service) -> Value {
    J::default()
        .m("metadata", &svc.metadata, object_meta)
        .m("spec", &svc.spec, |s| {
            J::default()
                .ms("ports", &s.ports, |p| {
                    J::default()
                        .s("name", &p.name)
                        .s("protocol", &p.protocol)
                        .ps("appProtocol", &p.app_protocol)
                        .i("port", p.port)
                        .m("targetPort", &p.target_port, int_or_string)
                        .i("nodePort", p.node_port)
                        .done()
                })
                .map("selector", &s.selector)
                .s("clusterIP", &s.cluster_ip)
                .list("clusterIPs", &s.cluster_ips)
                .s("type", &s.r#type)
                .list("externalIPs", &s.external_ips)
                .s("sessionAffinity", &s.session_affinity)
                .s("loadBalancerIP", &s.load_balancer_ip)
                .list("loadBalancerSourceRanges", &s.load_balancer_source_ranges)
                .s("externalName", &s.external_name)
                .s("externalTrafficPolicy", &s.external_traffic_policy)
                .i("healthCheckNodePort", s.health_check_node_port)
                .b("publishNotReadyAddresses", s.publish_not_ready_addresses)
                .list("ipFamilies", &s.ip_families)
                .ps("ipFamilyPolicy", &s.ip_family_policy)
                .pb(
                    "allocateLoadBalancerNodePorts",
                    s.allocate_load_balancer_node_ports,
                )
                .ps("loadBalancerClass", &s.load_balancer_class)
                .ps("internalTrafficPolicy", &s.internal_traffic_policy)
                .ps("trafficDistribution", &s.traffic_distribution)
                .done()
        })
        .done()
}

fn token_request(t: &k8s_pb::api::authentication::v1::TokenRequest) -> Value {
    J::default()
        .m("metadata", &t.metadata, object_meta)
        .m("spec", &t.spec, |s| {
            J::default()
                .list("audiences", &s.audiences)
                .pi("expirationSeconds", s.expiration_seconds)
                .m("boundObjectRef", &s.bound_object_ref, |b| {
                    J::default()
                        .s("kind", &b.kind)
                        .s("apiVersion", &b.api_version)
                        .s("name", &b.name)
                        .s("uid", &b.u_id)
                        .done()
                })
                .done()
        })
        .done()
}

fn policy_rule(r: &k8s_pb::api::rbac::v1::PolicyRule) -> Value {
    J::default()
        .list("verbs", &r.verbs)
        .list("apiGroups", &r.api_groups)
        .list("resources", &r.resources)
        .list("resourceNames", &r.resource_names)
        .list("nonResourceURLs", &r.non_resource_ur_ls)
        .done()
}

fn binding(
    metadata: &Option<meta::ObjectMeta>,
    subjects: &[k8s_pb::api::rbac::v1::Subject],
    role_ref: &Option<k8s_pb::api::rbac::v1::RoleRef>,
) -> Value {
    J::default()
        .m("metadata", metadata, object_meta)
        .ms("subjects", subjects, |s| {
            J::default()
                .s("kind", &s.kind)
                .s("apiGroup", &s.api_group)
                .s("name", &s.name)
                .s("namespace", &s.namespace)
                .done()
        })
        .m("roleRef", role_ref, |r| {
            J::default()
                .s("apiGroup", &r.api_group)
                .s("kind", &r.kind)
                .s("name", &r.name)
                .done()
        })
        .done()
}
