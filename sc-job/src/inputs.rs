//! The inputs of a run: the change set, the requests with their protected settings merged in,
//! and their validation, isolating invalid connections so the others go on. No I/O.

use sc_model::{FieldError, RequestSet, validate_connections_keyed};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// What to do with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Create or update its objects.
    Apply,
    /// Remove it (its objects only with `deletionPolicy: Delete`).
    Delete,
}

/// One connection of a change set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Entry {
    /// The connection name.
    pub name: String,
    /// The content hash the agent computed for it (empty for deletions).
    #[serde(default)]
    pub hash: String,
    /// Apply or delete.
    pub action: Action,
}

/// The change set written by sc-agent (key `changeset.json`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChangeSet {
    /// A unique id of the change set.
    pub id: String,
    /// The Helm release revision it was computed from.
    pub revision: u64,
    /// The connections to apply or delete.
    pub connections: Vec<Entry>,
}

/// Parses and checks a change set document.
pub fn parse_changeset(text: &str) -> Result<ChangeSet, String> {
    let cs: ChangeSet =
        serde_json::from_str(text).map_err(|e| format!("is not a valid change set: {e}"))?;
    if cs.id.trim().is_empty() {
        return Err("has an empty id".into());
    }
    let mut seen = BTreeSet::new();
    for e in &cs.connections {
        if e.name.is_empty() {
            return Err("lists a connection with an empty name".into());
        }
        if !seen.insert(e.name.as_str()) {
            return Err(format!("lists connection {} twice", e.name));
        }
    }
    Ok(cs)
}

/// Merges the protected settings (`{"<name>": {"secrets": {...}}}`) into the requests'
/// `connections` subtree. Protected entries of connections not in the requests are ignored.
pub fn merge_secrets(requests: &Value, protected: &Value) -> Result<Value, String> {
    let mut connections =
        match requests {
            Value::Null => Map::new(),
            Value::Object(m) => m.clone(),
            _ => return Err(
                "connections.json of the requests is not a map of connection name to connection"
                    .into(),
            ),
        };
    let protected = match protected {
        Value::Null => Map::new(),
        Value::Object(m) => m.clone(),
        _ => return Err(
            "connections.json of the protected Secret is not a map of connection name to settings"
                .into(),
        ),
    };
    for (name, settings) in protected {
        let Some(secrets) = settings.get("secrets") else {
            continue;
        };
        if let Some(Value::Object(conn)) = connections.get_mut(&name) {
            conn.insert("secrets".into(), secrets.clone());
        }
    }
    Ok(Value::Object(connections))
}

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
fn owner<'a>(path: &str, names: &'a [String]) -> Option<&'a String> {
    let rest = path.strip_prefix("connections.")?;
    names
        .iter()
        .filter(|n| {
            rest == n.as_str()
                || rest
                    .strip_prefix(n.as_str())
                    .is_some_and(|t| t.starts_with('.') || t.starts_with('['))
        })
        .max_by_key(|n| n.len())
}

/// Validates `connections` (secrets merged) with sc-model; a connection with errors is set
/// aside with its errors and the rest is validated again, so one invalid connection does not
/// stop the others. Content hashes are keyed by `hash_key` (the protected Secret's uid, as
/// sc-agent keys them).
pub fn validate_isolating(connections: Value, hash_key: &str) -> Validated {
    let mut remaining = match connections {
        Value::Object(m) => m,
        Value::Null => Map::new(),
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
    let mut invalid: BTreeMap<String, Vec<FieldError>> = BTreeMap::new();
    loop {
        // The requests are moved in and out of the value validated, never copied: they
        // may hold thousands of connections.
        let all = Value::Object(std::mem::take(&mut remaining));
        let result = validate_connections_keyed(&all, hash_key);
        if let Value::Object(m) = all {
            remaining = m;
        }
        match result {
            Ok(set) => {
                return Validated {
                    set,
                    invalid,
                    general: Vec::new(),
                };
            }
            Err(errors) => {
                let names: Vec<String> = remaining.keys().cloned().collect();
                let mut general = Vec::new();
                let mut removed = false;
                for e in errors.0 {
                    match owner(&e.path, &names) {
                        Some(n) => {
                            removed |= remaining.remove(n).is_some();
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
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_change_set() {
        let cs = parse_changeset(
            r#"{"id":"u1","revision":3,"connections":[{"name":"a","hash":"h","action":"apply"},{"name":"b","action":"delete"}]}"#,
        )
        .unwrap();
        assert_eq!(cs.revision, 3);
        assert_eq!(cs.connections[1].action, Action::Delete);
        assert_eq!(cs.connections[1].hash, "");
        assert!(parse_changeset("{").is_err());
        assert!(
            parse_changeset(
                r#"{"id":"u","revision":1,"connections":[{"name":"a","action":"upsert"}]}"#
            )
            .is_err()
        );
        let twice = r#"{"id":"u","revision":1,"connections":[{"name":"a","action":"apply"},{"name":"a","action":"delete"}]}"#;
        assert_eq!(
            parse_changeset(twice).unwrap_err(),
            "lists connection a twice"
        );
    }

    #[test]
    fn merges_protected_settings() {
        let req = json!({"a": {"targetType": "storage-blob"}, "b": {}});
        let prot =
            json!({"a": {"secrets": {"connectionString": "s3cr3t"}}, "gone": {"secrets": {}}});
        let merged = merge_secrets(&req, &prot).unwrap();
        assert_eq!(merged["a"]["secrets"]["connectionString"], "s3cr3t");
        assert!(merged.get("gone").is_none());
        assert!(merge_secrets(&json!([]), &Value::Null).is_err());
    }

    #[test]
    fn owner_of_paths() {
        let names = vec!["a".to_string(), "a_b".to_string()];
        assert_eq!(owner("connections.a.parameters.x", &names).unwrap(), "a");
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
        let v = validate_isolating(conns.clone(), "");
        assert!(v.general.is_empty());
        assert_eq!(v.set.connections().len(), 1);
        assert_eq!(v.set.connections()[0].name(), "good");
        let errs = &v.invalid["bad"];
        assert!(
            errs.iter().all(|e| e.path.starts_with("connections.bad")),
            "{errs:?}"
        );
    }
}
