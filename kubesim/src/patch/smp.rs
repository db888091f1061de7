//! Strategic merge patch, as the API server applies it (`StrategicMergeMapPatch` with
//! parallel lists merged and unmatched nulls ignored).

use serde_json::{Map, Value};

use super::PatchError;
use super::schema::{Schema, Strategy};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Applies `patch` (a JSON object) to `original` using the list rules of `schema`.
pub(crate) fn apply(original: &Value, patch: &Value, schema: &Schema) -> Result<Value, PatchError> {
    let Some(patch) = patch.as_object() else {
        return Err(PatchError::Invalid(format!(
            "strategic merge patch must be a JSON object, got {}",
            kind_name(patch)
        )));
    };
    let original = original.as_object().cloned().unwrap_or_default();
    merge_map(original, patch, &mut Vec::new(), schema).map(Value::Object)
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn dotted(path: &[String]) -> String {
    if path.is_empty() {
        "<root>".to_string()
    } else {
        path.join(".")
    }
}

/// Merges `patch` into `original` (a map at `path`), processing the directives.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
    schema: &Schema,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => {
                let mut rest = patch.clone();
                rest.remove(DIRECTIVE);
                return merge_map(Map::new(), &rest, path, schema);
            }
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => {
                return Err(PatchError::Invalid(format!(
                    "unknown patch directive {directive} at {}: use replace, merge or delete",
                    dotted(path)
                )));
            }
        }
    }

    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let Some(keys) = retain.as_array() else {
            return Err(PatchError::Invalid(format!(
                "$retainKeys at {} must be a list of field names",
                dotted(path)
            )));
        };
        original.retain(|k, _| keys.iter().any(|key| key.as_str() == Some(k)));
    }

    let mut orders: Vec<(&str, &Vec<Value>)> = Vec::new();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            let Some(order) = value.as_array() else {
                return Err(PatchError::Invalid(format!(
                    "{key} at {} must be a list",
                    dotted(path)
                )));
            };
            orders.push((field, order));
        }
    }
    let order_for = |field: &str| orders.iter().find(|(f, _)| *f == field).map(|(_, o)| *o);

    for (key, value) in patch {
        if key == DIRECTIVE || key == RETAIN_KEYS || key.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let Some(remove) = value.as_array() else {
                return Err(PatchError::Invalid(format!(
                    "{key} at {} must be a list",
                    dotted(path)
                )));
            };
            if let Some(Value::Array(items)) = original.get_mut(field) {
                items.retain(|item| !remove.contains(item));
            }
            continue;
        }
        if value.is_null() {
            original.remove(key);
            continue;
        }
        path.push(key.clone());
        let merged = match (original.get(key), value) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                Value::Object(merge_map(o.clone(), p, path, schema)?)
            }
            (_, Value::Object(p)) => Value::Object(merge_map(Map::new(), p, path, schema)?),
            (Some(Value::Array(o)), Value::Array(p)) => {
                Value::Array(merge_list(o, p, order_for(key), path, schema)?)
            }
            (_, Value::Array(p)) => Value::Array(merge_list(&[], p, order_for(key), path, schema)?),
            (_, other) => other.clone(),
        };
        path.pop();
        original.insert(key.clone(), merged);
    }

    // An order hint for a list the patch does not otherwise touch only reorders it.
    for (field, order) in &orders {
        if patch.contains_key(*field) {
            continue;
        }
        path.push(field.to_string());
        let key = merge_key(schema, path);
        path.pop();
        if let Some(Value::Array(items)) = original.get(*field) {
            let items = items.clone();
            let reordered = enforce_order(&items, order, &items, key);
            original.insert(field.to_string(), Value::Array(reordered));
        }
    }
    Ok(original)
}

/// The merge key of a keyed list (`None` for sets and atomic lists).
fn merge_key(schema: &Schema, path: &[String]) -> Option<&'static str> {
    match schema.strategy(path) {
        Some(Strategy::Keyed(keys)) => keys.first().copied(),
        _ => None,
    }
}

fn is_replace_marker(item: &Value) -> bool {
    item.as_object().is_some_and(|m| {
        m.len() == 1 && m.get(DIRECTIVE).and_then(Value::as_str) == Some("replace")
    })
}

