//! Roll-out on change and clean removal: the restart annotation follows the content of the
//! Secret, and removing a connection (or a workload from its list) takes out of the workload
//! exactly what the connection added.

mod common;

use common::*;
use serde_json::{Value, json};

const KEY_1: &str = "cm9sbG91dC1rZXktb25l";
const KEY_2: &str = "cm9sbG91dC1rZXktdHdv";
const CLIENT_ID: &str = "0a1b2c3d-0000-4000-8000-000000000001";
const BLOB_RESTART: &str = "sc-extension.io/restarted-for-blob";
const AI_RESTART: &str = "sc-extension.io/restarted-for-ai";

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "annotations": {"team": "a"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {"mine": "1"}},
                "spec": {"containers": [
                    {"name": "app", "image": "example/app:1", "command": ["sleep", "3600"],
                     "env": [{"name": "OWN", "value": "x"}],
                     "envFrom": [{"configMapRef": {"name": "own-config"}}]},
                ]},
            },
        },
    })
}

fn conns(blob_key: &str, blob_workloads: Value) -> Value {
    json!({
        "blob": {
            "namespace": "default", "targetType": "storage-blob", "authType": "secret",
            "parameters": {"accountName": "acct"}, "secrets": {"accountKey": blob_key},
            "workloads": blob_workloads, "deletionPolicy": "Delete",
        },
        "ai": {
            "namespace": "default", "targetType": "openai", "authType": "workloadIdentity",
            "parameters": {"resourceName": "my-openai", "clientId": CLIENT_ID},
            "workloads": [{"kind": "Deployment", "name": "web"}], "deletionPolicy": "Delete",
        },
    })
}

fn template(c: &kubesim::cluster::Cluster, name: &str) -> Value {
    get(c, "Deployment", "default", name).expect("deployment")["spec"]["template"].clone()
}

/// The workload's annotations, without the one the Deployment controller writes.
fn annotations(c: &kubesim::cluster::Cluster, name: &str) -> Value {
    let mut a =
        get(c, "Deployment", "default", name).expect("deployment")["metadata"]["annotations"]
            .clone();
    if let Some(m) = a.as_object_mut() {
        m.remove("deployment.kubernetes.io/revision");
    }
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_on_change_and_removal_of_exactly_what_was_added() {
    let ks = start().await;
    let c = ks.cluster();
    create(&c, deployment("web"));
    create(&c, deployment("worker"));
    let web_before = template(&c, "web");
    let worker_before = template(&c, "worker");
    let web_meta_before = annotations(&c, "web");
    let both =
        json!([{"kind": "Deployment", "name": "web"}, {"kind": "Deployment", "name": "worker"}]);

    let all = conns(KEY_1, both.clone());
    request_all(&c, "cs-1", 1, &all);
    run_job(&ks, &[]).await.expect_code(0);
    let web = template(&c, "web");
    let first_hash = web["metadata"]["annotations"][BLOB_RESTART].clone();
    assert!(first_hash.is_string(), "{web}");
    assert!(
        web["metadata"]["annotations"][AI_RESTART].is_string(),
        "{web}"
    );
    assert!(!first_hash.as_str().unwrap().contains(KEY_1));
    assert!(annotations(&c, "web")["sc-extension.io/injected-blob"].is_string());

    // The same content again: no pod template changes.
    write_changeset(&c, "cs-2", 2, &all, &["blob", "ai"], &[]);
    let again = run_job(&ks, &[]).await;
    again.expect_code(0);
    assert!(
        again
            .stdout
            .contains("[blob] deployment default/web: unchanged"),
        "{}",
        again.stdout
    );
    assert_eq!(template(&c, "web"), web);

    // A rotated key: blob's annotation changes, nothing else in the template.
    let rotated = conns(KEY_2, both.clone());
    request_all(&c, "cs-3", 3, &rotated);
    let run = run_job(&ks, &[]).await;
    run.expect_code(0);
    assert!(
        run.stdout.contains("the workload rolls out"),
        "{}",
        run.stdout
    );
    let mut web_rotated = template(&c, "web");
    assert_ne!(
        web_rotated["metadata"]["annotations"][BLOB_RESTART],
        first_hash
    );
    web_rotated["metadata"]["annotations"][BLOB_RESTART] = first_hash.clone();
    assert_eq!(web_rotated, web);

    // worker dropped from blob's workloads: it is as it was.
    let one = json!([{"kind": "Deployment", "name": "web"}]);
    let dropped = conns(KEY_2, one.clone());
    request_all(&c, "cs-4", 4, &dropped);
    let run = run_job(&ks, &[]).await;
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("[blob] deployment default/worker: unpatched"),
        "{}",
        run.stdout
    );
    assert_eq!(template(&c, "worker"), worker_before);
    assert!(
        annotations(&c, "worker")
            .get("sc-extension.io/injected-blob")
            .is_none()
    );

    // ai removed: its ServiceAccount, label, envFrom and annotations go; blob's stay.
    let mut only_blob = dropped.clone();
    only_blob.as_object_mut().unwrap().remove("ai");
    write_requests(&c, &only_blob, 5);
    write_changeset(&c, "cs-5", 5, &only_blob, &[], &["ai"]);
    run_job(&ks, &[]).await.expect_code(0);
    let web = template(&c, "web");
    assert!(web["spec"].get("serviceAccountName").is_none(), "{web}");
    assert!(
        web["metadata"]["labels"]
            .get("azure.workload.identity/use")
            .is_none()
    );
    assert!(web["metadata"]["annotations"].get(AI_RESTART).is_none());
    let refs: Vec<&Value> = web["spec"]["containers"][0]["envFrom"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(
        refs,
        [
            &json!({"configMapRef": {"name": "own-config"}}),
            &json!({"secretRef": {"name": "sc-blob-secret"}})
        ]
    );
    assert!(
        get(
            &c,
            "ServiceAccount",
            "default",
            &format!("sc-account-{CLIENT_ID}")
        )
        .is_none()
    );

    // blob removed: web is as the user wrote it.
    write_requests(&c, &json!({}), 6);
    write_changeset(&c, "cs-6", 6, &json!({}), &[], &["blob"]);
    run_job(&ks, &[]).await.expect_code(0);
    assert_eq!(template(&c, "web"), web_before);
    assert_eq!(annotations(&c, "web"), web_meta_before);
    assert!(get(&c, "Secret", "default", "sc-blob-secret").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_change_false_and_retain_keep_the_references() {
    let ks = start().await;
    let c = ks.cluster();
    create(&c, deployment("web"));
    let mut all = conns(KEY_1, json!([{"kind": "Deployment", "name": "web"}]));
    all.as_object_mut().unwrap().remove("ai");
    all["blob"]["restartOnChange"] = json!("false");
    all["blob"]["deletionPolicy"] = json!("Retain");
    request_all(&c, "cs-1", 1, &all);
    run_job(&ks, &[]).await.expect_code(0);
    let web = template(&c, "web");
    assert!(
        web["metadata"]["annotations"].get(BLOB_RESTART).is_none(),
        "{web}"
    );
    assert_eq!(
        web["spec"]["containers"][0]["envFrom"][1]["secretRef"]["name"],
        "sc-blob-secret"
    );

    // Removed with Retain: the Secret stays, and so does the reference to it.
    write_requests(&c, &json!({}), 2);
    write_changeset(&c, "cs-2", 2, &json!({}), &[], &["blob"]);
    run_job(&ks, &[]).await.expect_code(0);
    assert!(get(&c, "Secret", "default", "sc-blob-secret").is_some());
    assert_eq!(template(&c, "web"), web);
}
