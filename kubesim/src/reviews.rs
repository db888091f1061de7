//! Create-only review resources, answered from the request and never stored:
//! `SelfSubjectAccessReview` / `SubjectAccessReview` (`kubectl auth can-i`),
//! `SelfSubjectRulesReview` (`kubectl auth can-i --list`), `SelfSubjectReview` (`kubectl auth
//! whoami`) and `TokenReview`.

use prost::Message;
use serde_json::{Value, json};

use crate::cluster::{ApiError, Cluster, TokenReviewOutcome};
use crate::rbac::{self, Attributes, UserInfo};
use crate::resources::ResourceInfo;

fn user_json(u: &UserInfo) -> Value {
    json!({"username": u.name, "groups": u.groups})
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

/// The review `body` of type `info` (served at `version`) with its `status` filled in for the
/// requesting `user`.
pub fn answer(
    cluster: &Cluster,
    user: &UserInfo,
    info: &ResourceInfo,
    version: &str,
    mut body: Value,
) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    body["apiVersion"] = json!(info.api_version_for(version));
    body["kind"] = json!(info.kind);
    if !body.get("metadata").is_some_and(Value::is_object) {
        body["metadata"] = json!({});
    }
    body["metadata"]["creationTimestamp"] = Value::Null;
    match info.resource.as_str() {
        "selfsubjectaccessreviews" | "subjectaccessreviews" => {
            let spec = body["spec"].clone();
            let subject = if info.resource == "selfsubjectaccessreviews" {
                user.clone()
            } else {
                subject_of(&spec)
            };
            let attrs = match spec.get("resourceAttributes").filter(|v| v.is_object()) {
                Some(ra) => Attributes {
                    verb: text(ra, "verb"),
                    api_group: text(ra, "group"),
                    resource: text(ra, "resource"),
                    subresource: text(ra, "subresource"),
                    namespace: text(ra, "namespace"),
                    name: text(ra, "name"),
                    path: None,
                },
                None => Attributes {
                    verb: text(&spec["nonResourceAttributes"], "verb"),
                    path: Some(text(&spec["nonResourceAttributes"], "path")),
                    ..Attributes::default()
                },
            };
            let decision = cluster.decide(&subject, &attrs);
            body["status"] = json!({"allowed": decision.allowed});
            if !decision.reason.is_empty() {
                body["status"]["reason"] = json!(decision.reason);
            }
        }
        "selfsubjectrulesreviews" => {
            let namespace = text(&body["spec"], "namespace");
            if namespace.is_empty() {
                return Err(ApiError::bad_request("no namespace on request"));
            }
            let (rules, errors) = cluster.rules_for(user, &namespace);
            let mut resource_rules = Vec::new();
            let mut non_resource_rules = Vec::new();
            for r in &rules {
                let list = |k: &str| json!(rbac::strings(r, k));
                if !rbac::strings(r, "resources").is_empty() {
                    let mut rule = json!({"verbs": list("verbs"), "apiGroups": list("apiGroups"),
                        "resources": list("resources")});
                    if !rbac::strings(r, "resourceNames").is_empty() {
                        rule["resourceNames"] = list("resourceNames");
                    }
                    resource_rules.push(rule);
                }
                if !rbac::strings(r, "nonResourceURLs").is_empty() {
                    non_resource_rules.push(
                        json!({"verbs": list("verbs"), "nonResourceURLs": list("nonResourceURLs")}),
                    );
                }
            }
            body["status"] = json!({"resourceRules": resource_rules,
                "nonResourceRules": non_resource_rules, "incomplete": !errors.is_empty()});
            if !errors.is_empty() {
                body["status"]["evaluationError"] = json!(if errors.len() == 1 {
                    errors[0].clone()
                } else {
                    format!("[{}]", errors.join(", "))
                });
            }
        }
        "selfsubjectreviews" => body["status"] = json!({"userInfo": user_json(user)}),
        "tokenreviews" => {
            let audiences = rbac::strings(&body["spec"], "audiences");
            body["status"] = match cluster.review_token(&text(&body["spec"], "token"), &audiences) {
                TokenReviewOutcome::Authenticated { user, audiences } => {
                    json!({"authenticated": true, "user": user_json(&user), "audiences": audiences})
                }
                TokenReviewOutcome::Unauthenticated(error) => {
                    json!({"authenticated": false, "error": error})
                }
            };
        }
        _ => return Err(ApiError::no_route()),
    }
    Ok(in_field_order(body))
}

