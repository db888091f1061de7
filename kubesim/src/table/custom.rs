//! Tables for custom resources, from the `additionalPrinterColumns` of the served CRD version,
//! as the apiextensions server builds them.

use serde_json::{Map, Value, json};

use super::{NAME_DESC, finish_row, human_duration, table};

/// A Table for custom resources. `printer_columns` is the served version's
/// `additionalPrinterColumns` (`name`, `type`, `format`, `description`, `priority`,
/// `jsonPath`); when empty, the server's default `Age` column is used. Other arguments are as
/// for [`super::to_table`].
pub fn to_custom_table(
    printer_columns: &[Value],
    objects: &[&Value],
    list_meta: Value,
    now: i64,
    include_object: &str,
) -> Value {
    let default_age =
        [json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})];
    let printer_columns = if printer_columns.is_empty() {
        &default_age[..]
    } else {
        printer_columns
    };
    let text = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut columns = vec![json!({
        "name": "Name", "type": "string", "format": "name", "description": NAME_DESC, "priority": 0
    })];
    columns.extend(printer_columns.iter().map(|c| {
        json!({
            "name": text(c, "name"),
            "type": text(c, "type"),
            "format": text(c, "format"),
            "description": text(c, "description"),
            "priority": c.get("priority").and_then(Value::as_i64).unwrap_or(0),
        })
    }));
    let paths: Vec<Option<Vec<Step>>> = printer_columns
        .iter()
        .map(|c| parse_path(&text(c, "jsonPath")))
        .collect();
    let rows = objects
        .iter()
        .map(|obj| {
            let mut cells = vec![json!(
                obj.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            )];
            for (column, path) in printer_columns.iter().zip(&paths) {
                let found = path.as_ref().and_then(|p| first_match(obj, p));
                cells.push(cell(&text(column, "type"), found, now));
            }
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            finish_row(row, obj, include_object)
        })
        .collect();
    table(list_meta, columns, rows)
}

/// `cellForJSONValue` (and string printing for `string` columns).
fn cell(ty: &str, value: Option<&Value>, now: i64) -> Value {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match ty {
        "string" => match value {
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        },
        "integer" => value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        "number" => value.as_f64().map_or(Value::Null, Value::from),
        "boolean" => value.as_bool().map_or(Value::Null, Value::from),
        "date" => match value.as_str() {
            Some(s) => match s.parse::<jiff::Timestamp>() {
                Ok(t) => json!(human_duration(now - t.as_second())),
                Err(_) => json!("<invalid>"),
            },
            None => Value::Null,
        },
        _ => Value::Null,
    }
}

/// One step of the simple JSONPath subset CRD printer columns use.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    /// `[?(@.a.b=="v")]` (or `!=`).
    Filter(Vec<String>, bool, String),
}

/// Parse `.a.b`, `.a[0]`, `.a[*].b`, `.a['x.y']`, `.a[?(@.type=="Ready")].status`, with or
/// without the surrounding `{}`. `None` when the path is not understood (the cell is empty).
fn parse_path(path: &str) -> Option<Vec<Step>> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut steps = Vec::new();
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end] != b'.' && b[end] != b'[' {
                    end += 1;
                }
                if end > start {
                    steps.push(Step::Field(p[start..end].to_string()));
                }
                i = end;
            }
            b'[' => {
                let close = bracket_end(p, i)?;
                let inner = p[i + 1..close].trim();
                steps.push(parse_bracket(inner)?);
                i = close + 1;
            }
            _ => return None,
        }
    }
    Some(steps)
}

/// Index of the `]` closing the bracket at `open`, skipping quoted strings.
fn bracket_end(p: &str, open: usize) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in p[open + 1..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, ']') => return Some(open + 1 + i),
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
}

fn parse_bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Ok(n) = inner.parse::<usize>() {
        return Some(Step::Index(n));
    }
    if let Some(name) = unquote(inner) {
        return Some(Step::Field(name.to_string()));
    }
    let expr = inner.strip_prefix("?(")?.strip_suffix(')')?.trim();
    let (lhs, negated, rhs) = if let Some((l, r)) = expr.split_once("!=") {
        (l, true, r)
    } else {
        let (l, r) = expr.split_once("==")?;
        (l, false, r)
    };
    let field = lhs.trim().strip_prefix("@.")?;
    let value = match unquote(rhs) {
        Some(v) => v.to_string(),
        None => rhs.trim().to_string(),
    };
    Some(Step::Filter(
        field.split('.').map(str::to_string).collect(),
        negated,
        value,
    ))
}

fn first_match<'a>(root: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    let mut current = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(name) => next.extend(v.get(name.as_str())),
                Step::Index(n) => next.extend(v.get(*n)),
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(field, negated, want) => {
                    for item in v.as_array().into_iter().flatten() {
                        let have = field.iter().try_fold(item, |acc, f| acc.get(f.as_str()));
                        let have = match have {
                            Some(Value::String(s)) => Some(s.clone()),
                            Some(other) => Some(other.to_string()),
                            None => None,
                        };
                        let equal = have.as_deref() == Some(want.as_str());
                        if have.is_some() && equal != *negated {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    current.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600;

    #[test]
    fn paths() {
        let obj = json!({"spec": {"replicas": 3, "items": [{"n": "a"}, {"n": "b"}], "x.y": true},
            "status": {"conditions": [{"type": "Progressing", "status": "True"}, {"type": "Ready", "status": "False"}]}});
        let get = |p: &str| first_match(&obj, &parse_path(p).unwrap()).cloned();
        assert_eq!(get(".spec.replicas"), Some(json!(3)));
        assert_eq!(get("{.spec.items[1].n}"), Some(json!("b")));
        assert_eq!(get(".spec.items[*].n"), Some(json!("a")));
        assert_eq!(get(".spec['x.y']"), Some(json!(true)));
        assert_eq!(
            get(".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("False"))
        );
        assert_eq!(
            get(".status.conditions[?(@.type!='Ready')].type"),
            Some(json!("Progressing"))
        );
        assert_eq!(get(".spec.missing"), None);
        assert_eq!(parse_path("spec.replicas"), None);
    }

    #[test]
    fn custom_table_with_printer_columns() {
        let columns = [
            json!({"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "phase"}),
            json!({"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}),
            json!({"name": "Retries", "type": "integer", "jsonPath": ".status.retries", "priority": 1}),
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}),
        ];
        let obj = json!({"metadata": {"name": "c1", "creationTimestamp": "2025-12-31T23:59:00Z"},
            "status": {"phase": "Succeeded", "retries": 2.0, "conditions": [{"type": "Ready", "status": "True"}]}});
        let bare = json!({"metadata": {"name": "c2"}});
        let t = to_custom_table(
            &columns,
            &[&obj, &bare],
            json!({"resourceVersion": "3"}),
            NOW,
            "Metadata",
        );
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Phase", "Ready", "Retries", "Age"]);
        assert_eq!(t["columnDefinitions"][3]["priority"], 1);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["c1", "Succeeded", "True", 2, "60s"])
        );
        assert_eq!(t["rows"][1]["cells"], json!(["c2", null, null, null, null]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn custom_table_default_age_column() {
        let obj = json!({"metadata": {"name": "c1", "creationTimestamp": "2025-12-31T22:00:00Z"}});
        let t = to_custom_table(&[], &[&obj], json!({}), NOW, "None");
        assert_eq!(t["columnDefinitions"][1]["name"], "Age");
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(t["rows"][0]["cells"], json!(["c1", "120m"]));
        assert!(t["rows"][0].get("object").is_none());
    }
}
