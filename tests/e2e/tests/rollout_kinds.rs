//! Roll-out on change for every kind of listed workload besides the Deployment
//! (`rollout_removal` covers that one down to its new pods): a connection lists a
//! StatefulSet, a DaemonSet and a CronJob; a protected value rotated with `helm upgrade` stamps
//! the connection's new rollout hash on each pod template, and the CronJob's next Job prints
//! the new value; the same values again (`helm upgrade`) and a forced re-run (`sc-agent
//! reapply`) change no pod template: no workload's `metadata.generation` moves.
//!
//! The embedded cluster runs no StatefulSet or DaemonSet controller: for those, what is
//! checked is the pod template the real controllers roll out from. The CronJob is suspended,
//! so its next Job is created from its template with `kubectl create job --from`, as its
//! controller would at the next schedule.

use sc_e2e::{Cluster, Helm, SETTLE, merged, secret_value, wait_for_state};
use serde_json::{Value, json};

const KEY: &str = "AZURE_STORAGEBLOB_CONNECTIONSTRING";
const RESTART: &str = "sc-extension.io/restarted-for-blob";
/// The listed workloads: (kubectl resource, name).
const WORKLOADS: [(&str, &str); 3] = [
    ("statefulset", "db"),
    ("daemonset", "node-agent"),
    ("cronjob", "nightly"),
];

/// A container printing the connection's key, then sleeping (`sleep` 0 for the CronJob).
fn pod_spec(sleep: u32) -> Value {
    json!({
        "restartPolicy": if sleep == 0 { "Never" } else { "Always" },
        "containers": [{
            "name": "main", "image": "alpine",
            "command": ["sh", "-c", format!("echo \"{KEY}=${KEY}\"; sleep {sleep}")],
        }],
    })
}

fn create_workloads(c: &Cluster, ns: &str) {
    let template =
        |app: &str| json!({"metadata": {"labels": {"app": app}}, "spec": pod_spec(3600)});
    let selector = |app: &str| json!({"matchLabels": {"app": app}});
    for item in [
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": ns},
               "spec": {"replicas": 1, "serviceName": "db", "selector": selector("db"), "template": template("db")}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-agent", "namespace": ns},
               "spec": {"selector": selector("node-agent"), "template": template("node-agent")}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": ns},
               "spec": {"schedule": "0 3 * * *", "suspend": true, "jobTemplate": {"spec": {
                   "backoffLimit": 0, "template": {"spec": pod_spec(0)}}}}}),
    ] {
        c.apply(&item);
    }
}

fn settings(ns: &str) -> Value {
    json!({"connections": {"blob": {
        "namespace": ns, "targetType": "storage-blob", "authType": "secret",
        "clientType": "python", "parameters": {"accountName": "e2ekinds"},
        "workloads": [
            {"kind": "StatefulSet", "name": "db"},
            {"kind": "DaemonSet", "name": "node-agent"},
            {"kind": "CronJob", "name": "nightly"},
        ],
    }}})
}

fn protected(key: &str) -> Value {
    json!({"connections": {"blob": {"secrets": {"accountKey": key}}}})
}

/// The pod template of a listed workload.
fn template(w: &Value) -> Value {
    match w["kind"].as_str() {
        Some("CronJob") => w["spec"]["jobTemplate"]["spec"]["template"].clone(),
        _ => w["spec"]["template"].clone(),
    }
}

/// Each listed workload: (kind/name, generation, pod template).
fn workloads(c: &Cluster, ns: &str) -> Vec<(String, Value, Value)> {
    WORKLOADS
        .iter()
        .map(|(kind, name)| {
            let w = c.get(kind, ns, name);
            (
                format!("{kind}/{name}"),
                w["metadata"]["generation"].clone(),
                template(&w),
            )
        })
        .collect()
}

/// The rollout hash and the connection-string line the pods of `blob` get from `values`.
fn expected(c: &Cluster, values: &Value) -> (String, String) {
    let set =
        sc_model::validate_connections_keyed(sc_model::connections_subtree(values), &c.hash_key())
            .expect("valid values");
    let blob = set.get("blob").expect("connection blob");
    let key = blob
        .keys
        .iter()
        .find(|k| k.name == KEY)
        .expect("the connection string key");
    (
        blob.rollout_hash.clone(),
        format!("{KEY}={}", key.value.expose()),
    )
}

