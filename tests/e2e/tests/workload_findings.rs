//! Workloads that our references break are a finding:
//!
//! - a Key Vault CSI connection on a cluster without the Secrets Store CSI driver (no CSIDriver
//!   object, so the embedded kubelet has no such driver): the listed Deployment's new pod waits
//!   in `ContainerCreating` on its CSI volume (`FailedMount`: the driver is not registered);
//!   `sc-agent validate` exits 1 naming the pod, the SecretProviderClass and the driver as the
//!   remedy; dropping the workload from the connection clears it;
//! - a connection's Secret deleted (`driftPolicy: Report`, so nothing repairs it) and the
//!   Deployment's pod recreated: `validate` exits 1 naming the pod, the Secret and `sc-agent
//!   reapply`; `show` names it; the agent posts a Warning event `WorkloadBroken` naming the pod;
//!   after `sc-agent reapply` the pod runs and `validate` is clean.

use sc_e2e::{Cluster, Helm, SETTLE, secret_value, wait_for_state};
use serde_json::{Value, json};

fn deployment(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "alpine",
                                         "command": ["sleep", "3600"]}]},
            },
        },
    })
}

fn settings(ns: &str, vault_workloads: Value) -> Value {
    json!({"connections": {
        "blob": {
            "namespace": ns, "targetType": "storage-blob", "authType": "secret",
            "clientType": "python", "parameters": {"accountName": "e2efindings"},
            "workloads": [{"kind": "Deployment", "name": "web"}], "driftPolicy": "Report",
        },
        "vault": {
            "namespace": ns, "targetType": "keyvault", "authType": "keyvaultCsi",
            "parameters": {"keyvaultName": "e2e-vault", "tenantId": "66666666-7777-8888-9999-000000000000",
                           "clientId": "22222222-3333-4444-5555-666666666666", "syncSecret": "true",
                           "objects": [{"name": "db-password", "type": "secret"}]},
            "workloads": vault_workloads,
        },
    }})
}

