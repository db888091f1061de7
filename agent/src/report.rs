//! What `plan`, `show` and `wait` add about workload identity and the cluster: the federated
//! credential a connection needs (`federated`), the missing prerequisites
//! (`prerequisites`), the pods our references break (`workloads`) and the Azure values the
//! chart recorded. Kept here so the commands only call in.

use crate::federated::{self, Issuer};
use crate::prerequisites::{self, Finding};
use sc_contract::cluster::ClusterInfo;
use sc_model::{Connection, RequestSet};
use serde_json::{Value, json};

/// The cluster values of a values document (`Azure.Cluster.*`, `workloadIdentity.*`), as the
/// chart records them.
pub fn cluster_from_values(values: &Value) -> ClusterInfo {
    let s = |v: &Value| {
        v.as_str()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let c = &values["Azure"]["Cluster"];
    ClusterInfo {
        resource_id: s(&c["ResourceId"]),
        region: s(&c["Region"]),
        cloud: s(&c["Cloud"]),
        distribution: s(&c["Distribution"]),
        oidc_issuer_url: s(&values["workloadIdentity"]["oidcIssuerUrl"]),
    }
}

/// `sc-agent plan`: adds `federatedCredential` to each workload-identity connection of
/// `plan` (in the order of `set`); the issuer: `flag`, else the values, else a placeholder.
pub fn plan(plan: &mut Value, set: &RequestSet, values: &Value, flag: Option<&str>) {
    let cluster = cluster_from_values(values);
    let issuer = match flag.or(cluster.oidc_issuer_url.as_deref()) {
        Some(url) => federated::choose_issuer(Some(url), Ok(None)),
        None => Issuer::unknown("plan reads no cluster: pass --oidc-issuer-url"),
    };
    let Some(list) = plan["connections"].as_array_mut() else {
        return;
    };
    for (entry, conn) in list.iter_mut().zip(set.connections()) {
        if let Some(fc) = federated::credential(conn, &issuer, &cluster) {
            entry["federatedCredential"] = json!(fc);
            entry["federatedCredential"]["issuerSource"] = json!(issuer.source);
        }
    }
}

/// The Azure values recorded by the chart, for display (`null` when none).
fn cluster_json(cluster: &ClusterInfo) -> Value {
    if !cluster.has_azure() {
        return Value::Null;
    }
    json!({
        "resourceId": cluster.resource_id,
        "resourceGroup": cluster.resource_group(),
        "region": cluster.region,
        "cloud": cluster.cloud,
        "distribution": cluster.distribution,
    })
}

/// `sc-agent show`: the cluster's Azure values, the federated credential and the
/// prerequisite findings of `conn`.
pub async fn show(client: &kube::Client, ns: &str, conn: Option<&Connection>) -> Value {
    let cluster = federated::cluster_info(client, ns).await;
    let mut out = json!({"cluster": cluster_json(&cluster)});
    // The pods of the release (sc-job, the agent) no node accepts: whatever the connection,
    // nothing is applied while they wait.
    let pods = prerequisites::scheduling(client, ns).await;
    let Some(conn) = conn else {
        out["prerequisites"] = json!(pods);
        return out;
    };
    if conn.workload_identity_client_id().is_some() {
        let issuer = federated::cluster_issuer(client, &cluster).await;
        if let Some(fc) = federated::credential(conn, &issuer, &cluster) {
            out["federatedCredential"] = json!(fc);
            out["federatedCredential"]["issuerSource"] = json!(issuer.source);
            out["federatedCredentialText"] = json!(fc.lines(conn, &issuer, &cluster, "  "));
        }
    }
    // The preflight findings: what the connection needs from the cluster, then the pods.
    let mut findings = prerequisites::check(client, [conn]).await;
    findings.extend(pods);
    out["prerequisites"] = json!(findings);
    match crate::workloads::check(client, conn, ns, true).await {
        Ok(broken) => out["brokenWorkloads"] = json!(broken),
        Err(why) => out["brokenWorkloadsUnchecked"] = json!(why),
    }
    out
}

/// Prints what [`show`] found, after the rest of `sc-agent show`.
pub fn print_show(v: &Value) {
    let c = &v["cluster"];
    if c.is_object() {
        let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
        println!(
            "Cluster:    {} (resource group {}, region {}, cloud {})",
            s(&c["resourceId"]),
            s(&c["resourceGroup"]),
            s(&c["region"]),
            s(&c["cloud"])
        );
    }
    if let Some(lines) = v["federatedCredentialText"].as_array() {
        println!("Federated credential:");
        for l in lines {
            println!("{}", l.as_str().unwrap_or_default());
        }
    }
    if let Some(list) = v["brokenWorkloads"].as_array().filter(|l| !l.is_empty()) {
        println!("Workloads:");
        let s = |x: &Value| x.as_str().unwrap_or_default().to_string();
        for b in list {
            println!(
                "  BROKEN {} ({}): {}\n    reference: {}\n    remedy: {}",
                s(&b["object"]),
                s(&b["workload"]),
                s(&b["problem"]),
                s(&b["reference"]),
                s(&b["remedy"])
            );
        }
    }
    if let Some(why) = v["brokenWorkloadsUnchecked"].as_str() {
        println!("Workloads:  the pods of the listed workloads were not checked: {why}");
    }
    print_findings("Prerequisites:", &v["prerequisites"]);
}

fn print_findings(title: &str, findings: &Value) {
    let Some(list) = findings.as_array().filter(|l| !l.is_empty()) else {
        return;
    };
    println!("{title}");
    for f in list {
        let label = serde_json::from_value::<Finding>(f.clone())
            .map_or("MISSING", |f| prerequisites::label(&f));
        println!(
            "  {label} {}: {}\n    remedy: {}",
            f["object"].as_str().unwrap_or_default(),
            f["problem"].as_str().unwrap_or_default(),
            f["remedy"].as_str().unwrap_or_default()
        );
    }
}

/// `sc-agent wait`: the federated credentials of the workload-identity connections new or
/// changed in `revision`, the prerequisites they miss, and (when the wait timed out) the
/// pods that cannot be scheduled. `json` of it and the lines to print.
pub async fn wait(
    client: &kube::Client,
    snapshot: &crate::cmd::snapshot::Snapshot,
    revision: i64,
    timed_out: bool,
) -> (Value, Vec<String>) {
    let ns = &snapshot.namespace;
    let mut lines = Vec::new();
    let mut creds = Vec::new();
    let mut conns: Vec<Connection> = Vec::new();
    if let Some(requests) = &snapshot.requests {
        for check in sc_model::check_connections_keyed(&requests.connections, &requests.hash_key) {
            let Some(conn) = check.connection else {
                continue;
            };
            let this_revision = snapshot
                .metadata(conn.name())
                .and_then(|m| m.requested.as_ref())
                .is_none_or(|r| r.revision == revision);
            if this_revision {
                conns.push(conn);
            }
        }
    }
    if conns
        .iter()
        .any(|c| c.workload_identity_client_id().is_some())
    {
        let cluster = federated::cluster_info(client, ns).await;
        let issuer = federated::cluster_issuer(client, &cluster).await;
        for conn in &conns {
            if let Some(fc) = federated::credential(conn, &issuer, &cluster) {
                lines.extend(fc.lines(conn, &issuer, &cluster, ""));
                let mut j = json!(fc);
                j["issuerSource"] = json!(issuer.source);
                creds.push(j);
            }
        }
    }
    let mut findings: Vec<Finding> = prerequisites::check(client, &conns).await;
    if timed_out {
        findings.extend(prerequisites::scheduling(client, ns).await);
    }
    for f in &findings {
        if prerequisites::is_unschedulable_pod(f) {
            lines.push(format!("unschedulable: {}: {}", f.object, f.problem));
            lines.push(format!("  remedy: {}", f.remedy));
            continue;
        }
        let label = if f.missing { "missing" } else { "not checked" };
        lines.push(format!("prerequisite {label}: {}: {}", f.object, f.problem));
        lines.push(format!("  remedy: {}", f.remedy));
    }
    (
        json!({"federatedCredentials": creds, "prerequisites": findings}),
        lines,
    )
}
