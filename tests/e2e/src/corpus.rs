//! The bad-input corpus (`corpus/bad-input.json`): requests that must each be refused with an
//! error naming the key, either by the chart's values schema at `helm install` or, when the
//! schema cannot tell, by sc-model in the cluster (the connection's status and sc-job's log).
//!
//! A case is one connection built from a base request (`bases`) with `set` merged over it as
//! helm merges values (`null` removes a key), or a whole values document (`values`), or only
//! flat `--set-string` settings (`flat`, for inputs that exist only in that form). Strings
//! `{"$secret": label}` become fresh secret values, `{"$repeat": [text, n]}` the text
//! repeated `n` times, and `{"$base": name, ...}` (in `also`) a base with overrides.

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Where a case must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// By helm itself, parsing the flat settings.
    Helm,
    /// By `values.schema.json`, at `helm template` / `helm install`.
    Schema,
    /// By the chart's templates (`fail`, at `helm template` / `helm install`), for what needs
    /// the release (a guarded namespace); in the cluster, for requests that bypass the chart,
    /// by sc-agent and sc-job.
    Template,
    /// By sc-model in the cluster: the connection's status, sc-job's log, `sc-agent show`
    /// (and `sc-agent plan` without a cluster).
    Cluster,
}

impl Stage {
    /// The name used in the corpus file.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Helm => "helm",
            Stage::Schema => "schema",
            Stage::Template => "template",
            Stage::Cluster => "cluster",
        }
    }
}

/// One bad input.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique, kebab-case.
    pub id: String,
    /// The kind of mistake (the table of tests/e2e/BAD-INPUT.md).
    pub category: String,
    /// Where it must be refused.
    pub stage: Stage,
    /// The connection the case is about, when it is about one.
    pub name: Option<String>,
    /// The whole values (secrets included), unless the case exists only as flat settings.
    pub values: Option<Value>,
    /// Flat settings given by the corpus (the case's only form).
    pub flat_only: Option<Vec<String>>,
    /// Whether the flat form is tried too (false when the values form cannot be written flat).
    pub flat: bool,
    /// The key the error must name, as path segments (`connections`, name, field, key).
    pub key: Vec<String>,
    /// Whether `sc-agent plan` (no cluster) accepts the request: only what the cluster alone
    /// knows (a namespace that does not exist).
    pub plan_accepts: bool,
    /// Whether the agent ignores the connection (its name maps to another connection's
    /// metadata ConfigMap): no status of its own and never in a Job; `sc-agent show`, a
    /// `NameClash` event and the wait hook's output tell why.
    pub ignored_by_agent: bool,
    /// Why the case is special, when it is.
    pub note: Option<String>,
    /// Every secret value of the case (for the leak scan).
    pub secrets: Vec<String>,
}

/// The corpus file.
pub fn corpus_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/bad-input.json")
}

/// The base requests of the corpus, by name, with fresh secret values.
pub fn bases() -> (Map<String, Value>, Vec<String>) {
    let doc = read();
    let mut secrets = Vec::new();
    let bases = expand(&doc["bases"], &mut secrets);
    (bases.as_object().cloned().expect("bases is a map"), secrets)
}

fn read() -> Value {
    let path = corpus_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {} failed: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Replaces `$secret` and `$repeat` markers.
fn expand(v: &Value, secrets: &mut Vec<String>) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("$secret") => {
            let label = m["$secret"].as_str().unwrap_or("secret");
            let s = crate::secret_value(label);
            secrets.push(s.clone());
            Value::String(s)
        }
        Value::Object(m) if m.len() == 1 && m.contains_key("$repeat") => {
            let text = m["$repeat"][0].as_str().expect("$repeat text");
            let n = m["$repeat"][1].as_u64().expect("$repeat count") as usize;
            Value::String(text.repeat(n))
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), expand(v, secrets)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| expand(v, secrets)).collect()),
        other => other.clone(),
    }
}

