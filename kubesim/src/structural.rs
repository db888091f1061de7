//! The structural schemas of CustomResourceDefinitions applied to custom resources, as
//! kube-apiserver's apiextensions handler applies them: pruning of the fields a schema does
//! not declare, defaulting, and OpenAPI validation with the validator's messages
//! (`spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal
//! to 1`). Also the basic structural checks of a CRD's own schemas.
//!
//! The schema applied is the storage version's: kubesim stores a custom resource once and
//! serves it at every version without conversion.

use serde_json::{Map, Value};

use crate::error::Cause;
use crate::resources::ResourceInfo;

/// The schema writes and reads of a custom type go through (its storage version's).
pub fn schema_of(info: &ResourceInfo) -> Option<&Value> {
    if !info.custom {
        return None;
    }
    info.schema(info.version())
}

fn flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool) == Some(true)
}

fn preserves_unknown(s: &Value) -> bool {
    flag(s, "x-kubernetes-preserve-unknown-fields")
}

fn embedded(s: &Value) -> bool {
    flag(s, "x-kubernetes-embedded-resource")
}

fn int_or_string(s: &Value) -> bool {
    flag(s, "x-kubernetes-int-or-string")
}

fn nullable(s: &Value) -> bool {
    flag(s, "nullable")
}

fn properties(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

/// The schema of the values of a map (`additionalProperties` as a schema).
fn additional(s: &Value) -> Option<&Value> {
    s.get("additionalProperties").filter(|a| a.is_object())
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Removes from `obj` (a whole custom resource) every field its schema does not declare and
/// returns their paths, sorted (`spec.foo`, `spec.items[0].bar`), as the API server prunes
/// and warns.
/// `apiVersion`, `kind` and `metadata` of the object (and of embedded resources) are kept.
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    prune_at(schema, obj, "", true, &mut out);
    out.sort();
    out
}

fn prune_at(schema: &Value, v: &mut Value, path: &str, resource: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let props = properties(schema);
            let addl = additional(schema);
            let keep = preserves_unknown(schema)
                || schema.get("additionalProperties") == Some(&Value::Bool(true));
            let mut gone = Vec::new();
            for (k, x) in m.iter_mut() {
                if resource && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    if k != "metadata"
                        && let Some(sub) = props.and_then(|p| p.get(k))
                    {
                        prune_at(sub, x, &child(path, k), false, out);
                    }
                    continue;
                }
                match props.and_then(|p| p.get(k)).or(addl) {
                    Some(sub) => prune_at(sub, x, &child(path, k), embedded(sub), out),
                    None if keep => {}
                    None => gone.push(k.clone()),
                }
            }
            for k in gone {
                m.remove(&k);
                out.push(child(path, &k));
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
                for (i, x) in a.iter_mut().enumerate() {
                    prune_at(items, x, &format!("{path}[{i}]"), embedded(items), out);
                }
            }
        }
        _ => {}
    }
}

/// Applies the schema's `default`s to `v`: a missing field with a default gets it (and the
/// defaults inside it), a null field that is not `nullable` gets its default or is removed.
pub fn default(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = properties(schema) {
                for (k, ps) in props {
                    let d = ps.get("default");
                    match m.get(k) {
                        None => {
                            if let Some(d) = d {
                                m.insert(k.clone(), d.clone());
                            }
                        }
                        Some(Value::Null) if !nullable(ps) => match d {
                            Some(d) => {
                                m.insert(k.clone(), d.clone());
                            }
                            None => {
                                m.remove(k);
                            }
                        },
                        _ => {}
                    }
                }
                for (k, x) in m.iter_mut() {
                    if let Some(ps) = props.get(k) {
                        default(ps, x);
                    }
                }
            }
            if let Some(a) = additional(schema) {
                if !nullable(a) {
                    m.retain(|_, x| !x.is_null() || a.get("default").is_some());
                }
                for x in m.values_mut() {
                    if x.is_null()
                        && !nullable(a)
                        && let Some(d) = a.get("default")
                    {
                        *x = d.clone();
                    }
                    default(a, x);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items").filter(|i| i.is_object()) {
                for x in items {
                    default(s, x);
                }
            }
        }
        _ => {}
    }
}

/// Whether the schema declares a `default` anywhere (reads then apply them).
pub fn has_defaults(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => {
            m.contains_key("default")
                || ["properties", "patternProperties"].iter().any(|k| {
                    m.get(*k)
                        .and_then(Value::as_object)
                        .is_some_and(|p| p.values().any(has_defaults))
                })
                || ["items", "additionalProperties"]
                    .iter()
                    .any(|k| m.get(*k).is_some_and(has_defaults))
        }
        _ => false,
    }
}

