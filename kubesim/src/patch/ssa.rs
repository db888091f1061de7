//! Server-side apply and managed-fields bookkeeping, after structured-merge-diff: each
//! manager owns a set of field paths; apply makes the applier's set exactly the fields of
//! its configuration, removes fields it no longer applies unless someone else owns them,
//! and reports conflicts with other owners; other writes move ownership to the writer.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::fieldset::{FieldSet, PathElement, render_path};
use super::schema::{Schema, Strategy, key_default};
use super::{ApplyConflict, PatchError};

/// `metadata` fields the API server sets or uses for identity: never owned, never merged
/// from an apply configuration (besides `name`/`namespace`, which identify the object).
const META_IGNORED: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// `metadata` fields dropped from an apply configuration before merging.
const META_STRIPPED_FROM_APPLY: &[&str] = &[
    "creationTimestamp",
    "selfLink",
    "uid",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// Map-valued nodes that are plain structs in the Kubernetes types: when a write adds
/// them, the writer owns their fields but not the node itself (no `.` in FieldsV1).
const STRUCT_NODES: &[&str] = &[
    "metadata",
    "spec",
    "status",
    "template",
    "jobTemplate",
    "strategy",
    "updateStrategy",
];

/// Top-level fields that are free-form maps (owned as a node when added).
const TOP_LEVEL_MAPS: &[&str] = &["data", "binaryData", "stringData"];

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";

/// The current position in an object: field names for the schema, elements for sets.
struct Walk<'a> {
    schema: &'a Schema,
    names: Vec<String>,
    elements: Vec<PathElement>,
}

impl<'a> Walk<'a> {
    fn new(schema: &'a Schema) -> Self {
        Walk {
            schema,
            names: Vec::new(),
            elements: Vec::new(),
        }
    }

    fn push_field(&mut self, name: &str) {
        self.names.push(name.to_string());
        self.elements.push(PathElement::Field(name.to_string()));
    }

    fn pop_field(&mut self) {
        self.names.pop();
        self.elements.pop();
    }

    fn strategy(&self) -> Option<Strategy> {
        self.schema.strategy(&self.names)
    }

    fn rendered(&self) -> String {
        render_path(&self.elements)
    }

    /// Whether an added map node here is owned as a node (`.`), as the API server records
    /// for list items, free-form maps and optional structs.
    fn node_is_owned(&self) -> bool {
        match self.elements.last() {
            None => false,
            Some(PathElement::Field(name)) => {
                if self.elements.len() == 1 {
                    TOP_LEVEL_MAPS.contains(&name.as_str())
                } else {
                    !STRUCT_NODES.contains(&name.as_str())
                }
            }
            Some(_) => true,
        }
    }

    /// The path element of a list item, or an error naming the missing key.
    fn item_element(
        &self,
        strategy: Strategy,
        item: &Value,
        index: usize,
    ) -> Result<PathElement, PatchError> {
        match strategy {
            Strategy::Keyed(keys) => {
                let Some(map) = item.as_object() else {
                    return Err(PatchError::Invalid(format!(
                        "{}: element {index}: associative list with keys must contain objects, got {item}",
                        self.rendered()
                    )));
                };
                let mut pairs = Vec::with_capacity(keys.len());
                for key in keys {
                    let value = match (map.get(*key), key_default(key)) {
                        (Some(v), _) if !v.is_null() => v.clone(),
                        (_, Some(default)) => Value::String(default.to_string()),
                        _ => {
                            return Err(PatchError::Invalid(format!(
                                "{}: element {index}: associative list with keys has an element that omits key field {:?} (and doesn't have default value)",
                                self.rendered(),
                                key
                            )));
                        }
                    };
                    pairs.push((key.to_string(), value.to_string()));
                }
                pairs.sort();
                Ok(PathElement::Key(pairs))
            }
            Strategy::Set => Ok(PathElement::Value(item.to_string())),
            Strategy::AtomicMap => Ok(PathElement::Index(index)),
        }
    }

    /// Like [`Walk::item_element`], but a malformed live item is identified by position.
    fn item_element_lenient(&self, strategy: Strategy, item: &Value, index: usize) -> PathElement {
        self.item_element(strategy, item, index)
            .unwrap_or(PathElement::Index(index))
    }
}

