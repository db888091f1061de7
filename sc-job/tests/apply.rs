//! sc-job as a local process against the embedded cluster: every auth type, idempotent
//! re-runs, refusals, partial failures and workload patches.

mod common;

use common::*;
use serde_json::{Value, json};

const ACCOUNT_KEY: &str = "c3VwZXItc2VjcmV0LWFjY291bnQta2V5";
const CLIENT_SECRET: &str = "sp-client-secret-value-42";
const CLIENT_ID: &str = "0a1b2c3d-0000-4000-8000-000000000001";
const TENANT_ID: &str = "66666666-7777-8888-9999-000000000000";

fn every_auth_type() -> Value {
    json!({
        "blob_conn": {
            "namespace": "default", "targetType": "storage-blob", "authType": "secret",
            "clientType": "python", "parameters": {"accountName": "mystorage"},
            "secrets": {"accountKey": ACCOUNT_KEY},
        },
        "vault_sp": {
            "namespace": "apps", "targetType": "keyvault", "authType": "servicePrincipal",
            "clientType": "dotnet",
            "parameters": {"keyvaultName": "my-vault", "clientId": "11111111-2222-3333-4444-555555555555",
                           "tenantId": TENANT_ID},
            "secrets": {"clientSecret": CLIENT_SECRET},
        },
        "openai": {
            "namespace": "apps", "targetType": "openai", "authType": "workloadIdentity",
            "clientType": "python",
            "parameters": {"resourceName": "my-openai", "clientId": CLIENT_ID, "tenantId": TENANT_ID},
        },
        "kv_csi": {
            "namespace": "apps", "targetType": "keyvault", "authType": "keyvaultCsi",
            "parameters": {"keyvaultName": "my-vault", "tenantId": TENANT_ID,
                           "clientId": "22222222-3333-4444-5555-666666666666", "syncSecret": "true",
                           "objects": [{"name": "db-password", "type": "secret"}]},
        },
    })
}

