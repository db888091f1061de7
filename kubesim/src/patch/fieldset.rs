//! Sets of field paths as recorded in `metadata.managedFields[].fieldsV1`.
//!
//! A set is a tree of path elements: `f:<name>` (a map field), `k:{"name":"x"}` (an item
//! of a keyed list), `v:"x"` (an item of a set of primitives) and `i:<n>` (a list index).
//! A node is a member of the set when it is a leaf or carries the `.` marker.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One step of a field path. The derived order (fields, then keys, values, indexes) is
/// the order in which FieldsV1 lists children.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PathElement {
    /// A field of a map or struct.
    Field(String),
    /// An item of a keyed list: (key name, compact JSON of the key value), sorted by name.
    Key(Vec<(String, String)>),
    /// An item of a set of primitives: compact JSON of the value.
    Value(String),
    /// An item of a list by position.
    Index(usize),
}

impl PathElement {
    /// The FieldsV1 form: `f:name`, `k:{"name":"x"}`, `v:"x"`, `i:0`.
    fn fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(pairs) => {
                let body: Vec<String> = pairs
                    .iter()
                    .map(|(name, value)| format!("{}:{value}", Value::String(name.clone())))
                    .collect();
                format!("k:{{{}}}", body.join(","))
            }
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    fn parse_fields_v1_key(key: &str) -> Option<PathElement> {
        let (kind, rest) = key.split_at_checked(2)?;
        match kind {
            "f:" => Some(PathElement::Field(rest.to_string())),
            "k:" => {
                let Ok(Value::Object(map)) = serde_json::from_str::<Value>(rest) else {
                    return None;
                };
                let mut pairs: Vec<(String, String)> =
                    map.into_iter().map(|(k, v)| (k, v.to_string())).collect();
                pairs.sort();
                Some(PathElement::Key(pairs))
            }
            "v:" => serde_json::from_str::<Value>(rest)
                .ok()
                .map(|v| PathElement::Value(v.to_string())),
            "i:" => rest.parse().ok().map(PathElement::Index),
            _ => None,
        }
    }
}

impl std::fmt::Display for PathElement {
    /// The form the API server prints in conflict messages: `.name`, `[name="x"]`,
    /// `[="x"]`, `[0]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(pairs) => {
                let body: Vec<String> = pairs
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect();
                write!(f, "[{}]", body.join(","))
            }
            PathElement::Value(value) => write!(f, "[={value}]"),
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// Renders a path as the API server prints it, e.g. `.spec.containers[name="main"].image`.
pub(crate) fn render_path(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of field paths, as a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    /// This node itself is in the set.
    pub(crate) member: bool,
    pub(crate) children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// Adds `path` (relative to this node) as a member.
    pub(crate) fn insert(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => self.member = true,
            Some((first, rest)) => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// No member at this node or below.
    pub(crate) fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    pub(crate) fn child(&self, element: &PathElement) -> Option<&FieldSet> {
        self.children.get(element)
    }

    /// Whether `path` is a member.
    #[cfg(test)]
    pub(crate) fn has(&self, path: &[PathElement]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((first, rest)) => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    pub(crate) fn union_with(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (element, child) in &other.children {
            self.children
                .entry(element.clone())
                .or_default()
                .union_with(child);
        }
    }

    /// Members of `self` that are not members of `other`.
    pub(crate) fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        let empty = FieldSet::default();
        for (element, child) in &self.children {
            let diff = child.difference(other.children.get(element).unwrap_or(&empty));
            if !diff.is_empty() {
                out.children.insert(element.clone(), diff);
            }
        }
        out
    }

    /// Members of both sets.
    pub(crate) fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(element.clone(), both);
                }
            }
        }
        out
    }

    /// Every member path, in set order.
    pub(crate) fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        if self.member && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The FieldsV1 JSON form: members with children carry `".": {}` first.
    pub(crate) fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".to_string(), Value::Object(Map::new()));
        }
        for (element, child) in &self.children {
            if !child.is_empty() {
                map.insert(element.fields_v1_key(), child.to_fields_v1());
            }
        }
        Value::Object(map)
    }

    /// Parses FieldsV1; unknown keys are skipped.
    pub(crate) fn from_fields_v1(value: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        let Some(map) = value.as_object() else {
            return set;
        };
        if map.is_empty() {
            set.member = true;
            return set;
        }
        for (key, child) in map {
            if key == "." {
                set.member = true;
            } else if let Some(element) = PathElement::parse_fields_v1_key(key) {
                set.children
                    .insert(element, FieldSet::from_fields_v1(child));
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_v1_round_trip_and_render() {
        let v1 = json!({
            "f:data": {".": {}, "f:a": {}},
            "f:metadata": {"f:finalizers": {"v:\"x\"": {}}},
            "f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}}
        });
        let set = FieldSet::from_fields_v1(&v1);
        assert_eq!(set.to_fields_v1(), v1);
        let rendered: Vec<String> = set.paths().iter().map(|p| render_path(p)).collect();
        assert_eq!(
            rendered,
            [
                ".data",
                ".data.a",
                ".metadata.finalizers[=\"x\"]",
                ".spec.ports[port=80,protocol=\"TCP\"]",
                ".spec.ports[port=80,protocol=\"TCP\"].port",
            ]
        );
        let mut other = FieldSet::default();
        other.insert(&[
            PathElement::Field("data".into()),
            PathElement::Field("a".into()),
        ]);
        assert_eq!(set.intersection(&other), other);
        let rest = set.difference(&other);
        assert!(!rest.has(&[
            PathElement::Field("data".into()),
            PathElement::Field("a".into())
        ]));
        assert!(rest.has(&[PathElement::Field("data".into())]));
    }
}
