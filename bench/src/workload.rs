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

/// The chart's default `requests.shardBytes`.
pub const SHARD_BYTES: usize = 900_000;

/// The entries of `m` split into shards as the chart splits them (`sc.shards` in
/// `chart/templates/_helpers.tpl`): in name order, a new shard once the next entry would take
/// the current one past [`SHARD_BYTES`] of JSON.
pub fn shards(m: &Map<String, Value>) -> Vec<Map<String, Value>> {
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = vec![Map::new()];
    let mut size = 0;
    for (name, v) in entries {
        let n = v.to_string().len() + name.len() + 4;
        if size > 0 && size + n > SHARD_BYTES {
            out.push(Map::new());
            size = 0;
        }
        out.last_mut()
            .expect("a shard")
            .insert(name.clone(), v.clone());
        size += n;
    }
    out
}

/// The name of shard `i` of `base`.
pub fn shard_name(base: &str, i: usize) -> String {
    sc_contract::shards::shard_name(base, i)
}

/// Shard `i` of `count` of a request object as the chart renders it (`data`: its data map),
/// for a server-side apply.
pub fn shard_object(
    kind: &str,
    base: &str,
    i: usize,
    count: usize,
    revision: u64,
    data: Value,
) -> Value {
    let mut annotations = json!({"sc-extension.io/revision": revision.to_string()});
    let mut labels = json!({"app.kubernetes.io/component": "requests"});
    if i == 0 {
        annotations["sc-extension.io/shards"] = json!(count.to_string());
    } else {
        labels["sc-extension.io/shard-of"] = json!(base);
    }
    json!({
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": shard_name(base, i), "labels": labels, "annotations": annotations},
        "data": data,
    })
}

/// The data of a `sc-requests` shard.
pub fn requests_data(public: &Map<String, Value>) -> Value {
    json!({"connections.json": Value::Object(public.clone()).to_string()})
}

/// The data of a `sc-protected` shard.
pub fn protected_data(protected: &Map<String, Value>) -> Value {
    let text = Value::Object(protected.clone()).to_string();
    json!({"connections.json": base64::engine::general_purpose::STANDARD.encode(text)})
}
