//! Roll-out on change and clean removal: a rotated protected value rolls the listed
//! Deployment out (its new pods print the new value), unchanged values change no pod
//! template, removing a connection with `Delete` (or a workload from its `workloads`) leaves
//! the workload as the user wrote it and its new pods start, and `--set connections=null`
//! removes every connection.

use sc_e2e::{Cluster, Helm, expected, merged, secret_value, wait_for_state, with_both_helms};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const KEY: &str = "AZURE_STORAGEBLOB_CONNECTIONSTRING";
const RESTART: &str = "sc-extension.io/restarted-for-blob";

/// A Deployment whose pods print the connection's key and their own variable, then sleep.
fn deployment(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "annotations": {"team": "apps"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {"owner": "apps"}},
                "spec": {"containers": [{
                    "name": "main", "image": "alpine",
                    "command": ["sh", "-c", format!("echo \"{KEY}=${KEY}\"; echo OWN=$OWN; sleep 3600")],
                    "env": [{"name": "OWN", "value": "mine"}],
                }]},
            },
        },
    })
}

fn settings(ns: &str, workloads: Value) -> Value {
    json!({"connections": {
        "blob": {
            "namespace": ns, "targetType": "storage-blob", "authType": "secret",
            "clientType": "python", "parameters": {"accountName": "e2erollout"},
            "workloads": workloads, "deletionPolicy": "Delete",
        },
        "cache": {
            "namespace": ns, "targetType": "redis", "authType": "secret",
            "clientType": "python", "parameters": {"server": "e2e-cache"},
        },
    }})
}

fn protected(blob_key: &str, cache_key: &str) -> Value {
    json!({"connections": {
        "blob": {"secrets": {"accountKey": blob_key}},
        "cache": {"secrets": {"accessKey": cache_key}},
    }})
}

fn template(c: &Cluster, ns: &str, name: &str) -> Value {
    c.get("deployment", ns, name)["spec"]["template"].clone()
}

/// The log of a running pod of the Deployment's current pod template, once it has one that
/// printed `line`.
fn wait_current_pod_prints(c: &Cluster, ns: &str, name: &str, line: &str) {
    wait_for_state(
        WAIT,
        &format!("a new pod of {name} to print its line"),
        || {
            let d = c.get("deployment", ns, name);
            let revision =
                d["metadata"]["annotations"]["deployment.kubernetes.io/revision"].clone();
            let sets = c.get_json(&["replicasets", "-n", ns, "-l", &format!("app={name}")]);
            let current = sets["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|rs| {
                    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == revision
                })
                .ok_or_else(|| format!("no ReplicaSet of revision {revision}"))?;
            let hash = current["metadata"]["labels"]["pod-template-hash"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let pods = c.get_json(&["pods", "-n", ns, "-l", &format!("pod-template-hash={hash}")]);
            let mut seen = Vec::new();
            for pod in pods["items"].as_array().into_iter().flatten() {
                let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
                seen.push(format!("{pod_name}: {}", pod["status"]["phase"]));
                if pod["status"]["phase"] != "Running" {
                    continue;
                }
                let log = c.kubectl(&["logs", &format!("pod/{pod_name}"), "-n", ns]);
                if log.success() && log.ok().lines().any(|l| l == line) {
                    return Ok(());
                }
            }
            // The pods' state only: their logs hold the secret.
            Err(format!("pods of {hash}: {}", seen.join(", ")))
        },
    );
}

fn connection_line(values: &[&Value]) -> String {
    let set = expected(&merged(values));
    let blob = set.get("blob").expect("connection blob");
    let k = blob
        .keys
        .iter()
        .find(|k| k.name == KEY)
        .expect("the connection string key");
    format!("{KEY}={}", k.value.expose())
}