fn merges_by_item(strategy: Option<Strategy>) -> Option<Strategy> {
    strategy.filter(|s| matches!(s, Strategy::Keyed(_) | Strategy::Set))
}

/// The fields set by `value`: leaves, list items and empty maps (FieldsV1 of an apply).
fn field_set(value: &Value, walk: &mut Walk, out: &mut FieldSet) -> Result<(), PatchError> {
    let strategy = walk.strategy();
    match value {
        Value::Object(map) if !map.is_empty() && strategy != Some(Strategy::AtomicMap) => {
            for (key, child) in map {
                walk.push_field(key);
                field_set(child, walk, out)?;
                walk.pop_field();
            }
        }
        Value::Array(items) if merges_by_item(strategy).is_some() => {
            let strategy = merges_by_item(strategy).expect("checked above");
            let mut seen = HashSet::new();
            for (index, item) in items.iter().enumerate() {
                let element = walk.item_element(strategy, item, index)?;
                if !seen.insert(element.clone()) {
                    return Err(PatchError::Invalid(format!(
                        "{}: duplicate entries for key {element}",
                        walk.rendered()
                    )));
                }
                walk.elements.push(element);
                out.insert(&walk.elements);
                if let Value::Object(map) = item {
                    for (key, child) in map {
                        walk.push_field(key);
                        field_set(child, walk, out)?;
                        walk.pop_field();
                    }
                }
                walk.elements.pop();
            }
        }
        _ => {
            if !walk.elements.is_empty() {
                out.insert(&walk.elements);
            }
        }
    }
    Ok(())
}

/// Merges an apply configuration into the live object: maps key by key, keyed lists and
/// sets item by item, everything else replaced.
fn merge(live: &Value, config: &Value, walk: &mut Walk) -> Result<Value, PatchError> {
    let strategy = walk.strategy();
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if strategy != Some(Strategy::AtomicMap) => {
            let mut out = l.clone();
            for (key, value) in c {
                walk.push_field(key);
                let merged = match l.get(key) {
                    Some(lv) => merge(lv, value, walk)?,
                    None => value.clone(),
                };
                walk.pop_field();
                out.insert(key.clone(), merged);
            }
            Ok(Value::Object(out))
        }
        (Value::Array(l), Value::Array(c)) => match merges_by_item(strategy) {
            Some(strategy) => merge_items(l, c, strategy, walk).map(Value::Array),
            None => Ok(config.clone()),
        },
        _ => Ok(config.clone()),
    }
}