/// The validation causes of `obj` (a whole custom resource; its `metadata` is validated as
/// ObjectMeta elsewhere), in the API server's wording.
pub fn validate(schema: &Value, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    validate_at(schema, obj, "", true, &mut out);
    out
}

/// `%v` of a Go float64 (the bounds of a schema): `1`, `1.5`.
fn go_number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// The JSON type the OpenAPI validator names for a value.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A field error's value as `field.Error` prints it (`"x"`, `3`, `true`).
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn type_invalid(path: &str, value: &str, msg: String) -> Cause {
    Cause::new(
        "FieldValueTypeInvalid",
        path,
        format!("Invalid value: {value:?}: {msg}"),
    )
}

fn invalid(path: &str, v: &Value, msg: String) -> Cause {
    Cause::new(
        "FieldValueInvalid",
        path,
        format!("Invalid value: {}: {msg}", shown(v)),
    )
}

fn validate_at(schema: &Value, v: &Value, path: &str, resource: bool, out: &mut Vec<Cause>) {
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let types: Vec<&str> = if int_or_string(schema) {
        vec!["integer", "string"]
    } else if ty.is_empty() {
        vec![]
    } else {
        vec![ty]
    };
    if v.is_null() {
        if nullable(schema) || types.is_empty() {
            return;
        }
        out.push(type_invalid(
            path,
            "null",
            format!(
                "{path} in body must be of type {}: \"null\"",
                types.join(",")
            ),
        ));
        return;
    }
    let actual = type_name(v);
    if !types.is_empty() {
        let float_int = actual == "number"
            && types.contains(&"integer")
            && v.as_f64().is_some_and(|f| f.fract() == 0.0);
        let int_number = actual == "integer" && types.contains(&"number");
        if !(types.contains(&actual) || float_int || int_number) {
            out.push(type_invalid(
                path,
                actual,
                format!(
                    "{path} in body must be of type {}: {actual:?}",
                    types.join(",")
                ),
            ));
            return;
        }
    }
    if let Some(s) = v.as_str() {
        if let Some(format) = schema.get("format").and_then(Value::as_str)
            && !format_ok(format, s)
        {
            out.push(type_invalid(
                path,
                s,
                format!("{path} in body must be of type {format}: {s:?}"),
            ));
        }
        let len = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            let unit = if max == 1 { "byte" } else { "bytes" };
            out.push(Cause::new(
                "FieldValueTooLong",
                path,
                format!("Too long: may not be more than {max} {unit}"),
            ));
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            out.push(invalid(
                path,
                v,
                format!("{path} in body should be at least {min} chars long"),
            ));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str)
            && regex::Regex::new(p).is_ok_and(|re| !re.is_match(s))
        {
            out.push(invalid(
                path,
                v,
                format!("{path} in body should match '{p}'"),
            ));
        }
    }
    if let Some(n) = v.as_f64().filter(|_| v.is_number()) {
        let bound = |k: &str| schema.get(k).and_then(Value::as_f64);
        if let Some(m) = bound("multipleOf")
            && m != 0.0
            && (n / m).fract() != 0.0
        {
            out.push(invalid(
                path,
                v,
                format!("{path} in body should be a multiple of {}", go_number(m)),
            ));
        }
        if let Some(max) = bound("maximum") {
            let exclusive = flag(schema, "exclusiveMaximum");
            if n > max || (exclusive && n == max) {
                let rel = if exclusive {
                    "less than"
                } else {
                    "less than or equal to"
                };
                out.push(invalid(
                    path,
                    v,
                    format!("{path} in body should be {rel} {}", go_number(max)),
                ));
            }
        }
        if let Some(min) = bound("minimum") {
            let exclusive = flag(schema, "exclusiveMinimum");
            if n < min || (exclusive && n == min) {
                let rel = if exclusive {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                out.push(invalid(
                    path,
                    v,
                    format!("{path} in body should be {rel} {}", go_number(min)),
                ));
            }
        }
    }
    if let Some(a) = v.as_array() {
        if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
            for (i, x) in a.iter().enumerate() {
                validate_at(items, x, &format!("{path}[{i}]"), embedded(items), out);
            }
        }
        let n = a.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && n < min
        {
            out.push(invalid(
                path,
                &Value::from(n),
                format!("{path} in body should have at least {min} items"),
            ));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && n > max
        {
            let unit = if max == 1 { "item" } else { "items" };
            out.push(Cause::new(
                "FieldValueTooMany",
                path,
                format!("Too many: {n}: must have at most {max} {unit}"),
            ));
        }
        if flag(schema, "uniqueItems")
            && a.iter()
                .enumerate()
                .any(|(i, x)| a[..i].iter().any(|y| y == x))
        {
            out.push(invalid(
                path,
                &Value::String(String::new()),
                format!("{path} in body shouldn't contain duplicates"),
            ));
        }
    }
    if let Some(enum_values) = schema.get("enum").and_then(Value::as_array)
        && !enum_values.iter().any(|e| e == v)
    {
        let supported: Vec<String> = enum_values
            .iter()
            .map(|e| match e {
                Value::String(s) => format!("{s:?}"),
                other => format!("{:?}", other.to_string()),
            })
            .collect();
        out.push(Cause::new(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                shown(v),
                supported.join(", ")
            ),
        ));
    }
    if let Some(m) = v.as_object() {
        let n = m.len() as u64;
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
            && n > max
        {
            let unit = if max == 1 { "item" } else { "items" };
            out.push(Cause::new(
                "FieldValueTooMany",
                path,
                format!("Too many: {n}: must have at most {max} {unit}"),
            ));
        }
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
            && n < min
        {
            out.push(invalid(
                path,
                &Value::from(n),
                format!("{path} in body should have at least {min} properties"),
            ));
        }
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !m.contains_key(r) {
                out.push(Cause::required(&child(path, r), ""));
            }
        }
        let props = properties(schema);
        let addl = additional(schema);
        for (k, x) in m {
            if resource && k == "metadata" {
                continue;
            }
            if let Some(sub) = props.and_then(|p| p.get(k)).or(addl) {
                validate_at(sub, x, &child(path, k), embedded(sub), out);
            }
        }
        if embedded(schema) {
            for k in ["apiVersion", "kind"] {
                if m.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                    out.push(Cause::required(&child(path, k), "must not be empty"));
                }
            }
        }
    }
}

