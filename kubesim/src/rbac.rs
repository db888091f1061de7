//! RBAC authorization: Roles, ClusterRoles and their bindings, evaluated as the API server does,
//! and the exact Forbidden message.
//!
//! The bootstrap policy is stored at start (`cluster/bootstrap.rs`); its grants that every
//! client needs are also built in, so deleting those objects locks nobody out:
//! `system:masters` may do everything; `system:discovery`, `system:public-info-viewer` and
//! `system:basic-user` grant discovery, version, health and OpenAPI paths and the self-review
//! resources to every authenticated user (the health and version paths to anonymous users too).
//! A ClusterRole with an `aggregationRule` gets the rules of the ClusterRoles its selectors
//! match, as the aggregation controller would have filled them in.

use serde_json::{Value, json};

use crate::selector::LabelSelector;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// e.g. `system:serviceaccount:sc-system:sc-job` or `admin`.
    pub name: String,
    /// e.g. `system:serviceaccounts`, `system:serviceaccounts:sc-system`, `system:authenticated`,
    /// `system:masters`.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The user a ServiceAccount token authenticates as, with the groups the API server adds.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_string(),
            ],
        }
    }

    /// Whether the user is authenticated (not `system:anonymous`).
    pub fn is_authenticated(&self) -> bool {
        self.name != "system:anonymous"
            && !self.groups.iter().any(|g| g == "system:unauthenticated")
    }
}

/// What is asked (the request attributes of the authorizer).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    /// get list watch create update patch delete deletecollection
    pub verb: String,
    /// "" for the core group.
    pub api_group: String,
    /// Plural, e.g. `jobs`.
    pub resource: String,
    /// e.g. `status`, `log`, `scale`; "" for the resource itself.
    pub subresource: String,
    /// "" for cluster-scoped requests.
    pub namespace: String,
    /// "" for collection requests.
    pub name: String,
    /// Non-resource requests (`/version`, `/api`, `/openapi/v3`, ...): the path.
    pub path: Option<String>,
}

/// The RBAC objects in the store.
pub struct Policy<'a> {
    /// `rbac.authorization.k8s.io/v1` Roles of every namespace.
    pub roles: &'a [&'a Value],
    /// ClusterRoles.
    pub cluster_roles: &'a [&'a Value],
    /// RoleBindings of every namespace.
    pub role_bindings: &'a [&'a Value],
    /// ClusterRoleBindings.
    pub cluster_role_bindings: &'a [&'a Value],
}

/// Paths of the `system:discovery` ClusterRole (authenticated users).
const DISCOVERY_PATHS: &[&str] = &[
    "/livez",
    "/readyz",
    "/healthz",
    "/version",
    "/version/",
    "/openapi",
    "/openapi/*",
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
];

/// Paths of the `system:public-info-viewer` ClusterRole (everyone, also anonymous).
const PUBLIC_PATHS: &[&str] = &["/livez", "/readyz", "/healthz", "/version", "/version/"];

/// Whether the request is allowed. `system:masters` is always allowed; discovery, version
/// and openapi paths are allowed to every authenticated user (system:discovery).
pub fn authorize(policy: &Policy<'_>, user: &UserInfo, attrs: &Attributes) -> bool {
    decide(policy, user, attrs).allowed
}

/// An authorization decision, with the reason the API server appends to the Forbidden message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// e.g. `RBAC: clusterrole.rbac.authorization.k8s.io "viewer" not found` when a binding
    /// that applies to the user names a missing role; empty otherwise.
    pub reason: String,
}