/// Merges list items by identity, keeping live-only items in place and shared items in
/// the configuration's order (the structured-merge-diff ordering).
fn merge_items(
    live: &[Value],
    config: &[Value],
    strategy: Strategy,
    walk: &mut Walk,
) -> Result<Vec<Value>, PatchError> {
    let mut lhs: Vec<(PathElement, &Value)> = Vec::new();
    for (index, item) in live.iter().enumerate() {
        let element = walk.item_element_lenient(strategy, item, index);
        if !lhs.iter().any(|(e, _)| *e == element) {
            lhs.push((element, item));
        }
    }
    let mut rhs: Vec<(PathElement, &Value)> = Vec::new();
    for (index, item) in config.iter().enumerate() {
        let element = walk.item_element(strategy, item, index)?;
        if !rhs.iter().any(|(e, _)| *e == element) {
            rhs.push((element, item));
        }
    }
    let find = |side: &[(PathElement, &'_ Value)], element: &PathElement| -> Option<usize> {
        side.iter().position(|(e, _)| e == element)
    };
    let shared: Vec<PathElement> = rhs
        .iter()
        .filter(|(e, _)| find(&lhs, e).is_some())
        .map(|(e, _)| e.clone())
        .collect();
    let mut shared = shared.into_iter();
    let mut next_shared = shared.next();

    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let merge_one = |element: &PathElement,
                     l: Option<&Value>,
                     r: &Value,
                     walk: &mut Walk|
     -> Result<Value, PatchError> {
        match l {
            Some(l) => {
                walk.elements.push(element.clone());
                let merged = merge(l, r, walk);
                walk.elements.pop();
                merged
            }
            None => Ok(r.clone()),
        }
    };
    let (mut li, mut ri) = (0, 0);
    while li < lhs.len() || ri < rhs.len() {
        let before = (li, ri);
        if li < lhs.len() && ri < rhs.len() {
            let element = &lhs[li].0;
            if *element == rhs[ri].0 {
                out.push(merge_one(element, Some(lhs[li].1), rhs[ri].1, walk)?);
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if find(&rhs, element).is_some() && next_shared.as_ref().is_some_and(|n| n != element) {
                li += 1;
                continue;
            }
        }
        if li < lhs.len() && find(&rhs, &lhs[li].0).is_none() {
            out.push(lhs[li].1.clone());
            li += 1;
            continue;
        }
        if ri < rhs.len() {
            let element = rhs[ri].0.clone();
            let l = find(&lhs, &element).map(|i| lhs[i].1);
            out.push(merge_one(&element, l, rhs[ri].1, walk)?);
            ri += 1;
            if next_shared.as_ref() == Some(&element) {
                next_shared = shared.next();
            }
        }
        if before == (li, ri) {
            // A live item already merged from the configuration side.
            li += 1;
        }
    }
    Ok(out)
}

/// Fields added, modified and removed between two versions of an object.
#[derive(Debug, Default)]
struct Diff {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Diff {
    fn changed(&self) -> FieldSet {
        let mut changed = self.added.clone();
        changed.union_with(&self.modified);
        changed
    }
}

fn is_granular_map(value: Option<&Value>) -> bool {
    value.is_none_or(Value::is_object)
}

fn is_list(value: Option<&Value>) -> bool {
    value.is_none_or(Value::is_array)
}

fn non_empty(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => false,
    }
}

/// Records in `diff` what changed from `old` to `new` at the current position: leaves
/// that differ, and map nodes or list items that appeared or disappeared.
fn compare(old: Option<&Value>, new: Option<&Value>, walk: &mut Walk, diff: &mut Diff) {
    let strategy = walk.strategy();
    let descend = non_empty(old) || non_empty(new);
    if descend
        && is_granular_map(old)
        && is_granular_map(new)
        && strategy != Some(Strategy::AtomicMap)
    {
        let empty = Map::new();
        let l = old.and_then(Value::as_object).unwrap_or(&empty);
        let r = new.and_then(Value::as_object).unwrap_or(&empty);
        for key in l.keys().chain(r.keys().filter(|k| !l.contains_key(*k))) {
            walk.push_field(key);
            compare(l.get(key), r.get(key), walk, diff);
            walk.pop_field();
        }
        if walk.node_is_owned() {
            mark_node(old, new, walk, diff);
        }
        return;
    }
    if let Some(strategy) = merges_by_item(strategy)
        && descend
        && is_list(old)
        && is_list(new)
    {
        let index = |list: Option<&Value>| -> Vec<(PathElement, Value)> {
            let mut out: Vec<(PathElement, Value)> = Vec::new();
            for (i, item) in list
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let element = walk.item_element_lenient(strategy, item, i);
                if !out.iter().any(|(e, _)| *e == element) {
                    out.push((element, item.clone()));
                }
            }
            out
        };
        let l = index(old);
        let r = index(new);
        let get = |side: &[(PathElement, Value)], e: &PathElement| {
            side.iter().find(|(x, _)| x == e).map(|(_, v)| v.clone())
        };
        let mut order: Vec<PathElement> = l.iter().map(|(e, _)| e.clone()).collect();
        order.extend(
            r.iter()
                .map(|(e, _)| e.clone())
                .filter(|e| get(&l, e).is_none()),
        );
        for element in order {
            let (lv, rv) = (get(&l, &element), get(&r, &element));
            walk.elements.push(element);
            compare(lv.as_ref(), rv.as_ref(), walk, diff);
            // Items are always owned as nodes.
            mark_node(lv.as_ref(), rv.as_ref(), walk, diff);
            walk.elements.pop();
        }
        return;
    }
    if walk.elements.is_empty() {
        return;
    }
    match (old, new) {
        (None, Some(_)) => diff.added.insert(&walk.elements),
        (Some(_), None) => diff.removed.insert(&walk.elements),
        (Some(l), Some(r)) if l != r => diff.modified.insert(&walk.elements),
        _ => {}
    }
}

fn mark_node(old: Option<&Value>, new: Option<&Value>, walk: &Walk, diff: &mut Diff) {
    match (old, new) {
        (None, Some(_)) => diff.added.insert(&walk.elements),
        (Some(_), None) => diff.removed.insert(&walk.elements),
        _ => {}
    }
}

fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Removes from `value` the members of `last` (what the applier owned before) that no
/// one keeps owning. Containers emptied by the removal go too. Key fields of an item that
/// stays are never removed.
fn prune(value: &mut Value, last: &FieldSet, keep: &FieldSet, walk: &mut Walk, protected: &[&str]) {
    let nothing = FieldSet::default();
    match value {
        Value::Object(map) => {
            for (element, last_child) in &last.children {
                let PathElement::Field(name) = element else {
                    continue;
                };
                if protected.contains(&name.as_str()) {
                    continue;
                }
                let keep_child = keep.child(element).unwrap_or(&nothing);
                if last_child.member && keep_child.is_empty() {
                    map.remove(name);
                    continue;
                }
                if last_child.children.is_empty() {
                    continue;
                }
                let Some(child) = map.get_mut(name) else {
                    continue;
                };
                let was_empty = is_empty_container(child);
                walk.push_field(name);
                prune(child, last_child, keep_child, walk, &[]);
                walk.pop_field();
                if !was_empty && is_empty_container(child) && !keep_child.member {
                    map.remove(name);
                }
            }
        }
        Value::Array(items) => {
            let Some(strategy) = merges_by_item(walk.strategy()) else {
                return;
            };
            let keys: &[&str] = match strategy {
                Strategy::Keyed(keys) => keys,
                _ => &[],
            };
            let mut kept = Vec::with_capacity(items.len());
            for (index, mut item) in std::mem::take(items).into_iter().enumerate() {
                let element = walk.item_element_lenient(strategy, &item, index);
                if let Some(last_child) = last.child(&element) {
                    let keep_child = keep.child(&element).unwrap_or(&nothing);
                    if last_child.member && keep_child.is_empty() {
                        continue;
                    }
                    if !last_child.children.is_empty() {
                        walk.elements.push(element);
                        prune(&mut item, last_child, keep_child, walk, keys);
                        walk.elements.pop();
                    }
                }
                kept.push(item);
            }
            *items = kept;
        }
        _ => {}
    }
}

/// A copy of `object` without the fields nobody owns (identity and server-set metadata).
fn without_ignored(object: &Value) -> Value {
    let mut out = object.clone();
    if let Value::Object(map) = &mut out {
        map.remove("apiVersion");
        map.remove("kind");
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            for field in META_IGNORED {
                meta.remove(*field);
            }
            if meta.is_empty() {
                map.remove("metadata");
            }
        }
    }
    out
}

