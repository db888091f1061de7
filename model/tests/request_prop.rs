//! Property tests of request parsing and validation: arbitrary values, in the nested YAML/JSON
//! form and the flat Arc settings form, never panic; every error names a key of the request;
//! generated valid connections validate and render; the flat form (every scalar a string, types
//! as `target.type`) means exactly what the nested form means.

use proptest::prelude::*;
use sc_model::{
    check_connections, check_connections_keyed, connections_subtree, names, parse_yaml,
    validate_connections, validate_values_yaml,
};
use serde_json::{Map, Value, json};

/// The connection fields (and aliases), the keys arbitrary maps draw from besides random ones.
const FIELD_KEYS: [&str; 16] = [
    "namespace",
    "targetType",
    "target",
    "authType",
    "auth",
    "clientType",
    "client",
    "parameters",
    "configurations",
    "customizedKeys",
    "workloads",
    "deletionPolicy",
    "primary",
    "secrets",
    "type",
    "objects",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(&FIELD_KEYS[..]).prop_map(str::to_string),
        1 => "[a-zA-Z_][a-zA-Z0-9_.-]{0,12}",
        1 => any::<String>(),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        proptest::sample::select(
            &[
                "storage-blob",
                "servicebus",
                "keyvault",
                "redis",
                "secret",
                "workloadIdentity",
                "keyvaultCsi",
                "servicePrincipal",
                "python",
                "none",
                "Delete",
                "true",
                "3",
                "",
                "${x}",
            ][..]
        )
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

/// Arbitrary JSON, biased towards the shape of a request.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A `connections` subtree: connection names (valid or not) -> arbitrary values.
fn connections() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(
        prop_oneof![3 => "[a-z][a-z0-9_]{0,8}", 1 => any::<String>()],
        value(),
        0..4,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Every error is at a key path under `connections` (or `values` for the document) and says
/// something.
fn assert_errors_name_keys(errors: &[sc_model::FieldError]) -> Result<(), TestCaseError> {
    for e in errors {
        prop_assert!(
            e.path == "connections" || e.path.starts_with("connections.") || e.path == "values",
            "error without a key path: {e}"
        );
        prop_assert!(!e.message.trim().is_empty(), "empty message at {}", e.path);
    }
    Ok(())
}

/// The flat Arc form of a values tree: `a.b.c` keys to string values (what Arc's
/// configurationSettings hold), nested again as `helm --set-string` nests them.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// `helm --set-string k=v ...` (list indexes up to 7).
fn set_string(pairs: &[(String, String)]) -> Value {
    sc_model::values::set_string(pairs, 7)
}

/// A valid connection of one of four shapes, with generated names and parameters.
fn valid_connection() -> impl Strategy<Value = (Value, &'static str)> {
    let ns = "[a-z][a-z0-9-]{0,10}[a-z0-9]";
    let account = "[a-z0-9]{3,24}";
    let guid = "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}";
    let secret = "[ -~]{1,40}";
    prop_oneof![
        (ns, account, secret).prop_map(|(ns, a, k)| (
            json!({"namespace": ns, "targetType": "storage-blob", "authType": "secret",
                   "clientType": "python", "parameters": {"accountName": a},
                   "secrets": {"accountKey": k}}),
            "secret"
        )),
        (ns, account, guid, guid).prop_map(|(ns, a, id, tenant)| (
            json!({"namespace": ns, "targetType": "servicebus", "authType": "workloadIdentity",
                   "clientType": "dotnet",
                   "parameters": {"namespaceName": a, "clientId": id, "tenantId": tenant}}),
            "workloadIdentity"
        )),
        (ns, "[a-z][a-z0-9]{2,23}", guid, guid, any::<bool>()).prop_map(
            |(ns, v, id, tenant, sync)| (
                json!({"namespace": ns, "targetType": "keyvault", "authType": "keyvaultCsi",
                   "parameters": {"keyvaultName": v, "tenantId": tenant, "clientId": id,
                                  "syncSecret": sync.to_string(),
                                  "objects": [{"name": "db-password", "type": "secret"}]}}),
                "keyvaultCsi"
            )
        ),
        (ns, account, secret).prop_map(|(ns, s, k)| (
            json!({"namespace": ns, "targetType": "redis", "authType": "secret",
                   "clientType": "python", "parameters": {"server": s},
                   "secrets": {"accessKey": k}}),
            "secret"
        )),
    ]
}

/// The flat Arc form of a connection: types as `target.type`, every scalar a string.
fn arc_form(conn: &Value) -> Value {
    let mut c = conn.clone();
    let m = c.as_object_mut().expect("a map");
    for (field, short) in [
        ("targetType", "target"),
        ("authType", "auth"),
        ("clientType", "client"),
    ] {
        if let Some(t) = m.remove(field) {
            m.insert(short.into(), json!({ "type": t }));
        }
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_connections_never_panic(conns in connections()) {
        match validate_connections(&conns) {
            Ok(set) => {
                for d in set.desired() {
                    prop_assert!(!d.connection.is_empty());
                }
            }
            Err(e) => {
                prop_assert!(!e.errors().is_empty());
                assert_errors_name_keys(e.errors())?;
            }
        }
        let checks = check_connections_keyed(&conns, "key");
        if let Value::Object(m) = &conns {
            prop_assert_eq!(checks.len(), m.len());
        }
        for c in &checks {
            prop_assert_eq!(c.hash.len(), 64, "hash of {}", c.name);
            assert_errors_name_keys(&c.errors)?;
            // An invalid connection's errors name it.
            for e in &c.errors {
                prop_assert!(e.path.contains(&c.name) || e.path == "connections", "{e} for {}", c.name);
            }
        }
    }

    #[test]
    fn arbitrary_values_text_never_panics(text in any::<String>()) {
        let _ = parse_yaml(&text);
        if let Err(e) = validate_values_yaml(&text) {
            prop_assert!(!e.errors().is_empty());
            assert_errors_name_keys(e.errors())?;
        }
    }

    #[test]
    fn arbitrary_values_as_yaml_and_json_text_never_panic(conns in connections()) {
        let doc = json!({"connections": conns});
        let text = serde_json::to_string_pretty(&doc).expect("JSON");
        // JSON is YAML: the same document read as YAML validates as the value itself.
        let parsed = parse_yaml(&text);
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        let from_text = validate_values_yaml(&text).map(|s| s.connections().len());
        if let Err(e) = &from_text {
            assert_errors_name_keys(e.errors())?;
        }
    }

    #[test]
    fn arbitrary_flat_settings_never_panic(conns in connections()) {
        let mut pairs = Vec::new();
        flatten("connections", &conns, &mut pairs);
        let values = set_string(&pairs);
        let _ = check_connections(connections_subtree(&values));
        if let Err(e) = validate_connections(connections_subtree(&values)) {
            assert_errors_name_keys(e.errors())?;
        }
    }

    #[test]
    fn valid_connections_render_the_same_nested_and_flat(
        named in proptest::collection::btree_map("[a-z][a-z0-9_]{0,12}", valid_connection(), 1..4)
    ) {
        let conns: Map<String, Value> =
            named.iter().map(|(n, (c, _))| (n.clone(), c.clone())).collect();
        let conns = Value::Object(conns);
        let set = validate_connections(&conns);
        prop_assert!(set.is_ok(), "{:?}", set.err());
        let set = set.expect("valid");
        prop_assert_eq!(set.connections().len(), named.len());
        for d in set.desired() {
            let (_, auth) = &named[&d.connection];
            let c = set.get(&d.connection).expect("the connection");
            match *auth {
                "keyvaultCsi" => {
                    let spc = d.secret_provider_class.as_ref().expect("a SecretProviderClass");
                    let want = names::secret_provider_class_name(&d.connection);
                    prop_assert_eq!(spc["metadata"]["name"].as_str(), Some(want.as_str()));
                }
                other => {
                    let secret = d.secret.as_ref().expect("a Secret");
                    let want = names::secret_name(&d.connection);
                    prop_assert_eq!(secret["metadata"]["name"].as_str(), Some(want.as_str()));
                    prop_assert!(!secret["data"].as_object().is_none_or(Map::is_empty));
                    prop_assert_eq!(other == "workloadIdentity", d.service_account.is_some());
                }
            }
            prop_assert_eq!(&d.namespace, &c.spec.namespace);
        }
        // The same request, as Arc's flat string settings nested by `helm --set-string`.
        let arc: Map<String, Value> = named.iter().map(|(n, (c, _))| (n.clone(), arc_form(c))).collect();
        let mut pairs = Vec::new();
        flatten("connections", &Value::Object(arc), &mut pairs);
        let values = set_string(&pairs);
        let flat = validate_connections(connections_subtree(&values));
        prop_assert!(flat.is_ok(), "flat form: {:?}", flat.err());
        let flat = flat.expect("valid");
        let hashes = |s: &sc_model::RequestSet| -> Vec<(String, String)> {
            s.connections().iter().map(|c| (c.name().to_string(), c.hash.clone())).collect()
        };
        prop_assert_eq!(hashes(&flat), hashes(&set));
        // And as YAML text.
        let text = serde_json::to_string(&json!({"connections": conns})).expect("JSON");
        let from_text = validate_values_yaml(&text);
        prop_assert!(from_text.is_ok());
        prop_assert_eq!(hashes(&from_text.expect("valid")), hashes(&set));
    }

    #[test]
    fn a_bad_field_is_named(
        (conn, _) in valid_connection(),
        field in proptest::sample::select(&["namespace", "targetType", "authType", "deletionPolicy"][..]),
        bad in "[A-Z!@#%^&*]{1,8}|[a-z]{64,70}",
    ) {
        let mut conn = conn;
        prop_assume!(conn.get(field).is_some() || field == "deletionPolicy");
        conn[field] = json!(bad);
        let errors = validate_connections(&json!({"c1": conn}));
        prop_assert!(errors.is_err(), "{field}={bad} accepted");
        let errors = errors.expect_err("invalid");
        let path = format!("connections.c1.{field}");
        prop_assert!(
            errors.errors().iter().any(|e| e.path == path),
            "no error at {path}: {:?}", errors.errors()
        );
        // The secrets of the request never reach an error.
        if let Some(Value::Object(secrets)) = conn.get("secrets") {
            for v in secrets.values() {
                let v = v.as_str().unwrap_or_default();
                if v.len() >= 8 {
                    for e in errors.errors() {
                        prop_assert!(!e.message.contains(v), "a secret in {e}");
                    }
                }
            }
        }
    }
}
