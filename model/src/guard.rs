//! Guarded namespaces: connections may not target `kube-system`, `kube-public`,
//! `kube-node-lease` or the release namespace (nor, so, list workloads there, since a listed
//! workload is always in its connection's namespace) unless the chart value
//! `security.allowedNamespaces` (or `rbac.namespaces`) names the namespace. The chart refuses
//! such a connection at install; sc-agent and sc-job refuse it again in the cluster, for
//! requests that did not come through the chart. No I/O.

use crate::error::FieldError;
use crate::resolve::ConnectionCheck;
use std::collections::BTreeSet;

/// The namespaces of the cluster's own components, guarded everywhere.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// The chart value that lifts the guard on a namespace.
pub const ALLOW_KEY: &str = "security.allowedNamespaces";

/// Which namespaces connections may not target, and the explicit exceptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceGuard {
    /// The release namespace (guarded too), when known.
    release_namespace: Option<String>,
    /// Namespaces named by `security.allowedNamespaces` or `rbac.namespaces`.
    allowed: BTreeSet<String>,
}

impl NamespaceGuard {
    /// A guard for the release in `release_namespace` (when known) with the namespaces
    /// `allowed` explicitly (empty strings are ignored).
    pub fn new<I, S>(release_namespace: Option<&str>, allowed: I) -> NamespaceGuard
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        NamespaceGuard {
            release_namespace: release_namespace
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            allowed: allowed
                .into_iter()
                .map(Into::into)
                .filter(|n: &String| !n.is_empty())
                .collect(),
        }
    }

    /// Whether a connection to `namespace` is refused.
    pub fn is_guarded(&self, namespace: &str) -> bool {
        let guarded = SYSTEM_NAMESPACES.contains(&namespace)
            || self.release_namespace.as_deref() == Some(namespace);
        guarded && !self.allowed.contains(namespace)
    }

    /// The error of connection `name` targeting `namespace`, if it is guarded. It names the
    /// key (`connections.<name>.namespace`) and the chart value that allows it; it holds no
    /// value of the request but the namespace.
    pub fn check(&self, name: &str, namespace: &str, workloads: usize) -> Option<FieldError> {
        if !self.is_guarded(namespace) {
            return None;
        }
        let what = if SYSTEM_NAMESPACES.contains(&namespace) {
            "a namespace of the cluster's own components"
        } else {
            "the namespace of the sc-extension release"
        };
        let listed = if workloads > 0 {
            format!(
                " (nor may its {workloads} listed workload{} there be patched)",
                if workloads == 1 { "" } else { "s" }
            )
        } else {
            String::new()
        };
        Some(FieldError::new(
            format!("connections.{name}.namespace"),
            format!(
                "namespace {namespace:?} is guarded: it is {what}, and a connection may not target it{listed}; \
                 choose another namespace, or name {namespace:?} in the chart value {ALLOW_KEY} (or rbac.namespaces) \
                 to allow it explicitly"
            ),
        ))
    }

    /// Adds the guard's error to every check whose connection targets a guarded namespace
    /// (nothing is written for such a connection).
    pub fn apply(&self, checks: &mut [ConnectionCheck]) {
        for c in checks {
            let Some(conn) = &c.connection else { continue };
            if let Some(e) = self.check(&c.name, &conn.spec.namespace, conn.spec.workloads.len()) {
                c.errors.push(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn blob(ns: &str) -> serde_json::Value {
        json!({"namespace": ns, "targetType": "storage-blob", "authType": "secret",
               "parameters": {"accountName": "acct"}, "secrets": {"accountKey": "fake-guard-secret-0123456789"},
               "workloads": [{"kind": "Deployment", "name": "web"}]})
    }

    #[test]
    fn system_namespaces_and_the_release_namespace_are_guarded() {
        let g = NamespaceGuard::new(Some("sc-system"), Vec::<String>::new());
        for ns in ["kube-system", "kube-public", "kube-node-lease", "sc-system"] {
            assert!(g.is_guarded(ns), "{ns}");
        }
        for ns in ["default", "apps", "kube-systems", "sc-system-2"] {
            assert!(!g.is_guarded(ns), "{ns}");
        }
        // Without a known release namespace, only the system ones.
        let g = NamespaceGuard::new(None, Vec::<String>::new());
        assert!(g.is_guarded("kube-system"));
        assert!(!g.is_guarded("sc-system"));
    }

    #[test]
    fn an_explicitly_allowed_namespace_is_not_guarded() {
        let g = NamespaceGuard::new(Some("sc-system"), ["kube-system", "sc-system", ""]);
        assert!(!g.is_guarded("kube-system"));
        assert!(!g.is_guarded("sc-system"));
        assert!(g.is_guarded("kube-public"));
    }

    #[test]
    fn the_error_names_the_key_and_the_chart_value() {
        let g = NamespaceGuard::new(Some("sc-system"), Vec::<String>::new());
        let e = g.check("blob1", "kube-system", 1).expect("refused");
        assert_eq!(e.path, "connections.blob1.namespace");
        assert!(e.message.contains("security.allowedNamespaces"), "{e}");
        assert!(e.message.contains("\"kube-system\""), "{e}");
        assert!(e.message.contains("1 listed workload there"), "{e}");
        let e = g.check("blob1", "sc-system", 0).expect("refused");
        assert!(e.message.contains("release"), "{e}");
        assert!(g.check("blob1", "apps", 3).is_none());
    }

    #[test]
    fn apply_refuses_only_the_guarded_connections() {
        let g = NamespaceGuard::new(Some("sc-system"), ["kube-public"]);
        let mut checks = crate::check_connections(&json!({
            "sys": blob("kube-system"),
            "rel": blob("sc-system"),
            "pub": blob("kube-public"),
            "app": blob("apps"),
        }));
        g.apply(&mut checks);
        let refused: Vec<(&str, Vec<String>)> = checks
            .iter()
            .filter(|c| !c.is_valid())
            .map(|c| {
                (
                    c.name.as_str(),
                    c.errors.iter().map(|e| e.path.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            refused,
            vec![
                ("rel", vec!["connections.rel.namespace".to_string()]),
                ("sys", vec!["connections.sys.namespace".to_string()]),
            ]
        );
        // The error never carries a secret value.
        for c in &checks {
            for e in &c.errors {
                assert!(!e.message.contains("fake-guard-secret"), "{e}");
            }
        }
    }
}
