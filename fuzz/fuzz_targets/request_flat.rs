//! Request parsing, flat Arc form: each input line `key=value` is one configuration setting,
//! nested as `helm --set-string` nests it (dotted keys become maps, `name[i]` list items, every
//! value a string), then validated. Never a panic; every error names a key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// The values `helm --set-string` builds from `pairs`: a later key replaces what an earlier
/// one set on its path.
fn set_string(pairs: &[(&str, &str)]) -> Value {
    let mut root = Value::Object(Map::new());
    for (k, v) in pairs {
        let mut cur = &mut root;
        for part in k.split('.') {
            let (name, index) = match part.split_once('[') {
                Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            if !cur.is_object() {
                *cur = Value::Object(Map::new());
            }
            let Value::Object(obj) = cur else {
                unreachable!()
            };
            cur = obj.entry(name.to_string()).or_insert(Value::Null);
            if let Some(i) = index.filter(|i| *i < 16) {
                if !cur.is_array() {
                    *cur = Value::Array(Vec::new());
                }
                let Value::Array(arr) = cur else {
                    unreachable!()
                };
                while arr.len() <= i {
                    arr.push(Value::Null);
                }
                cur = &mut arr[i];
            }
        }
        *cur = Value::String(v.to_string());
    }
    root
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k, v))
        .collect();
    let values = set_string(&pairs);
    let connections = sc_model::connections_subtree(&values);
    let _ = sc_model::check_connections(connections);
    if let Err(e) = sc_model::validate_connections(connections) {
        for err in e.errors() {
            assert!(
                err.path.starts_with("connections"),
                "error without a key: {err}"
            );
        }
    }
});