/// `metadata` as [`without_ignored`] leaves it: `None` when absent or holding only ignored
/// fields; a copy without the ignored fields (managedFields above all) otherwise.
fn stripped_meta(meta: Option<&Value>) -> Option<std::borrow::Cow<'_, Value>> {
    let meta = meta?;
    let Value::Object(m) = meta else {
        return Some(std::borrow::Cow::Borrowed(meta));
    };
    let kept: Map<String, Value> = m
        .iter()
        .filter(|(k, _)| !META_IGNORED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!kept.is_empty()).then_some(std::borrow::Cow::Owned(Value::Object(kept)))
}

/// `compare(Some(&without_ignored(old)), Some(&without_ignored(new)), ..)` at the root,
/// without copying either object (only their metadata, managedFields left out).
fn compare_stripped(old: &Value, new: &Value, walk: &mut Walk, diff: &mut Diff) {
    // Two maps walked field by field; anything else is compared as copies.
    let maps = match (old.as_object(), new.as_object()) {
        (Some(l), Some(r))
            if walk.strategy() != Some(Strategy::AtomicMap) && walk.elements.is_empty() =>
        {
            Some((l, r))
        }
        _ => None,
    };
    let Some((l, r)) = maps else {
        compare(
            Some(&without_ignored(old)),
            Some(&without_ignored(new)),
            walk,
            diff,
        );
        return;
    };
    let (lm, rm) = (
        stripped_meta(l.get("metadata")),
        stripped_meta(r.get("metadata")),
    );
    let lmeta = lm.as_deref();
    let rmeta = rm.as_deref();
    let left = |key: &str| -> Option<&Value> {
        match key {
            "apiVersion" | "kind" => None,
            "metadata" => lmeta,
            _ => l.get(key),
        }
    };
    let right = |key: &str| -> Option<&Value> {
        match key {
            "apiVersion" | "kind" => None,
            "metadata" => rmeta,
            _ => r.get(key),
        }
    };
    for key in l
        .keys()
        .filter(|k| left(k).is_some())
        .chain(r.keys().filter(|k| left(k).is_none() && right(k).is_some()))
    {
        walk.push_field(key);
        compare(left(key), right(key), walk, diff);
        walk.pop_field();
    }
}