fn rollout_removal(helm: Helm) {
    let c = Cluster::start();
    let apps = c.create_namespace("apps");
    c.apply(&deployment(&apps, "web"));
    c.apply(&deployment(&apps, "worker"));
    let web_before = template(&c, &apps, "web");
    let worker_before = template(&c, &apps, "worker");
    let (key1, key2, cache_key) = (
        secret_value("blob-key"),
        secret_value("blob-key-rotated"),
        secret_value("cache-key"),
    );
    for k in [&key1, &key2, &cache_key] {
        c.remember_secret(k);
    }
    let both =
        json!([{"kind": "Deployment", "name": "web"}, {"kind": "Deployment", "name": "worker"}]);
    let s1 = settings(&apps, both.clone());
    let p1 = protected(&key1, &cache_key);
    let files = [
        c.write_values("settings", &s1),
        c.write_values("protected", &p1),
    ];
    c.helm_upgrade(helm, &[&files[0], &files[1]], &[]).ok();
    c.wait_job_gone();
    wait_current_pod_prints(&c, &apps, "web", &connection_line(&[&s1, &p1]));
    wait_current_pod_prints(&c, &apps, "web", "OWN=mine");
    let web1 = template(&c, &apps, "web");
    assert!(
        web1["metadata"]["annotations"][RESTART].is_string(),
        "{web1}"
    );

    // Rotation: a new protected value rolls web out; its new pods print the new value.
    let p2 = protected(&key2, &cache_key);
    let protected2 = c.write_values("protected2", &p2);
    c.helm_upgrade(helm, &[&files[0], &protected2], &[]).ok();
    c.wait_job_gone();
    let web2 = template(&c, &apps, "web");
    assert_ne!(
        web2["metadata"]["annotations"][RESTART], web1["metadata"]["annotations"][RESTART],
        "the rotated key did not change the pod template of web"
    );
    assert!(
        !web2.to_string().contains(&key2),
        "the pod template shows the key"
    );
    wait_current_pod_prints(&c, &apps, "web", &connection_line(&[&s1, &p2]));
    let worker2 = template(&c, &apps, "worker");

    // The same values again, then a forced re-run: no pod template changes.
    c.helm_upgrade(helm, &[&files[0], &protected2], &[]).ok();
    c.wait_job_gone();
    let before = c.metadata_status("blob")["changeset"].clone();
    let rel = c.release_ns();
    c.kubectl(&[
        "patch",
        "configmap",
        "sc-conn-blob",
        "-n",
        &rel,
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/data/status.json"}]"#,
    ])
    .ok();
    wait_for_state(WAIT, "the forced re-run of blob to be recorded", || {
        let cm = c.metadata("blob");
        let status: Value = cm["data"]["status.json"]
            .as_str()
            .and_then(|t| serde_json::from_str(t).ok())
            .ok_or("no status.json yet")?;
        if status["phase"] == "Ready" && status["changeset"] != before {
            Ok(())
        } else {
            Err(format!(
                "phase {}, changeset {}",
                status["phase"], status["changeset"]
            ))
        }
    });
    c.wait_job_gone();
    assert_eq!(
        template(&c, &apps, "web"),
        web2,
        "a re-run changed the pod template of web"
    );
    assert_eq!(
        template(&c, &apps, "worker"),
        worker2,
        "a re-run changed worker"
    );

    // worker dropped from blob's workloads: its template is the user's again, and it runs.
    let s2 = settings(&apps, json!([{"kind": "Deployment", "name": "web"}]));
    let settings2 = c.write_values("settings2", &s2);
    c.helm_upgrade(helm, &[&settings2, &protected2], &[]).ok();
    c.wait_job_gone();
    wait_for_state(WAIT, "worker to lose what blob added", || {
        let t = template(&c, &apps, "worker");
        if t == worker_before {
            Ok(())
        } else {
            Err(t.to_string())
        }
    });
    wait_current_pod_prints(&c, &apps, "worker", "OWN=mine");

    // blob removed (deletionPolicy Delete): its Secret goes, web is as the user wrote it and
    // its new pods start.
    let mut s3 = s2.clone();
    s3["connections"].as_object_mut().unwrap().remove("blob");
    let mut p3 = p2.clone();
    p3["connections"].as_object_mut().unwrap().remove("blob");
    let files3 = [
        c.write_values("settings3", &s3),
        c.write_values("protected3", &p3),
    ];
    c.helm_upgrade(helm, &[&files3[0], &files3[1]], &[]).ok();
    c.wait_metadata_gone(&["blob"]);
    c.wait_job_gone();
    assert!(c.try_get("secret", &apps, "sc-blob-secret").is_none());
    let web = c.get("deployment", &apps, "web");
    assert_eq!(
        web["spec"]["template"], web_before,
        "web still carries what blob added"
    );
    assert!(
        web["metadata"]["annotations"]
            .get("sc-extension.io/injected-blob")
            .is_none()
    );
    assert_eq!(web["metadata"]["annotations"]["team"], "apps");
    wait_current_pod_prints(&c, &apps, "web", "OWN=mine");

    // Every connection removed at once, as helm users do it: the same files, and
    // `--set connections=null` (NOTES.txt and the request templates take a null).
    let out = c.helm_upgrade(
        helm,
        &[&files3[0], &files3[1]],
        &["--set", "connections=null"],
    );
    assert!(
        out.ok().contains("Connections requested: 0."),
        "{}",
        out.all()
    );
    c.wait_metadata_gone(&["cache"]);
    c.wait_job_gone();
    c.assert_deployed(helm, 6);
    c.leak_scan(&[]);
}

with_both_helms!(rollout_removal);
