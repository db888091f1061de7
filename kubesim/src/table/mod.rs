//! `meta.k8s.io/v1` Table responses, so `kubectl get` prints the usual columns.
//!
//! Columns and cells follow the API server's printers (`pkg/printers/internalversion`), with
//! the wide (`priority: 1`) columns always included, as the server does; kubectl shows them only
//! with `-o wide`. Resources without a printer get the server's default table: `Name` and
//! `Created At`.

use serde_json::{Map, Value, json};

mod custom;
mod groups;
mod printers;

pub use custom::to_custom_table;
use groups::GroupPrinter;
use printers::Printer;

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// Whether an Accept header asks for a Table (`as=Table;v=v1;g=meta.k8s.io`).
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut params = range.split(';');
        let media = params.next().unwrap_or("").trim();
        if media != "application/json" && media != "*/*" && media != "application/*" {
            return false;
        }
        let (mut as_table, mut group, mut version) = (false, false, false);
        for p in params {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"'));
            match k.as_str() {
                "as" => as_table = v == "Table",
                "g" => group = v == "meta.k8s.io",
                "v" => version = v == "v1",
                _ => {}
            }
        }
        as_table && group && version
    })
}

/// A Table for objects of `group`/`resource` (plural). `list_meta` is the list's metadata
/// (resourceVersion, continue). `now` is the current time as unix seconds (for AGE).
/// Rows carry the object as `PartialObjectMetadata` (kubectl's default `includeObject=Metadata`),
/// or whole when `include_object` is "Object", or not at all when it is "None".
pub fn to_table(
    group: &str,
    resource: &str,
    objects: &[&Value],
    list_meta: Value,
    now: i64,
    include_object: &str,
) -> Value {
    let group_printer = GroupPrinter::for_resource(group, resource);
    let printer = Printer::for_resource(group, resource);
    let column_list = match group_printer {
        Some(p) => p.columns(),
        None => printer.columns(),
    };
    let columns: Vec<Value> = column_list
        .iter()
        .map(|c| {
            json!({
                "name": c.0,
                "type": c.1,
                "format": c.2,
                "description": c.3,
                "priority": c.4,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            let cells = match group_printer {
                Some(p) => p.cells(obj, now),
                None => printer.cells(obj, now),
            };
            row.insert("cells".into(), Value::Array(cells));
            if let Some(conditions) = printer.row_conditions(obj) {
                row.insert("conditions".into(), conditions);
            }
            finish_row(row, obj, include_object)
        })
        .collect();
    table(list_meta, columns, rows)
}

/// A row with the object as `include_object` asks (`Metadata` unless `Object` or `None`).
fn finish_row(mut row: Map<String, Value>, obj: &Value, include_object: &str) -> Value {
    match include_object {
        "None" => {}
        "Object" => {
            row.insert("object".into(), obj.clone());
        }
        _ => {
            row.insert(
                "object".into(),
                json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
            );
        }
    }
    Value::Object(row)
}

fn table(list_meta: Value, columns: Vec<Value>, rows: Vec<Value>) -> Value {
    let metadata = if list_meta.is_object() {
        list_meta
    } else {
        json!({})
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// `duration.HumanDuration` of `k8s.io/apimachinery`, for a number of seconds.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests;
