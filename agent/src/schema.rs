//! The enumerations of target, auth and client types in the chart's values schema, generated
//! from the catalog (`sc_model::accepted_spellings`), so `helm install` refuses an unknown
//! type naming its key and the schema never refuses a spelling sc-model accepts.
//!
//! `sc-agent catalog --schema-enums` prints them; the test below fails when
//! `chart/values.schema.json` differs from them, and rewrites the file when run with
//! `SC_UPDATE_SCHEMA=1` (`SC_UPDATE_SCHEMA=1 cargo test -p sc-agent schema`).

use sc_model::{accepted_spellings, schema_enum};
use serde_json::{Value, json};

/// The keys of a connection request that name a target type (a string, or `{type: ...}`).
#[cfg(test)]
pub const TARGET_KEYS: [&str; 3] = ["targetType", "target_type", "target"];
/// The keys that name an auth type.
#[cfg(test)]
pub const AUTH_KEYS: [&str; 4] = ["authType", "auth_type", "auth", "authentication"];
/// The keys that name a client type.
#[cfg(test)]
pub const CLIENT_KEYS: [&str; 3] = ["clientType", "client_type", "client"];

/// `{"targetType": [...], "authType": [...], "clientType": [...]}`: every spelling the schema
/// accepts for each kind.
pub fn enums() -> Value {
    let all = accepted_spellings();
    json!({
        "targetType": schema_enum(&all.target_types),
        "authType": schema_enum(&all.auth_types),
        "clientType": schema_enum(&all.client_types),
    })
}

/// The connection properties of the values schema.
#[cfg(test)]
fn connection_properties(schema: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    schema
        .pointer_mut("/properties/connections/additionalProperties/properties")
        .and_then(Value::as_object_mut)
}

/// Writes the enumerations into `schema` (the chart's values schema): once each, under
/// `definitions` (`targetType`, `authType`, `clientType`), referenced by every key that names
/// one; `false` when the schema has no connection properties.
#[cfg(test)]
pub fn apply(schema: &mut Value) -> bool {
    let e = enums();
    let Some(props) = connection_properties(schema) else {
        return false;
    };
    for key in TARGET_KEYS {
        props.insert(
            key.to_string(),
            json!({
                "anyOf": [
                    {"$ref": "#/definitions/targetType"},
                    {
                        "type": "object",
                        "properties": {"type": {"$ref": "#/definitions/targetType"}},
                        "required": ["type"]
                    }
                ],
                "description": "target service, e.g. storage-blob, or {type: storage-blob} (sc-agent catalog lists them)",
            }),
        );
    }
    for key in AUTH_KEYS {
        props.insert(
            key.to_string(),
            json!({
                "$ref": "#/definitions/authType",
                "description": "secret | servicePrincipal | workloadIdentity | keyvaultCsi",
            }),
        );
    }
    for key in CLIENT_KEYS {
        props.insert(
            key.to_string(),
            json!({
                "$ref": "#/definitions/clientType",
                "description": "none python django dotnet java springBoot kafkaSpringBoot nodejs go php ruby",
            }),
        );
    }
    let Some(root) = schema.as_object_mut() else {
        return false;
    };
    let generated = "generated from the catalog by sc-agent catalog --schema-enums: the documented spellings and their lower-case, capitalized and upper-case forms";
    root.insert(
        "definitions".to_string(),
        json!({
            "targetType": {"type": "string", "enum": e["targetType"], "description": generated},
            "authType": {"type": "string", "enum": e["authType"], "description": generated},
            "clientType": {"type": "string", "enum": e["clientType"], "description": generated},
        }),
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../chart/values.schema.json")
    }

    #[test]
    fn the_chart_schema_enumerates_what_the_model_accepts() {
        let path = schema_path();
        let text = std::fs::read_to_string(&path).expect("reading the chart's values schema");
        let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
        let mut want = schema.clone();
        assert!(apply(&mut want), "the schema has no connection properties");
        if std::env::var_os("SC_UPDATE_SCHEMA").is_some() {
            let mut out = serde_json::to_string_pretty(&want).expect("formatting the schema");
            out.push('\n');
            std::fs::write(&path, out).expect("writing the schema");
            return;
        }
        assert!(
            schema == want,
            "chart/values.schema.json is out of step with the catalog: run SC_UPDATE_SCHEMA=1 cargo test -p sc-agent schema"
        );
    }

    #[test]
    fn the_enums_hold_the_documented_forms_and_refuse_unknown_ones() {
        let e = enums();
        let has = |kind: &str, v: &str| e[kind].as_array().unwrap().iter().any(|x| x == v);
        for t in [
            "sql",
            "storage-blob",
            "storageBlob",
            "StorageBlob",
            "keyvault",
            "postgresql",
        ] {
            assert!(has("targetType", t), "{t}");
        }
        for a in [
            "secret",
            "workloadIdentity",
            "WorkloadIdentity",
            "workload-identity",
            "keyvaultCsi",
        ] {
            assert!(has("authType", a), "{a}");
        }
        for c in [
            "python",
            "Python",
            "dotnet",
            ".net",
            "springBoot",
            "spring-boot",
            "none",
        ] {
            assert!(has("clientType", c), "{c}");
        }
        assert!(!has("targetType", "not-a-target") && !has("authType", "password"));
        assert!(!has("clientType", "cobol"));
    }
}