/// Merges a patch list into the list at `path` by its strategy (keyed, set, atomic).
fn merge_list(
    original: &[Value],
    patch: &[Value],
    order: Option<&Vec<Value>>,
    path: &mut Vec<String>,
    schema: &Schema,
) -> Result<Vec<Value>, PatchError> {
    match schema.strategy(path) {
        Some(Strategy::Keyed(keys)) => {
            merge_keyed_list(original, patch, order, keys[0], path, schema)
        }
        Some(Strategy::Set) => {
            if patch.iter().any(is_replace_marker) {
                return Ok(patch
                    .iter()
                    .filter(|i| !is_replace_marker(i))
                    .cloned()
                    .collect());
            }
            let mut merged: Vec<Value> = Vec::new();
            for item in original.iter().chain(patch) {
                if !merged.contains(item) {
                    merged.push(item.clone());
                }
            }
            Ok(enforce_order(
                &merged,
                order.map_or(patch, |o| o.as_slice()),
                original,
                None,
            ))
        }
        // Atomic: the patch value replaces the list; directives inside items are dropped.
        _ => patch.iter().map(|item| clean(item, path, schema)).collect(),
    }
}

/// A patch value taken as is, with any directives it carries processed against nothing.
fn clean(value: &Value, path: &mut Vec<String>, schema: &Schema) -> Result<Value, PatchError> {
    match value {
        Value::Object(map) => merge_map(Map::new(), map, path, schema).map(Value::Object),
        other => Ok(other.clone()),
    }
}

/// Merges a list of objects by `key`, honouring `$patch: delete|replace` items.
fn merge_keyed_list(
    original: &[Value],
    patch: &[Value],
    order: Option<&Vec<Value>>,
    key: &str,
    path: &mut Vec<String>,
    schema: &Schema,
) -> Result<Vec<Value>, PatchError> {
    let at = dotted(path);
    let key_of = |item: &Value| -> Result<Value, PatchError> {
        item.as_object()
            .and_then(|m| m.get(key))
            .cloned()
            .ok_or_else(|| {
                PatchError::Invalid(format!(
                    "{at}: list item {item} does not contain declared merge key: {key}"
                ))
            })
    };

    let mut server: Vec<Value> = original.to_vec();
    let mut plain: Vec<&Map<String, Value>> = Vec::new();
    let mut replace = false;
    for item in patch {
        let Some(map) = item.as_object() else {
            return Err(PatchError::Invalid(format!(
                "{}: list item {item} must be an object",
                dotted(path)
            )));
        };
        match map.get(DIRECTIVE).map(|d| d.as_str()) {
            None | Some(Some("merge")) => plain.push(map),
            Some(Some("delete")) => {
                let wanted = key_of(item)?;
                server.retain(|s| s.get(key) != Some(&wanted));
            }
            Some(Some("replace")) => replace = true,
            Some(_) => {
                return Err(PatchError::Invalid(format!(
                    "{}: unknown patch directive in list item {item}",
                    dotted(path)
                )));
            }
        }
    }
    if replace {
        server.clear();
    }

    let mut merged = server.clone();
    let mut patch_items = Vec::new();
    for map in plain {
        let mut map = map.clone();
        map.remove(DIRECTIVE);
        let item = Value::Object(map);
        let wanted = key_of(&item)?;
        let Value::Object(map) = &item else {
            unreachable!("built from a map")
        };
        match merged.iter().position(|s| s.get(key) == Some(&wanted)) {
            Some(pos) => {
                let base = merged[pos].as_object().cloned().unwrap_or_default();
                merged[pos] = Value::Object(merge_map(base, map, path, schema)?);
            }
            None => merged.push(Value::Object(merge_map(Map::new(), map, path, schema)?)),
        }
        patch_items.push(item);
    }
    Ok(enforce_order(
        &merged,
        order.map_or(&patch_items, |o| o),
        &server,
        Some(key),
    ))
}

/// Orders a merged list as the API server does: items named by `patch_order` in that
/// order, interleaved with server-only items kept in their live order (new items first).
fn enforce_order(
    merged: &[Value],
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let ident = |item: &Value| -> Value {
        match key {
            Some(k) => item.get(k).cloned().unwrap_or(Value::Null),
            None => item.clone(),
        }
    };
    let index_in = |list: &[Value], item: &Value| -> Option<usize> {
        let id = ident(item);
        list.iter().position(|x| ident(x) == id)
    };
    let (mut in_patch, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .iter()
        .cloned()
        .partition(|item| index_in(patch_order, item).is_some());
    in_patch.sort_by_key(|item| index_in(patch_order, item));
    server_only.sort_by_key(|item| index_in(server_order, item));

    let mut out = Vec::with_capacity(merged.len());
    let (mut i, mut j) = (0, 0);
    while i < server_only.len() || j < in_patch.len() {
        if i >= server_only.len() {
            out.push(in_patch[j].clone());
            j += 1;
        } else if j >= in_patch.len() {
            out.push(server_only[i].clone());
            i += 1;
        } else {
            let left = index_in(server_order, &server_only[i]);
            let right = index_in(server_order, &in_patch[j]);
            if matches!((left, right), (Some(l), Some(r)) if l < r) {
                out.push(server_only[i].clone());
                i += 1;
            } else {
                out.push(in_patch[j].clone());
                j += 1;
            }
        }
    }
    out
}
