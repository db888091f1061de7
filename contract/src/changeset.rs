//! The change set: ConfigMap `sc-changeset`, key `changeset.json`, written by sc-agent and
//! read by sc-job.

use crate::{CHANGESET_KEY, CONCLUDED_ANNOTATION};
use k8s_openapi::api::core::v1::ConfigMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// At most this many connections go into one change set (its ConfigMap stays far below the
/// 1 MiB limit of an object, and one sc-job's memory is bounded); more pending changes
/// follow in the next runs.
pub const MAX_CHANGESET_CONNECTIONS: usize = 5000;

/// What sc-job does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Create or update its objects.
    Apply,
    /// Remove it (its objects only with `deletionPolicy: Delete`) and its metadata.
    Delete,
}

/// Why an `apply` runs although the hash is already applied (absent: the request changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// The agent saw drift of the connection's objects.
    Repair,
    /// An operator asked for it (`sc-agent reapply`).
    Reapply,
    /// A cause of another version.
    #[serde(other)]
    Other,
}

/// One connection in a change set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChangeEntry {
    /// The connection name.
    pub name: String,
    /// The content hash to apply (empty, or absent, for a delete).
    #[serde(default)]
    pub hash: String,
    /// `apply` or `delete`.
    pub action: Action,
    /// Why an `apply` of an applied hash runs (sc-job applies it all the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
}

/// The change set: `changeset.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// A fresh id per run.
    pub id: String,
    /// The Helm revision of the requests.
    pub revision: i64,
    /// The connections to apply or delete.
    pub connections: Vec<ChangeEntry>,
}

impl ChangeSet {
    /// Parses and checks a change set document (a non-empty id, each connection named once);
    /// the error says what is wrong, to follow the object's name.
    pub fn parse(text: &str) -> Result<ChangeSet, String> {
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
}

/// The change set of ConfigMap `sc-changeset` and whether its run is concluded; `None` when
/// it holds none that parses.
pub fn parse_changeset(cm: &ConfigMap) -> Option<(ChangeSet, bool)> {
    let concluded = cm
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONCLUDED_ANNOTATION));
    cm.data
        .as_ref()
        .and_then(|d| d.get(CHANGESET_KEY))
        .and_then(|t| serde_json::from_str(t).ok())
        .map(|cs| (cs, concluded))
}

/// The change set of ConfigMap `sc-changeset` while its run is in flight (not concluded).
pub fn in_flight_changeset(cm: &ConfigMap) -> Option<ChangeSet> {
    parse_changeset(cm).and_then(|(cs, concluded)| (!concluded).then_some(cs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn parses_a_change_set() {
        let cs = ChangeSet::parse(
            r#"{"id":"u1","revision":3,"connections":[{"name":"a","hash":"h","action":"apply"},{"name":"b","action":"delete"}]}"#,
        )
        .unwrap();
        assert_eq!(cs.revision, 3);
        assert_eq!(cs.connections[1].action, Action::Delete);
        assert_eq!(cs.connections[1].hash, "");
        assert!(ChangeSet::parse("{").is_err());
        assert!(
            ChangeSet::parse(
                r#"{"id":"u","revision":1,"connections":[{"name":"a","action":"upsert"}]}"#
            )
            .is_err()
        );
        let twice = r#"{"id":"u","revision":1,"connections":[{"name":"a","action":"apply"},{"name":"a","action":"delete"}]}"#;
        assert_eq!(
            ChangeSet::parse(twice).unwrap_err(),
            "lists connection a twice"
        );
        assert_eq!(
            ChangeSet::parse(r#"{"id":" ","revision":1,"connections":[]}"#).unwrap_err(),
            "has an empty id"
        );
    }

    #[test]
    fn a_cause_is_written_only_when_set_and_unknown_causes_parse() {
        let repair = ChangeEntry {
            name: "a".into(),
            hash: "h".into(),
            action: Action::Apply,
            cause: Some(Cause::Repair),
        };
        let text = serde_json::to_string(&repair).unwrap();
        assert_eq!(
            text,
            r#"{"name":"a","hash":"h","action":"apply","cause":"repair"}"#
        );
        assert_eq!(serde_json::from_str::<ChangeEntry>(&text).unwrap(), repair);
        let other: ChangeEntry =
            serde_json::from_str(r#"{"name":"a","hash":"h","action":"apply","cause":"rotate"}"#)
                .unwrap();
        assert_eq!(other.cause, Some(Cause::Other));
    }

    #[test]
    fn a_change_set_round_trips_in_the_documented_form() {
        let cs = ChangeSet {
            id: "u1".into(),
            revision: 7,
            connections: vec![
                ChangeEntry {
                    name: "a".into(),
                    hash: "h".into(),
                    action: Action::Apply,
                    cause: None,
                },
                ChangeEntry {
                    name: "b".into(),
                    hash: String::new(),
                    action: Action::Delete,
                    cause: None,
                },
            ],
        };
        let text = serde_json::to_string(&cs).unwrap();
        assert_eq!(
            text,
            r#"{"id":"u1","revision":7,"connections":[{"name":"a","hash":"h","action":"apply"},{"name":"b","hash":"","action":"delete"}]}"#
        );
        assert_eq!(ChangeSet::parse(&text).unwrap(), cs);
    }

    #[test]
    fn the_change_set_in_flight_is_the_one_not_concluded() {
        let cs = ChangeSet {
            id: "x".into(),
            revision: 1,
            connections: Vec::new(),
        };
        let mut cm = ConfigMap {
            data: Some(BTreeMap::from([(
                CHANGESET_KEY.to_string(),
                serde_json::to_string(&cs).unwrap(),
            )])),
            ..Default::default()
        };
        assert_eq!(in_flight_changeset(&cm), Some(cs.clone()));
        cm.metadata.annotations = Some(BTreeMap::from([(
            CONCLUDED_ANNOTATION.to_string(),
            "true".to_string(),
        )]));
        assert_eq!(in_flight_changeset(&cm), None);
        assert_eq!(parse_changeset(&cm), Some((cs, true)));
    }

    #[test]
    fn the_largest_change_set_fits_an_object() {
        let cs = ChangeSet {
            id: uuid::Uuid::new_v4().to_string(),
            revision: i64::MAX,
            connections: (0..MAX_CHANGESET_CONNECTIONS)
                .map(|i| ChangeEntry {
                    name: format!("{i:_>60}"),
                    hash: "f".repeat(64),
                    action: Action::Delete,
                    cause: None,
                })
                .collect(),
        };
        let bytes = serde_json::to_string(&cs).unwrap().len();
        assert!(bytes < 1_000_000, "{bytes} bytes");
    }
}
