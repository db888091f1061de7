//! A Key Vault CSI connection end to end on the embedded cluster with the Secrets Store CSI
//! driver registered (its CSIDriver object) and the fake Key Vault seeded (Secret
//! `kubesim-system/<keyvaultName>`): after `helm install`, the listed Deployment's new pod
//! mounts the connection's CSI volume (the objects as files under
//! `/mnt/secrets-store/<connection>`), the driver syncs the SecretProviderClass's
//! `secretObjects` into the connection's Secret (label `secrets-store.csi.k8s.io/managed`,
//! owned by the pod), the pod runs with that Secret's keys in its environment, and `sc-agent
//! validate` is clean. No value reaches a leak surface.

use sc_e2e::{Cluster, Helm, SETTLE, secret_value, wait_for_state};
use serde_json::{Value, json};

const VAULT: &str = "e2e-csi-vault";

#[test]
fn kv_csi_end_to_end() {
    let helm = Helm::V3;
    let c = Cluster::start();
    if !c.is_embedded() {
        sc_e2e::skipped(
            "kv_csi_end_to_end",
            "not checked: it needs the embedded cluster's fake Key Vault provider",
        );
        return;
    }
    let rel = c.release_ns();
    let apps = c.create_namespace("apps");
    c.ensure_spc_crd();

    // The driver and the fake vault's values.
    c.apply(&json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
        "metadata": {"name": "secrets-store.csi.k8s.io"},
        "spec": {"attachRequired": false, "podInfoOnMount": true,
                 "volumeLifecycleModes": ["Ephemeral"]},
    }));
    let password = secret_value("db-password");
    let cert = secret_value("tls-cert");
    c.remember_secret(&password);
    c.remember_secret(&cert);
    c.kubectl(&["create", "namespace", "kubesim-system"]).ok();
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        VAULT,
        "-n",
        "kubesim-system",
        &format!("--from-literal=db-password={password}"),
        &format!("--from-literal=tls-cert={cert}"),
    ])
    .ok();

    // The application copies the mounted files into its working directory, then runs.
    let files = "/mnt/secrets-store/vault";
    c.apply(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "namespace": apps},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app"}},
                "spec": {"containers": [{"name": "main", "image": "alpine",
                    "command": ["sh", "-c", format!(
                        "cat {files}/db-password > seen-db-password; cat {files}/tls.crt > seen-tls.crt; exec sleep 3600")]}]},
            },
        },
    }));
    let settings = json!({"connections": {"vault": {
        "namespace": apps, "targetType": "keyvault", "authType": "keyvaultCsi",
        "parameters": {"keyvaultName": VAULT, "tenantId": "66666666-7777-8888-9999-000000000000",
                       "clientId": "22222222-3333-4444-5555-666666666666", "syncSecret": "true",
                       "objects": [{"name": "db-password", "type": "secret"},
                                   {"name": "tls-cert", "type": "cert", "alias": "tls.crt"}]},
        "workloads": [{"kind": "Deployment", "name": "app"}],
    }}});
    let file = c.write_values("settings", &settings);
    c.helm_upgrade(helm, &[&file], &[]).ok();
    c.wait_job_gone();

    // The Deployment's pod of the patched template runs.
    let pod = wait_for_state(SETTLE, "one running pod of app with the CSI volume", || {
        let list = c.get_json(&["pods", "-n", &apps, "-l", "app=app"]);
        let live: Vec<&Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        match live.as_slice() {
            [p] if p["status"]["phase"] == "Running"
                && p["status"]["containerStatuses"][0]["ready"] == true
                && p["spec"]["volumes"]
                    .to_string()
                    .contains("secrets-store.csi.k8s.io") =>
            {
                Ok((*p).clone())
            }
            other => Err(format!(
                "{:?}",
                other
                    .iter()
                    .map(|p| (&p["metadata"]["name"], &p["status"]["phase"]))
                    .collect::<Vec<_>>()
            )),
        }
    });
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();

    // The synced Secret: the driver's label, the vault's values, owned by the pod.
    let s = c.get("secret", &apps, "sc-vault-secret");
    assert_eq!(
        s["metadata"]["labels"]["secrets-store.csi.k8s.io/managed"],
        "true"
    );
    assert_eq!(
        s["metadata"]["labels"]["sc-extension.io/connection"],
        "vault"
    );
    let owners: Vec<(&Value, &Value)> = s["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| (&o["kind"], &o["uid"]))
        .collect();
    assert_eq!(owners, [(&json!("Pod"), &pod["metadata"]["uid"])]);
    let mut keys: Vec<&String> = s["data"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    keys.sort();
    assert_eq!(keys, ["db-password", "tls.crt"]);

    // The pod saw the files and has the synced Secret's keys in its environment.
    let exec = |args: &[&str]| {
        let mut a = vec!["exec", pod_name, "-n", &apps, "--"];
        a.extend_from_slice(args);
        c.kubectl(&a).ok().to_string()
    };
    assert_eq!(exec(&["cat", "seen-db-password"]), password);
    assert_eq!(exec(&["cat", "seen-tls.crt"]), cert);
    assert_eq!(
        exec(&["printenv", "db-password", "tls.crt"]),
        format!("{password}\n{cert}\n")
    );

    // The agent finds nothing to report: the driver is there and the pod runs.
    let out = c.sc_agent(&["validate", "vault", "-n", &rel]);
    assert_eq!(out.code, 0, "{}", out.all());
    c.leak_scan(&["vault"]);
}
