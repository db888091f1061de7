//! Validating the requests of a run (their protected settings merged in), isolating invalid
//! connections so the others go on. No I/O.

use sc_model::{FieldError, NamespaceGuard, RequestSet, validate_connections_keyed};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The outcome of validating the requests connection by connection.
#[derive(Debug, Clone, Default)]
pub struct Validated {
    /// The valid connections (validated together, without the invalid ones).
    pub set: RequestSet,
    /// The errors of each invalid connection.
    pub invalid: BTreeMap<String, Vec<FieldError>>,
    /// Errors that belong to no single connection (the whole request is unusable).
    pub general: Vec<FieldError>,
}

/// The connection a key path belongs to (`connections.<name>` or below it).
fn owner<'a>(path: &str, names: &'a std::collections::BTreeSet<String>) -> Option<&'a String> {
    let name = sc_model::path_owner(path, |n| names.contains(n))?;
    names.get(name)
}

/// Validates `connections` (secrets merged) with sc-model; a connection with errors is set
/// aside with its errors and the rest is validated again, so one invalid connection does not
/// stop the others. Content hashes are keyed by `hash_key` (the protected Secret's uid, as
/// sc-agent keys them). A connection to a namespace `guard` refuses is set aside like an
/// invalid one, with an error naming its `namespace` key: nothing is written for it.
pub fn validate_isolating(
    connections: &Value,
    hash_key: &str,
    guard: &NamespaceGuard,
) -> Validated {
    let empty = Value::Object(Map::new());
    let whole = match connections {
        Value::Object(_) => connections,
        Value::Null => &empty,
        _ => {
            return Validated {
                general: vec![FieldError::new(
                    "connections",
                    "must be a map of connection name to connection",
                )],
                ..Default::default()
            };
        }
    };
    // The requests are validated as they are; a copy (they may hold thousands of
    // connections) is made only once a connection is set aside.
    let mut remaining: Option<Value> = None;
    let mut invalid: BTreeMap<String, Vec<FieldError>> = BTreeMap::new();
    loop {
        let result = validate_connections_keyed(remaining.as_ref().unwrap_or(whole), hash_key);
        let rest = |remaining: &mut Option<Value>| -> Map<String, Value> {
            match remaining.take().unwrap_or_else(|| whole.clone()) {
                Value::Object(m) => m,
                _ => Map::new(),
            }
        };
        match result {
            Ok(set) => {
                let refused: Vec<(String, FieldError)> = set
                    .connections()
                    .iter()
                    .filter_map(|c| {
                        let e = guard.check(c.name(), &c.spec.namespace, c.spec.workloads.len())?;
                        Some((c.name().to_string(), e))
                    })
                    .collect();
                if refused.is_empty() {
                    return Validated {
                        set,
                        invalid,
                        general: Vec::new(),
                    };
                }
                // Validated again without them (they may have been first of their kind).
                let mut m = rest(&mut remaining);
                for (name, e) in refused {
                    m.remove(&name);
                    invalid.entry(name).or_default().push(e);
                }
                remaining = Some(Value::Object(m));
            }
            Err(errors) => {
                let mut m = rest(&mut remaining);
                let names: std::collections::BTreeSet<String> = m.keys().cloned().collect();
                let mut general = Vec::new();
                let mut removed = false;
                for e in errors.0 {
                    match owner(&e.path, &names) {
                        Some(n) => {
                            removed |= m.remove(n).is_some();
                            invalid.entry(n.clone()).or_default().push(e);
                        }
                        None => general.push(e),
                    }
                }
                if !general.is_empty() || !removed {
                    return Validated {
                        set: RequestSet::default(),
                        invalid,
                        general,
                    };
                }
                remaining = Some(Value::Object(m));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn owner_of_paths() {
        let names: std::collections::BTreeSet<String> =
            ["a", "a_b", "a.b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(owner("connections.a.parameters.x", &names).unwrap(), "a");
        assert_eq!(
            owner("connections.a.b.parameters.x", &names).unwrap(),
            "a.b"
        );
        assert_eq!(owner("connections.a.c", &names).unwrap(), "a");
        assert_eq!(
            owner("connections.a_b.workloads[0]", &names).unwrap(),
            "a_b"
        );
        assert_eq!(owner("connections.a", &names).unwrap(), "a");
        assert!(owner("connections", &names).is_none());
        assert!(owner("connections.ab", &names).is_none());
    }

    #[test]
    fn an_invalid_connection_is_set_aside() {
        let conns = json!({
            "good": {"namespace": "default", "targetType": "storage-blob", "authType": "secret",
                      "parameters": {"accountName": "acct"}, "secrets": {"accountKey": "x"}},
            "bad": {"namespace": "default", "targetType": "storage-blop", "authType": "secret"},
        });
        let v = validate_isolating(&conns, "", &NamespaceGuard::default());
        assert!(v.general.is_empty());
        assert_eq!(v.set.connections().len(), 1);
        assert_eq!(v.set.connections()[0].name(), "good");
        let errs = &v.invalid["bad"];
        assert!(
            errs.iter().all(|e| e.path.starts_with("connections.bad")),
            "{errs:?}"
        );
    }

    #[test]
    fn a_connection_to_a_guarded_namespace_is_set_aside() {
        let conn = |ns: &str| {
            json!({"namespace": ns, "targetType": "storage-blob", "authType": "secret",
                   "parameters": {"accountName": "acct"},
                   "secrets": {"accountKey": "fake-guard-secret-0123456789"},
                   "workloads": [{"kind": "Deployment", "name": "coredns"}]})
        };
        let conns = json!({
            "good": conn("apps"),
            "sys": conn("kube-system"),
            "rel": conn("sc-system"),
            "allowed": conn("kube-public"),
        });
        let guard = NamespaceGuard::new(Some("sc-system"), ["kube-public"]);
        let v = validate_isolating(&conns, "", &guard);
        assert!(v.general.is_empty());
        let valid: Vec<&str> = v.set.connections().iter().map(|c| c.name()).collect();
        assert_eq!(valid, vec!["allowed", "good"]);
        assert_eq!(v.invalid.keys().collect::<Vec<_>>(), vec!["rel", "sys"]);
        for (name, errs) in &v.invalid {
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!(errs[0].path, format!("connections.{name}.namespace"));
            assert!(errs[0].message.contains("security.allowedNamespaces"));
            assert!(!errs[0].message.contains("fake-guard-secret"));
        }
    }
}