/// Every case of the corpus, with fresh secret values. Panics on a malformed corpus.
pub fn load() -> Vec<Case> {
    let doc = read();
    let mut cases = Vec::new();
    let mut ids = BTreeSet::new();
    for raw in doc["cases"].as_array().expect("cases is a list") {
        let id = raw["id"].as_str().expect("a case id").to_string();
        assert!(ids.insert(id.clone()), "case {id} appears twice");
        let stage = match raw["stage"].as_str() {
            Some("helm") => Stage::Helm,
            Some("schema") => Stage::Schema,
            Some("template") => Stage::Template,
            Some("cluster") => Stage::Cluster,
            other => panic!("case {id}: unknown stage {other:?}"),
        };
        let key_text = raw["key"].as_str().expect("a key").to_string();
        let mut secrets = Vec::new();
        let bases = expand(&doc["bases"], &mut secrets);
        secrets.clear();
        let mut case = Case {
            category: raw["category"].as_str().expect("a category").to_string(),
            stage,
            name: None,
            values: None,
            flat_only: None,
            flat: raw["flat"].as_bool().unwrap_or(true),
            key: Vec::new(),
            plan_accepts: raw["plan"].as_str() == Some("accepts"),
            ignored_by_agent: raw["ignoredByAgent"].as_bool().unwrap_or(false),
            note: raw["note"].as_str().map(str::to_string),
            secrets: Vec::new(),
            id: id.clone(),
        };
        if let Some(list) = raw["flat"].as_array() {
            case.flat_only = Some(
                list.iter()
                    .map(|s| s.as_str().expect("a flat setting").to_string())
                    .collect(),
            );
            case.flat = true;
            case.key = absolute_key(&key_text);
        } else if let Some(values) = raw.get("values") {
            case.values = Some(expand(values, &mut secrets));
            case.key = absolute_key(&key_text);
        } else {
            let name = raw["name"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| id.replace('-', "_"));
            let base = raw["base"].as_str().expect("a base");
            let mut conn = bases[base].clone();
            assert!(conn.is_object(), "case {id}: unknown base {base}");
            if let Some(set) = raw.get("set") {
                sc_model::merge_values(&mut conn, expand(set, &mut secrets));
            }
            let mut connections = Map::new();
            connections.insert(name.clone(), conn);
            if let Some(also) = raw["also"].as_object() {
                for (other, spec) in also {
                    let mut spec = expand(spec, &mut secrets);
                    let from = spec["$base"].as_str().expect("$base").to_string();
                    spec.as_object_mut().expect("a map").remove("$base");
                    let mut conn = bases[&from].clone();
                    sc_model::merge_values(&mut conn, spec);
                    connections.insert(other.clone(), conn);
                }
            }
            case.values = Some(json!({ "connections": connections }));
            case.key = vec!["connections".to_string(), name.clone()];
            if !key_text.is_empty() {
                match key_text.split_once('.') {
                    Some((field, rest)) => {
                        case.key.push(field.to_string());
                        case.key.push(rest.to_string());
                    }
                    None => case.key.push(key_text.clone()),
                }
            }
            case.name = Some(name);
        }
        // Fresh values for the bases' secrets that the case kept.
        case.secrets = secrets_in(case.values.as_ref().unwrap_or(&Value::Null));
        cases.push(case);
    }
    cases
}