/// The string formats the API server checks (others pass, as unknown formats do).
fn format_ok(format: &str, s: &str) -> bool {
    let hex = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit());
    match format {
        "uuid" | "uuid3" | "uuid4" | "uuid5" => {
            let parts: Vec<&str> = s.split('-').collect();
            parts.len() == 5
                && parts
                    .iter()
                    .zip([8, 4, 4, 4, 12])
                    .all(|(p, n)| p.len() == n && hex(p))
        }
        "email" => match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !s.chars().any(char::is_whitespace)
            }
            None => false,
        },
        "date" => s.len() == 10 && s.parse::<jiff::civil::Date>().is_ok(),
        "date-time" | "datetime" => s.parse::<jiff::Timestamp>().is_ok(),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => match s.split_once('/') {
            Some((ip, bits)) => match (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
                (Ok(std::net::IpAddr::V4(_)), Ok(b)) => b <= 32,
                (Ok(std::net::IpAddr::V6(_)), Ok(b)) => b <= 128,
                _ => false,
            },
            None => false,
        },
        "mac" => {
            let parts: Vec<&str> = s.split([':', '-']).collect();
            parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && hex(p))
        }
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "hostname" => {
            s.len() <= 255
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        }
        _ => true,
    }
}

/// The basic structural checks of a CRD's schemas (`spec.versions[i].schema.openAPIV3Schema`):
/// present for every version, `type: object` at the root, and a `type` for every specified
/// field that neither preserves unknown fields nor is an int-or-string.
pub fn validate_crd(crd: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    for (i, v) in crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
        let Some(schema) = v["schema"].get("openAPIV3Schema").filter(|s| s.is_object()) else {
            out.push(Cause::required(&path, "schemas are required"));
            continue;
        };
        match schema.get("type").and_then(Value::as_str) {
            Some("object") => {}
            None | Some("") => out.push(Cause::required(
                &format!("{path}.type"),
                "must not be empty at the root",
            )),
            Some(other) => out.push(Cause::new(
                "FieldValueNotSupported",
                &format!("{path}.type"),
                format!("Unsupported value: {other:?}: supported values: \"object\""),
            )),
        }
        structural_types(schema, &path, &mut out);
    }
    out
}