/// Drops keys whose value is null, recursively (a null in an apply configuration means
/// "not set").
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    set: FieldSet,
}

impl Entry {
    fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("manager".into(), json!(self.manager));
        map.insert("operation".into(), json!(self.operation));
        map.insert("apiVersion".into(), json!(self.api_version));
        if let Some(time) = &self.time {
            map.insert("time".into(), json!(time));
        }
        map.insert("fieldsType".into(), json!("FieldsV1"));
        map.insert("fieldsV1".into(), self.set.to_fields_v1());
        if let Some(sub) = &self.subresource {
            map.insert("subresource".into(), json!(sub));
        }
        Value::Object(map)
    }

    fn from_json(value: &Value) -> Option<Entry> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
        if text("fieldsType").is_some_and(|t| t != "FieldsV1") {
            return None;
        }
        Some(Entry {
            manager: text("manager").unwrap_or_default(),
            operation: text("operation")?,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            set: value
                .get("fieldsV1")
                .map(FieldSet::from_fields_v1)
                .unwrap_or_default(),
        })
    }

    fn is_apply_by(&self, manager: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == APPLY
            && self.subresource.as_deref() == subresource
    }

    fn is_update_by(&self, manager: &str, api_version: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == UPDATE
            && self.api_version == api_version
            && self.subresource.as_deref() == subresource
    }
}

fn parse_entries(value: Option<&Value>) -> Vec<Entry> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Entry::from_json).collect())
        .unwrap_or_default()
}

/// Drops empty entries, sorts as the API server does (Apply before Update, then by time,
/// manager, apiVersion, subresource) and stores them in `object`.
fn store_entries(object: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Value::Object(map) = object else { return };
    if entries.is_empty() {
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            meta.remove("managedFields");
        }
        return;
    }
    if let Value::Object(meta) = map.entry("metadata").or_insert_with(|| json!({})) {
        let entries = entries.iter().map(Entry::to_json).collect();
        meta.insert("managedFields".into(), Value::Array(entries));
    }
}

fn text_field<'v>(object: &'v Value, key: &str) -> Option<&'v str> {
    object.get(key).and_then(Value::as_str)
}

