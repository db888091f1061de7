//! Request parsing, nested form: the input as a values document (YAML, of which JSON is a
//! part) validated as `helm install -f` values are, and as JSON checked connection by
//! connection as sc-agent does. Never a panic; every error names a key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = sc_model::validate_values_yaml(&text) {
        for err in e.errors() {
            assert!(
                err.path == "values" || err.path.starts_with("connections"),
                "error without a key: {err}"
            );
        }
    }
    if let Ok(values) = serde_json::from_slice::<serde_json::Value>(data) {
        let connections = sc_model::connections_subtree(&values);
        for c in sc_model::check_connections_keyed(connections, "fuzz") {
            assert_eq!(c.hash.len(), 64, "hash of {}", c.name);
        }
        if let Ok(set) = sc_model::validate_connections(connections) {
            for d in set.desired() {
                let _ = (d.secret, d.service_account, d.secret_provider_class);
            }
        }
    }
});
