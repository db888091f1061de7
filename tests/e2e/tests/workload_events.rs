//! What only an Event tells is a finding of the agent too: a workload-identity connection
//! (`driftPolicy: Report`, so nothing repairs it) lists Deployment `api`; its ServiceAccount is
//! deleted and the pod of `api` deleted, so the ReplicaSet cannot create its pod (the API
//! server refuses it: `FailedCreate`, an Event on the ReplicaSet; there is no pod whose status
//! could tell). The leading agent posts a Warning event `WorkloadBroken` naming the ReplicaSet
//! and the ServiceAccount, as `sc-agent validate` decides it; after `sc-agent reapply` the pod
//! runs and `validate` is clean.

use sc_e2e::{Cluster, Helm, SETTLE, wait_for_state};
use serde_json::{Value, json};

const CLIENT_ID: &str = "0a1b2c3d-0000-4000-8000-0000000000e5";

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

fn settings(ns: &str) -> Value {
    json!({"connections": {
        "bus": {
            "namespace": ns, "targetType": "servicebus", "authType": "workloadIdentity",
            "clientType": "dotnet",
            "parameters": {"namespaceName": "e2eevents", "clientId": CLIENT_ID},
            "workloads": [{"kind": "Deployment", "name": "api"}], "driftPolicy": "Report",
        },
    }})
}

/// The pods of Deployment `app` not being deleted: (name, phase, serviceAccountName).
fn pods(c: &Cluster, ns: &str, app: &str) -> Vec<(String, String, String)> {
    let list = c.get_json(&["pods", "-n", ns, "-l", &format!("app={app}")]);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                text(&p["metadata"]["name"]),
                text(&p["status"]["phase"]),
                text(&p["spec"]["serviceAccountName"]),
            )
        })
        .collect()
}

/// Waits until Deployment `app` has one running pod, with ServiceAccount `sa`.
fn wait_running(c: &Cluster, ns: &str, app: &str, sa: &str) {
    wait_for_state(
        SETTLE,
        &format!("one running pod of {app} with {sa}"),
        || match pods(c, ns, app).as_slice() {
            [(_, phase, with)] if phase == "Running" && with == sa => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

#[test]
fn workload_events() {
    let helm = Helm::V3;
    let c = Cluster::start();
    let rel = c.release_ns();
    let apps = c.create_namespace("apps");
    let sa = format!("sc-account-{CLIENT_ID}");
    c.apply(&deployment(&apps, "api"));
    let file = c.write_values("settings", &settings(&apps));
    c.helm_upgrade(helm, &[&file], &[]).ok();
    c.wait_job_gone();
    wait_running(&c, &apps, "api", &sa);
    let out = c.sc_agent(&["validate", "bus", "-n", &rel]).all();
    assert!(!out.contains("BROKEN "), "{out}");

    // The ServiceAccount goes (Report: it stays gone), then the pod: the ReplicaSet's new pod
    // is refused, so no pod of api exists and only the ReplicaSet's Event tells why.
    c.kubectl(&["delete", "serviceaccount", &sa, "-n", &apps])
        .ok();
    c.kubectl(&[
        "delete",
        "pod",
        "-n",
        &apps,
        "-l",
        "app=api",
        "--wait=false",
    ])
    .ok();
    let replica_set = wait_for_state(SETTLE, "a FailedCreate event of api's ReplicaSet", || {
        let events = c.get_json(&[
            "events",
            "-n",
            &apps,
            "--field-selector",
            "involvedObject.kind=ReplicaSet,reason=FailedCreate",
        ]);
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&format!("serviceaccount \"{sa}\" not found")))
            })
            .and_then(|e| e["involvedObject"]["name"].as_str())
            .filter(|n| n.starts_with("api-"))
            .map(str::to_string)
            .ok_or_else(|| "none yet".to_string())
    });

    // The agent's Warning event names the ReplicaSet (its related object) and the
    // ServiceAccount, while api has no pod at all.
    let object = format!("ReplicaSet {apps}/{replica_set}");
    let reference = format!("ServiceAccount {apps}/{sa}");
    let note = wait_for_state(
        SETTLE,
        "a WorkloadBroken event naming the ReplicaSet",
        || {
            let events = c.get_json(&["events.events.k8s.io", "-n", &rel]);
            let seen: Vec<String> = events["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["reason"] == "WorkloadBroken")
                .map(|e| format!("{} (related {})", e["note"], e["related"]))
                .collect();
            events["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| {
                    e["reason"] == "WorkloadBroken"
                        && e["type"] == "Warning"
                        && e["related"]["kind"] == "ReplicaSet"
                        && e["related"]["name"] == replica_set.as_str()
                        && e["note"].as_str().is_some_and(|n| n.contains(&reference))
                })
                .and_then(|e| e["note"].as_str().map(str::to_string))
                .ok_or_else(|| format!("WorkloadBroken events: {seen:?}"))
        },
    );
    for want in [
        format!("connection bus: {object} of Deployment {apps}/api fails on {reference}"),
        "it cannot create its pods (FailedCreate)".to_string(),
        format!("serviceaccount \"{sa}\" not found"),
        format!("sc-agent reapply bus -n {rel}"),
    ] {
        assert!(note.contains(&want), "the event lacks {want:?}: {note}");
    }
    assert_eq!(
        pods(&c, &apps, "api"),
        vec![],
        "a pod of api exists: its status, not an Event, could have told"
    );
    // validate decides the same from the same Events (read with the user's credentials).
    let out = c.sc_agent(&["validate", "bus", "-n", &rel]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all().contains(&format!(
            "BROKEN {object}: it fails on {reference} that connection bus added to Deployment {apps}/api"
        )),
        "{}",
        out.all()
    );

    // The remedy: reapply restores the ServiceAccount, the ReplicaSet creates its pod.
    c.sc_agent(&["reapply", "bus", "-n", &rel]).ok();
    wait_running(&c, &apps, "api", &sa);
    // (The embedded cluster has no workload-identity webhook: validate keeps that finding.)
    wait_for_state(
        SETTLE,
        "validate bus to find no broken workload or drift",
        || {
            let out = c.sc_agent(&["validate", "bus", "-n", &rel]).all();
            if out
                .lines()
                .any(|l| l.starts_with("BROKEN ") || l.starts_with("DRIFT "))
            {
                Err(out)
            } else {
                Ok(())
            }
        },
    );
}