fn absolute_key(text: &str) -> Vec<String> {
    text.split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The values of every `secrets` map under `connections` (what the leak scan looks for).
fn secrets_in(values: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(conns) = values["connections"].as_object() {
        for c in conns.values() {
            if let Some(s) = c["secrets"].as_object() {
                out.extend(
                    s.values()
                        .filter_map(Value::as_str)
                        .filter(|v| v.len() >= 16 && !v.starts_with("not-a-real"))
                        .map(str::to_string),
                );
            }
        }
    }
    out
}

impl Case {
    /// The key as sc-model writes it: `connections.<name>.<field>.<key>`.
    pub fn key_path(&self) -> String {
        self.key.join(".")
    }

    /// The values without any `secrets` (the settings; Arc: configurationSettings).
    pub fn public(&self) -> Value {
        let mut v = self.values.clone().unwrap_or_else(|| json!({}));
        if let Some(conns) = v["connections"].as_object_mut() {
            for c in conns.values_mut() {
                if let Some(m) = c.as_object_mut() {
                    m.remove("secrets");
                }
            }
        }
        v
    }

    /// Only the `secrets` of each connection (the protected settings), when there are any.
    pub fn protected(&self) -> Option<Value> {
        let mut conns = Map::new();
        if let Some(all) = self
            .values
            .as_ref()
            .and_then(|v| v["connections"].as_object())
        {
            for (name, c) in all {
                if let Some(s) = c.get("secrets") {
                    conns.insert(name.clone(), json!({ "secrets": s }));
                }
            }
        }
        (!conns.is_empty()).then(|| json!({ "connections": conns }))
    }

    /// The `--set-string` settings (without the flag) of the case's flat form: the corpus's
    /// own for a flat-only case, else the settings flattened as Arc passes them. `None` when the
    /// case is not tried flat.
    pub fn flat_settings(&self) -> Option<Vec<String>> {
        if let Some(f) = &self.flat_only {
            return Some(f.clone());
        }
        if !self.flat {
            return None;
        }
        let mut out = Vec::new();
        flatten(&self.public(), "", &mut out).then_some(out)
    }
}

/// A key segment as `--set-string` reads it literally.
fn escape_key(k: &str) -> String {
    let mut out = String::new();
    for c in k.chars() {
        if matches!(c, '\\' | '.' | ',' | '=' | '[' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A value as `--set-string` reads it literally: backslash and comma escaped (as
/// scripts/arc-to-helm.py does), and braces, since helm reads a value that starts with `{` as
/// a list.
fn escape_value(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '{' | '}') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Appends `prefix=value` settings for every leaf of `v`; false when `v` holds something the
/// flat form cannot say (a number, boolean or null, which it would turn into a string; an
/// empty map or list).
fn flatten(v: &Value, prefix: &str, out: &mut Vec<String>) -> bool {
    match v {
        // A command-line argument cannot hold NUL.
        Value::String(s) if !prefix.is_empty() && !s.contains('\0') => {
            out.push(format!("{prefix}={}", escape_value(s)));
            true
        }
        Value::Object(m) if !m.is_empty() => m.iter().all(|(k, v)| {
            if k.contains('\0') {
                return false;
            }
            let key = if prefix.is_empty() {
                escape_key(k)
            } else {
                format!("{prefix}.{}", escape_key(k))
            };
            flatten(v, &key, out)
        }),
        Value::Array(a) if !a.is_empty() && !prefix.is_empty() => a
            .iter()
            .enumerate()
            .all(|(i, v)| flatten(v, &format!("{prefix}[{i}]"), out)),
        _ => false,
    }
}

/// The forms a key segment may take in an error message: as given, JSON-escaped (helm 4 and
/// sc-model quote names) and JSON-pointer-escaped.
fn forms(segment: &str) -> Vec<String> {
    let json = serde_json::to_string(segment).expect("a string");
    let json = json[1..json.len() - 1].to_string();
    let pointer = segment.replace('~', "~0").replace('/', "~1");
    let mut out = vec![segment.to_string(), json.clone(), pointer];
    // Go's %q escapes differ from JSON's for a few characters (NUL, U+202E).
    out.push(json.replace("\\u0000", "\\x00"));
    out.push(segment.escape_default().to_string());
    // Go quotes format characters such as U+202E as \u202e and keeps other letters.
    out.push(
        segment
            .chars()
            .map(|c| {
                if c.is_control() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}') {
                    format!("\\u{:04x}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect(),
    );
    out.sort();
    out.dedup();
    out.retain(|s| !s.is_empty());
    out
}

/// Whether helm's schema error output names `key` (path segments): the parent path, dotted
/// (helm 3) or as a JSON pointer (helm 4), with the last segment on the same line or right
/// after it. A connection name may also be named as a property name (helm 4 reports property
/// names at the document root).
pub fn names_key(output: &str, key: &[String]) -> bool {
    let Some((leaf, parent)) = key.split_last() else {
        return false;
    };
    let leaves = if leaf.is_empty() {
        vec![String::new()]
    } else {
        forms(leaf)
    };
    let dotted = parent.join(".");
    let pointer: String = parent
        .iter()
        .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
        .collect();
    for l in &leaves {
        // The whole path at once.
        let full_dotted = if dotted.is_empty() {
            l.clone()
        } else {
            format!("{dotted}.{l}")
        };
        if !l.is_empty() && output.contains(&format!("{pointer}/{l}")) {
            return true;
        }
        if !full_dotted.is_empty() && output.contains(&full_dotted) {
            return true;
        }
        for line in output.lines() {
            let at_parent = if parent.is_empty() {
                line.contains("(root)") || line.contains("at ''")
            } else {
                line.contains(&format!("{dotted}:"))
                    || line.contains(&format!("'{pointer}'"))
                    || line.contains(&format!("\"{pointer}\""))
            };
            let quoted = [format!("'{l}'"), format!("\"{l}\""), format!(" {l} ")];
            if at_parent && quoted.iter().any(|q| line.contains(q.as_str())) {
                return true;
            }
            // helm 3 quotes a bad property name as given, newlines included.
            if output.contains(&format!("{dotted}: Property name of \"{l}\"")) {
                return true;
            }
            // helm 4 reports a bad property name at the document root.
            if parent.len() == 1
                && line.contains("propertyName")
                && line.contains(&format!("'{l}'"))
            {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_key_reads_both_helms() {
        let k = key(&["connections", "x", "namespace"]);
        assert!(names_key(
            "- connections.x.namespace: Invalid type. Expected: string, given: integer",
            &k
        ));
        assert!(names_key(
            "  - at '/connections/x/namespace': got number, want string",
            &k
        ));
        assert!(!names_key("- connections.y.namespace: Invalid type", &k));
        let k = key(&["connections", "x", "targetTyp"]);
        assert!(names_key(
            "- connections.x: Additional property targetTyp is not allowed",
            &k
        ));
        assert!(names_key(
            "  - at '/connections/x': additional properties 'targetTyp' not allowed",
            &k
        ));
        let k = key(&["connections", "a/b"]);
        assert!(names_key("- at '': invalid propertyName 'a/b'", &k));
        assert!(names_key(
            "  - at '/connections/a~1b': additional properties 'x' not allowed",
            &k
        ));
        let k = key(&["connection"]);
        assert!(names_key(
            "- (root): Additional property connection is not allowed",
            &k
        ));
        assert!(names_key(
            "- at '': additional properties 'connection' not allowed",
            &k
        ));
    }

    #[test]
    fn flat_settings_escape_keys_and_values() {
        let mut out = Vec::new();
        assert!(flatten(
            &json!({"connections": {"a.b": {"parameters": {"x": "1,2"}, "workloads": [{"name": "w"}]}}}),
            "",
            &mut out
        ));
        assert_eq!(
            out,
            vec![
                "connections.a\\.b.parameters.x=1\\,2".to_string(),
                "connections.a\\.b.workloads[0].name=w".to_string(),
            ]
        );
        assert!(!flatten(
            &json!({"connections": {"c": {"namespace": 42}}}),
            "",
            &mut out
        ));
    }
}
