//! `sc-agent snippet NAME`: a sample workload wired to a connection.

use super::args::NameArgs;
use super::block_on;
use super::output::print_value;
use super::snapshot::{Snapshot, not_requested};
use serde_json::{Value, json};
use std::process::ExitCode;

/// `sc-agent snippet NAME`: a sample Deployment using the connection.
pub fn run(args: &NameArgs) -> ExitCode {
    block_on(async {
        let c = &args.common;
        let (_, snapshot) = Snapshot::connect(c, false).await?;
        let name = &args.name;
        let spec = snapshot
            .metadata(name)
            .and_then(|m| m.spec())
            .or_else(|| {
                snapshot
                    .requests
                    .as_ref()
                    .and_then(|r| r.connections.get(name).cloned())
            })
            .ok_or_else(|| not_requested(name, &c.namespace))?;
        let deployment = snippet_object(name, &spec);
        match c.output.structured() {
            Some(f) => print_value(&deployment, f)?,
            None => {
                let yaml = serde_saphyr::to_string(&deployment)
                    .map_err(|e| anyhow::anyhow!("rendering YAML failed: {e}"))?;
                print!("{yaml}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The sample Deployment of a connection given its non-secret spec.
pub fn snippet_object(name: &str, spec: &Value) -> Value {
    use sc_model::names;
    use sc_model::render::{CSI_DRIVER, CSI_MOUNT_PREFIX, WI_USE_LABEL};
    let ns = spec["namespace"].as_str().unwrap_or("default");
    let auth = spec["authType"].as_str().unwrap_or("");
    let params = &spec["parameters"];
    let truthy = |k: &str| {
        params[k]
            .as_str()
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "1"))
    };
    let csi = auth == "keyvaultCsi";
    let wi = auth == "workloadIdentity" || (csi && truthy("useWorkloadIdentity"));
    let app = format!("{}-app", names::fit_dns_label(&names::compact_name(name)));
    let mut container = json!({
        "name": "app",
        "image": "<your image>",
    });
    if !csi || truthy("syncSecret") {
        container["envFrom"] = json!([{"secretRef": {"name": names::secret_name(name)}}]);
    }
    let mut labels = json!({"app": app});
    let mut pod = json!({"containers": [container]});
    if wi {
        if let Some(client_id) = params["clientId"].as_str() {
            pod["serviceAccountName"] = json!(names::service_account_name(client_id));
        }
        labels[WI_USE_LABEL] = json!("true");
    }
    if csi {
        let volume = names::csi_volume_name(name);
        pod["volumes"] = json!([{
            "name": volume,
            "csi": {
                "driver": CSI_DRIVER,
                "readOnly": true,
                "volumeAttributes": {"secretProviderClass": names::secret_provider_class_name(name)},
            },
        }]);
        pod["containers"][0]["volumeMounts"] = json!([{
            "name": volume,
            "mountPath": format!("{CSI_MOUNT_PREFIX}/{name}"),
            "readOnly": true,
        }]);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_wire_the_secret_and_the_workload_identity() {
        let spec = json!({
            "name": "blob1", "namespace": "apps", "authType": "workloadIdentity",
            "parameters": {"clientId": "00000000-0000-0000-0000-000000000001"},
        });
        let d = snippet_object("blob1", &spec);
        let pod = &d["spec"]["template"];
        assert_eq!(
            pod["metadata"]["labels"]["azure.workload.identity/use"],
            "true"
        );
        assert_eq!(
            pod["spec"]["serviceAccountName"],
            "sc-account-00000000-0000-0000-0000-000000000001"
        );
        assert_eq!(
            pod["spec"]["containers"][0]["envFrom"][0]["secretRef"]["name"],
            "sc-blob1-secret"
        );
        assert_eq!(d["metadata"]["namespace"], "apps");
        let plain = snippet_object("db", &json!({"authType": "secret"}));
        assert!(
            plain["spec"]["template"]["metadata"]["labels"]
                .get("azure.workload.identity/use")
                .is_none()
        );
        assert!(
            plain["spec"]["template"]["spec"]
                .get("serviceAccountName")
                .is_none()
        );
    }
}