/// The annotations of each listed workload's pod template carry `hash`.
fn assert_stamped(now: &[(String, Value, Value)], hash: &str) {
    for (what, _, t) in now {
        assert_eq!(
            t["metadata"]["annotations"][RESTART], hash,
            "{what}: the pod template does not carry the rollout hash: {t}"
        );
    }
}

/// The number of runs (`apply` entries of the journal) of connection `blob`.
fn runs(c: &Cluster) -> usize {
    let cm = c.metadata("blob");
    let journal: Vec<Value> = cm["data"]["journal.json"]
        .as_str()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    journal.iter().filter(|e| e["action"] == "apply").count()
}

#[test]
fn rollout_kinds() {
    let helm = Helm::V4;
    let c = Cluster::start();
    let rel = c.release_ns();
    let apps = c.create_namespace("apps");
    create_workloads(&c, &apps);
    let (key1, key2) = (secret_value("kinds-key"), secret_value("kinds-key-rotated"));
    c.remember_secret(&key1);
    c.remember_secret(&key2);
    let s = settings(&apps);
    let (p1, p2) = (protected(&key1), protected(&key2));
    let files = [
        c.write_values("settings", &s),
        c.write_values("protected", &p1),
    ];
    c.helm_upgrade(helm, &[&files[0], &files[1]], &[]).ok();
    c.wait_job_gone();
    let (hash1, _) = expected(&c, &merged(&[&s, &p1]));
    let before = workloads(&c, &apps);
    assert_stamped(&before, &hash1);

    // Rotation: each pod template gets the new hash (a new generation: the controllers roll
    // it out); nothing of the key shows in it.
    let protected2 = c.write_values("protected2", &p2);
    c.helm_upgrade(helm, &[&files[0], &protected2], &[]).ok();
    c.wait_job_gone();
    let (hash2, line2) = expected(&c, &merged(&[&s, &p2]));
    assert_ne!(hash1, hash2);
    let rotated = workloads(&c, &apps);
    assert_stamped(&rotated, &hash2);
    for ((what, g1, _), (_, g2, t)) in before.iter().zip(&rotated) {
        assert!(g2.as_u64() > g1.as_u64(), "{what}: generation {g1} -> {g2}");
        assert!(!t.to_string().contains(&key2), "{what} shows the key");
    }
    // The CronJob's next Job (created from its template as its controller would) prints the
    // new value.
    c.kubectl(&[
        "create",
        "job",
        "nightly-after-rotation",
        "--from=cronjob/nightly",
        "-n",
        &apps,
    ])
    .ok();
    wait_for_state(SETTLE, "the Job of nightly to print the new value", || {
        let job = c.get("job", &apps, "nightly-after-rotation");
        if job["status"]["succeeded"] != 1 {
            return Err(format!("status {}", job["status"]));
        }
        let log = c.kubectl(&["logs", "job/nightly-after-rotation", "-n", &apps]);
        // The log holds the secret: only whether it matched is said.
        if log.success() && log.ok().lines().any(|l| l == line2) {
            Ok(())
        } else {
            Err("the Job's log lacks the rotated connection string".to_string())
        }
    });

    // The same values again: no pod template changes.
    c.helm_upgrade(helm, &[&files[0], &protected2], &[]).ok();
    c.wait_job_gone();
    assert_eq!(
        workloads(&c, &apps),
        rotated,
        "the same values changed a listed workload"
    );

    // A forced re-run of blob: sc-job applies it again and changes no pod template.
    let runs_before = runs(&c);
    c.sc_agent(&["reapply", "blob", "-n", &rel]).ok();
    wait_for_state(SETTLE, "the re-run of blob", || {
        let n = runs(&c);
        let status = c.metadata_status("blob");
        let pending =
            c.metadata("blob")["metadata"]["annotations"]["sc-extension.io/reapply"].is_string();
        (n > runs_before && status["phase"] == "Ready" && !pending)
            .then_some(())
            .ok_or(format!(
                "{n} runs, phase {}, pending {pending}",
                status["phase"]
            ))
    });
    c.wait_job_gone();
    assert_eq!(
        workloads(&c, &apps),
        rotated,
        "a re-run changed a listed workload"
    );
    c.leak_scan(&["blob"]);
}
