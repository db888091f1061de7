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
    /// When the token stops authenticating.
    expires: jiff::Timestamp,
    /// The pod (name, uid) the token is bound to: deleting it invalidates the token.
    pod: Option<(String, String)>,
}

/// kube-apiserver's default `expirationSeconds` of a TokenRequest.
pub const DEFAULT_TOKEN_SECONDS: i64 = 3600;
/// kube-apiserver's minimum `expirationSeconds` of a TokenRequest.
pub const MIN_TOKEN_SECONDS: i64 = 600;

/// A token [`Cluster::issue_bound_token`] issued.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    /// When it expires (`status.expirationTimestamp`), whole seconds.
    pub expires: jiff::Timestamp,
    /// Its lifetime, after the cluster's `--token-lifetime` cap and minimum.
    pub seconds: i64,
}

/// A token that authenticates: its user, audiences and `user.extra`.
struct ValidToken {
    user: UserInfo,
    audiences: Vec<String>,
    extra: Vec<(String, String)>,
}

/// The outcome of a token review: the user, or the authenticator's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenReviewOutcome {
    /// Authenticated for `audiences`, the intersection of the token's audiences and the
    /// requested ones.
    Authenticated {
        user: UserInfo,
        audiences: Vec<String>,
        /// `user.extra`: the pod a bound token belongs to
        /// (`authentication.kubernetes.io/pod-name`, `.../pod-uid`).
        extra: Vec<(String, String)>,
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
        self.service_account_token(token).ok().map(|t| t.user)
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
            self.authenticate(token)
                .map(|u| ValidToken {
                    user: u,
                    audiences: vec![issuer.clone()],
                    extra: Vec::new(),
                })
                .ok_or_else(|| "invalid bearer token".to_string())
        } else {
            self.service_account_token(token).map_err(|e| {
                if e.is_empty() {
                    "invalid bearer token".to_string()
                } else {
                    format!("[invalid bearer token, {e}]")
                }
            })
        };
        let ValidToken {
            user,
            audiences: mut token_audiences,
            extra,
        } = match found {
            Ok(t) => t,
            Err(e) => return TokenReviewOutcome::Unauthenticated(e),
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
            extra,
        }
    }

    /// The ServiceAccount user of an issued token, with the token's audiences; else why it is
    /// not valid (empty: not a token this cluster issued), as kube-apiserver's validator says.
    fn service_account_token(&self, token: &str) -> Result<ValidToken, String> {
        let e = {
            let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            let e = tokens.get(token).ok_or_else(String::new)?;
            TokenEntry {
                namespace: e.namespace.clone(),
                name: e.name.clone(),
                uid: e.uid.clone(),
                audiences: e.audiences.clone(),
                expires: e.expires,
                pod: e.pod.clone(),
            }
        };
        if jiff::Timestamp::now() >= e.expires {
            return Err("service account token has expired".into());
        }
        let ns = &e.namespace;
        let sa = self
            .store
            .get(&ObjKey::new(
                &ResKey::new("", "serviceaccounts"),
                ns,
                &e.name,
            ))
            .ok_or_else(|| format!("serviceaccounts \"{}\" not found", e.name))?;
        if meta(&sa)["uid"].as_str() != Some(&e.uid) {
            return Err("service account token has been invalidated".into());
        }
        let mut extra = Vec::new();
        if let Some((pod_name, pod_uid)) = &e.pod {
            let pod = self
                .store
                .get(&ObjKey::new(&ResKey::new("", "pods"), ns, pod_name))
                .ok_or_else(|| format!("pods \"{pod_name}\" not found"))?;
            let uid = meta(&pod)["uid"].as_str().unwrap_or_default();
            if uid != pod_uid {
                return Err(format!("pod UID ({uid}) does not match claim ({pod_uid})"));
            }
            // A terminating pod keeps its token until its grace period is over.
            let deleted_at = meta(&pod)["deletionTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if deleted_at.is_some_and(|t| t < jiff::Timestamp::now()) {
                return Err("service account token has been invalidated".into());
            }
            extra.push((
                "authentication.kubernetes.io/pod-name".to_string(),
                pod_name.clone(),
            ));
            extra.push((
                "authentication.kubernetes.io/pod-uid".to_string(),
                pod_uid.clone(),
            ));
        }
        Ok(ValidToken {
            user: UserInfo {
                name: format!("system:serviceaccount:{ns}:{}", e.name),
                groups: vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{ns}"),
                    "system:authenticated".into(),
                ],
            },
            audiences: e.audiences,
            extra,
        })
    }

    /// Issue a bearer token for ServiceAccount `namespace`/`name` (404 when it does not exist),
    /// for the issuer's audience, valid for kube-apiserver's default hour (or the cluster's
    /// shorter `--token-lifetime`) while the ServiceAccount exists.
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
        self.issue_bound_token(namespace, name, audiences, None, None)
            .map(|t| t.token)
    }

    /// A TokenRequest: a token for `audiences` that lives `seconds` (default an hour; at least
    /// 600 s, as kube-apiserver requires, unless the cluster's `--token-lifetime` is shorter:
    /// then that, which also caps longer requests), bound to `pod` (name, uid) when given:
    /// deleting the pod, or the ServiceAccount, invalidates it.
    pub fn issue_bound_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[String],
        seconds: Option<i64>,
        pod: Option<(&str, &str)>,
    ) -> Result<IssuedToken, ApiError> {
        let res = ResKey::new("", "serviceaccounts");
        let sa = self.get(&res, namespace, name)?;
        let seconds = seconds.unwrap_or(DEFAULT_TOKEN_SECONDS);
        let seconds = match self.token_lifetime() {
            Some(max) => seconds.clamp(1, (max.as_secs() as i64).max(1)),
            None => seconds.max(MIN_TOKEN_SECONDS),
        };
        let now = jiff::Timestamp::now();
        let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
        let expires = now + jiff::SignedDuration::from_secs(seconds);
        let token = format!("kubesim-sa.{}", random_token());
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the tokens that expired an hour ago (until then a review says they expired).
        let forget = now - jiff::SignedDuration::from_secs(3600);
        tokens.retain(|_, e| e.expires > forget);
        tokens.insert(
            token.clone(),
            TokenEntry {
                namespace: namespace.into(),
                name: name.into(),
                uid: meta(&sa)["uid"].as_str().unwrap_or_default().into(),
                audiences: audiences.to_vec(),
                expires,
                pod: pod.map(|(n, u)| (n.to_string(), u.to_string())),
            },
        );
        Ok(IssuedToken {
            token,
            expires,
            seconds,
        })
    }

    /// The cap on tokens' lifetime (`--token-lifetime`); `None`: kube-apiserver's rules.
    pub fn token_lifetime(&self) -> Option<std::time::Duration> {
        *self
            .token_lifetime
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Cap every token's lifetime at `lifetime` (shorter than kube-apiserver's 600 s minimum
    /// allowed), e.g. to see tokens expire and rotate within a test.
    pub fn set_token_lifetime(&self, lifetime: Option<std::time::Duration>) {
        *self
            .token_lifetime
            .write()
            .unwrap_or_else(|e| e.into_inner()) = lifetime;
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
