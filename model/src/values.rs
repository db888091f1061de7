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
}
