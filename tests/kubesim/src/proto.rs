//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`): the `k8s\0` envelope with a
//! `runtime.Unknown` message, decoded to the JSON object the rest of the server handles.
//!
//! client-go's typed clients (inside kubectl and helm) send protobuf for the kinds they know;
//! the kinds those tools create that way are decoded here with the `k8s-pb` messages and
//! converted to the JSON the same client would have sent: Secret, ConfigMap, Namespace,
//! ServiceAccount, Service, DeleteOptions, TokenRequest, Job, CronJob, Deployment and the RBAC
//! kinds. Fields the Go encoder writes for non-pointer zero values (`""`, `0`, `false`) are
//! dropped, as `omitempty` drops them from JSON. Pod template fields this module does not
//! convert are refused with [`ProtoError::Unsupported`] rather than silently lost.
//!
//! An empty body is not an envelope: callers treat an empty DELETE body as "no options".

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Map, Value, json};

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("the body is not a Kubernetes protobuf envelope")]
    NotEnvelope,
    /// A kind this server does not decode from protobuf (answered with 415).
    #[error("protobuf bodies of kind {0} are not supported; send application/json")]
    Unsupported(String),
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

/// A JSON object under construction, with the `omitempty` rules of the Go types.
#[derive(Default)]
struct J(Map<String, Value>);