fn structural_types(schema: &Value, path: &str, out: &mut Vec<Cause>) {
    let nested = |s: &Value, p: String, out: &mut Vec<Cause>| {
        let typed = s
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty());
        if !typed && !preserves_unknown(s) && !int_or_string(s) {
            out.push(Cause::required(
                &format!("{p}.type"),
                "must not be empty for specified object fields",
            ));
        }
        structural_types(s, &p, out);
    };
    if let Some(props) = properties(schema) {
        for (k, s) in props {
            nested(s, format!("{path}.properties[{k}]"), out);
        }
    }
    if let Some(a) = additional(schema) {
        nested(a, format!("{path}.additionalProperties"), out);
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        nested(items, format!("{path}.items"), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                "size": {"type": "string", "enum": ["S", "M"]},
                "name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
                "ratio": {"type": "number", "exclusiveMinimum": true, "minimum": 0},
                "port": {"x-kubernetes-int-or-string": true},
                "email": {"type": "string", "format": "email"},
                "note": {"type": "string", "nullable": true},
                "tags": {"type": "array", "maxItems": 2, "minItems": 1, "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                             "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                "nested": {"type": "object", "default": {}, "properties": {
                    "mode": {"type": "string", "default": "fast"}}},
            }},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        }})
    }

    fn messages(obj: Value) -> Vec<String> {
        validate(&schema(), &obj)
            .into_iter()
            .map(|c| format!("{}: {} ({})", c.field, c.message, c.reason))
            .collect()
    }

    #[test]
    fn validation_words_errors_as_the_api_server() {
        let m = messages(
            json!({"spec": {"replicas": 0, "size": "L", "name": "ABCDEFG",
            "ratio": 0, "port": true, "email": "nope", "tags": ["a", "b", "c"], "labels": {"x": 1}}}),
        );
        let want = [
            "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1 (FieldValueInvalid)",
            "spec.size: Unsupported value: \"L\": supported values: \"S\", \"M\" (FieldValueNotSupported)",
            "spec.name: Too long: may not be more than 5 bytes (FieldValueTooLong)",
            "spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$' (FieldValueInvalid)",
            "spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0 (FieldValueInvalid)",
            "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\" (FieldValueTypeInvalid)",
            "spec.email: Invalid value: \"nope\": spec.email in body must be of type email: \"nope\" (FieldValueTypeInvalid)",
            "spec.tags: Too many: 3: must have at most 2 items (FieldValueTooMany)",
            "spec.labels.x: Invalid value: \"integer\": spec.labels.x in body must be of type string: \"integer\" (FieldValueTypeInvalid)",
        ];
        for w in want {
            assert!(m.iter().any(|x| x == w), "{w}\nnot in {m:#?}");
        }
        assert_eq!(m.len(), want.len(), "{m:#?}");
        let m = messages(json!({"spec": {"replicas": "3", "tags": [], "note": null}}));
        assert_eq!(
            m,
            [
                "spec.size: Required value (FieldValueRequired)",
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\" (FieldValueTypeInvalid)",
                "spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items (FieldValueInvalid)",
            ]
        );
        assert!(messages(json!({"spec": {"size": "S", "port": 80, "ratio": 0.5}})).is_empty());
        assert!(
            messages(json!({"spec": {"size": "S", "port": "http", "replicas": 10}})).is_empty()
        );
        let m = messages(json!({"spec": {"size": "S", "template": {"spec": {}}}}));
        assert_eq!(
            m,
            [
                "spec.template.apiVersion: Required value: must not be empty (FieldValueRequired)",
                "spec.template.kind: Required value: must not be empty (FieldValueRequired)",
            ]
        );
    }

    #[test]
    fn pruning_keeps_declared_preserved_and_embedded_fields() {
        let mut obj = json!({"apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "w", "x": 1},
            "top": 1,
            "spec": {"size": "S", "bogus": 1, "extra": {"any": {"thing": 1}},
                     "labels": {"a": "b"}, "tags": ["a"],
                     "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                  "spec": {"a": "x", "b": "y"}, "other": 1}},
            "status": {"free": true}});
        let pruned = prune(&schema(), &mut obj);
        assert_eq!(
            pruned,
            [
                "spec.bogus",
                "spec.template.other",
                "spec.template.spec.b",
                "top"
            ]
        );
        assert_eq!(obj["metadata"]["x"], 1);
        assert_eq!(obj["spec"]["extra"]["any"]["thing"], 1);
        assert_eq!(obj["spec"]["template"]["kind"], "Pod");
        assert_eq!(obj["status"]["free"], true);
    }

    #[test]
    fn defaults_fill_missing_and_null_fields() {
        let mut obj = json!({"spec": {"size": "S", "name": null, "note": null}});
        default(&schema(), &mut obj);
        assert_eq!(
            obj["spec"],
            json!({"size": "S", "note": null, "replicas": 1, "nested": {"mode": "fast"}})
        );
        assert!(has_defaults(&schema()));
        assert!(!has_defaults(&json!({"type": "object"})));
    }

    #[test]
    fn crd_schemas_must_be_structural() {
        let crd = json!({"spec": {"versions": [
            {"name": "v1", "schema": {"openAPIV3Schema": {"type": "object",
                "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}}},
            {"name": "v2"},
        ]}});
        let causes: Vec<String> = validate_crd(&crd)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            causes,
            [
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
                "spec.versions[1].schema.openAPIV3Schema: Required value: schemas are required",
            ]
        );
    }
}
