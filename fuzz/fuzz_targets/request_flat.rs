//! Request parsing, flat Arc form: each input line `key=value` is one configuration setting,
//! nested as `helm --set-string` nests it (dotted keys become maps, `name[i]` list items, every
//! value a string), then validated. Never a panic; every error names a key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k, v))
        .collect();
    let values = sc_model::values::set_string(&pairs, 15);
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