impl J {
    fn put(mut self, k: &str, v: Value) -> Self {
        self.0.insert(k.to_string(), v);
        self
    }
    /// A non-pointer string: `""` is omitted.
    fn s(self, k: &str, v: &Option<String>) -> Self {
        match v.as_deref() {
            Some(v) if !v.is_empty() => self.put(k, json!(v)),
            _ => self,
        }
    }
    /// A pointer string: kept when set, even to `""`.
    fn ps(self, k: &str, v: &Option<String>) -> Self {
        match v {
            Some(v) => self.put(k, json!(v)),
            None => self,
        }
    }
    /// A non-pointer integer: `0` is omitted.
    fn i<T: Into<i64>>(self, k: &str, v: Option<T>) -> Self {
        match v.map(Into::into) {
            Some(n) if n != 0 => self.put(k, json!(n)),
            _ => self,
        }
    }
    /// A pointer integer: kept when set, even to `0`.
    fn pi<T: Into<i64>>(self, k: &str, v: Option<T>) -> Self {
        match v {
            Some(n) => self.put(k, json!(n.into())),
            None => self,
        }
    }
    /// A non-pointer bool: `false` is omitted.
    fn b(self, k: &str, v: Option<bool>) -> Self {
        if v == Some(true) {
            self.put(k, json!(true))
        } else {
            self
        }
    }
    /// A pointer bool: kept when set.
    fn pb(self, k: &str, v: Option<bool>) -> Self {
        match v {
            Some(b) => self.put(k, json!(b)),
            None => self,
        }
    }
    fn list(self, k: &str, v: &[String]) -> Self {
        if v.is_empty() {
            self
        } else {
            self.put(k, json!(v))
        }
    }
    fn map(self, k: &str, v: &BTreeMap<String, String>) -> Self {
        if v.is_empty() {
            self
        } else {
            self.put(k, json!(v))
        }
    }
    fn bytes_map(self, k: &str, v: &BTreeMap<String, Vec<u8>>) -> Self {
        if v.is_empty() {
            return self;
        }
        let m: Map<String, Value> = v
            .iter()
            .map(|(k, b)| {
                (
                    k.clone(),
                    json!(base64::engine::general_purpose::STANDARD.encode(b)),
                )
            })
            .collect();
        self.put(k, Value::Object(m))
    }
    fn m<T>(self, k: &str, v: &Option<T>, f: impl Fn(&T) -> Value) -> Self {
        match v {
            Some(v) => self.put(k, f(v)),
            None => self,
        }
    }
    fn ms<T>(self, k: &str, v: &[T], f: impl Fn(&T) -> Value) -> Self {
        if v.is_empty() {
            self
        } else {
            self.put(k, Value::Array(v.iter().map(f).collect()))
        }
    }
    /// An already converted value, omitted when `None`.
    fn r(self, k: &str, v: Option<Value>) -> Self {
        match v {
            Some(v) => self.put(k, v),
            None => self,
        }
    }
    /// Merge the fields of an inlined (embedded) struct.
    fn inline(mut self, v: Value) -> Self {
        if let Value::Object(m) = v {
            self.0.extend(m);
        }
        self
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// `metav1.Time`: the zero time (an empty message) is `None`.
fn time(t: &meta::Time) -> Option<Value> {
    let secs = t.seconds.unwrap_or(0);
    if secs == 0 && t.nanos.unwrap_or(0) == 0 {
        return None;
    }
    let ts = jiff::Timestamp::from_second(secs).ok()?;
    Some(json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn object_meta(m: &meta::ObjectMeta) -> Value {
    J::default()
        .s("name", &m.name)
        .s("generateName", &m.generate_name)
        .s("namespace", &m.namespace)
        .s("selfLink", &m.self_link)
        .s("uid", &m.uid)
        .s("resourceVersion", &m.resource_version)
        .i("generation", m.generation)
        .r(
            "creationTimestamp",
            m.creation_timestamp.as_ref().and_then(time),
        )
        .r(
            "deletionTimestamp",
            m.deletion_timestamp.as_ref().and_then(time),
        )
        .pi(
            "deletionGracePeriodSeconds",
            m.deletion_grace_period_seconds,
        )
        .map("labels", &m.labels)
        .map("annotations", &m.annotations)
        .ms("ownerReferences", &m.owner_references, |o| {
            J::default()
                .s("apiVersion", &o.api_version)
                .s("kind", &o.kind)
                .s("name", &o.name)
                .s("uid", &o.uid)
                .pb("controller", o.controller)
                .pb("blockOwnerDeletion", o.block_owner_deletion)
                .done()
        })
        .list("finalizers", &m.finalizers)
        .ms("managedFields", &m.managed_fields, |f| {
            let fields = f
                .fields_v1
                .as_ref()
                .and_then(|v| v.raw.as_deref())
                .and_then(|raw| serde_json::from_slice::<Value>(raw).ok());
            J::default()
                .s("manager", &f.manager)
                .s("operation", &f.operation)
                .s("apiVersion", &f.api_version)
                .r("time", f.time.as_ref().and_then(time))
                .s("fieldsType", &f.fields_type)
                .r("fieldsV1", fields)
                .s("subresource", &f.subresource)
                .done()
        })
        .done()
}

fn label_selector(s: &meta::LabelSelector) -> Value {
    J::default()
        .map("matchLabels", &s.match_labels)
        .ms("matchExpressions", &s.match_expressions, |e| {
            J::default()
                .s("key", &e.key)
                .s("operator", &e.operator)
                .list("values", &e.values)
                .done()
        })
        .done()
}

fn int_or_string(v: &IntOrString) -> Value {
    if v.r#type == Some(1) {
        json!(v.str_val.clone().unwrap_or_default())
    } else {
        json!(v.int_val.unwrap_or(0))
    }
}

fn quantities(
    m: &BTreeMap<String, k8s_pb::apimachinery::pkg::api::resource::Quantity>,
) -> Option<Value> {
    if m.is_empty() {
        return None;
    }
    Some(Value::Object(
        m.iter()
            .map(|(k, q)| (k.clone(), json!(q.string.clone().unwrap_or_default())))
            .collect(),
    ))
}

fn local_ref(r: &Option<core::LocalObjectReference>) -> Value {
    J::default()
        .s("name", &r.as_ref().and_then(|r| r.name.clone()))
        .done()
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

fn job_spec(s: &k8s_pb::api::batch::v1::JobSpec) -> Result<Value, ProtoError> {
    if s.pod_failure_policy.is_some() {
        return Err(ProtoError::Unsupported(
            "Job with spec.podFailurePolicy".into(),
        ));
    }
    if s.success_policy.is_some() {
        return Err(ProtoError::Unsupported(
            "Job with spec.successPolicy".into(),
        ));
    }
    Ok(J::default()
        .pi("parallelism", s.parallelism)
        .pi("completions", s.completions)
        .pi("activeDeadlineSeconds", s.active_deadline_seconds)
        .pi("backoffLimit", s.backoff_limit)
        .pi("backoffLimitPerIndex", s.backoff_limit_per_index)
        .pi("maxFailedIndexes", s.max_failed_indexes)
        .m("selector", &s.selector, label_selector)
        .pb("manualSelector", s.manual_selector)
        .r(
            "template",
            s.template.as_ref().map(pod_template).transpose()?,
        )
        .pi("ttlSecondsAfterFinished", s.ttl_seconds_after_finished)
        .ps("completionMode", &s.completion_mode)
        .pb("suspend", s.suspend)
        .ps("podReplacementPolicy", &s.pod_replacement_policy)
        .ps("managedBy", &s.managed_by)
        .done())
}

fn pod_template(t: &core::PodTemplateSpec) -> Result<Value, ProtoError> {
    Ok(J::default()
        .m("metadata", &t.metadata, object_meta)
        .r("spec", t.spec.as_ref().map(pod_spec).transpose()?)
        .done())
}

fn refuse(field: &str) -> ProtoError {
    ProtoError::Unsupported(format!("pod templates with {field}"))
}

fn pod_spec(p: &core::PodSpec) -> Result<Value, ProtoError> {
    let unconverted = [
        ("ephemeralContainers", !p.ephemeral_containers.is_empty()),
        ("affinity", p.affinity.is_some()),
        ("hostAliases", !p.host_aliases.is_empty()),
        ("dnsConfig", p.dns_config.is_some()),
        ("readinessGates", !p.readiness_gates.is_empty()),
        ("overhead", !p.overhead.is_empty()),
        (
            "topologySpreadConstraints",
            !p.topology_spread_constraints.is_empty(),
        ),
        ("os", p.os.is_some()),
        ("schedulingGates", !p.scheduling_gates.is_empty()),
        ("resourceClaims", !p.resource_claims.is_empty()),
        ("resources", p.resources.is_some()),
        (
            "hostnameOverride",
            p.hostname_override
                .as_deref()
                .is_some_and(|h| !h.is_empty()),
        ),
        ("workloadRef", p.workload_ref.is_some()),
    ];
    if let Some((field, _)) = unconverted.iter().find(|(_, set)| *set) {
        return Err(refuse(&format!("spec.{field}")));
    }
    if let Some(sc) = &p.security_context
        && (sc.se_linux_options.is_some()
            || sc.windows_options.is_some()
            || sc.app_armor_profile.is_some()
            || !sc.sysctls.is_empty())
    {
        return Err(refuse(
            "spec.securityContext options other than user, group and seccomp",
        ));
    }
    let volumes = p
        .volumes
        .iter()
        .map(volume)
        .collect::<Result<Vec<_>, _>>()?;
    let init = p
        .init_containers
        .iter()
        .map(container)
        .collect::<Result<Vec<_>, _>>()?;
    let containers = p
        .containers
        .iter()
        .map(container)
        .collect::<Result<Vec<_>, _>>()?;
    let non_empty = |v: Vec<Value>| (!v.is_empty()).then_some(Value::Array(v));
    Ok(J::default()
        .r("volumes", non_empty(volumes))
        .r("initContainers", non_empty(init))
        .put("containers", Value::Array(containers))
        .s("restartPolicy", &p.restart_policy)
        .pi(
            "terminationGracePeriodSeconds",
            p.termination_grace_period_seconds,
        )
        .pi("activeDeadlineSeconds", p.active_deadline_seconds)
        .s("dnsPolicy", &p.dns_policy)
        .map("nodeSelector", &p.node_selector)
        .s("serviceAccountName", &p.service_account_name)
        .s("serviceAccount", &p.service_account)
        .pb(
            "automountServiceAccountToken",
            p.automount_service_account_token,
        )
        .s("nodeName", &p.node_name)
        .b("hostNetwork", p.host_network)
        .b("hostPID", p.host_pid)
        .b("hostIPC", p.host_ipc)
        .pb("shareProcessNamespace", p.share_process_namespace)
        .m("securityContext", &p.security_context, |sc| {
            J::default()
                .pi("runAsUser", sc.run_as_user)
                .pi("runAsGroup", sc.run_as_group)
                .pb("runAsNonRoot", sc.run_as_non_root)
                .r(
                    "supplementalGroups",
                    (!sc.supplemental_groups.is_empty()).then(|| json!(sc.supplemental_groups)),
                )
                .ps("supplementalGroupsPolicy", &sc.supplemental_groups_policy)
                .pi("fsGroup", sc.fs_group)
                .ps("fsGroupChangePolicy", &sc.fs_group_change_policy)
                .m("seccompProfile", &sc.seccomp_profile, seccomp)
                .ps("seLinuxChangePolicy", &sc.se_linux_change_policy)
                .done()
        })
        .ms("imagePullSecrets", &p.image_pull_secrets, |r| {
            local_ref(&Some(r.clone()))
        })
        .s("hostname", &p.hostname)
        .s("subdomain", &p.subdomain)
        .s("schedulerName", &p.scheduler_name)
        .ms("tolerations", &p.tolerations, |t| {
            J::default()
                .s("key", &t.key)
                .s("operator", &t.operator)
                .s("value", &t.value)
                .s("effect", &t.effect)
                .pi("tolerationSeconds", t.toleration_seconds)
                .done()
        })
        .s("priorityClassName", &p.priority_class_name)
        .pi("priority", p.priority)
        .ps("runtimeClassName", &p.runtime_class_name)
        .pb("enableServiceLinks", p.enable_service_links)
        .ps("preemptionPolicy", &p.preemption_policy)
        .pb("setHostnameAsFQDN", p.set_hostname_as_fqdn)
        .pb("hostUsers", p.host_users)
        .done())
}

fn seccomp(s: &core::SeccompProfile) -> Value {
    J::default()
        .s("type", &s.r#type)
        .ps("localhostProfile", &s.localhost_profile)
        .done()
}

fn key_to_path(k: &core::KeyToPath) -> Value {
    J::default()
        .s("key", &k.key)
        .s("path", &k.path)
        .pi("mode", k.mode)
        .done()
}

fn volume(v: &core::Volume) -> Result<Value, ProtoError> {
    let name = v.name.clone().unwrap_or_default();
    let Some(src) = &v.volume_source else {
        return Ok(json!({ "name": name }));
    };
    let j = J::default().put("name", json!(name));
    let j = if let Some(e) = &src.empty_dir {
        j.put(
            "emptyDir",
            J::default()
                .s("medium", &e.medium)
                .r(
                    "sizeLimit",
                    e.size_limit
                        .as_ref()
                        .and_then(|q| q.string.clone())
                        .map(Value::from),
                )
                .done(),
        )
    } else if let Some(s) = &src.secret {
        j.put(
            "secret",
            J::default()
                .s("secretName", &s.secret_name)
                .ms("items", &s.items, key_to_path)
                .pi("defaultMode", s.default_mode)
                .pb("optional", s.optional)
                .done(),
        )
    } else if let Some(c) = &src.config_map {
        j.put(
            "configMap",
            J::default()
                .inline(local_ref(&c.local_object_reference))
                .ms("items", &c.items, key_to_path)
                .pi("defaultMode", c.default_mode)
                .pb("optional", c.optional)
                .done(),
        )
    } else if let Some(h) = &src.host_path {
        j.put(
            "hostPath",
            J::default().s("path", &h.path).ps("type", &h.r#type).done(),
        )
    } else if let Some(c) = &src.persistent_volume_claim {
        j.put(
            "persistentVolumeClaim",
            J::default()
                .s("claimName", &c.claim_name)
                .b("readOnly", c.read_only)
                .done(),
        )
    } else if let Some(p) = &src.projected {
        let mut sources = Vec::new();
        for s in &p.sources {
            let one = if let Some(t) = &s.service_account_token {
                J::default().put(
                    "serviceAccountToken",
                    J::default()
                        .s("audience", &t.audience)
                        .pi("expirationSeconds", t.expiration_seconds)
                        .s("path", &t.path)
                        .done(),
                )
            } else if let Some(sec) = &s.secret {
                J::default().put(
                    "secret",
                    J::default()
                        .inline(local_ref(&sec.local_object_reference))
                        .ms("items", &sec.items, key_to_path)
                        .pb("optional", sec.optional)
                        .done(),
                )
            } else if let Some(cm) = &s.config_map {
                J::default().put(
                    "configMap",
                    J::default()
                        .inline(local_ref(&cm.local_object_reference))
                        .ms("items", &cm.items, key_to_path)
                        .pb("optional", cm.optional)
                        .done(),
                )
            } else {
                return Err(refuse(&format!(
                    "a projected source of volume {name:?} other than serviceAccountToken, secret or configMap"
                )));
            };
            sources.push(one.done());
        }
        j.put(
            "projected",
            J::default()
                .put("sources", Value::Array(sources))
                .pi("defaultMode", p.default_mode)
                .done(),
        )
    } else {
        return Err(refuse(&format!(
            "volume {name:?} of a type other than emptyDir, secret, configMap, hostPath, persistentVolumeClaim or projected"
        )));
    };
    Ok(j.done())
}

fn container(c: &core::Container) -> Result<Value, ProtoError> {
    let name = c.name.clone().unwrap_or_default();
    let unconverted = [
        ("resizePolicy", !c.resize_policy.is_empty()),
        ("restartPolicyRules", !c.restart_policy_rules.is_empty()),
        ("volumeDevices", !c.volume_devices.is_empty()),
        ("lifecycle", c.lifecycle.is_some()),
    ];
    if let Some((field, _)) = unconverted.iter().find(|(_, set)| *set) {
        return Err(refuse(&format!("{field} in container {name:?}")));
    }
    if let Some(sc) = &c.security_context
        && (sc.se_linux_options.is_some()
            || sc.windows_options.is_some()
            || sc.app_armor_profile.is_some())
    {
        return Err(refuse(&format!(
            "securityContext SELinux, Windows or AppArmor options in container {name:?}"
        )));
    }
    let probes = [&c.liveness_probe, &c.readiness_probe, &c.startup_probe];
    if probes.iter().any(|p| {
        p.as_ref()
            .and_then(|p| p.handler.as_ref())
            .is_some_and(|h| h.grpc.is_some())
    }) {
        return Err(refuse(&format!("a grpc probe in container {name:?}")));
    }
    let resources = c.resources.as_ref().map(|r| {
        J::default()
            .r("limits", quantities(&r.limits))
            .r("requests", quantities(&r.requests))
            .ms("claims", &r.claims, |cl| {
                J::default()
                    .s("name", &cl.name)
                    .s("request", &cl.request)
                    .done()
            })
            .done()
    });
    Ok(J::default()
        .put("name", json!(name))
        .s("image", &c.image)
        .list("command", &c.command)
        .list("args", &c.args)
        .s("workingDir", &c.working_dir)
        .ms("ports", &c.ports, |p| {
            J::default()
                .s("name", &p.name)
                .i("hostPort", p.host_port)
                .i("containerPort", p.container_port)
                .s("protocol", &p.protocol)
                .s("hostIP", &p.host_ip)
                .done()
        })
        .ms("envFrom", &c.env_from, |e| {
            J::default()
                .s("prefix", &e.prefix)
                .m("configMapRef", &e.config_map_ref, |r| {
                    J::default()
                        .inline(local_ref(&r.local_object_reference))
                        .pb("optional", r.optional)
                        .done()
                })
                .m("secretRef", &e.secret_ref, |r| {
                    J::default()
                        .inline(local_ref(&r.local_object_reference))
                        .pb("optional", r.optional)
                        .done()
                })
                .done()
        })
        .ms("env", &c.env, env_var)
        .r("resources", resources)
        .ps("restartPolicy", &c.restart_policy)
        .ms("volumeMounts", &c.volume_mounts, |m| {
            J::default()
                .s("name", &m.name)
                .b("readOnly", m.read_only)
                .ps("recursiveReadOnly", &m.recursive_read_only)
                .s("mountPath", &m.mount_path)
                .s("subPath", &m.sub_path)
                .ps("mountPropagation", &m.mount_propagation)
                .s("subPathExpr", &m.sub_path_expr)
                .done()
        })
        .m("livenessProbe", &c.liveness_probe, probe)
        .m("readinessProbe", &c.readiness_probe, probe)
        .m("startupProbe", &c.startup_probe, probe)
        .s("terminationMessagePath", &c.termination_message_path)
        .s("terminationMessagePolicy", &c.termination_message_policy)
        .s("imagePullPolicy", &c.image_pull_policy)
        .m("securityContext", &c.security_context, |sc| {
            J::default()
                .m("capabilities", &sc.capabilities, |cap| {
                    J::default()
                        .list("add", &cap.add)
                        .list("drop", &cap.drop)
                        .done()
                })
                .pb("privileged", sc.privileged)
                .pi("runAsUser", sc.run_as_user)
                .pi("runAsGroup", sc.run_as_group)
                .pb("runAsNonRoot", sc.run_as_non_root)
                .pb("readOnlyRootFilesystem", sc.read_only_root_filesystem)
                .pb("allowPrivilegeEscalation", sc.allow_privilege_escalation)
                .ps("procMount", &sc.proc_mount)
                .m("seccompProfile", &sc.seccomp_profile, seccomp)
                .done()
        })
        .b("stdin", c.stdin)
        .b("stdinOnce", c.stdin_once)
        .b("tty", c.tty)
        .done())
}

fn env_var(e: &core::EnvVar) -> Value {
    J::default()
        .put("name", json!(e.name.clone().unwrap_or_default()))
        .s("value", &e.value)
        .m("valueFrom", &e.value_from, |v| {
            J::default()
                .m("fieldRef", &v.field_ref, |f| {
                    J::default()
                        .s("apiVersion", &f.api_version)
                        .s("fieldPath", &f.field_path)
                        .done()
                })
                .m("resourceFieldRef", &v.resource_field_ref, |r| {
                    J::default()
                        .s("containerName", &r.container_name)
                        .s("resource", &r.resource)
                        .r(
                            "divisor",
                            r.divisor
                                .as_ref()
                                .and_then(|q| q.string.clone())
                                .filter(|s| !s.is_empty() && s != "0")
                                .map(Value::from),
                        )
                        .done()
                })
                .m("configMapKeyRef", &v.config_map_key_ref, |r| {
                    J::default()
                        .inline(local_ref(&r.local_object_reference))
                        .s("key", &r.key)
                        .pb("optional", r.optional)
                        .done()
                })
                .m("secretKeyRef", &v.secret_key_ref, |r| {
                    J::default()
                        .inline(local_ref(&r.local_object_reference))
                        .s("key", &r.key)
                        .pb("optional", r.optional)
                        .done()
                })
                .done()
        })
        .done()
}

fn probe(p: &core::Probe) -> Value {
    let handler = p.handler.as_ref();
    J::default()
        .r(
            "exec",
            handler
                .and_then(|h| h.exec.as_ref())
                .map(|e| J::default().list("command", &e.command).done()),
        )
        .r(
            "httpGet",
            handler.and_then(|h| h.http_get.as_ref()).map(|g| {
                J::default()
                    .s("path", &g.path)
                    .m("port", &g.port, int_or_string)
                    .s("host", &g.host)
                    .s("scheme", &g.scheme)
                    .ms("httpHeaders", &g.http_headers, |h| {
                        J::default().s("name", &h.name).s("value", &h.value).done()
                    })
                    .done()
            }),
        )
        .r(
            "tcpSocket",
            handler.and_then(|h| h.tcp_socket.as_ref()).map(|t| {
                J::default()
                    .m("port", &t.port, int_or_string)
                    .s("host", &t.host)
                    .done()
            }),
        )
        .i("initialDelaySeconds", p.initial_delay_seconds)
        .i("timeoutSeconds", p.timeout_seconds)
        .i("periodSeconds", p.period_seconds)
        .i("successThreshold", p.success_threshold)
        .i("failureThreshold", p.failure_threshold)
        .pi(
            "terminationGracePeriodSeconds",
            p.termination_grace_period_seconds,
        )
        .done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::api::{apps, authentication, batch, rbac};

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    fn body<M: Message>(api_version: &str, kind: &str, m: &M) -> Vec<u8> {
        envelope(api_version, kind, m.encode_to_vec())
    }

    /// ObjectMeta as client-go encodes it: every non-pointer field present, even when zero.
    fn go_meta(name: &str) -> meta::ObjectMeta {
        meta::ObjectMeta {
            name: s(name),
            generate_name: s(""),
            namespace: s(""),
            self_link: s(""),
            uid: s(""),
            resource_version: s(""),
            generation: Some(0),
            creation_timestamp: Some(meta::Time::default()),
            ..Default::default()
        }
    }

    fn varint(mut n: u64, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    fn field(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(tag << 3 | 2), out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    fn entry(k: &str, v: &str) -> Vec<u8> {
        let mut e = Vec::new();
        field(1, k.as_bytes(), &mut e);
        field(2, v.as_bytes(), &mut e);
        e
    }

    /// The helm 3.18 release Secret as recorded (the field tree of its protobuf body),
    /// encoded by hand so the field numbers are checked independently of `k8s-pb`.
    #[test]
    fn captured_helm_release_secret() {
        let mut meta = Vec::new();
        field(1, b"sh.helm.release.v1.sc.v1", &mut meta);
        for tag in 2..=6 {
            field(tag, b"", &mut meta);
        }
        meta.extend([7 << 3, 0]); // generation: 0 (varint)
        field(8, b"", &mut meta); // creationTimestamp: zero Time
        for (k, v) in [
            ("createdAt", "1795433542"),
            ("name", "sc"),
            ("owner", "helm"),
            ("status", "pending-install"),
            ("version", "1"),
        ] {
            field(11, &entry(k, v), &mut meta);
        }
        let mut secret = Vec::new();
        field(1, &meta, &mut secret);
        field(
            2,
            &entry(
                "release",
                "H4sIAAAAAAAC/6RWa2/iOBf+K9F5v4Y2CWpniPR+AGbJQCmdoS0hGaqR45jE",
            ),
            &mut secret,
        );
        field(3, b"helm.sh/release.v1", &mut secret);
        let got = decode(&envelope("v1", "Secret", secret)).unwrap();
        let release = base64::engine::general_purpose::STANDARD
            .encode("H4sIAAAAAAAC/6RWa2/iOBf+K9F5v4Y2CWpniPR+AGbJQCmdoS0hGaqR45jE");
        assert_eq!(
            got,
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "sh.helm.release.v1.sc.v1",
                    "labels": {"createdAt": "1795433542", "name": "sc", "owner": "helm", "status": "pending-install", "version": "1"}
                },
                "data": {"release": release},
                "type": "helm.sh/release.v1"
            })
        );
    }

    #[test]
    fn secret_all_fields() {
        let mut m = go_meta("s1");
        m.namespace = s("sc-system");
        m.generate_name = s("s-");
        m.annotations.insert("a".into(), "b".into());
        m.finalizers = vec!["example.com/keep".into()];
        m.owner_references = vec![meta::OwnerReference {
            api_version: s("batch/v1"),
            kind: s("Job"),
            name: s("j"),
            uid: s("u1"),
            controller: Some(true),
            block_owner_deletion: Some(false),
        }];
        let secret = core::Secret {
            metadata: Some(m),
            immutable: Some(false),
            data: [("k".to_string(), vec![0u8, 1, 255])].into(),
            string_data: [("plain".to_string(), "text".to_string())].into(),
            r#type: s("Opaque"),
        };
        let got = decode(&body("v1", "Secret", &secret)).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "s1", "generateName": "s-", "namespace": "sc-system",
                    "annotations": {"a": "b"},
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u1", "controller": true, "blockOwnerDeletion": false}],
                    "finalizers": ["example.com/keep"]},
                "immutable": false,
                "data": {"k": "AAH/"},
                "stringData": {"plain": "text"},
                "type": "Opaque"
            })
        );
    }

    #[test]
    fn config_map() {
        let cm = core::ConfigMap {
            metadata: Some(go_meta("c1")),
            immutable: None,
            data: [("a".to_string(), "1".to_string())].into(),
            binary_data: [("b".to_string(), b"xyz".to_vec())].into(),
        };
        let got = decode(&body("v1", "ConfigMap", &cm)).unwrap();
        assert_eq!(
            got,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"},
                "data": {"a": "1"}, "binaryData": {"b": "eHl6"}})
        );
    }

    #[test]
    fn delete_options() {
        let d = meta::DeleteOptions {
            grace_period_seconds: Some(0),
            preconditions: Some(meta::Preconditions {
                uid: s("u1"),
                resource_version: s("42"),
            }),
            orphan_dependents: None,
            propagation_policy: s("Background"),
            dry_run: vec!["All".into()],
            ignore_store_read_error_with_cluster_breaking_potential: None,
        };
        let got = decode(&body("", "DeleteOptions", &d)).unwrap();
        assert_eq!(
            got,
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": "u1", "resourceVersion": "42"},
                "propagationPolicy": "Background", "dryRun": ["All"]})
        );
        let empty = decode(&body(
            "meta.k8s.io/v1",
            "DeleteOptions",
            &meta::DeleteOptions::default(),
        ))
        .unwrap();
        assert_eq!(
            empty,
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions"})
        );
    }

    #[test]
    fn namespace_and_service_account() {
        let ns = core::Namespace {
            metadata: Some(go_meta("sc-system")),
            spec: Some(core::NamespaceSpec::default()),
            status: Some(core::NamespaceStatus {
                phase: s(""),
                conditions: vec![],
            }),
        };
        let got = decode(&body("v1", "Namespace", &ns)).unwrap();
        assert_eq!(
            got,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sc-system"}, "spec": {}, "status": {}})
        );
        let sa = core::ServiceAccount {
            metadata: Some(go_meta("sc-job")),
            secrets: vec![],
            image_pull_secrets: vec![core::LocalObjectReference { name: s("regcred") }],
            automount_service_account_token: Some(false),
        };
        let got = decode(&body("v1", "ServiceAccount", &sa)).unwrap();
        assert_eq!(
            got,
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sc-job"},
                "imagePullSecrets": [{"name": "regcred"}], "automountServiceAccountToken": false})
        );
    }

    #[test]
    fn token_request() {
        let t = authentication::v1::TokenRequest {
            metadata: Some(go_meta("sc-job")),
            spec: Some(authentication::v1::TokenRequestSpec {
                audiences: vec!["https://kubernetes.default.svc".into()],
                expiration_seconds: Some(3600),
                bound_object_ref: None,
            }),
            status: Some(authentication::v1::TokenRequestStatus {
                token: s(""),
                expiration_timestamp: Some(meta::Time::default()),
            }),
        };
        let got = decode(&body("authentication.k8s.io/v1", "TokenRequest", &t)).unwrap();
        assert_eq!(
            got,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "metadata": {"name": "sc-job"},
                "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600}})
        );
    }

    fn go_container(name: &str, image: &str) -> core::Container {
        core::Container {
            name: s(name),
            image: s(image),
            working_dir: s(""),
            resources: Some(core::ResourceRequirements::default()),
            termination_message_path: s(""),
            termination_message_policy: s(""),
            image_pull_policy: s(""),
            stdin: Some(false),
            stdin_once: Some(false),
            tty: Some(false),
            ..Default::default()
        }
    }

    fn go_pod_spec(containers: Vec<core::Container>, restart: &str) -> core::PodSpec {
        core::PodSpec {
            containers,
            restart_policy: s(restart),
            dns_policy: s(""),
            service_account_name: s(""),
            service_account: s(""),
            node_name: s(""),
            host_network: Some(false),
            host_pid: Some(false),
            host_ipc: Some(false),
            hostname: s(""),
            subdomain: s(""),
            scheduler_name: s(""),
            priority_class_name: s(""),
            ..Default::default()
        }
    }

    /// What `kubectl create job sc-job --image=busybox -- echo hi` sends.
    #[test]
    fn job_from_kubectl_create() {
        let mut c = go_container("sc-job", "busybox");
        c.command = vec!["echo".into(), "hi".into()];
        c.env = vec![core::EnvVar {
            name: s("MODE"),
            value: s("test"),
            value_from: None,
        }];
        c.resources = Some(core::ResourceRequirements {
            limits: [(
                "memory".to_string(),
                k8s_pb::apimachinery::pkg::api::resource::Quantity { string: s("64Mi") },
            )]
            .into(),
            ..Default::default()
        });
        let job = batch::v1::Job {
            metadata: Some(go_meta("sc-job")),
            spec: Some(batch::v1::JobSpec {
                backoff_limit: Some(0),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(go_meta("")),
                    spec: Some(go_pod_spec(vec![c], "Never")),
                }),
                ..Default::default()
            }),
            status: Some(batch::v1::JobStatus::default()),
        };
        let got = decode(&body("batch/v1", "Job", &job)).unwrap();
        assert_eq!(
            got,
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "sc-job"},
                "spec": {"backoffLimit": 0, "template": {"metadata": {}, "spec": {
                    "containers": [{"name": "sc-job", "image": "busybox", "command": ["echo", "hi"],
                        "env": [{"name": "MODE", "value": "test"}],
                        "resources": {"limits": {"memory": "64Mi"}}}],
                    "restartPolicy": "Never"}}}})
        );
    }

    #[test]
    fn job_with_unconverted_pod_field_is_refused() {
        let mut spec = go_pod_spec(vec![go_container("a", "b")], "Never");
        spec.affinity = Some(core::Affinity::default());
        let job = batch::v1::Job {
            metadata: Some(go_meta("j")),
            spec: Some(batch::v1::JobSpec {
                template: Some(core::PodTemplateSpec {
                    metadata: None,
                    spec: Some(spec),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let err = decode(&body("batch/v1", "Job", &job)).unwrap_err();
        assert_eq!(
            err,
            ProtoError::Unsupported("pod templates with spec.affinity".into())
        );
    }

    /// What `kubectl create deployment web --image=nginx --replicas=0` sends.
    #[test]
    fn deployment_from_kubectl_create() {
        let mut labels = BTreeMap::new();
        labels.insert("app".to_string(), "web".to_string());
        let mut tmeta = go_meta("");
        tmeta.labels = labels.clone();
        let mut c = go_container("nginx", "nginx");
        c.ports = vec![core::ContainerPort {
            name: s(""),
            host_port: Some(0),
            container_port: Some(80),
            protocol: s(""),
            host_ip: s(""),
        }];
        let d = apps::v1::Deployment {
            metadata: Some({
                let mut m = go_meta("web");
                m.labels = labels.clone();
                m
            }),
            spec: Some(apps::v1::DeploymentSpec {
                replicas: Some(0),
                selector: Some(meta::LabelSelector {
                    match_labels: labels,
                    match_expressions: vec![],
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(tmeta),
                    spec: Some(go_pod_spec(vec![c], "")),
                }),
                strategy: Some(apps::v1::DeploymentStrategy {
                    r#type: s(""),
                    rolling_update: Some(apps::v1::RollingUpdateDeployment {
                        max_unavailable: Some(IntOrString {
                            r#type: Some(1),
                            int_val: Some(0),
                            str_val: s("25%"),
                        }),
                        max_surge: Some(IntOrString {
                            r#type: Some(0),
                            int_val: Some(1),
                            str_val: s(""),
                        }),
                    }),
                }),
                min_ready_seconds: Some(0),
                paused: Some(false),
                ..Default::default()
            }),
            status: None,
        };
        let got = decode(&body("apps/v1", "Deployment", &d)).unwrap();
        assert_eq!(
            got,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}}]}},
                    "strategy": {"rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}}}})
        );
    }

    #[test]
    fn rbac_kinds() {
        let role = rbac::v1::Role {
            metadata: Some(go_meta("r")),
            rules: vec![rbac::v1::PolicyRule {
                verbs: vec!["get".into()],
                api_groups: vec!["".into()],
                resources: vec!["secrets".into()],
                resource_names: vec![],
                non_resource_ur_ls: vec![],
            }],
        };
        let got = decode(&body("rbac.authorization.k8s.io/v1", "Role", &role)).unwrap();
        assert_eq!(
            got["rules"],
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}])
        );
        let rb = rbac::v1::RoleBinding {
            metadata: Some(go_meta("b")),
            subjects: vec![rbac::v1::Subject {
                kind: s("ServiceAccount"),
                api_group: s(""),
                name: s("sc-job"),
                namespace: s("sc-system"),
            }],
            role_ref: Some(rbac::v1::RoleRef {
                api_group: s("rbac.authorization.k8s.io"),
                kind: s("Role"),
                name: s("r"),
            }),
        };
        let got = decode(&body("rbac.authorization.k8s.io/v1", "RoleBinding", &rb)).unwrap();
        assert_eq!(
            got,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b"},
                "subjects": [{"kind": "ServiceAccount", "name": "sc-job", "namespace": "sc-system"}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}})
        );
    }

    #[test]
    fn timestamps_and_managed_fields() {
        let mut m = go_meta("t");
        m.creation_timestamp = Some(meta::Time {
            seconds: Some(1_795_433_542),
            nanos: Some(0),
        });
        m.managed_fields = vec![meta::ManagedFieldsEntry {
            manager: s("kubectl-create"),
            operation: s("Update"),
            api_version: s("v1"),
            time: Some(meta::Time {
                seconds: Some(1_795_433_542),
                nanos: Some(0),
            }),
            fields_type: s("FieldsV1"),
            fields_v1: Some(meta::FieldsV1 {
                raw: Some(br#"{"f:data":{}}"#.to_vec()),
            }),
            subresource: s(""),
        }];
        let cm = core::ConfigMap {
            metadata: Some(m),
            ..Default::default()
        };
        let got = decode(&body("v1", "ConfigMap", &cm)).unwrap();
        assert_eq!(got["metadata"]["creationTimestamp"], "2026-11-23T11:32:22Z");
        assert_eq!(
            got["metadata"]["managedFields"],
            json!([{"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
                "time": "2026-11-23T11:32:22Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}])
        );
    }

    #[test]
    fn cron_job_and_service() {
        let cj = batch::v1::CronJob {
            metadata: Some(go_meta("nightly")),
            spec: Some(batch::v1::CronJobSpec {
                schedule: s("0 3 * * *"),
                concurrency_policy: s("Forbid"),
                suspend: Some(false),
                job_template: Some(batch::v1::JobTemplateSpec {
                    metadata: Some(go_meta("")),
                    spec: Some(batch::v1::JobSpec {
                        template: Some(core::PodTemplateSpec {
                            metadata: None,
                            spec: Some(go_pod_spec(vec![go_container("a", "img")], "OnFailure")),
                        }),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let got = decode(&body("batch/v1", "CronJob", &cj)).unwrap();
        assert_eq!(
            got["spec"],
            json!({"schedule": "0 3 * * *", "concurrencyPolicy": "Forbid", "suspend": false,
                "jobTemplate": {"metadata": {}, "spec": {"template": {"spec": {
                    "containers": [{"name": "a", "image": "img", "resources": {}}], "restartPolicy": "OnFailure"}}}}})
        );
        let svc = core::Service {
            metadata: Some(go_meta("web")),
            spec: Some(core::ServiceSpec {
                ports: vec![core::ServicePort {
                    name: s("80-8080"),
                    protocol: s("TCP"),
                    port: Some(80),
                    target_port: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(8080),
                        str_val: s(""),
                    }),
                    node_port: Some(0),
                    ..Default::default()
                }],
                selector: [("app".to_string(), "web".to_string())].into(),
                r#type: s("ClusterIP"),
                cluster_ip: s(""),
                ..Default::default()
            }),
            status: Some(core::ServiceStatus::default()),
        };
        let got = decode(&body("v1", "Service", &svc)).unwrap();
        assert_eq!(
            got["spec"],
            json!({"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "web"}, "type": "ClusterIP"})
        );
    }

    #[test]
    fn pod_spec_volumes_env_probes() {
        let mut c = go_container("main", "img");
        c.env = vec![core::EnvVar {
            name: s("PASSWORD"),
            value: s(""),
            value_from: Some(core::EnvVarSource {
                secret_key_ref: Some(core::SecretKeySelector {
                    local_object_reference: Some(core::LocalObjectReference { name: s("db") }),
                    key: s("password"),
                    optional: None,
                }),
                ..Default::default()
            }),
        }];
        c.volume_mounts = vec![core::VolumeMount {
            name: s("token"),
            read_only: Some(true),
            mount_path: s("/var/run/token"),
            sub_path: s(""),
            sub_path_expr: s(""),
            ..Default::default()
        }];
        c.readiness_probe = Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("http"),
                    }),
                    host: s(""),
                    scheme: s("HTTP"),
                    http_headers: vec![],
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(0),
            period_seconds: Some(5),
            ..Default::default()
        });
        c.security_context = Some(core::SecurityContext {
            run_as_non_root: Some(true),
            capabilities: Some(core::Capabilities {
                add: vec![],
                drop: vec!["ALL".into()],
            }),
            ..Default::default()
        });
        let mut spec = go_pod_spec(vec![c], "Never");
        spec.service_account_name = s("sc-job");
        spec.termination_grace_period_seconds = Some(0);
        spec.volumes = vec![
            core::Volume {
                name: s("scratch"),
                volume_source: Some(core::VolumeSource {
                    empty_dir: Some(core::EmptyDirVolumeSource::default()),
                    ..Default::default()
                }),
            },
            core::Volume {
                name: s("token"),
                volume_source: Some(core::VolumeSource {
                    projected: Some(core::ProjectedVolumeSource {
                        sources: vec![core::VolumeProjection {
                            service_account_token: Some(core::ServiceAccountTokenProjection {
                                audience: s("api"),
                                expiration_seconds: Some(600),
                                path: s("token"),
                            }),
                            ..Default::default()
                        }],
                        default_mode: None,
                    }),
                    ..Default::default()
                }),
            },
        ];
        let got = pod_spec(&spec).unwrap();
        assert_eq!(
            got,
            json!({
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"audience": "api", "expirationSeconds": 600, "path": "token"}}]}}
                ],
                "containers": [{"name": "main", "image": "img",
                    "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
                    "resources": {},
                    "volumeMounts": [{"name": "token", "readOnly": true, "mountPath": "/var/run/token"}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "periodSeconds": 5},
                    "securityContext": {"capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true}}],
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 0,
                "serviceAccountName": "sc-job"
            })
        );
        spec.volumes[0].volume_source = Some(core::VolumeSource {
            nfs: Some(core::NfsVolumeSource::default()),
            ..Default::default()
        });
        assert!(
            matches!(pod_spec(&spec), Err(ProtoError::Unsupported(m)) if m.contains("\"scratch\""))
        );
    }

    #[test]
    fn errors() {
        assert_eq!(decode(b""), Err(ProtoError::NotEnvelope));
        assert_eq!(
            decode(b"{\"kind\":\"Secret\"}"),
            Err(ProtoError::NotEnvelope)
        );
        assert!(matches!(
            decode(b"k8s\0\xff\xff\xff"),
            Err(ProtoError::Malformed(_))
        ));
        assert!(matches!(
            decode(&envelope("v1", "Secret", vec![0x0a, 0x05, 0x01])),
            Err(ProtoError::Malformed(_))
        ));
        let pod = core::Pod::default();
        assert_eq!(
            decode(&body("v1", "Pod", &pod)),
            Err(ProtoError::Unsupported("v1 Pod".into()))
        );
        let mut gz = MAGIC.to_vec();
        gz.extend(
            k8s_pb::apimachinery::pkg::runtime::Unknown {
                type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                    api_version: s("v1"),
                    kind: s("Secret"),
                }),
                raw: Some(vec![]),
                content_encoding: s("gzip"),
                content_type: None,
            }
            .encode_to_vec(),
        );
        assert_eq!(
            decode(&gz),
            Err(ProtoError::Unsupported(
                "Secret with content encoding gzip".into()
            ))
        );
    }
}
