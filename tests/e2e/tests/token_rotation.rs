//! Expiring ServiceAccount tokens: with kubesim's `--token-lifetime=120`, the agent's pod gets
//! a token that expires after two minutes, which the kubelet rotates in the file its
//! kubeconfig names (`tokenFile`). The agent keeps working past the first token's expiry, in
//! the same process: a Secret deleted after that is repaired.

use sc_e2e::{Cluster, Helm, SETTLE, secret_value, wait_for_state};
use serde_json::{Value, json};
use std::time::Duration;

/// The lifetime of every ServiceAccount token of the scenario's cluster.
const LIFETIME: u64 = 120;

/// The agent's pod in the release namespace (`Err` unless there is exactly one).
fn agent_pod(c: &Cluster) -> Result<Value, String> {
    let pods = c.get_json(&[
        "pods",
        "-n",
        &c.release_ns(),
        "-l",
        "app.kubernetes.io/component=agent",
    ]);
    match pods["items"].as_array().map(Vec::as_slice) {
        Some([pod]) => Ok(pod.clone()),
        _ => Err(format!("not one agent pod: {pods}")),
    }
}

#[test]
fn agent_keeps_working_after_its_first_token_expired() {
    sc_e2e::require_embedded!("it sets kubesim's token lifetime");
    let c = Cluster::start_with(&[format!("--token-lifetime={LIFETIME}")]);
    let apps = c.create_namespace("apps");
    let key = secret_value("rotation-key");
    c.remember_secret(&key);
    let settings = json!({"connections": {"blob": {
        "namespace": apps,
        "targetType": "storage-blob",
        "authType": "secret",
        "clientType": "python",
        "parameters": {"accountName": "rotation"},
        "driftPolicy": "Repair",
    }}});
    let protected = json!({"connections": {"blob": {"secrets": {"accountKey": key}}}});
    let files = [
        c.write_values("settings", &settings),
        c.write_values("protected", &protected),
    ];
    c.helm_upgrade(
        Helm::V3,
        &[&files[0], &files[1]],
        &["--set=agent.drift.intervalSeconds=1"],
    )
    .ok();
    c.wait_job_gone();

    // The agent pod's first token was issued before it ran; pass its expiry on the clock.
    let pod = wait_for_state(SETTLE, "the agent pod running", || {
        let pod = agent_pod(&c)?;
        match pod["status"]["phase"].as_str() {
            Some("Running") => Ok(pod),
            other => Err(format!("phase {other:?}")),
        }
    });
    std::thread::sleep(Duration::from_secs(LIFETIME + 10));

    // A deleted Secret comes back: the agent saw the drift and ran sc-job.
    let uid = c.get("secret", &apps, "sc-blob-secret")["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    c.kubectl(&["delete", "secret", "sc-blob-secret", "-n", &apps])
        .ok();
    wait_for_state(SETTLE, "the deleted Secret to be recreated", || {
        match c.try_get("secret", &apps, "sc-blob-secret") {
            Some(s) if s["metadata"]["uid"].as_str() != Some(uid.as_str()) => Ok(()),
            Some(_) => Err("the old Secret".to_string()),
            None => Err("no Secret".to_string()),
        }
    });

    // By the same agent process, which re-read its rotated token file.
    let after = agent_pod(&c).expect("the agent pod");
    assert_eq!(
        after["metadata"]["uid"], pod["metadata"]["uid"],
        "the agent pod was replaced"
    );
    let restarts = after["status"]["containerStatuses"][0]["restartCount"].as_i64();
    assert_eq!(restarts, Some(0), "the agent restarted: {after}");
    c.leak_scan(&["blob"]);
}