/// The pods of Deployment `app` not being deleted: (name, phase, waiting reason).
fn pods(c: &Cluster, ns: &str, app: &str) -> Vec<(String, String, String)> {
    let list = c.get_json(&["pods", "-n", ns, "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["status"]["phase"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Waits until Deployment `app` has exactly one pod and it runs the current template.
fn wait_running(c: &Cluster, ns: &str, app: &str) -> String {
    wait_for_state(SETTLE, &format!("one running pod of {app}"), || {
        let d = c.get("deployment", ns, app);
        let updated = d["status"]["updatedReplicas"] == 1
            && d["status"]["observedGeneration"] == d["metadata"]["generation"];
        match pods(c, ns, app).as_slice() {
            [(name, phase, _)] if phase == "Running" && updated => Ok(name.clone()),
            other => Err(format!("{other:?}")),
        }
    })
}

/// Waits until `sc-agent validate NAME` reports a broken pod of `app`; its output and the pod.
fn wait_broken(c: &Cluster, rel: &str, name: &str, ns: &str, app: &str) -> (String, String) {
    wait_for_state(
        SETTLE,
        &format!("validate {name} to name a broken pod"),
        || {
            let out = c.sc_agent(&["validate", name, "-n", rel]);
            let text = out.all();
            let prefix = format!("BROKEN Pod {ns}/{app}-");
            match text.lines().find(|l| l.starts_with(&prefix)) {
                Some(line) if out.code == 1 => {
                    let pod = line
                        .trim_start_matches("BROKEN Pod ")
                        .split(':')
                        .next()
                        .unwrap_or_default()
                        .trim_start_matches(&format!("{ns}/"))
                        .to_string();
                    Ok((text, pod))
                }
                _ => Err(format!("exit {}: {text}", out.code)),
            }
        },
    )
}

#[test]
fn workload_findings() {
    let helm = Helm::V3;
    let c = Cluster::start();
    let rel = c.release_ns();
    let apps = c.create_namespace("apps");
    c.ensure_spc_crd();
    c.apply(&deployment(&apps, "web"));
    c.apply(&deployment(&apps, "vault-app"));
    let vault_listed = json!([{"kind": "Deployment", "name": "vault-app"}]);
    let key = secret_value("account-key");
    c.remember_secret(&key);
    let protected = c.write_values(
        "protected",
        &json!({"connections": {"blob": {"secrets": {"accountKey": key}}}}),
    );
    let file = c.write_values("settings", &settings(&apps, vault_listed));
    c.helm_upgrade(helm, &[&file, &protected], &[]).ok();
    c.wait_job_gone();

    // The Key Vault CSI connection: no driver on this cluster mounts its volume.
    let (text, pod) = wait_broken(&c, &rel, "vault", &apps, "vault-app");
    for want in [
        format!("fails on SecretProviderClass {apps}/sc-vault-spc (CSI volume sc-vault-kv) that connection vault added to Deployment {apps}/vault-app"),
        "(FailedMount): MountVolume.SetUp failed for volume \"sc-vault-kv\" : kubernetes.io/csi: mounter.SetUpAt failed to get CSI client: driver name secrets-store.csi.k8s.io not found in the list of registered CSI drivers".to_string(),
        "install the Secrets Store CSI driver and its Azure provider".to_string(),
        "connections.vault.workloads".to_string(),
    ] {
        assert!(text.contains(&want), "validate vault lacks {want:?}:\n{text}");
    }
    assert!(pod.starts_with("vault-app-"), "{pod}");
    let waiting: Vec<String> = pods(&c, &apps, "vault-app")
        .into_iter()
        .filter(|(name, _, _)| *name == pod)
        .map(|(_, phase, reason)| format!("{phase} {reason}"))
        .collect();
    assert_eq!(waiting, ["Pending ContainerCreating"]);

    // blob's pod runs; its Secret is deleted and the pod recreated: it cannot start.
    wait_running(&c, &apps, "web");
    let validate = c.sc_agent(&["validate", "blob", "-n", &rel]);
    assert_eq!(validate.code, 0, "{}", validate.all());
    c.kubectl(&["delete", "secret", "sc-blob-secret", "-n", &apps])
        .ok();
    c.kubectl(&[
        "delete",
        "pod",
        "-n",
        &apps,
        "-l",
        "app=web",
        "--wait=false",
    ])
    .ok();
    let (text, pod) = wait_broken(&c, &rel, "blob", &apps, "web");
    for want in [
        format!(
            "BROKEN Pod {apps}/{pod}: the pod fails on Secret {apps}/sc-blob-secret that connection blob added to Deployment {apps}/web"
        ),
        "(CreateContainerConfigError): secret \"sc-blob-secret\" not found".to_string(),
        format!("remedy: the connection's Secret is gone: sc-agent reapply blob -n {rel}"),
        format!("DRIFT Secret {apps}/sc-blob-secret: the Secret is missing"),
    ] {
        assert!(
            text.contains(&want),
            "validate blob lacks {want:?}:\n{text}"
        );
    }
    let json_out = c.sc_agent(&["validate", "blob", "-n", &rel, "-o", "json"]);
    let v: Value = serde_json::from_str(&json_out.stdout).expect("validate -o json is JSON");
    assert_eq!(v["valid"], false);

    // show names it.
    let shown: Value =
        serde_json::from_str(c.sc_agent(&["show", "blob", "-n", &rel, "-o", "json"]).ok())
            .expect("show -o json is JSON");
    let broken = &shown["brokenWorkloads"];
    assert_eq!(broken.as_array().map(Vec::len), Some(1), "{shown}");
    assert_eq!(broken[0]["object"], format!("Pod {apps}/{pod}"));
    assert_eq!(
        broken[0]["reference"],
        format!("Secret {apps}/sc-blob-secret")
    );
    assert_eq!(broken[0]["workload"], format!("Deployment {apps}/web"));
    let text = c.sc_agent(&["show", "blob", "-n", &rel]).ok().to_string();
    assert!(
        text.contains(&format!("BROKEN Pod {apps}/{pod} (Deployment {apps}/web)")),
        "{text}"
    );

    // The agent's Warning event, naming the pod and the Secret.
    wait_for_state(SETTLE, "a WorkloadBroken event naming the pod", || {
        let events = c.get_json(&["events.events.k8s.io", "-n", &rel]);
        let found = events["items"].as_array().into_iter().flatten().any(|e| {
            let note = e["note"].as_str().unwrap_or_default();
            e["reason"] == "WorkloadBroken"
                && e["type"] == "Warning"
                && note.contains(&format!("Pod {apps}/{pod}"))
                && note.contains(&format!("Secret {apps}/sc-blob-secret"))
        });
        if found {
            Ok(())
        } else {
            Err("no WorkloadBroken event yet".to_string())
        }
    });

    // The remedy: reapply restores the Secret, the pod starts, the finding clears.
    c.sc_agent(&["reapply", "blob", "-n", &rel]).ok();
    wait_for_state(SETTLE, "validate blob to be clean", || {
        let out = c.sc_agent(&["validate", "blob", "-n", &rel]);
        if out.code == 0 {
            Ok(())
        } else {
            Err(out.all())
        }
    });
    assert_eq!(pods(&c, &apps, "web")[0].1, "Running");

    // vault: on a cluster without the CSI driver, the workload is dropped from the connection.
    let file = c.write_values("settings2", &settings(&apps, json!([])));
    c.helm_upgrade(helm, &[&file, &protected], &[]).ok();
    c.wait_job_gone();
    wait_running(&c, &apps, "vault-app");
    let out = c.sc_agent(&["validate", "vault", "-n", &rel]);
    // The missing CSI driver is still a prerequisite finding; no pod is broken any more.
    assert!(!out.all().contains("BROKEN"), "{}", out.all());
    assert!(
        out.all().contains("CSIDriver secrets-store.csi.k8s.io"),
        "{}",
        out.all()
    );
    c.leak_scan(&["blob", "vault"]);
}
