//! `sc-agent plan`: the exact objects a values file (and its protected values) would
//! produce, with credentials redacted, or the validation errors. Needs no cluster.

use super::EXIT_INVALID;
use clap::{Args, ValueEnum};
use sc_model::{
    Connection, RequestSet, connections_subtree, merge_values, parse_yaml, validate_connections,
};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

/// Output formats of `plan`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PlanFormat {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// Arguments of `sc-agent plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// A values file (YAML or JSON); repeat for more, later files override earlier ones as with helm (for example values.yaml, then protected.yaml with the secrets).
    #[arg(short = 'f', long = "values", required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = PlanFormat::Yaml)]
    pub output: PlanFormat,
    /// The cluster's OIDC issuer URL, for the federated credential of each workload-identity
    /// connection (default: the values' workloadIdentity.oidcIssuerUrl, else a placeholder).
    #[arg(long, value_name = "URL")]
    pub oidc_issuer_url: Option<String>,
    /// The release namespace, refused as a connection's namespace like kube-system,
    /// kube-public and kube-node-lease unless the values' security.allowedNamespaces (or
    /// rbac.namespaces) names it. Without it only the kube-* namespaces are checked.
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespace: Option<String>,
}

/// The namespaces the values allow although guarded: `security.allowedNamespaces` and
/// `rbac.namespaces`.
fn allowed_namespaces(values: &Value) -> Vec<String> {
    ["/security/allowedNamespaces", "/rbac/namespaces"]
        .iter()
        .filter_map(|p| values.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The plan of one connection, for display (no secret values).
fn connection_plan(c: &Connection) -> Value {
    let mut objects = Vec::new();
    if let Some(s) = c.secret_object_redacted() {
        objects.push(s);
    }
    if let Some(sa) = c.service_account_object() {
        objects.push(sa);
    }
    if let Some(spc) = c.secret_provider_class_object() {
        objects.push(spc);
    }
    let patch = c.workload_patch();
    let patches: Vec<Value> = c
        .spec
        .workloads
        .iter()
        .map(|w| {
            let mut p = Map::new();
            p.insert("kind".into(), json!(w.kind.as_str()));
            p.insert("name".into(), json!(w.name));
            p.insert("namespace".into(), json!(c.spec.namespace));
            if let Some(s) = &patch.env_from_secret {
                p.insert("envFromSecret".into(), json!(s));
            }
            if let Some(sa) = &patch.service_account {
                p.insert("serviceAccountName".into(), json!(sa));
                p.insert(
                    "podLabels".into(),
                    json!({sc_model::render::WI_USE_LABEL: "true"}),
                );
            }
            if let Some(v) = &patch.csi_volume {
                p.insert("csiVolume".into(), json!(v));
            }
            Value::Object(p)
        })
        .collect();
    json!({
        "connection": c.name(),
        "namespace": c.spec.namespace,
        "targetType": c.spec.target_type,
        "authType": c.spec.auth_type.as_str(),
        "clientType": c.spec.client_type.as_str(),
        "firstOfTarget": c.is_first,
        "deletionPolicy": c.spec.deletion_policy.as_str(),
        "objects": objects,
        "workloadPatches": patches,
    })
}

/// The plan of a whole request set.
pub fn plan_value(set: &RequestSet) -> Value {
    json!({ "connections": set.connections().iter().map(connection_plan).collect::<Vec<_>>() })
}

/// Runs `sc-agent plan`.
pub fn run(args: &PlanArgs) -> ExitCode {
    let mut values = Value::Object(Map::new());
    for f in &args.files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: cannot read the values file: {e}", f.display());
                return ExitCode::FAILURE;
            }
        };
        match parse_yaml(&text) {
            Ok(v) if v.is_object() => merge_values(&mut values, v),
            Ok(_) => {
                eprintln!(
                    "{}: not a values document: the top level must be a map",
                    f.display()
                );
                return ExitCode::from(EXIT_INVALID);
            }
            Err(e) => {
                eprintln!("{}: not valid YAML: {e}", f.display());
                return ExitCode::from(EXIT_INVALID);
            }
        }
    }
    let set = match validate_connections(connections_subtree(&values)) {
        Ok(set) => set,
        Err(errors) => {
            for e in errors.errors() {
                eprintln!("{e}");
            }
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let guard =
        sc_model::NamespaceGuard::new(args.namespace.as_deref(), allowed_namespaces(&values));
    let guarded: Vec<sc_model::FieldError> = set
        .connections()
        .iter()
        .filter_map(|c| guard.check(c.name(), &c.spec.namespace, c.spec.workloads.len()))
        .collect();
    if !guarded.is_empty() {
        for e in guarded {
            eprintln!("{e}");
        }
        return ExitCode::from(EXIT_INVALID);
    }
    let mut plan = plan_value(&set);
    crate::report::plan(&mut plan, &set, &values, args.oidc_issuer_url.as_deref());
    let text = match args.output {
        PlanFormat::Json => serde_json::to_string_pretty(&plan).map_err(|e| e.to_string()),
        PlanFormat::Yaml => serde_saphyr::to_string(&plan).map_err(|e| e.to_string()),
    };
    match text {
        Ok(t) => {
            print!("{t}");
            if !t.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot format the plan: {e}");
            ExitCode::FAILURE
        }
    }
}
