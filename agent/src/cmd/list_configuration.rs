//! `sc-agent list-configuration NAME`: the configuration keys of a connection with their
//! non-secret values; a credential never shows.

use super::args::NameArgs;
use super::block_on;
use super::output::{print_table, print_value};
use super::snapshot::{Snapshot, api_reason};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::{Value, json};
use std::process::ExitCode;

/// `sc-agent list-configuration NAME`: the keys of the connection's Secret with their
/// non-secret values; credential keys (and any key the model does not know) show "".
pub fn run(args: &NameArgs) -> ExitCode {
    block_on(async {
        let c = &args.common;
        let (client, snapshot) = Snapshot::connect(c, true).await?;
        let conn = snapshot.connection(&args.name)?;
        let mut live: Option<std::collections::BTreeMap<String, Vec<u8>>> = None;
        if let Some(secret_name) = conn.secret_name() {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &conn.spec.namespace);
            match secrets.get_opt(&secret_name).await {
                Ok(Some(s)) => {
                    live = Some(
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0))
                            .collect(),
                    )
                }
                Ok(None) => eprintln!(
                    "warning: Secret {}/{secret_name} does not exist; showing the requested values",
                    conn.spec.namespace
                ),
                Err(e) => eprintln!(
                    "warning: reading Secret {}/{secret_name} failed ({}); showing the requested values",
                    conn.spec.namespace,
                    api_reason(&e)
                ),
            }
        }
        let mut rows: Vec<Value> = Vec::new();
        for k in &conn.keys {
            let value = if k.value.is_secret() {
                String::new()
            } else {
                match &live {
                    Some(data) => data
                        .get(&k.name)
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default(),
                    None => k.value.expose().to_string(),
                }
            };
            rows.push(json!({"name": k.name, "value": value, "description": k.description}));
        }
        if let Some(data) = &live {
            for key in data.keys() {
                if !conn.keys.iter().any(|k| &k.name == key) {
                    // Unknown to the model: never show its value.
                    rows.push(json!({"name": key, "value": "", "description": "not set by the connection"}));
                }
            }
        }
        match c.output.structured() {
            Some(f) => print_value(&json!({"name": conn.name(), "configurations": rows}), f)?,
            None => {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r["name"].as_str().unwrap_or("").to_string(),
                            format!("{:?}", r["value"].as_str().unwrap_or("")),
                        ]
                    })
                    .collect();
                print_table(&["KEY", "VALUE"], &table);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
