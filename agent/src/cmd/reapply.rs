//! `sc-agent reapply NAME | --all`: asks the agent to run connections again, as they are
//! requested, through the usual path (a change set and an sc-job run). It annotates each
//! connection's metadata ConfigMap with `sc-extension.io/reapply` (the time of the request);
//! the agent puts the connection in the next change set with cause `reapply`, clears a
//! `Contested` failure and its count of drift repairs, then removes the annotation.

use super::args::CommonArgs;
use super::block_on;
use super::output::print_value;
use crate::contract::{self, FIELD_MANAGER, METADATA_SELECTOR, REAPPLY_ANNOTATION};
use clap::Args;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use std::process::ExitCode;

/// Arguments of `sc-agent reapply`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["name", "all"]))]
pub struct ReapplyArgs {
    /// The connection to run again.
    pub name: Option<String>,
    /// Every connection that has metadata.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `sc-agent reapply`.
pub fn run(args: &ReapplyArgs) -> ExitCode {
    block_on(async {
        let c = &args.common;
        let client = c.cluster.client().await?;
        let api: Api<ConfigMap> = Api::namespaced(client, &c.namespace);
        let names: Vec<(String, String)> = match &args.name {
            Some(name) => vec![(name.clone(), contract::metadata_name(name))],
            None => api
                .list_metadata(&ListParams::default().labels(METADATA_SELECTOR))
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "listing the metadata ConfigMaps in {} failed: {e}; check the namespace (-n) and your access",
                        c.namespace
                    )
                })?
                .items
                .into_iter()
                .filter_map(|m| {
                    let cm = m.metadata.name?;
                    let name = m
                        .metadata
                        .annotations
                        .and_then(|a| a.get(sc_model::render::CONNECTION_ANNOTATION).cloned())
                        .unwrap_or_else(|| cm.clone());
                    Some((name, cm))
                })
                .collect(),
        };
        let time = jiff::Timestamp::now().to_string();
        let patch = json!({"metadata": {"annotations": {REAPPLY_ANNOTATION: time}}});
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        let mut failed = false;
        let structured = c.output.structured();
        let mut results = Vec::new();
        for (name, cm) in &names {
            let result = match api.patch(cm, &pp, &Patch::Merge(&patch)).await {
                Ok(_) => {
                    if structured.is_none() {
                        println!("{name}: reapply requested (the agent runs sc-job for it)");
                    }
                    "Requested"
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    failed = true;
                    eprintln!(
                        "error: connection {name} was never applied (no metadata ConfigMap {}/{cm}): nothing to reapply; a requested connection is applied by its first run (see `sc-agent list`)",
                        c.namespace
                    );
                    "NotRecorded"
                }
                Err(e) => {
                    failed = true;
                    eprintln!(
                        "error: annotating ConfigMap {}/{cm} for connection {name} failed: {e}",
                        c.namespace
                    );
                    "Failed"
                }
            };
            results.push(json!({"name": name, "result": result}));
        }
        if let Some(f) = structured {
            print_value(&serde_json::Value::Array(results), f)?;
        } else if names.is_empty() {
            eprintln!("no connections in namespace {}", c.namespace);
        }
        Ok(if failed {
            ExitCode::from(super::EXIT_ERROR)
        } else {
            ExitCode::SUCCESS
        })
    })
}