/// A review in its Go struct's key order: `kind`, `apiVersion`, `metadata`, `spec`, `status`.
fn in_field_order(body: Value) -> Value {
    let Value::Object(mut m) = body else {
        return body;
    };
    let mut out = serde_json::Map::new();
    for k in ["kind", "apiVersion", "metadata", "spec", "status"] {
        if let Some(v) = m.remove(k) {
            out.insert(k.to_string(), v);
        }
    }
    out.extend(m);
    Value::Object(out)
}

/// The user a SubjectAccessReview asks about; a ServiceAccount without explicit groups gets
/// the groups its token would carry.
fn subject_of(spec: &Value) -> UserInfo {
    let name = text(spec, "user");
    let groups: Vec<String> = spec["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_string))
        .collect();
    if groups.is_empty()
        && let Some((ns, sa)) = name
            .strip_prefix("system:serviceaccount:")
            .and_then(|r| r.split_once(':'))
    {
        return UserInfo::service_account(ns, sa);
    }
    UserInfo { name, groups }
}

fn resource_attributes(ra: &k8s_pb::api::authorization::v1::ResourceAttributes) -> Value {
    json!({
        "namespace": ra.namespace, "verb": ra.verb, "group": ra.group, "version": ra.version,
        "resource": ra.resource, "subresource": ra.subresource, "name": ra.name,
    })
}

fn non_resource_attributes(nra: &k8s_pb::api::authorization::v1::NonResourceAttributes) -> Value {
    json!({"path": nra.path, "verb": nra.verb})
}

/// Decode a protobuf review body (kubectl's typed client sends them so); `None` when the body
/// is not one of the review kinds.
pub fn decode_proto(body: &[u8]) -> Option<Value> {
    use k8s_pb::api::{authentication::v1 as authn, authorization::v1 as authz};
    let rest = body.strip_prefix(crate::proto::MAGIC)?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(rest).ok()?;
    let tm = unknown.type_meta.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let (api_version, kind) = (
        tm.api_version.unwrap_or_default(),
        tm.kind.unwrap_or_default(),
    );
    let spec = match kind.as_str() {
        "SelfSubjectAccessReview" => {
            let r = authz::SelfSubjectAccessReview::decode(raw.as_slice()).ok()?;
            let s = r.spec.unwrap_or_default();
            json!({
                "resourceAttributes": s.resource_attributes.as_ref().map(resource_attributes),
                "nonResourceAttributes": s.non_resource_attributes.as_ref().map(non_resource_attributes),
            })
        }
        "SubjectAccessReview" => {
            let r = authz::SubjectAccessReview::decode(raw.as_slice()).ok()?;
            let s = r.spec.unwrap_or_default();
            json!({
                "resourceAttributes": s.resource_attributes.as_ref().map(resource_attributes),
                "nonResourceAttributes": s.non_resource_attributes.as_ref().map(non_resource_attributes),
                "user": s.user, "groups": s.groups,
            })
        }
        "SelfSubjectRulesReview" => {
            let r = authz::SelfSubjectRulesReview::decode(raw.as_slice()).ok()?;
            json!({"namespace": r.spec.unwrap_or_default().namespace})
        }
        "SelfSubjectReview" => {
            authn::SelfSubjectReview::decode(raw.as_slice()).ok()?;
            json!({})
        }
        "TokenReview" => {
            let r = authn::TokenReview::decode(raw.as_slice()).ok()?;
            let s = r.spec.unwrap_or_default();
            json!({"token": s.token, "audiences": s.audiences})
        }
        _ => return None,
    };
    Some(json!({"apiVersion": api_version, "kind": kind, "metadata": {}, "spec": spec}))
}