fn managed(obj: &Value) -> bool {
    obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "sc-extension"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_type_is_materialized_and_a_rerun_changes_nothing() {
    let ks = start().await;
    let c = ks.cluster();
    create_namespace(&c, "apps");
    create_spc_crd(&c);
    let conns = every_auth_type();
    request_all(&c, "cs-1", 1, &conns);

    let first = run_job(&ks, &[]).await;
    first.expect_code(0);
    let out = &first.stdout;
    assert!(
        out.contains("[blob_conn] secret default/sc-blobconn-secret: created ("),
        "{out}"
    );
    assert!(
        out.contains("[vault_sp] secret apps/sc-vaultsp-secret: created ("),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "[openai] serviceaccount apps/sc-account-{CLIENT_ID}: created (used by openai)"
        )),
        "{out}"
    );
    assert!(
        out.contains("[kv_csi] secretproviderclass apps/sc-kvcsi-spc: created (1 object)"),
        "{out}"
    );
    assert!(
        out.contains(
            "
sc-job: 4 applied, 0 failed, 0 deleted
"
        ),
        "{out}"
    );

    // The objects, with the documented keys and labels.
    let blob = get(&c, "Secret", "default", "sc-blobconn-secret").expect("blob secret");
    assert!(managed(&blob));
    assert_eq!(
        blob["metadata"]["labels"]["sc-extension.io/connection"],
        "blob_conn"
    );
    let data = secret_data(&blob);
    assert!(
        data.values().any(|v| v.contains(ACCOUNT_KEY)),
        "the account key is delivered: {:?}",
        data.keys()
    );
    let sp = secret_data(&get(&c, "Secret", "apps", "sc-vaultsp-secret").expect("sp secret"));
    assert!(sp.values().any(|v| v == CLIENT_SECRET), "{:?}", sp.keys());
    let sa = get(
        &c,
        "ServiceAccount",
        "apps",
        &format!("sc-account-{CLIENT_ID}"),
    )
    .expect("sa");
    assert!(managed(&sa));
    assert_eq!(
        sa["metadata"]["annotations"]["azure.workload.identity/client-id"],
        CLIENT_ID
    );
    assert_eq!(
        sa["metadata"]["annotations"]["azure.workload.identity/tenant-id"],
        TENANT_ID
    );
    assert!(
        get(&c, "Secret", "apps", "sc-openai-secret").is_some(),
        "the workload identity keys are in a Secret"
    );
    let spc = get(&c, "SecretProviderClass", "apps", "sc-kvcsi-spc").expect("spc");
    assert!(managed(&spc));
    assert_eq!(spc["spec"]["provider"], "azure");
    assert_eq!(spc["spec"]["parameters"]["keyvaultName"], "my-vault");
    assert_eq!(
        spc["spec"]["parameters"]["userAssignedIdentityID"],
        "22222222-3333-4444-5555-666666666666"
    );

    // Each result recorded, with the applied hash and an owner reference to the requests.
    let requests = get(&c, "ConfigMap", NS, "sc-requests").unwrap();
    let hashes = hashes(&c, &conns);
    for name in ["blob_conn", "vault_sp", "openai", "kv_csi"] {
        let status = metadata(&c, name, "status.json");
        assert_eq!(status["phase"], "Ready", "{name}: {status}");
        assert_eq!(status["appliedHash"], hashes[name], "{name}");
        assert_eq!(status["revision"], 1);
        assert_eq!(status["error"], Value::Null);
        assert!(!status["objects"].as_array().unwrap().is_empty());
        let journal = metadata(&c, name, "journal.json");
        assert_eq!(journal.as_array().unwrap().len(), 1);
        assert_eq!(journal[0]["result"], "Ready");
        let cm = get(
            &c,
            "ConfigMap",
            NS,
            &sc_model::names::metadata_config_map_name(name),
        )
        .unwrap();
        assert_eq!(
            cm["metadata"]["ownerReferences"][0]["uid"],
            requests["metadata"]["uid"]
        );
        assert_eq!(
            cm["metadata"]["labels"]["app.kubernetes.io/component"],
            "connection"
        );
        assert_eq!(
            cm["metadata"]["annotations"]["sc-extension.io/connection-name"],
            name
        );
        // What was requested, recorded in the same write: the non-secret spec and the hash
        // with the revision it was first requested at.
        let requested = metadata(&c, name, "requested.json");
        assert_eq!(
            requested,
            json!({"hash": hashes[name], "revision": 1}),
            "{name}"
        );
        let spec = metadata(&c, name, "spec.json");
        assert_eq!(spec["name"], name, "{spec}");
        assert!(!spec.to_string().contains(ACCOUNT_KEY), "{spec}");
    }

    // A second run of the same change set writes no materialized object.
    let objects = [
        ("Secret", "default", "sc-blobconn-secret".to_string()),
        ("Secret", "apps", "sc-vaultsp-secret".to_string()),
        ("Secret", "apps", "sc-openai-secret".to_string()),
        ("ServiceAccount", "apps", format!("sc-account-{CLIENT_ID}")),
        ("SecretProviderClass", "apps", "sc-kvcsi-spc".to_string()),
    ];
    let before: Vec<String> = objects
        .iter()
        .map(|(k, n, name)| rv(&get(&c, k, n, name).unwrap()))
        .collect();
    let second = run_job(&ks, &[]).await;
    second.expect_code(0);
    let after: Vec<String> = objects
        .iter()
        .map(|(k, n, name)| rv(&get(&c, k, n, name).unwrap()))
        .collect();
    assert_eq!(before, after, "a re-run changed an object");
    assert!(
        second
            .stdout
            .contains("[blob_conn] secret default/sc-blobconn-secret: unchanged ("),
        "{}",
        second.stdout
    );
    assert!(!second.stdout.contains(": created"), "{}", second.stdout);
    assert!(!second.stdout.contains(": updated"), "{}", second.stdout);
    assert_eq!(
        metadata(&c, "blob_conn", "journal.json")
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // No secret value in the logs or any ConfigMap.
    for run in [&first, &second] {
        assert_no_secret(
            "the log",
            &format!("{}{}", run.stdout, run.stderr),
            &[ACCOUNT_KEY, CLIENT_SECRET],
        );
    }
    assert_no_secret(
        "a ConfigMap",
        &all_config_maps(&c),
        &[ACCOUNT_KEY, CLIENT_SECRET],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_secret_is_refused_and_left_untouched() {
    let ks = start().await;
    let c = ks.cluster();
    let foreign = create(
        &c,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "sc-x-secret", "namespace": "default", "labels": {"app": "mine"}},
               "stringData": {"password": "users-own"}}),
    );
    let conns = json!({"x": {
        "namespace": "default", "targetType": "storage-blob", "authType": "secret",
        "parameters": {"accountName": "acct"}, "secrets": {"accountKey": ACCOUNT_KEY},
    }});
    request_all(&c, "cs-1", 1, &conns);
    let run = run_job(&ks, &[]).await;
    run.expect_code(1);
    assert!(
        run.stdout.contains(
            "[x] failed: secret default/sc-x-secret exists and is not managed by sc-extension; delete it or rename the connection"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("sc-job: 0 applied, 1 failed, 0 deleted"),
        "{}",
        run.stdout
    );
    let live = get(&c, "Secret", "default", "sc-x-secret").unwrap();
    assert_eq!(rv(&live), rv(&foreign), "the foreign Secret was modified");
    assert_eq!(live["metadata"]["labels"], json!({"app": "mine"}));
    let status = metadata(&c, "x", "status.json");
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["error"]["reason"], "NotManaged");
    assert_eq!(
        status["error"]["remedy"],
        "delete it or rename the connection"
    );
    assert_eq!(status["appliedHash"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_namespace_is_an_error_and_is_not_created() {
    let ks = start().await;
    let c = ks.cluster();
    let conns = json!({"lost": {
        "namespace": "nowhere", "targetType": "storage-blob", "authType": "secret",
        "parameters": {"accountName": "acct"}, "secrets": {"accountKey": ACCOUNT_KEY},
    }});
    request_all(&c, "cs-1", 1, &conns);
    let run = run_job(&ks, &[]).await;
    run.expect_code(1);
    assert!(
        run.stdout
            .contains("[lost] failed: namespace nowhere does not exist; create namespace nowhere"),
        "{}",
        run.stdout
    );
    assert!(get(&c, "Namespace", "", "nowhere").is_none());
    let status = metadata(&c, "lost", "status.json");
    assert_eq!(status["error"]["reason"], "NamespaceNotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_failure_applies_the_others_and_records_both() {
    let ks = start().await;
    let c = ks.cluster();
    let good = json!({
        "namespace": "default", "targetType": "storage-blob", "authType": "secret",
        "parameters": {"accountName": "acct"}, "secrets": {"accountKey": ACCOUNT_KEY},
    });
    // The agent wrote the change set while both were valid; `bad` is invalid in the request now.
    let valid = json!({"good": good, "bad": {
        "namespace": "default", "targetType": "storage-blob", "authType": "secret",
        "parameters": {"accountName": "acct2"}, "secrets": {"accountKey": ACCOUNT_KEY},
    }});
    write_requests(&c, &valid, 2);
    write_changeset(&c, "cs-1", 2, &valid, &["bad", "good"], &[]);
    let conns = json!({"good": good, "bad": {
        "namespace": "default", "targetType": "storage-blob", "authType": "secret",
        "parameters": {"accountNam": "acct2"}, "secrets": {"accountKey": ACCOUNT_KEY},
    }});
    write_requests(&c, &conns, 2);
    let run = run_job(&ks, &[]).await;
    run.expect_code(1);
    assert!(
        run.stdout
            .contains("[bad] invalid: connections.bad.parameters.accountNam"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("sc-job: 1 applied, 1 failed, 0 deleted"),
        "{}",
        run.stdout
    );
    assert!(get(&c, "Secret", "default", "sc-good-secret").is_some());
    assert!(get(&c, "Secret", "default", "sc-bad-secret").is_none());
    let bad = metadata(&c, "bad", "status.json");
    assert_eq!(bad["phase"], "Failed");
    assert_eq!(bad["error"]["reason"], "InvalidRequest");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connections.bad.parameters.accountNam"),
        "{bad}"
    );
    assert_eq!(metadata(&c, "good", "status.json")["phase"], "Ready");
    let journal = metadata(&c, "bad", "journal.json");
    assert_eq!(journal[0]["result"], "Failed");
    assert!(
        journal[0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains("failed:"))
    );
    // A failed run keeps its Job.
    assert!(
        !run.stdout.contains("job sc-system/sc-job"),
        "{}",
        run.stdout
    );
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [
                    {"name": "app", "image": "example/app:1", "command": ["sleep", "3600"]},
                    {"name": "sidecar", "image": "example/side:1", "command": ["sleep", "3600"]},
                ]},
            },
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_is_patched_once_and_only_once() {
    let ks = start().await;
    let c = ks.cluster();
    create(&c, deployment("web"));
    let conns = json!({
        "blob": {
            "namespace": "default", "targetType": "storage-blob", "authType": "secret",
            "parameters": {"accountName": "acct"}, "secrets": {"accountKey": ACCOUNT_KEY},
            "workloads": [{"kind": "Deployment", "name": "web"}],
        },
        "ai": {
            "namespace": "default", "targetType": "openai", "authType": "workloadIdentity",
            "parameters": {"resourceName": "my-openai", "clientId": CLIENT_ID, "tenantId": TENANT_ID},
            "workloads": [{"kind": "Deployment", "name": "web"}],
        },
    });
    request_all(&c, "cs-1", 1, &conns);
    let first = run_job(&ks, &[]).await;
    first.expect_code(0);
    assert!(
        first
            .stdout
            .contains("[blob] deployment default/web: patched ("),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains("[ai] deployment default/web: patched ("),
        "{}",
        first.stdout
    );
    let web = get(&c, "Deployment", "default", "web").unwrap();
    let tpl = &web["spec"]["template"];
    assert_eq!(
        tpl["spec"]["serviceAccountName"],
        format!("sc-account-{CLIENT_ID}")
    );
    assert_eq!(
        tpl["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    for container in tpl["spec"]["containers"].as_array().unwrap() {
        let refs: Vec<&str> = container["envFrom"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["secretRef"]["name"].as_str().unwrap())
            .collect();
        let mut sorted = refs.clone();
        sorted.sort();
        assert_eq!(sorted, ["sc-ai-secret", "sc-blob-secret"], "{container}");
    }

    let second = run_job(&ks, &[]).await;
    second.expect_code(0);
    assert!(
        second
            .stdout
            .contains("[blob] deployment default/web: unchanged"),
        "{}",
        second.stdout
    );
    assert!(
        second
            .stdout
            .contains("[ai] deployment default/web: unchanged"),
        "{}",
        second.stdout
    );
    // The generation moves with every write of the spec (the pod template sc-job patches); the
    // resourceVersion also moves when the Deployment controller writes the status.
    let again = get(&c, "Deployment", "default", "web").unwrap();
    assert_eq!(
        again["metadata"]["generation"], web["metadata"]["generation"],
        "the workload was patched again"
    );
    assert_eq!(again["spec"], web["spec"], "the workload was patched again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_unpatchable_workload_fails_with_a_remedy() {
    let ks = start().await;
    let c = ks.cluster();
    let mut other_sa = deployment("pinned");
    other_sa["spec"]["template"]["spec"]["serviceAccountName"] = json!("app-sa");
    create(&c, other_sa);
    let conns = json!({
        "ghost": {
            "namespace": "default", "targetType": "storage-blob", "authType": "secret",
            "parameters": {"accountName": "acct"}, "secrets": {"accountKey": ACCOUNT_KEY},
            "workloads": [{"kind": "Deployment", "name": "absent"}],
        },
        "ai": {
            "namespace": "default", "targetType": "openai", "authType": "workloadIdentity",
            "parameters": {"resourceName": "my-openai", "clientId": CLIENT_ID, "tenantId": TENANT_ID},
            "workloads": [{"kind": "Deployment", "name": "pinned"}],
        },
    });
    request_all(&c, "cs-1", 1, &conns);
    let run = run_job(&ks, &[]).await;
    run.expect_code(1);
    assert!(
        run.stdout.contains("[ghost] failed: deployment default/absent does not exist; create the workload first or remove it from connections.ghost.workloads"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("[ai] failed: cannot patch deployment default/pinned: "),
        "{}",
        run.stdout
    );
    assert_eq!(
        metadata(&c, "ai", "status.json")["error"]["reason"],
        "WorkloadNotPatchable"
    );
    let pinned = get(&c, "Deployment", "default", "pinned").unwrap();
    assert_eq!(
        pinned["spec"]["template"]["spec"]["serviceAccountName"],
        "app-sa"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_provider_class_without_the_csi_driver_names_the_add_on() {
    let ks = start().await;
    let c = ks.cluster();
    let conns = json!({"kv": {
        "namespace": "default", "targetType": "keyvault", "authType": "keyvaultCsi",
        "parameters": {"keyvaultName": "my-vault", "tenantId": TENANT_ID,
                       "clientId": "22222222-3333-4444-5555-666666666666",
                       "objects": [{"name": "db-password", "type": "secret"}]},
    }});
    request_all(&c, "cs-1", 1, &conns);
    let run = run_job(&ks, &[]).await;
    run.expect_code(1);
    assert!(
        run.stdout
            .contains("[kv] failed: the cluster does not serve secretproviderclasses"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("azure-keyvault-secrets-provider"),
        "{}",
        run.stdout
    );
    assert_eq!(
        metadata(&c, "kv", "status.json")["error"]["reason"],
        "SecretProviderClassNotServed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_change_set_exits_2() {
    let ks = start().await;
    let c = ks.cluster();
    let conns = json!({"x": {
        "namespace": "default", "targetType": "storage-blob", "authType": "secret",
        "parameters": {"accountName": "acct"}, "secrets": {"accountKey": ACCOUNT_KEY},
    }});
    write_requests(&c, &conns, 1);
    let missing = run_job(&ks, &[]).await;
    missing.expect_code(2);
    assert!(
        missing
            .stdout
            .contains("sc-job: failed: configmap sc-system/sc-changeset does not exist"),
        "{}",
        missing.stdout
    );
    put(
        &c,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "sc-changeset", "namespace": NS},
               "data": {"changeset.json": "{\"id\": \"x\", \"connections\": "}}),
    );
    let broken = run_job(&ks, &[]).await;
    broken.expect_code(2);
    assert!(
        broken.stdout.contains(
            "changeset.json of configmap sc-system/sc-changeset is not a valid change set"
        ),
        "{}",
        broken.stdout
    );
    assert!(get(&c, "Secret", "default", "sc-x-secret").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_same_events() {
    let ks = start().await;
    let c = ks.cluster();
    let conns = json!({"x": {
        "namespace": "default", "targetType": "storage-blob", "authType": "secret",
        "parameters": {"accountName": "acct"}, "secrets": {"accountKey": ACCOUNT_KEY},
    }});
    request_all(&c, "cs-1", 1, &conns);
    let run = run_job(&ks, &["--log-format", "json"]).await;
    run.expect_code(0);
    let events: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let step = events
        .iter()
        .find(|e| e["event"] == "step" && e["kind"] == "Secret")
        .expect("a step event for the Secret");
    assert_eq!(step["connection"], "x");
    assert_eq!(step["namespace"], "default");
    assert_eq!(step["name"], "sc-x-secret");
    assert_eq!(step["outcome"], "created");
    let summary = events
        .iter()
        .find(|e| e["event"] == "summary")
        .expect("summary");
    assert_eq!(summary["applied"], 1);
    assert_eq!(summary["failed"], 0);
    assert_no_secret("the log", &run.stdout, &[ACCOUNT_KEY]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_replaces_an_earlier_agents_texts_and_keeps_the_last_ten_runs() {
    let ks = start().await;
    let c = ks.cluster();
    let old_runs: Vec<Value> = (0..10)
        .map(|i| json!({"time": "t", "job": format!("old-{i}"), "result": "Ready"}))
        .collect();
    create(
        &c,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "sc-conn-x", "namespace": NS,
                            "labels": {"app.kubernetes.io/managed-by": "sc-extension"}},
               "data": {"spec.json": "{\"namespace\":\"default\"}",
                        "requested.json": "{\"hash\":\"h\",\"revision\":1,\"phase\":\"Applying\"}",
                        "journal.json": Value::Array(old_runs).to_string()}}),
    );
    let conns = json!({"x": {
        "namespace": "default", "targetType": "storage-blob", "authType": "secret",
        "parameters": {"accountName": "acct"}, "secrets": {"accountKey": ACCOUNT_KEY},
    }});
    request_all(&c, "cs-9", 1, &conns);
    run_job(&ks, &[]).await.expect_code(0);
    // The texts an earlier agent wrote give way to what is requested now.
    let spec = metadata(&c, "x", "spec.json");
    assert_eq!(spec["targetType"], "storage-blob", "{spec}");
    let requested = metadata(&c, "x", "requested.json");
    assert_eq!(
        requested,
        json!({"hash": hashes(&c, &conns)["x"], "revision": 1})
    );
    let journal = metadata(&c, "x", "journal.json");
    let runs = journal.as_array().unwrap();
    assert_eq!(runs.len(), 10);
    assert_eq!(runs[0]["job"], "old-1");
    assert_eq!(runs[9]["job"], "sc-system/sc-job");
    assert_eq!(runs[9]["changeset"], "cs-9");
    assert_eq!(metadata(&c, "x", "status.json")["phase"], "Ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_request_is_applied_as_it_is_now() {
    let ks = start().await;
    let c = ks.cluster();
    let then = json!({"x": {
        "namespace": "default", "targetType": "storage-blob", "authType": "secret",
        "parameters": {"accountName": "before"}, "secrets": {"accountKey": ACCOUNT_KEY},
    }});
    let now = json!({"x": {
        "namespace": "default", "targetType": "storage-blob", "authType": "secret",
        "parameters": {"accountName": "after"}, "secrets": {"accountKey": ACCOUNT_KEY},
    }});
    write_requests(&c, &then, 1);
    write_changeset(&c, "cs-1", 1, &then, &["x"], &[]);
    write_requests(&c, &now, 2);
    let run = run_job(&ks, &[]).await;
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("[x] the request changed since the change set was written"),
        "{}",
        run.stdout
    );
    let status = metadata(&c, "x", "status.json");
    assert_eq!(status["hash"], hashes(&c, &then)["x"]);
    assert_eq!(status["appliedHash"], hashes(&c, &now)["x"]);
}

/// A key another field manager added to a Secret (or one the connection no longer applies)
/// stays through a server-side apply, which removes only fields of its own manager: the next
/// run removes it, takes back a changed value and leaves exactly the requested keys.
#[tokio::test]
async fn a_key_another_writer_added_is_removed_by_the_next_run() {
    let ks = start().await;
    let c = ks.cluster();
    let conn = json!({"x": {
        "namespace": "default", "targetType": "storage-blob", "authType": "secret",
        "parameters": {"accountName": "acct"}, "secrets": {"accountKey": ACCOUNT_KEY},
    }});
    request_all(&c, "cs-1", 1, &conn);
    run_job(&ks, &[]).await.expect_code(0);
    let before = get(&c, "Secret", "default", "sc-x-secret").expect("secret");
    let keys: Vec<String> = secret_data(&before).into_keys().collect();
    // Another writer adds a key and changes one: an update, as `kubectl patch` makes it.
    let body = json!({"data": {"EXTRA": "dmFuZGFs", keys[0].clone(): "dmFuZGFs"}});
    c.patch(
        &res("Secret"),
        "default",
        "sc-x-secret",
        None,
        kubesim::cluster::PatchType::Merge,
        &body,
        &kubesim::cluster::WriteOptions::manager("vandal"),
    )
    .expect("patch");

    request_all(&c, "cs-2", 2, &conn);
    let run = run_job(&ks, &[]).await;
    run.expect_code(0);
    assert!(
        run.stdout.contains(
            "[x] secret default/sc-x-secret: repaired (removed 1 key another field manager wrote: EXTRA)"
        ),
        "{}",
        run.stdout
    );
    let after = get(&c, "Secret", "default", "sc-x-secret").expect("secret");
    assert_eq!(secret_data(&after), secret_data(&before));
    let managers: Vec<&str> = after["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["manager"].as_str())
        .collect();
    assert_eq!(
        managers,
        ["sc-job"],
        "{}",
        after["metadata"]["managedFields"]
    );
}
