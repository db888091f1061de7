//! Helm-style values documents: merging several files and extracting `connections`.

use crate::error::{FieldError, ValidationErrors};
use crate::resolve::{RequestSet, validate_connections};
use serde_json::Value;

/// Merges `overlay` into `base` as helm merges values files: maps merge key by key,
/// any other value replaces, and a `null` in the overlay removes the key.
pub fn merge_values(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(&k);
                } else if let Some(existing) = b.get_mut(&k) {
                    merge_values(existing, v);
                } else {
                    b.insert(k, v);
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// The values `helm --set-string k=v ...` builds from `pairs` (as Arc passes configuration
/// settings): dotted keys become maps, `name[i]` list items (an index above `max_index` is
/// ignored: the value goes to `name` itself), every value a string; a later key replaces
/// what an earlier one set on its path.
pub fn set_string<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)], max_index: usize) -> Value {
    use serde_json::Map;
    let mut root = Value::Object(Map::new());
    for (k, v) in pairs {
        let mut cur = &mut root;
        for part in k.as_ref().split('.') {
            let (name, index) = match part.split_once('[') {
                Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            if !cur.is_object() {
                *cur = Value::Object(Map::new());
            }
            let Value::Object(obj) = cur else {
                unreachable!("made an object above")
            };
            cur = obj.entry(name.to_string()).or_insert(Value::Null);
            if let Some(i) = index.filter(|i| *i <= max_index) {
                if !cur.is_array() {
                    *cur = Value::Array(Vec::new());
                }
                let Value::Array(arr) = cur else {
                    unreachable!("made an array above")
                };
                while arr.len() <= i {
                    arr.push(Value::Null);
                }
                cur = &mut arr[i];
            }
        }
        *cur = Value::String(v.as_ref().to_string());
    }
    root
}

/// The `connections` subtree of a whole values document (`null` when absent). The other
/// top-level keys belong to the chart.
pub fn connections_subtree(values: &Value) -> &Value {
    values.get("connections").unwrap_or(&Value::Null)
}

/// Parses a YAML document into a JSON value (an empty document is an empty map). The
/// error is the parser's first line (position and cause): the rest may quote the document,
/// which can hold secrets.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let v: Value = serde_saphyr::from_str(text).map_err(|e| {
        let full = e.to_string();
        full.lines().next().unwrap_or("cannot parse").to_string()
    })?;
    Ok(if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    })
}

/// Parses and validates the connections of a whole YAML values document.
pub fn validate_values_yaml(text: &str) -> Result<RequestSet, ValidationErrors> {
    let values = parse_yaml(text).map_err(|e| {
        ValidationErrors(vec![FieldError::new(
            "values",
            format!("not valid YAML: {e}"),
        )])
    })?;
    validate_connections(connections_subtree(&values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_like_helm() {
        let mut base = json!({"a": {"b": 1, "c": 2}, "d": [1, 2], "e": 1});
        merge_values(&mut base, json!({"a": {"b": 3}, "d": [9], "e": null}));
        assert_eq!(base, json!({"a": {"b": 3, "c": 2}, "d": [9]}));
    }

    #[test]
    fn parses_yaml_scalars_as_given() {
        let v = parse_yaml("connections:\n  c1:\n    primary: \"true\"\n    n: 3\n").unwrap();
        assert_eq!(connections_subtree(&v)["c1"]["primary"], json!("true"));
        assert_eq!(connections_subtree(&v)["c1"]["n"], json!(3));
        assert_eq!(parse_yaml("").unwrap(), json!({}));
        let e = parse_yaml("a: [\n  password: hunter2secret\n").unwrap_err();
        assert!(!e.contains("hunter2secret"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn set_string_nests_as_helm_does() {
        let v = set_string(
            &[
                ("connections.a.workloads[1].name", "web"),
                ("connections.a.namespace", "apps"),
                ("connections.a.namespace", "other"),
                ("x[9]", "beyond"),
            ],
            3,
        );
        assert_eq!(
            v,
            serde_json::json!({
                "connections": {"a": {"workloads": [null, {"name": "web"}], "namespace": "other"}},
                "x": "beyond",
            })
        );
    }
}
