//! Requests split over several objects. The chart puts the connection requests in ConfigMap
//! `sc-requests` and the protected settings in Secret `sc-protected`; past a size budget
//! they continue in `<name>-1`, `<name>-2`, ... The first object names their number
//! ([`SHARDS_ANNOTATION`]); every shard carries the Helm revision, and readers use a revision
//! only once all of its shards carry it. No I/O.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Annotation of the first object: how many objects hold the requests ("1" when absent).
pub const SHARDS_ANNOTATION: &str = "sc-extension.io/shards";
/// Label of every further shard: the name of the first object.
pub const SHARD_OF_LABEL: &str = "sc-extension.io/shard-of";
/// Annotation of every shard: the Helm revision that wrote it.
pub const REVISION_ANNOTATION: &str = "sc-extension.io/revision";
/// At most this many shards are read (a bound against a corrupted annotation).
pub const MAX_SHARDS: usize = 1000;

/// The name of shard `i` of `base`: `base`, `base-1`, `base-2`, ...
pub fn shard_name(base: &str, i: usize) -> String {
    if i == 0 {
        base.to_string()
    } else {
        format!("{base}-{i}")
    }
}

/// How many shards the first object `name` announces; an error names the annotation.
pub fn shard_count(
    name: &str,
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<usize, String> {
    match annotations.and_then(|a| a.get(SHARDS_ANNOTATION)) {
        None => Ok(1),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_SHARDS).contains(&n) => Ok(n),
            _ => Err(format!(
                "annotation {SHARDS_ANNOTATION} of {name} is {v:?}, not a number from 1 to {MAX_SHARDS}: upgrade the release so the chart writes it again"
            )),
        },
    }
}

/// The revision an object carries (its [`REVISION_ANNOTATION`], `None` when absent).
pub fn revision(annotations: Option<&BTreeMap<String, String>>) -> Option<&str> {
    annotations
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .map(|r| r.trim())
}

/// Adds the connections of one shard (`part`, a JSON map named `what` in errors) to
/// `into`. A connection in two shards, or a shard that is not a map, is an error naming the
/// shard; the error never quotes the content (it may be a secret).
pub fn merge_into(into: &mut Map<String, Value>, part: Value, what: &str) -> Result<(), String> {
    match part {
        Value::Null => Ok(()),
        Value::Object(m) => {
            for (name, conn) in m {
                if into.contains_key(&name) {
                    return Err(format!(
                        "connection {name:?} is in {what} and in an earlier shard: upgrade the release so the chart writes the shards again"
                    ));
                }
                into.insert(name, conn);
            }
            Ok(())
        }
        _ => Err(format!(
            "{what} is not a map of connection name to connection: upgrade the release with valid values"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_and_counts() {
        assert_eq!(shard_name("sc-requests", 0), "sc-requests");
        assert_eq!(shard_name("sc-requests", 2), "sc-requests-2");
        assert_eq!(shard_count("sc-requests", None), Ok(1));
        assert_eq!(
            shard_count("sc-requests", Some(&ann(&[(SHARDS_ANNOTATION, "3")]))),
            Ok(3)
        );
        for bad in ["0", "x", "-1", "1001"] {
            let e =
                shard_count("sc-requests", Some(&ann(&[(SHARDS_ANNOTATION, bad)]))).unwrap_err();
            assert!(
                e.contains(SHARDS_ANNOTATION) && e.contains("sc-requests"),
                "{e}"
            );
        }
        assert_eq!(
            revision(Some(&ann(&[(REVISION_ANNOTATION, " 7 ")]))),
            Some("7")
        );
        assert_eq!(revision(None), None);
    }

    #[test]
    fn shards_merge_and_duplicates_are_refused_without_their_content() {
        let mut all = Map::new();
        merge_into(&mut all, json!({"a": {"x": 1}}), "ConfigMap sc-requests").unwrap();
        merge_into(&mut all, json!({"b": {"x": 2}}), "ConfigMap sc-requests-1").unwrap();
        merge_into(&mut all, Value::Null, "ConfigMap sc-requests-2").unwrap();
        assert_eq!(
            Value::Object(all.clone()),
            json!({"a": {"x": 1}, "b": {"x": 2}})
        );
        let e = merge_into(
            &mut all,
            json!({"a": {"s": "hunter2"}}),
            "Secret sc-protected-1",
        )
        .unwrap_err();
        assert!(e.contains("\"a\"") && e.contains("sc-protected-1"), "{e}");
        assert!(!e.contains("hunter2"));
        let e = merge_into(&mut all, json!([1]), "ConfigMap sc-requests-3").unwrap_err();
        assert!(e.contains("sc-requests-3"), "{e}");
    }
}