/// See [`super::server_side_apply`]; `subresource` selects the applier's entry.
pub(crate) fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    subresource: Option<&str>,
    force: bool,
    now: &str,
) -> Result<Value, PatchError> {
    if !applied.is_object() {
        return Err(PatchError::Invalid(
            "apply configuration must be a JSON or YAML object with apiVersion, kind and metadata"
                .into(),
        ));
    }
    let api_version = text_field(applied, "apiVersion")
        .or_else(|| live.and_then(|l| text_field(l, "apiVersion")))
        .unwrap_or_default()
        .to_string();
    let kind = text_field(applied, "kind")
        .or_else(|| live.and_then(|l| text_field(l, "kind")))
        .unwrap_or_default();
    let schema = Schema::for_kind(&api_version, kind);

    let mut config = applied.clone();
    drop_nulls(&mut config);
    if let Some(Value::Object(meta)) = config.get_mut("metadata") {
        for field in META_STRIPPED_FROM_APPLY {
            meta.remove(*field);
        }
    }
    let mut set = FieldSet::default();
    field_set(&without_ignored(&config), &mut Walk::new(&schema), &mut set)?;

    let live = live.cloned().unwrap_or_else(|| json!({}));
    let mut entries = parse_entries(live.pointer("/metadata/managedFields"));
    let mut live_clean = live;
    if let Some(Value::Object(meta)) = live_clean.get_mut("metadata") {
        meta.remove("managedFields");
    }

    let mut merged = merge(&live_clean, &config, &mut Walk::new(&schema))?;
    let own = entries
        .iter()
        .position(|e| e.is_apply_by(manager, subresource));
    if let Some(own) = own {
        let mut keep = set.clone();
        for (i, entry) in entries.iter().enumerate() {
            if i != own {
                keep.union_with(&entry.set);
            }
        }
        prune(
            &mut merged,
            &entries[own].set,
            &keep,
            &mut Walk::new(&schema),
            &[],
        );
    }

    let mut diff = Diff::default();
    compare_stripped(&live_clean, &merged, &mut Walk::new(&schema), &mut diff);
    let changed = diff.changed();
    let mut conflicting: Vec<(usize, FieldSet)> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != own)
        .map(|(i, e)| (i, e.set.intersection(&changed)))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if !force && !conflicting.is_empty() {
        conflicting.sort_by(|(a, _), (b, _)| {
            let (a, b) = (&entries[*a], &entries[*b]);
            (&a.manager, &a.operation, &a.api_version, &a.subresource).cmp(&(
                &b.manager,
                &b.operation,
                &b.api_version,
                &b.subresource,
            ))
        });
        let conflicts = conflicting
            .iter()
            .flat_map(|(i, c)| {
                let entry = &entries[*i];
                c.paths().into_iter().map(move |path| ApplyConflict {
                    manager: entry.manager.clone(),
                    field: render_path(&path),
                    operation: entry.operation.clone(),
                    api_version: entry.api_version.clone(),
                    subresource: entry.subresource.clone(),
                })
            })
            .collect();
        return Err(PatchError::Conflict(conflicts));
    }
    for (i, taken) in conflicting {
        entries[i].set = entries[i].set.difference(&taken);
    }
    for (i, entry) in entries.iter_mut().enumerate() {
        if Some(i) != own {
            entry.set = entry.set.difference(&diff.removed);
        }
    }

    // As kube-apiserver's managed-fields updater: the applier's time is set only when the
    // apply changes the object; an unchanged object keeps the applier's previous time, and a
    // new co-owner of unchanged values gets an entry without one.
    let time = match own {
        _ if merged != live_clean => Some(now.to_string()),
        Some(own) => entries[own].time.clone(),
        None => None,
    };
    let entry = Entry {
        manager: manager.to_string(),
        operation: APPLY.to_string(),
        api_version,
        time,
        subresource: subresource.map(str::to_string),
        set,
    };
    match own {
        Some(own) => entries[own] = entry,
        None => entries.push(entry),
    }
    store_entries(&mut merged, entries);
    Ok(merged)
}

/// See [`super::record_update`].
pub(crate) fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let api_version = text_field(new, "apiVersion")
        .unwrap_or_default()
        .to_string();
    let kind = text_field(new, "kind").unwrap_or_default();
    let schema = Schema::for_kind(&api_version, kind);
    let empty = json!({});
    let old = old.unwrap_or(&empty);

    // As the API server: managedFields sent with the write win, `[{}]` resets them, and
    // a write without any keeps the stored ones.
    let sent: Vec<Entry> = match new
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    {
        Some(items) if items.len() == 1 && items[0] == json!({}) => Vec::new(),
        Some(items) => items.iter().filter_map(Entry::from_json).collect(),
        None => Vec::new(),
    };
    let reset = new
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|items| items.len() == 1 && items[0] == json!({}));
    let entries = if reset || !sent.is_empty() {
        sent
    } else {
        parse_entries(old.pointer("/metadata/managedFields"))
    };

    let mut diff = Diff::default();
    compare_stripped(old, new, &mut Walk::new(&schema), &mut diff);
    let changed = diff.changed();
    let mut entries: Vec<Entry> = entries
        .into_iter()
        .map(|mut e| {
            e.set = e.set.difference(&changed).difference(&diff.removed);
            e
        })
        .collect();
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.is_update_by(manager, &api_version, subresource))
        {
            Some(entry) => {
                entry.set.union_with(&changed);
                entry.time = Some(now.to_string());
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: UPDATE.to_string(),
                api_version,
                time: Some(now.to_string()),
                subresource: subresource.map(str::to_string),
                set: changed,
            }),
        }
    }
    store_entries(new, entries);
}
