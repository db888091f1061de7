//! Authentication (the admin token, ServiceAccount tokens) and RBAC authorization.

use std::sync::Arc;

use rand::Rng;
use serde_json::Value;

use super::{Cluster, meta};
use crate::error::ApiError;
use crate::rbac::{Attributes, UserInfo};
use crate::store::{ObjKey, ResKey};

pub(super) struct TokenEntry {
    namespace: String,
    name: String,
    uid: String,
}

pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

impl Cluster {
    /// The user of a bearer token: the admin, or a ServiceAccount whose token was issued by
    /// [`Cluster::issue_token`] and which still exists.
    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        if token == self.admin_token {
            return Some(UserInfo {
                name: "admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            });
        }
        let (ns, name, uid) = {
            let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            let e = tokens.get(token)?;
            (e.namespace.clone(), e.name.clone(), e.uid.clone())
        };
        let sa = self.store.get(&ObjKey::new(
            &ResKey::new("", "serviceaccounts"),
            &ns,
            &name,
        ))?;
        if meta(&sa)["uid"].as_str() != Some(&uid) {
            return None;
        }
        Some(UserInfo {
            name: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        })
    }

    /// Issue a bearer token for ServiceAccount `namespace`/`name` (404 when it does not exist).
    /// The token stays valid while the ServiceAccount exists.
    pub fn issue_token(&self, namespace: &str, name: &str) -> Result<String, ApiError> {
        let res = ResKey::new("", "serviceaccounts");
        let sa = self.get(&res, namespace, name)?;
        let token = format!("kubesim-sa.{}", random_token());
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                token.clone(),
                TokenEntry {
                    namespace: namespace.into(),
                    name: name.into(),
                    uid: meta(&sa)["uid"].as_str().unwrap_or_default().into(),
                },
            );
        Ok(token)
    }

    /// RBAC decision for `user` (403 with the API server's message when denied).
    pub fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Result<(), ApiError> {
        let decision = self.decide(user, attrs);
        if decision.allowed {
            return Ok(());
        }
        let info = self
            .info(&ResKey::new(&attrs.api_group, &attrs.resource))
            .ok();
        Err(ApiError::forbidden(
            crate::rbac::forbidden_message_with_reason(user, attrs, &decision.reason),
            info.as_ref(),
            &attrs.name,
        ))
    }

    /// The RBAC decision for `user` with the Roles and bindings currently stored.
    pub fn decide(&self, user: &UserInfo, attrs: &Attributes) -> crate::rbac::Decision {
        if user.groups.iter().any(|g| g == "system:masters") {
            return crate::rbac::Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        let fetch = |r: &str| {
            self.store
                .list(&ResKey::new("rbac.authorization.k8s.io", r), None)
                .0
        };
        let (roles, croles, rbs, crbs) = (
            fetch("roles"),
            fetch("clusterroles"),
            fetch("rolebindings"),
            fetch("clusterrolebindings"),
        );
        let (r1, r2, r3, r4) = (refs(&roles), refs(&croles), refs(&rbs), refs(&crbs));
        let policy = crate::rbac::Policy {
            roles: &r1,
            cluster_roles: &r2,
            role_bindings: &r3,
            cluster_role_bindings: &r4,
        };
        crate::rbac::decide(&policy, user, attrs)
    }
}

fn refs(v: &[Arc<Value>]) -> Vec<&Value> {
    v.iter().map(|o| o.as_ref()).collect()
}
