//! `sc-agent list`: the connections with their target, auth, client, phase and objects.

use super::args::ListArgs;
use super::block_on;
use super::output::{print_table, print_value};
use super::snapshot::Snapshot;
use serde_json::{Value, json};
use std::process::ExitCode;

/// `sc-agent list`.
pub fn run(args: &ListArgs) -> ExitCode {
    block_on(async {
        let c = &args.common;
        let (_, snapshot) = Snapshot::connect(c, false).await?;
        let rows: Vec<Value> = names(&snapshot).iter().map(|n| row(n, &snapshot)).collect();
        match c.output.structured() {
            Some(f) => print_value(&Value::Array(rows), f)?,
            None => {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                        vec![
                            s("name"),
                            s("namespace"),
                            s("target"),
                            s("auth"),
                            s("client"),
                            s("phase"),
                            r["objects"].as_array().map_or(0, Vec::len).to_string(),
                        ]
                    })
                    .collect();
                if table.is_empty() {
                    eprintln!("no connections in namespace {}", c.namespace);
                } else {
                    print_table(
                        &[
                            "NAME",
                            "NAMESPACE",
                            "TARGET",
                            "AUTH",
                            "CLIENT",
                            "PHASE",
                            "OBJECTS",
                        ],
                        &table,
                    );
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The row of one connection in `list`.
pub fn row(name: &str, snapshot: &Snapshot) -> Value {
    let m = snapshot.metadata(name);
    let spec = m
        .and_then(|m| m.spec())
        .or_else(|| {
            snapshot.requests.as_ref().map(|r| {
                let mut v = r.connections[name].clone();
                if let Value::Object(o) = &mut v {
                    o.remove("secrets");
                }
                v
            })
        })
        .unwrap_or(Value::Null);
    let phase = match m {
        None if snapshot.ignored_for(name).is_some() => "Failed",
        _ => snapshot.phase(name, None).as_str(),
    };
    let objects: Vec<Value> = m
        .and_then(|m| m.status.as_ref())
        .map(|s| {
            s.objects
                .iter()
                .map(|o| json!({"kind": o.kind, "namespace": o.namespace, "name": o.name}))
                .collect()
        })
        .unwrap_or_default();
    let text = |k: &str| spec[k].as_str().unwrap_or("").to_string();
    json!({
        "name": name,
        "namespace": if text("namespace").is_empty() { "default".to_string() } else { text("namespace") },
        "target": text("targetType"),
        "auth": text("authType"),
        "client": text("clientType"),
        "phase": phase,
        "objects": objects,
    })
}

/// The connection names known from the requests and the metadata, sorted.
fn names(snapshot: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> = snapshot
        .metadata
        .iter()
        .map(|m| m.connection.clone())
        .filter(|n| !n.is_empty())
        .collect();
    if let Some(Value::Object(m)) = snapshot.requests.as_ref().map(|r| &r.connections) {
        out.extend(m.keys().cloned());
    }
    out.sort();
    out.dedup();
    out
}