/// Like [`authorize`], also reporting bindings of the user whose role does not exist.
pub fn decide(policy: &Policy<'_>, user: &UserInfo, attrs: &Attributes) -> Decision {
    let allow = Decision {
        allowed: true,
        reason: String::new(),
    };
    if user.groups.iter().any(|g| g == "system:masters") || bootstrap_allows(user, attrs) {
        return allow;
    }
    let mut errors: Vec<String> = Vec::new();
    for binding in policy.cluster_role_bindings {
        if !binds(binding, "", user) {
            continue;
        }
        match role_ref_rules(policy, binding, "") {
            Ok(rules) if rules.iter().any(|r| rule_allows(r, attrs)) => return allow,
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    if !attrs.namespace.is_empty() && attrs.path.is_none() {
        for binding in policy.role_bindings {
            let ns = binding
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            if ns != attrs.namespace || !binds(binding, ns, user) {
                continue;
            }
            match role_ref_rules(policy, binding, ns) {
                Ok(rules) if rules.iter().any(|r| rule_allows(r, attrs)) => return allow,
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
    }
    let reason = match errors.len() {
        0 => String::new(),
        1 => format!("RBAC: {}", errors[0]),
        _ => format!("RBAC: [{}]", errors.join(", ")),
    };
    Decision {
        allowed: false,
        reason,
    }
}

/// `RulesFor`: the rules of every ClusterRoleBinding that applies to the user, then of every
/// RoleBinding of `namespace` that does, in that order, as the RBAC rule resolver visits them;
/// with the errors of bindings whose role does not exist.
pub fn rules_for(
    policy: &Policy<'_>,
    user: &UserInfo,
    namespace: &str,
) -> (Vec<Value>, Vec<String>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    let mut visit = |binding: &Value, ns: &str| match role_ref_rules(policy, binding, ns) {
        Ok(r) => rules.extend(r),
        Err(e) => errors.push(e),
    };
    for binding in policy.cluster_role_bindings {
        if binds(binding, "", user) {
            visit(binding, "");
        }
    }
    if !namespace.is_empty() {
        for binding in policy.role_bindings {
            let ns = binding
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            if ns == namespace && binds(binding, ns, user) {
                visit(binding, ns);
            }
        }
    }
    (rules, errors)
}

/// `GetRoleReferenceRules`: the rules of the role a binding refers to (a Role is looked up in
/// `namespace`), or the API server's error when it does not exist.
fn role_ref_rules(
    policy: &Policy<'_>,
    binding: &Value,
    namespace: &str,
) -> Result<Vec<Value>, String> {
    let role_ref = binding.get("roleRef");
    let name = str_at(role_ref, "name");
    match str_at(role_ref, "kind") {
        "ClusterRole" => {
            let exists = policy
                .cluster_roles
                .iter()
                .any(|r| r.pointer("/metadata/name").and_then(Value::as_str) == Some(name));
            if exists {
                Ok(cluster_role_rules(policy, name))
            } else {
                Err(format!(
                    "clusterrole.rbac.authorization.k8s.io {name:?} not found"
                ))
            }
        }
        "Role" => policy
            .roles
            .iter()
            .find(|r| {
                r.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace)
                    && r.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
            })
            .map(|r| rules_of(r))
            .ok_or_else(|| format!("role.rbac.authorization.k8s.io {name:?} not found")),
        other => Err(format!("unsupported role reference kind: {other:?}")),
    }
}

/// The API server's message, e.g. `secrets "x" is forbidden: User
/// "system:serviceaccount:ns:sa" cannot get resource "secrets" in API group "" in the
/// namespace "default"`.
pub fn forbidden_message(user: &UserInfo, attrs: &Attributes) -> String {
    forbidden_message_with_reason(user, attrs, "")
}

/// [`forbidden_message`] with the authorizer's reason appended (`...: RBAC: ...`), as the API
/// server words it when the reason is not empty.
pub fn forbidden_message_with_reason(user: &UserInfo, attrs: &Attributes, reason: &str) -> String {
    let who = &user.name;
    let verb = &attrs.verb;
    let mut message = if let Some(path) = &attrs.path {
        format!("User {who:?} cannot {verb} path {path:?}")
    } else {
        let mut resource = attrs.resource.clone();
        if !attrs.subresource.is_empty() {
            resource = format!("{resource}/{}", attrs.subresource);
        }
        let group = &attrs.api_group;
        if attrs.namespace.is_empty() {
            format!(
                "User {who:?} cannot {verb} resource {resource:?} in API group {group:?} at the cluster scope"
            )
        } else {
            format!(
                "User {who:?} cannot {verb} resource {resource:?} in API group {group:?} in the namespace {:?}",
                attrs.namespace
            )
        }
    };
    if !reason.is_empty() {
        message = format!("{message}: {reason}");
    }
    // `NewForbidden` qualifies with the resource (without subresource) and its group.
    let qualified = match (&attrs.path, attrs.api_group.as_str()) {
        (Some(_), _) => String::new(),
        (None, "") => attrs.resource.clone(),
        (None, group) => format!("{}.{group}", attrs.resource),
    };
    if qualified.is_empty() {
        format!("forbidden: {message}")
    } else if attrs.name.is_empty() {
        format!("{qualified} is forbidden: {message}")
    } else {
        format!("{qualified} {:?} is forbidden: {message}", attrs.name)
    }
}

/// The whole `403 Forbidden` `metav1.Status` body the API server answers with; `reason` is
/// [`Decision::reason`] (may be empty).
pub fn forbidden_status(user: &UserInfo, attrs: &Attributes, reason: &str) -> Value {
    let mut details = serde_json::Map::new();
    if attrs.path.is_none() {
        if !attrs.name.is_empty() {
            details.insert("name".into(), json!(attrs.name));
        }
        if !attrs.api_group.is_empty() {
            details.insert("group".into(), json!(attrs.api_group));
        }
        if !attrs.resource.is_empty() {
            details.insert("kind".into(), json!(attrs.resource));
        }
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": forbidden_message_with_reason(user, attrs, reason),
        "reason": "Forbidden",
        "details": details,
        "code": 403
    })
}

fn str_at<'v>(v: Option<&'v Value>, key: &str) -> &'v str {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The strings of the array at `key` of `v` (none when it is missing or not an array).
pub(crate) fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The bootstrap ClusterRoleBindings every cluster has.
fn bootstrap_allows(user: &UserInfo, attrs: &Attributes) -> bool {
    let authenticated = user.is_authenticated();
    if let Some(path) = &attrs.path {
        if attrs.verb != "get" {
            return false;
        }
        let matches = |paths: &[&str]| paths.iter().any(|p| non_resource_url_matches(p, path));
        return matches(PUBLIC_PATHS) || (authenticated && matches(DISCOVERY_PATHS));
    }
    // system:basic-user
    authenticated
        && attrs.verb == "create"
        && attrs.subresource.is_empty()
        && matches!(
            (attrs.api_group.as_str(), attrs.resource.as_str()),
            ("authorization.k8s.io", "selfsubjectaccessreviews")
                | ("authorization.k8s.io", "selfsubjectrulesreviews")
                | ("authentication.k8s.io", "selfsubjectreviews")
        )
}

/// Whether one of the binding's subjects is the user. `namespace` defaults ServiceAccount
/// subjects without a namespace (RoleBindings only).
fn binds(binding: &Value, namespace: &str, user: &UserInfo) -> bool {
    let Some(subjects) = binding.get("subjects").and_then(Value::as_array) else {
        return false;
    };
    subjects.iter().any(|s| {
        let name = str_at(Some(s), "name");
        match str_at(Some(s), "kind") {
            "User" => user.name == name,
            "Group" => user.groups.iter().any(|g| g == name),
            "ServiceAccount" => {
                let ns = match str_at(Some(s), "namespace") {
                    "" => namespace,
                    ns => ns,
                };
                !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{name}")
            }
            _ => false,
        }
    })
}

fn rules_of(role: &Value) -> Vec<Value> {
    role.get("rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The rules of a ClusterRole, including those its `aggregationRule` selects.
fn cluster_role_rules(policy: &Policy<'_>, name: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    collect_cluster_role_rules(policy, name, &mut seen, &mut out);
    out
}

fn collect_cluster_role_rules(
    policy: &Policy<'_>,
    name: &str,
    seen: &mut Vec<String>,
    out: &mut Vec<Value>,
) {
    if seen.iter().any(|s| s == name) {
        return;
    }
    seen.push(name.to_string());
    let Some(role) = policy
        .cluster_roles
        .iter()
        .find(|r| r.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
    else {
        return;
    };
    out.extend(rules_of(role));
    let Some(selectors) = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
    else {
        return;
    };
    let selectors: Vec<LabelSelector> = selectors
        .iter()
        .filter_map(|s| LabelSelector::from_json(s).ok())
        .collect();
    for other in policy.cluster_roles {
        let other_name = other
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if other_name != name && selectors.iter().any(|s| s.matches(other)) {
            collect_cluster_role_rules(policy, other_name, seen, out);
        }
    }
}

/// `rbac.RuleAllows`.
fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    let verbs = strings(rule, "verbs");
    if !verbs.iter().any(|v| v == "*" || *v == attrs.verb) {
        return false;
    }
    if let Some(path) = &attrs.path {
        return strings(rule, "nonResourceURLs")
            .iter()
            .any(|u| non_resource_url_matches(u, path));
    }
    let groups = strings(rule, "apiGroups");
    if !groups.iter().any(|g| g == "*" || *g == attrs.api_group) {
        return false;
    }
    let combined = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    let resources = strings(rule, "resources");
    let resource_ok = resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!attrs.subresource.is_empty() && *r == format!("*/{}", attrs.subresource))
    });
    if !resource_ok {
        return false;
    }
    let names = strings(rule, "resourceNames");
    names.is_empty() || names.contains(&attrs.name)
}

