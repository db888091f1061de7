//! What the requests want, connection by connection: hashes and validation errors, and the connections dropped because their metadata ConfigMap name is taken. Derived
//! by the observe stage, read by the plan stage. No I/O.

use crate::contract::Requests;
use std::collections::BTreeMap;

/// What the requests want for one connection.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The connection name.
    pub name: String,
    /// Its content hash (also for an invalid request).
    pub hash: String,
    /// The validation errors (empty when valid), as `path: message`.
    pub errors: Vec<String>,
    /// What to do about drift of its objects.
    pub drift_policy: sc_model::DriftPolicy,
}

/// A requested connection the agent ignores: its metadata ConfigMap name is taken by an
/// earlier connection, or it gives no valid name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameClash {
    /// The ignored connection.
    pub dropped: String,
    /// The connection that holds the metadata ConfigMap name; `None` when the dropped
    /// connection's name gives no valid metadata ConfigMap name at all.
    pub taken_by: Option<String>,
}

/// Hashes and validation errors of every requested connection (the requests are consumed:
/// each connection's raw request is freed as soon as it is parsed). A connection to a
/// namespace `guard` refuses is invalid: its error names its `namespace` key.
pub fn desired(requests: Requests, guard: &sc_model::NamespaceGuard) -> Vec<Desired> {
    let mut checks = sc_model::check_connections_owned(requests.connections, &requests.hash_key);
    guard.apply(&mut checks);
    checks
        .into_iter()
        .map(|c| {
            let drift_policy = c
                .connection
                .as_ref()
                .map(|conn| conn.spec.drift_policy)
                .unwrap_or_default();
            Desired {
                name: c.name,
                hash: c.hash,
                errors: c.errors.iter().map(ToString::to_string).collect(),
                drift_policy,
            }
        })
        .collect()
}

/// Whether `connection` gives a valid metadata ConfigMap name (one with at least a letter or a
/// digit after the prefix).
pub fn has_metadata_name(connection: &str) -> bool {
    let cm = crate::contract::metadata_name(connection);
    cm.len() != crate::contract::METADATA_PREFIX.len() && sc_model::names::is_dns_subdomain(&cm)
}

/// Drops the connections whose metadata ConfigMap name is taken by an earlier one (names that
/// differ only in non-alphanumeric characters or case, in different namespaces) or is not a
/// valid name (a connection name without a letter or digit); returns the kept connections and
/// the clashes. A dropped connection has nowhere to record a result, so no Job carries it.
pub fn without_metadata_clashes(desired: Vec<Desired>) -> (Vec<Desired>, Vec<NameClash>) {
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut kept = Vec::with_capacity(desired.len());
    let mut clashes = Vec::new();
    for d in desired {
        if !has_metadata_name(&d.name) {
            clashes.push(NameClash {
                dropped: d.name.clone(),
                taken_by: None,
            });
            continue;
        }
        let cm = crate::contract::metadata_name(&d.name);
        match owners.get(&cm) {
            Some(owner) => clashes.push(NameClash {
                dropped: d.name.clone(),
                taken_by: Some(owner.clone()),
            }),
            None => {
                owners.insert(cm, d.name.clone());
                kept.push(d);
            }
        }
    }
    (kept, clashes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn want(name: &str, hash: &str) -> Desired {
        Desired {
            name: name.into(),
            hash: hash.into(),
            errors: vec![],
            drift_policy: sc_model::DriftPolicy::Repair,
        }
    }

    #[test]
    fn clashing_metadata_names_keep_the_first_connection() {
        let (kept, clashes) = without_metadata_clashes(vec![
            want("Blob-1", "a"),
            want("blob_1", "b"),
            want("c", "c"),
        ]);
        let names: Vec<&str> = kept.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec!["Blob-1", "c"]);
        assert_eq!(
            clashes,
            vec![NameClash {
                dropped: "blob_1".to_string(),
                taken_by: Some("Blob-1".to_string())
            }]
        );
    }

    #[test]
    fn a_name_without_a_metadata_name_is_dropped() {
        let (kept, clashes) = without_metadata_clashes(vec![want("___", "a"), want("c", "c")]);
        let names: Vec<&str> = kept.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec!["c"]);
        assert_eq!(
            clashes,
            vec![NameClash {
                dropped: "___".to_string(),
                taken_by: None
            }]
        );
    }
}
