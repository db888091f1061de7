//! RBAC authorization: Roles, ClusterRoles and their bindings, evaluated as the API server does,
//! and the exact Forbidden message.

use serde_json::Value;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// e.g. `system:serviceaccount:sc-system:sc-job` or `admin`.
    pub name: String,
    /// e.g. `system:serviceaccounts`, `system:serviceaccounts:sc-system`, `system:authenticated`,
    /// `system:masters`.
    pub groups: Vec<String>,
}

/// What is asked (the request attributes of the authorizer).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    /// get list watch create update patch delete deletecollection
    pub verb: String,
    pub api_group: String,
    pub resource: String,
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
    pub roles: &'a [&'a Value],
    pub cluster_roles: &'a [&'a Value],
    pub role_bindings: &'a [&'a Value],
    pub cluster_role_bindings: &'a [&'a Value],
}

/// Whether the request is allowed. `system:masters` is always allowed; discovery, version
/// and openapi paths are allowed to every authenticated user (system:discovery).
pub fn authorize(_policy: &Policy<'_>, _user: &UserInfo, _attrs: &Attributes) -> bool {
    todo!("rbac module")
}

/// The API server's message, e.g. `secrets "x" is forbidden: User
/// "system:serviceaccount:ns:sa" cannot get resource "secrets" in API group "" in the
/// namespace "default"`.
pub fn forbidden_message(_user: &UserInfo, _attrs: &Attributes) -> String {
    todo!("rbac module")
}