/// `rbac.NonResourceURLMatches`: exact, `*`, or a prefix ending in `*`.
fn non_resource_url_matches(rule: &str, path: &str) -> bool {
    if rule == "*" || rule == path {
        return true;
    }
    rule.strip_suffix('*')
        .is_some_and(|prefix| path.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa() -> UserInfo {
        UserInfo::service_account("sc-system", "sc-job")
    }

    fn attrs(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            api_group: group.into(),
            resource: resource.into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn role(ns: &str, name: &str, rules: Value) -> Value {
        json!({"kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": rules})
    }

    fn cluster_role(name: &str, rules: Value) -> Value {
        json!({"kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
    }

    fn rb(ns: &str, kind: &str, role: &str, subjects: Value) -> Value {
        json!({"kind": "RoleBinding", "metadata": {"name": "b", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": subjects})
    }

    fn crb(role: &str, subjects: Value) -> Value {
        json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": subjects})
    }

    fn check(
        roles: &[Value],
        cluster_roles: &[Value],
        rbs: &[Value],
        crbs: &[Value],
        user: &UserInfo,
        a: &Attributes,
    ) -> bool {
        let r: Vec<&Value> = roles.iter().collect();
        let cr: Vec<&Value> = cluster_roles.iter().collect();
        let b: Vec<&Value> = rbs.iter().collect();
        let cb: Vec<&Value> = crbs.iter().collect();
        authorize(
            &Policy {
                roles: &r,
                cluster_roles: &cr,
                role_bindings: &b,
                cluster_role_bindings: &cb,
            },
            user,
            a,
        )
    }

    #[test]
    fn role_binding_to_role_with_defaulted_sa_namespace() {
        let roles = [role(
            "sc-system",
            "r",
            json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]),
        )];
        let rbs = [rb(
            "sc-system",
            "Role",
            "r",
            json!([{"kind": "ServiceAccount", "name": "sc-job"}]),
        )];
        let get = attrs("get", "", "secrets", "sc-system", "s");
        assert!(check(&roles, &[], &rbs, &[], &sa(), &get));
        assert!(!check(
            &roles,
            &[],
            &rbs,
            &[],
            &sa(),
            &attrs("delete", "", "secrets", "sc-system", "s")
        ));
        assert!(!check(
            &roles,
            &[],
            &rbs,
            &[],
            &sa(),
            &attrs("get", "", "secrets", "default", "s")
        ));
        assert!(!check(
            &roles,
            &[],
            &rbs,
            &[],
            &sa(),
            &attrs("get", "", "configmaps", "sc-system", "s")
        ));
        assert!(!check(
            &roles,
            &[],
            &rbs,
            &[],
            &sa(),
            &attrs("get", "apps", "secrets", "sc-system", "s")
        ));
        let other = UserInfo::service_account("other", "sc-job");
        assert!(!check(&roles, &[], &rbs, &[], &other, &get));
    }

    #[test]
    fn role_binding_to_cluster_role_is_namespaced() {
        let crs = [cluster_role(
            "reader",
            json!([{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]}]),
        )];
        let rbs = [rb(
            "sc-system",
            "ClusterRole",
            "reader",
            json!([{"kind": "User", "name": "alice"}]),
        )];
        let alice = UserInfo {
            name: "alice".into(),
            groups: vec!["system:authenticated".into()],
        };
        assert!(check(
            &[],
            &crs,
            &rbs,
            &[],
            &alice,
            &attrs("get", "batch", "jobs", "sc-system", "j")
        ));
        assert!(!check(
            &[],
            &crs,
            &rbs,
            &[],
            &alice,
            &attrs("get", "batch", "jobs", "default", "j")
        ));
        assert!(!check(
            &[],
            &crs,
            &rbs,
            &[],
            &alice,
            &attrs("get", "batch", "jobs", "", "")
        ));
    }

    #[test]
    fn role_binding_does_not_use_role_of_other_namespace() {
        let roles = [role(
            "other",
            "r",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        )];
        let rbs = [rb(
            "sc-system",
            "Role",
            "r",
            json!([{"kind": "ServiceAccount", "name": "sc-job", "namespace": "sc-system"}]),
        )];
        assert!(!check(
            &roles,
            &[],
            &rbs,
            &[],
            &sa(),
            &attrs("get", "", "pods", "sc-system", "")
        ));
    }

    #[test]
    fn cluster_role_binding_to_group() {
        let crs = [cluster_role(
            "ns-reader",
            json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}]),
        )];
        let crbs = [crb(
            "ns-reader",
            json!([{"kind": "Group", "name": "system:serviceaccounts"}]),
        )];
        assert!(check(
            &[],
            &crs,
            &[],
            &crbs,
            &sa(),
            &attrs("list", "", "namespaces", "", "")
        ));
        assert!(check(
            &[],
            &crs,
            &[],
            &crbs,
            &sa(),
            &attrs("list", "", "namespaces", "any", "")
        ));
        let bob = UserInfo {
            name: "bob".into(),
            groups: vec![],
        };
        assert!(!check(
            &[],
            &crs,
            &[],
            &crbs,
            &bob,
            &attrs("list", "", "namespaces", "", "")
        ));
    }

    #[test]
    fn cluster_role_binding_sa_needs_namespace() {
        let crs = [cluster_role(
            "all",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        )];
        let without = [crb(
            "all",
            json!([{"kind": "ServiceAccount", "name": "sc-job"}]),
        )];
        assert!(!check(
            &[],
            &crs,
            &[],
            &without,
            &sa(),
            &attrs("get", "", "pods", "sc-system", "p")
        ));
        let with = [crb(
            "all",
            json!([{"kind": "ServiceAccount", "name": "sc-job", "namespace": "sc-system"}]),
        )];
        assert!(check(
            &[],
            &crs,
            &[],
            &with,
            &sa(),
            &attrs("get", "", "pods", "sc-system", "p")
        ));
    }

    #[test]
    fn wildcards() {
        let crs = [cluster_role(
            "all",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        )];
        let crbs = [crb("all", json!([{"kind": "User", "name": "admin"}]))];
        let admin = UserInfo {
            name: "admin".into(),
            groups: vec![],
        };
        assert!(check(
            &[],
            &crs,
            &[],
            &crbs,
            &admin,
            &attrs("deletecollection", "apps", "deployments", "x", "")
        ));
        assert!(check(
            &[],
            &crs,
            &[],
            &crbs,
            &admin,
            &Attributes {
                subresource: "log".into(),
                ..attrs("get", "", "pods", "x", "p")
            }
        ));
        // Resource wildcards do not cover non-resource URLs.
        let path = Attributes {
            verb: "get".into(),
            path: Some("/metrics".into()),
            ..Default::default()
        };
        assert!(!check(&[], &crs, &[], &crbs, &admin, &path));
    }

    #[test]
    fn resource_names() {
        let roles = [role(
            "ns",
            "r",
            json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["sc-leader"], "verbs": ["get", "update"]}]),
        )];
        let rbs = [rb(
            "ns",
            "Role",
            "r",
            json!([{"kind": "User", "name": "u"}]),
        )];
        let u = UserInfo {
            name: "u".into(),
            groups: vec![],
        };
        assert!(check(
            &roles,
            &[],
            &rbs,
            &[],
            &u,
            &attrs("get", "coordination.k8s.io", "leases", "ns", "sc-leader")
        ));
        assert!(!check(
            &roles,
            &[],
            &rbs,
            &[],
            &u,
            &attrs("get", "coordination.k8s.io", "leases", "ns", "other")
        ));
        assert!(!check(
            &roles,
            &[],
            &rbs,
            &[],
            &u,
            &attrs("get", "coordination.k8s.io", "leases", "ns", "")
        ));
    }

    #[test]
    fn subresources() {
        let roles = [role(
            "ns",
            "r",
            json!([
                {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]},
                {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["update"]},
                {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["patch"]}
            ]),
        )];
        let rbs = [rb(
            "ns",
            "Role",
            "r",
            json!([{"kind": "User", "name": "u"}]),
        )];
        let u = UserInfo {
            name: "u".into(),
            groups: vec![],
        };
        let sub = |verb: &str, group: &str, res: &str, sub: &str| Attributes {
            subresource: sub.into(),
            ..attrs(verb, group, res, "ns", "x")
        };
        assert!(check(
            &roles,
            &[],
            &rbs,
            &[],
            &u,
            &sub("get", "", "pods", "log")
        ));
        assert!(!check(
            &roles,
            &[],
            &rbs,
            &[],
            &u,
            &sub("get", "", "pods", "exec")
        ));
        assert!(check(
            &roles,
            &[],
            &rbs,
            &[],
            &u,
            &sub("update", "batch", "jobs", "status")
        ));
        assert!(!check(
            &roles,
            &[],
            &rbs,
            &[],
            &u,
            &attrs("update", "batch", "jobs", "ns", "x")
        ));
        assert!(check(
            &roles,
            &[],
            &rbs,
            &[],
            &u,
            &sub("patch", "apps", "deployments", "scale")
        ));
        assert!(!check(
            &roles,
            &[],
            &rbs,
            &[],
            &u,
            &attrs("patch", "apps", "deployments", "ns", "x")
        ));
    }

    #[test]
    fn non_resource_urls() {
        let crs = [cluster_role(
            "m",
            json!([{"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]}]),
        )];
        let crbs = [crb("m", json!([{"kind": "User", "name": "u"}]))];
        let u = UserInfo {
            name: "u".into(),
            groups: vec![],
        };
        let path = |p: &str| Attributes {
            verb: "get".into(),
            path: Some(p.into()),
            ..Default::default()
        };
        assert!(check(&[], &crs, &[], &crbs, &u, &path("/metrics")));
        assert!(check(&[], &crs, &[], &crbs, &u, &path("/logs/kubelet")));
        assert!(!check(&[], &crs, &[], &crbs, &u, &path("/debug/pprof")));
    }

    #[test]
    fn masters_and_bootstrap_paths() {
        let root = UserInfo {
            name: "root".into(),
            groups: vec!["system:masters".into()],
        };
        assert!(check(
            &[],
            &[],
            &[],
            &[],
            &root,
            &attrs("delete", "", "secrets", "x", "y")
        ));
        let u = UserInfo {
            name: "u".into(),
            groups: vec!["system:authenticated".into()],
        };
        let path = |p: &str| Attributes {
            verb: "get".into(),
            path: Some(p.into()),
            ..Default::default()
        };
        for p in [
            "/api",
            "/apis",
            "/apis/batch/v1",
            "/version",
            "/openapi/v3",
            "/openapi/v3/apis/batch/v1",
            "/healthz",
            "/readyz",
        ] {
            assert!(check(&[], &[], &[], &[], &u, &path(p)), "{p}");
        }
        assert!(!check(&[], &[], &[], &[], &u, &path("/metrics")));
        assert!(!check(
            &[],
            &[],
            &[],
            &[],
            &u,
            &attrs("get", "", "secrets", "x", "y")
        ));
        let anon = UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        };
        assert!(check(&[], &[], &[], &[], &anon, &path("/version")));
        assert!(!check(&[], &[], &[], &[], &anon, &path("/apis")));
        assert!(check(
            &[],
            &[],
            &[],
            &[],
            &u,
            &attrs(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "",
                ""
            )
        ));
    }

    #[test]
    fn aggregated_cluster_roles() {
        let crs = [
            json!({"metadata": {"name": "view"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate-to-view": "true"}}]}, "rules": []}),
            json!({"metadata": {"name": "jobs-view", "labels": {"rbac.example.com/aggregate-to-view": "true"}},
                "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]}]}),
        ];
        let rbs = [rb(
            "ns",
            "ClusterRole",
            "view",
            json!([{"kind": "User", "name": "u"}]),
        )];
        let u = UserInfo {
            name: "u".into(),
            groups: vec![],
        };
        assert!(check(
            &[],
            &crs,
            &rbs,
            &[],
            &u,
            &attrs("get", "batch", "jobs", "ns", "j")
        ));
        assert!(!check(
            &[],
            &crs,
            &rbs,
            &[],
            &u,
            &attrs("delete", "batch", "jobs", "ns", "j")
        ));
    }

    #[test]
    fn missing_roles_give_a_reason() {
        let u = UserInfo {
            name: "u".into(),
            groups: vec![],
        };
        let crbs = [crb("viewer", json!([{"kind": "User", "name": "u"}]))];
        let rbs = [
            rb("ns", "Role", "gone", json!([{"kind": "User", "name": "u"}])),
            rb(
                "ns",
                "Role",
                "other-user",
                json!([{"kind": "User", "name": "someone"}]),
            ),
        ];
        let (r, cr, b, cb): (Vec<&Value>, Vec<&Value>, Vec<&Value>, Vec<&Value>) =
            (vec![], vec![], rbs.iter().collect(), crbs.iter().collect());
        let policy = Policy {
            roles: &r,
            cluster_roles: &cr,
            role_bindings: &b,
            cluster_role_bindings: &cb,
        };
        let a = attrs("list", "", "pods", "ns", "");
        let d = decide(&policy, &u, &a);
        assert!(!d.allowed);
        assert_eq!(
            d.reason,
            "RBAC: [clusterrole.rbac.authorization.k8s.io \"viewer\" not found, role.rbac.authorization.k8s.io \"gone\" not found]"
        );
        let cluster = attrs("list", "", "pods", "", "");
        let d = decide(&policy, &u, &cluster);
        assert_eq!(
            d.reason,
            "RBAC: clusterrole.rbac.authorization.k8s.io \"viewer\" not found"
        );
        assert_eq!(
            forbidden_message_with_reason(&u, &cluster, &d.reason),
            "pods is forbidden: User \"u\" cannot list resource \"pods\" in API group \"\" at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io \"viewer\" not found"
        );
        let nobody = UserInfo {
            name: "x".into(),
            groups: vec![],
        };
        assert_eq!(
            decide(&policy, &nobody, &a),
            Decision {
                allowed: false,
                reason: String::new()
            }
        );
    }

    #[test]
    fn messages() {
        let u = UserInfo::service_account("ns", "sa");
        assert_eq!(
            forbidden_message(&u, &attrs("get", "", "secrets", "default", "x")),
            "secrets \"x\" is forbidden: User \"system:serviceaccount:ns:sa\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            forbidden_message(&u, &attrs("list", "", "namespaces", "", "")),
            "namespaces is forbidden: User \"system:serviceaccount:ns:sa\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"
        );
        assert_eq!(
            forbidden_message(
                &u,
                &Attributes {
                    subresource: "status".into(),
                    ..attrs("update", "batch", "jobs", "ns", "j")
                }
            ),
            "jobs.batch \"j\" is forbidden: User \"system:serviceaccount:ns:sa\" cannot update resource \"jobs/status\" in API group \"batch\" in the namespace \"ns\""
        );
        let path = Attributes {
            verb: "get".into(),
            path: Some("/foo".into()),
            ..Default::default()
        };
        let plain = UserInfo {
            name: "u".into(),
            groups: vec![],
        };
        assert_eq!(
            forbidden_message(&plain, &path),
            "forbidden: User \"u\" cannot get path \"/foo\""
        );
        let status = forbidden_status(&u, &attrs("get", "batch", "jobs", "ns", "j"), "");
        assert_eq!(status["code"], 403);
        assert_eq!(status["reason"], "Forbidden");
        assert_eq!(
            status["details"],
            json!({"name": "j", "group": "batch", "kind": "jobs"})
        );
    }
}
