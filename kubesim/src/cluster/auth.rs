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
    /// The audiences the token was issued for (empty: the API server's own, the issuer).
    audiences: Vec<String>,
}

/// The outcome of a token review: the user, or the authenticator's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenReviewOutcome {
    /// Authenticated for `audiences`, the intersection of the token's audiences and the
    /// requested ones.
    Authenticated {
        user: UserInfo,
        audiences: Vec<String>,
    },
    /// Not authenticated, with the error the API server reports.
    Unauthenticated(String),
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
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
        self.service_account_token(token).map(|(user, _)| user)
    }

    /// A TokenReview of `token` for `audiences` (empty: the API server's own audience, the
    /// issuer), as kube-apiserver's authenticators decide it: a token issued for none of the
    /// requested audiences is not authenticated.
    pub fn review_token(&self, token: &str, audiences: &[String]) -> TokenReviewOutcome {
        let issuer = self.issuer().url;
        let wanted: Vec<String> = if audiences.is_empty() {
            vec![issuer.clone()]
        } else {
            audiences.to_vec()
        };
        let found = if token == self.admin_token {
            self.authenticate(token).map(|u| (u, vec![issuer.clone()]))
        } else {
            self.service_account_token(token)
        };
        let Some((user, mut token_audiences)) = found else {
            return TokenReviewOutcome::Unauthenticated("invalid bearer token".into());
        };
        if token_audiences.is_empty() {
            token_audiences.push(issuer);
        }
        let both: Vec<String> = token_audiences
            .iter()
            .filter(|a| wanted.contains(a))
            .cloned()
            .collect();
        if both.is_empty() {
            return TokenReviewOutcome::Unauthenticated(format!(
                "[invalid bearer token, token audiences {} is invalid for the target audiences {}]",
                go_quoted(&token_audiences),
                go_quoted(&wanted)
            ));
        }
        TokenReviewOutcome::Authenticated {
            user,
            audiences: both,
        }
    }

    /// The ServiceAccount user of an issued token, with the token's audiences.
    fn service_account_token(&self, token: &str) -> Option<(UserInfo, Vec<String>)> {
        let (ns, name, uid, audiences) = {
            let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            let e = tokens.get(token)?;
            (
                e.namespace.clone(),
                e.name.clone(),
                e.uid.clone(),
                e.audiences.clone(),
            )
        };
        let sa = self.store.get(&ObjKey::new(
            &ResKey::new("", "serviceaccounts"),
            &ns,
            &name,
        ))?;
        if meta(&sa)["uid"].as_str() != Some(&uid) {
            return None;
        }
        Some((
            UserInfo {
                name: format!("system:serviceaccount:{ns}:{name}"),
                groups: vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{ns}"),
                    "system:authenticated".into(),
                ],
            },
            audiences,
        ))
    }

    /// Issue a bearer token for ServiceAccount `namespace`/`name` (404 when it does not exist).
    /// The token stays valid while the ServiceAccount exists.
    pub fn issue_token(&self, namespace: &str, name: &str) -> Result<String, ApiError> {
        self.issue_token_for(namespace, name, &[])
    }

    /// [`Cluster::issue_token`] for `audiences` (a TokenRequest's `spec.audiences`; empty:
    /// the issuer).
    pub fn issue_token_for(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[String],
    ) -> Result<String, ApiError> {
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
                    audiences: audiences.to_vec(),
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

    /// The rules that apply to `user` in `namespace` (cluster-wide ones included), with the
    /// errors of bindings whose role does not exist (`kubectl auth can-i --list`).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Value>, Vec<String>) {
        self.with_policy(|policy| crate::rbac::rules_for(policy, user, namespace))
    }

    /// The RBAC decision for `user` with the Roles and bindings currently stored.
    pub fn decide(&self, user: &UserInfo, attrs: &Attributes) -> crate::rbac::Decision {
        if user.groups.iter().any(|g| g == "system:masters") {
            return crate::rbac::Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        self.with_policy(|policy| crate::rbac::decide(policy, user, attrs))
    }

    /// `f` applied to the Roles and bindings currently stored.
    fn with_policy<T>(&self, f: impl FnOnce(&crate::rbac::Policy<'_>) -> T) -> T {
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
        f(&crate::rbac::Policy {
            roles: &r1,
            cluster_roles: &r2,
            role_bindings: &r3,
            cluster_role_bindings: &r4,
        })
    }
}

fn refs(v: &[Arc<Value>]) -> Vec<&Value> {
    v.iter().map(|o| o.as_ref()).collect()
}
