//! The connections a benchmark requests, in the forms each client needs: the chart's values
//! file, the request objects the chart renders (`sc-requests`, `sc-protected`), and the
//! Secrets sc-model renders for `kubectl apply`.

use anyhow::{Context, Result};
use base64::Engine as _;
use serde_json::{Map, Value, json};

/// The namespace the connections' Secrets go to.
pub const APP_NS: &str = "apps";

/// The name of connection `i`.
pub fn name(i: usize) -> String {
    format!("conn_{i:05}")
}

/// The account key of connection `i` at `generation` (a change of generation changes the
/// Secret).
pub fn account_key(i: usize, generation: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("bench-key-{i}-{generation}"))
}

/// `n` Storage Blob connections with connection-string (secret) auth: the request without
/// secrets and the protected settings, keyed by connection name.
pub fn connections(n: usize) -> (Map<String, Value>, Map<String, Value>) {
    let mut public = Map::new();
    let mut protected = Map::new();
    for i in 0..n {
        public.insert(
            name(i),
            json!({
                "namespace": APP_NS,
                "targetType": "storage-blob",
                "authType": "secret",
                "clientType": "python",
                "parameters": {"accountName": format!("benchacct{i:05}")},
            }),
        );
        protected.insert(
            name(i),
            json!({"secrets": {"accountKey": account_key(i, 0)}}),
        );
    }
    (public, protected)
}

/// The chart values (JSON is YAML) of the connections.
pub fn values(public: &Map<String, Value>, protected: &Map<String, Value>) -> Value {
    let mut conns = Map::new();
    for (k, v) in public {
        let mut c = v.clone();
        if let Some(s) = protected.get(k) {
            c["secrets"] = s["secrets"].clone();
        }
        conns.insert(k.clone(), c);
    }
    json!({ "connections": conns })
}

/// The Secrets sc-model renders for the connections, moved to namespace `namespace`, as one
/// `v1` List.
pub fn rendered_secrets(
    public: &Map<String, Value>,
    protected: &Map<String, Value>,
    namespace: &str,
) -> Result<Value> {
    let merged = values(public, protected);
    let mut items = Vec::new();
    for check in sc_model::resolve::check_connections(&merged["connections"]) {
        let conn = check.connection.with_context(|| {
            format!(
                "connection {} does not resolve: {:?}",
                check.name, check.errors
            )
        })?;
        let mut s = conn
            .secret_object()
            .with_context(|| format!("connection {} renders no Secret", check.name))?;
        s["metadata"]["namespace"] = json!(namespace);
        items.push(s);
    }
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

/// The merge patch of `sc-protected` as the chart renders it.
pub fn protected_patch(protected: &Map<String, Value>, revision: u64) -> Value {
    let text = Value::Object(protected.clone()).to_string();
    json!({
        "metadata": {"annotations": {"sc-extension.io/revision": revision.to_string()}},
        "data": {"connections.json": base64::engine::general_purpose::STANDARD.encode(text)},
    })
}

/// The merge patch of `sc-requests` as the chart renders it.
pub fn requests_patch(public: &Map<String, Value>, revision: u64) -> Value {
    json!({
        "metadata": {"annotations": {"sc-extension.io/revision": revision.to_string()}},
        "data": {"connections.json": Value::Object(public.clone()).to_string()},
    })
}

/// The size in bytes of the largest data value the chart renders for `n` connections (the
/// `connections.json` of `sc-requests`, or the base64 one of `sc-protected`), which the API
/// server limits to 1 MiB per object.
pub fn largest_object_bytes(n: usize) -> usize {
    let (public, protected) = connections(n);
    let requests = Value::Object(public).to_string().len();
    let secret = Value::Object(protected).to_string().len().div_ceil(3) * 4;
    requests.max(secret)
}
