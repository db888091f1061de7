//! `sc-agent run` against the embedded cluster, with sc-job running as the pod of the Job it
//! creates: new requests, serialized changes, failures and recovery, restarts, two replicas,
//! and the operator commands on the result.

mod common;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kubesim::testing::{kubectl, wait_until};
use serde_json::{Value, json};

const ACCOUNT_KEY: &str = "YWdlbnQtdGVzdC1hY2NvdW50LWtleQ==";
const CLIENT_ID: &str = "0a1b2c3d-0000-4000-8000-000000000042";
const TENANT_ID: &str = "66666666-7777-8888-9999-000000000000";

fn blob(account: &str) -> Value {
    json!({
        "namespace": "apps", "targetType": "storage-blob", "authType": "secret",
        "clientType": "python", "parameters": {"accountName": account},
        "secrets": {"accountKey": ACCOUNT_KEY},
    })
}

fn blob_only(account: &str) -> Value {
    json!({ "blob_conn": blob(account) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_request_is_applied_and_the_job_disappears() {
    let ks = start().await;
    let client = ks.client();
    let (history, _watch) = watch_jobs(&client);
    let conns = blob_only("store1");
    write_requests(&client, &conns, 1).await;
    let mut agent = Agent::start(&ks, "agent-a", &[]).await;
    agent.wait_ready().await;

    let hash = hash_of(&client, &conns, "blob_conn").await;
    wait_applied(&client, "blob_conn", &hash).await;
    wait_no_job(&client).await;

    // The objects and the metadata.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "apps");
    let secret = secrets
        .get("sc-blobconn-secret")
        .await
        .expect("the Secret exists");
    assert_eq!(
        secret.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
        "sc-extension"
    );
    let requested = metadata(&client, "blob_conn", "requested.json")
        .await
        .unwrap();
    assert_eq!(requested["hash"], hash.as_str());
    assert_eq!(requested["revision"], 1);
    let spec = metadata(&client, "blob_conn", "spec.json").await.unwrap();
    assert_eq!(spec["targetType"], "storage-blob");
    assert!(!spec.to_string().contains(ACCOUNT_KEY));

    // sc-job recorded what was requested with the result, in one write: the agent wrote
    // nothing to the metadata ConfigMap.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let cm = cms.get("sc-conn-blobconn").await.unwrap();
    let managers: Vec<String> = cm
        .metadata
        .managed_fields
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.manager.clone())
        .collect();
    assert_eq!(managers, vec!["sc-job".to_string()], "{managers:?}");
    assert_eq!(
        cm.metadata.owner_references.unwrap()[0].name,
        "sc-requests",
        "owned by the requests like everything the release creates"
    );

    // Metrics; a success writes no event of the agent's.
    let metrics = wait_until(WAIT, "metrics of the run", || async {
        let (code, body) = agent.http("/metrics").await?;
        (code == 200
            && body.contains("sc_agent_jobs_started_total 1")
            && body.contains("sc_agent_jobs_succeeded_total 1")
            && body.contains("sc_agent_connections{phase=\"Ready\"} 1"))
        .then_some(body)
    })
    .await;
    assert!(
        metrics.contains("sc_agent_reconcile_duration_seconds"),
        "{metrics}"
    );
    assert!(matches!(agent.http("/healthz").await, Some((200, _))));
    let ev = events(&client).await;
    assert!(
        !ev.iter()
            .any(|(reason, _)| reason == "JobCreated" || reason == "JobSucceeded"),
        "{ev:?}"
    );

    // Operator commands.
    let list = cli(&ks, &["list", "-n", NS, "-o", "json"]).await;
    assert_eq!(list.code, 0, "{list:?}");
    let rows: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(rows[0]["name"], "blob_conn");
    assert_eq!(rows[0]["namespace"], "apps");
    assert_eq!(rows[0]["target"], "storage-blob");
    assert_eq!(rows[0]["auth"], "secret");
    assert_eq!(rows[0]["phase"], "Ready");
    assert!(rows[0]["objects"].as_array().is_some_and(|o| !o.is_empty()));
    let show = cli(&ks, &["show", "blob_conn", "-n", NS, "-o", "json"]).await;
    assert_eq!(show.code, 0, "{show:?}");
    let shown: Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(shown["status"]["appliedHash"], hash.as_str());
    assert!(!shown["journal"].as_array().unwrap().is_empty());
    let wait = cli(
        &ks,
        &[
            "wait",
            "--namespace",
            NS,
            "--revision",
            "1",
            "--timeout",
            "30s",
        ],
    )
    .await;
    assert_eq!(wait.code, 0, "{wait:?}");
    assert!(wait.stdout.contains("blob_conn: Ready"), "{wait:?}");
    let no_agent = cli(
        &ks,
        &[
            "wait",
            "-n",
            NS,
            "--revision",
            "1",
            "--timeout",
            "1s",
            "--require-agent-ready",
        ],
    )
    .await;
    assert_eq!(no_agent.code, 1, "{no_agent:?}");
    assert!(
        no_agent.stdout.contains("Deployment sc-system/sc-agent"),
        "{no_agent:?}"
    );
    let snippet = cli(&ks, &["snippet", "blob_conn", "-n", NS]).await;
    assert_eq!(snippet.code, 0, "{snippet:?}");
    assert!(
        snippet.stdout.contains("sc-blobconn-secret"),
        "{}",
        snippet.stdout
    );
    for out in [&list, &show, &wait, &snippet] {
        assert!(!out.stdout.contains(ACCOUNT_KEY) && !out.stderr.contains(ACCOUNT_KEY));
    }

    {
        let h = history.lock().unwrap();
        assert_eq!(h.created.len(), 1, "{h:?}");
        assert_eq!(h.max_alive, 1, "{h:?}");
    }
    assert_eq!(agent.terminate().await, Some(0), "{}", agent.log());
    let log = agent.log();
    assert!(!log.contains("reconcile step failed"), "{log}");
    assert!(log.contains("lease released"), "{log}");
    assert!(!log.contains(ACCOUNT_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_quick_changes_are_serialized_and_end_in_the_final_state() {
    let ks = start().await;
    let client = ks.client();
    let (history, _watch) = watch_jobs(&client);
    let agent = Agent::start(&ks, "agent-a", &[]).await;
    agent.wait_ready().await;
    for (rev, account) in [(1, "first"), (2, "second"), (3, "third")] {
        write_requests(&client, &blob_only(account), rev).await;
    }
    let last = blob_only("third");
    wait_applied_as(&client, &last, "blob_conn").await;
    wait_no_job(&client).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "apps");
    let secret = secrets.get("sc-blobconn-secret").await.unwrap();
    let values: Vec<String> = secret
        .data
        .unwrap()
        .values()
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .collect();
    assert!(
        values.iter().any(|v| v.contains("third")),
        "the final request is applied"
    );
    assert!(!values.iter().any(|v| v.contains("second")));
    let requested = metadata(&client, "blob_conn", "requested.json")
        .await
        .unwrap();
    assert_eq!(requested["revision"], 3);
    let h = history.lock().unwrap();
    assert!(!h.created.is_empty());
    assert_eq!(h.max_alive, 1, "never two jobs at once: {h:?}");
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_change_keeps_the_job_and_a_corrected_request_recovers() {
    let ks = start().await;
    let client = ks.client();
    let (history, _watch) = watch_jobs(&client);
    // Missing accountName: invalid input, never retried.
    let bad = json!({"blob_conn": {
        "namespace": "apps", "targetType": "storage-blob", "authType": "secret",
        "secrets": {"accountKey": ACCOUNT_KEY},
    }});
    write_requests(&client, &bad, 1).await;
    let agent = Agent::start(&ks, "agent-a", &[]).await;
    agent.wait_ready().await;

    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), NS);
    wait_until(WAIT, "Job sc-job to fail", || async {
        let job = jobs.get_opt("sc-job").await.ok()??;
        let failed = job
            .status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Failed" && c.status == "True");
        failed.then_some(())
    })
    .await;
    let status = wait_until(WAIT, "the failure in status.json", || async {
        let s = metadata(&client, "blob_conn", "status.json").await?;
        (s["phase"] == "Failed").then_some(s)
    })
    .await;
    assert_eq!(
        status["hash"],
        hash_of(&client, &bad, "blob_conn").await.as_str()
    );
    assert!(
        status["error"]["message"]
            .as_str()
            .unwrap()
            .contains("accountName"),
        "{status}"
    );
    let journal = metadata(&client, "blob_conn", "journal.json")
        .await
        .unwrap();
    assert!(journal.to_string().contains("accountName"), "{journal}");
    // The failed Job stays, with the error in its logs.
    let logs = kubectl(&ks, &["logs", "job/sc-job", "-n", NS]).await;
    assert!(logs.stdout.contains("accountName"), "{logs:?}");
    assert!(!logs.stdout.contains(ACCOUNT_KEY));
    wait_until(WAIT, "a JobFailed event naming the connection", || async {
        events(&client)
            .await
            .iter()
            .any(|(r, note)| r == "JobFailed" && note.contains("blob_conn"))
            .then_some(())
    })
    .await;
    let wait = cli(
        &ks,
        &[
            "wait",
            "--namespace",
            NS,
            "--revision",
            "1",
            "--timeout",
            "20s",
        ],
    )
    .await;
    assert_eq!(wait.code, 1, "{wait:?}");
    assert!(wait.stdout.contains("blob_conn: Failed"), "{wait:?}");
    assert!(wait.stdout.contains("remedy:"), "{wait:?}");
    assert!(
        jobs.get_opt("sc-job").await.unwrap().is_some(),
        "the failed Job is kept"
    );

    // The corrected request replaces the failed Job and recovers.
    let good = blob_only("fixed");
    write_requests(&client, &good, 2).await;
    wait_applied_as(&client, &good, "blob_conn").await;
    wait_no_job(&client).await;
    let journal = metadata(&client, "blob_conn", "journal.json")
        .await
        .unwrap();
    let results: Vec<&str> = journal
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["result"].as_str().unwrap_or(""))
        .collect();
    assert!(
        results.contains(&"Failed") && results.contains(&"Ready"),
        "{journal}"
    );
    let wait = cli(
        &ks,
        &[
            "wait",
            "--namespace",
            NS,
            "--revision",
            "2",
            "--timeout",
            "20s",
        ],
    )
    .await;
    assert_eq!(wait.code, 0, "{wait:?}");
    let h = history.lock().unwrap();
    assert_eq!(h.created.len(), 2, "one failed run, one good run: {h:?}");
    assert_eq!(h.max_alive, 1, "{h:?}");
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_with_backoff_until_it_succeeds() {
    let ks = start().await;
    let client = ks.client();
    let (history, _watch) = watch_jobs(&client);
    // The target namespace does not exist yet: a transient failure.
    let mut conn = blob("later");
    conn["namespace"] = json!("later");
    let conns = json!({ "blob_conn": conn });
    write_requests(&client, &conns, 1).await;
    let agent = Agent::start(&ks, "agent-a", &["--retry-base=1", "--retry-max=2"]).await;
    agent.wait_ready().await;
    let status = wait_until(WAIT, "the first failure", || async {
        let s = metadata(&client, "blob_conn", "status.json").await?;
        (s["phase"] == "Failed").then_some(s)
    })
    .await;
    assert_eq!(status["error"]["reason"], "NamespaceNotFound", "{status}");
    // Retries run without any new request; creating the namespace lets one succeed.
    wait_until(WAIT, "a retry", || async {
        (history.lock().unwrap().created.len() >= 2).then_some(())
    })
    .await;
    create(
        &client,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "later"}}),
    )
    .await;
    wait_applied_as(&client, &conns, "blob_conn").await;
    wait_no_job(&client).await;
    assert_eq!(history.lock().unwrap().max_alive, 1);
    let journal = metadata(&client, "blob_conn", "journal.json")
        .await
        .unwrap();
    assert!(
        journal.to_string().contains("NamespaceNotFound"),
        "{journal}"
    );
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_connection_is_deleted_and_its_metadata_goes() {
    let ks = start().await;
    let client = ks.client();
    let mut delete_me = blob("gone");
    delete_me["deletionPolicy"] = json!("Delete");
    let conns = json!({"blob_conn": blob("kept"), "gone_conn": delete_me});
    write_requests(&client, &conns, 1).await;
    let agent = Agent::start(&ks, "agent-a", &[]).await;
    agent.wait_ready().await;
    wait_applied_as(&client, &conns, "gone_conn").await;
    wait_no_job(&client).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "apps");
    assert!(
        secrets
            .get_opt("sc-goneconn-secret")
            .await
            .unwrap()
            .is_some()
    );

    let remaining = blob_only("kept");
    write_requests(&client, &remaining, 2).await;
    wait_until(WAIT, "the removed connection's metadata to go", || async {
        metadata(&client, "gone_conn", "requested.json")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    wait_no_job(&client).await;
    assert!(
        secrets
            .get_opt("sc-goneconn-secret")
            .await
            .unwrap()
            .is_none(),
        "deletionPolicy Delete removes the Secret"
    );
    let list = cli(&ks, &["list", "-n", NS, "-o", "json"]).await;
    let rows: Value = serde_json::from_str(&list.stdout).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["blob_conn"], "{list:?}");
    let wait = cli(
        &ks,
        &["wait", "-n", NS, "--revision", "2", "--timeout", "20s"],
    )
    .await;
    assert_eq!(wait.code, 0, "{wait:?}");
    drop(agent);
}

/// With the chart's RBAC the agent watches Secret `sc-protected` through `resourceNames`, which
/// the API server authorizes for a list or watch with the field selector `metadata.name`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_as_a_deployment_with_the_chart_rbac() {
    let ks = start().await;
    let client = ks.client();
    install_agent_rbac(&client).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, agent_config().to_string()).unwrap();
    let port = free_port();
    let conns = blob_only("in-cluster");
    write_requests(&client, &conns, 1).await;
    create(
        &client,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "sc-agent", "namespace": NS},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/name": "sc-agent"}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "sc-agent"}},
                    "spec": {
                        "serviceAccountName": "sc-agent",
                        "containers": [{
                            "name": "agent",
                            "image": "ghcr.io/sc-extension/sc-agent:0.1.0",
                            "args": ["run", format!("--config={}", config.display()),
                                     format!("--listen=127.0.0.1:{port}"), "--log-level=info"],
                            "env": [
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                            ],
                            "ports": [{"name": "http", "containerPort": port}],
                            "readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 1},
                        }],
                    },
                },
            },
        }),
    )
    .await;
    wait_applied_as(&client, &conns, "blob_conn").await;
    wait_no_job(&client).await;

    // As an administrator, the Deployment's Available condition is checked.
    let wait = cli(
        &ks,
        &[
            "wait",
            "-n",
            NS,
            "--revision",
            "1",
            "--timeout",
            "60s",
            "--require-agent-ready",
        ],
    )
    .await;
    assert_eq!(wait.code, 0, "{wait:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_job_left_behind_is_deleted_before_the_next_run() {
    let ks = start().await;
    let client = ks.client();
    // A Job sc-job that completed without deleting itself (a host command as its container).
    create(
        &client,
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "sc-job", "namespace": NS},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "done", "image": "busybox", "command": ["true"]}],
            }}},
        }),
    )
    .await;
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), NS);
    let old_uid = wait_until(WAIT, "the leftover Job to complete", || async {
        let job = jobs.get_opt("sc-job").await.ok()??;
        let done = job
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True");
        done.then(|| job.metadata.uid.clone().unwrap_or_default())
    })
    .await;
    let (history, _watch) = watch_jobs(&client);
    let conns = blob_only("after-leftover");
    write_requests(&client, &conns, 1).await;
    let agent = Agent::start(&ks, "agent-a", &[]).await;
    wait_applied_as(&client, &conns, "blob_conn").await;
    wait_no_job(&client).await;
    let h = history.lock().unwrap();
    assert!(
        !h.alive.contains(&old_uid),
        "the leftover Job is gone: {h:?}"
    );
    assert_eq!(h.max_alive, 1, "{h:?}");
    assert!(
        agent.log().contains("deleting the Complete Job sc-job"),
        "{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_whose_change_set_is_all_applied_is_deleted() {
    let ks = start().await;
    let client = ks.client();
    let conns = blob_only("settled");
    write_requests(&client, &conns, 1).await;
    let agent = Agent::start(&ks, "agent-a", &[]).await;
    wait_applied_as(&client, &conns, "blob_conn").await;
    wait_no_job(&client).await;
    // sc-job killed after it recorded every connection and before it deleted its Job: the
    // Job of that change set is Failed, and nothing is left to apply.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let cs = cms.get("sc-changeset").await.expect("the change set");
    let id = cs.metadata.annotations.as_ref().expect("annotations")["sc-extension.io/changeset-id"]
        .clone();
    create(
        &client,
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "sc-job", "namespace": NS,
                         "annotations": {"sc-extension.io/changeset-id": id}},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "killed", "image": "busybox", "command": ["false"]}],
            }}},
        }),
    )
    .await;
    wait_no_job(&client).await;
    wait_until(WAIT, "the agent to log the deletion", || async {
        agent
            .log()
            .contains(
                "deleting the failed Job sc-job: every connection of its change set is applied",
            )
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_hook_passes_and_fails_the_revision_as_the_agent_service_account() {
    let ks = start().await;
    let client = ks.client();
    install_agent_rbac(&client).await;
    let conns = blob_only("hooked");
    write_requests(&client, &conns, 1).await;
    let agent = Agent::start(&ks, "agent-a", &[]).await;
    agent.wait_ready().await;
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), NS);
    // The chart's hook: `wait` in a pod as ServiceAccount sc-agent, which may not read
    // Deployments, so agent readiness comes from the Lease.
    let run_hook = |name: &'static str, revision: u64| {
        let client = client.clone();
        let jobs = jobs.clone();
        let ks = &ks;
        async move {
            create(
                &client,
                json!({
                    "apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": name, "namespace": NS},
                    "spec": {"backoffLimit": 0, "template": {"spec": {
                        "serviceAccountName": "sc-agent",
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "wait",
                            "image": "ghcr.io/sc-extension/sc-agent:0.1.0",
                            "args": ["wait", "--namespace=sc-system", format!("--revision={revision}"),
                                     "--timeout=60s", "--require-agent-ready"],
                        }],
                    }}},
                }),
            )
            .await;
            let outcome = wait_until(WAIT, "the hook Job to finish", || async {
                let job = jobs.get_opt(name).await.ok()??;
                job.status?.conditions?.iter().find_map(|c| {
                    (c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
                        .then(|| c.type_.clone())
                })
            })
            .await;
            let logs = kubectl(ks, &["logs", &format!("job/{name}"), "-n", NS]).await;
            (outcome, logs.stdout)
        }
    };
    let (outcome, logs) = run_hook("sc-wait-1", 1).await;
    assert_eq!(outcome, "Complete", "{logs}");
    assert!(logs.contains("blob_conn: Ready"), "{logs}");

    let bad = json!({"blob_conn": {
        "namespace": "apps", "targetType": "storage-blob", "authType": "secret",
        "secrets": {"accountKey": ACCOUNT_KEY},
    }});
    write_requests(&client, &bad, 2).await;
    let (outcome, logs) = run_hook("sc-wait-2", 2).await;
    assert_eq!(outcome, "Failed", "{logs}");
    assert!(
        logs.contains("blob_conn: Failed") && logs.contains("accountName"),
        "{logs}"
    );
    assert!(logs.contains("remedy:"), "{logs}");
    assert!(!logs.contains(ACCOUNT_KEY));
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_agent_mid_job_converges_without_a_duplicate_job() {
    let ks = start().await;
    let client = ks.client();
    let (history, _watch) = watch_jobs(&client);
    let conns = blob_only("restart");
    write_requests(&client, &conns, 1).await;
    let mut first = Agent::start(&ks, "agent-a", &[]).await;
    wait_until(WAIT, "the first Job", || async {
        (!history.lock().unwrap().created.is_empty()).then_some(())
    })
    .await;
    first.kill().await;
    let second = Agent::start(&ks, "agent-b", &[]).await;
    second.wait_ready().await;
    wait_applied_as(&client, &conns, "blob_conn").await;
    wait_no_job(&client).await;
    // The new leader sees nothing pending: a later change is its first Job.
    let next = blob_only("after-restart");
    write_requests(&client, &next, 2).await;
    wait_applied_as(&client, &next, "blob_conn").await;
    wait_no_job(&client).await;
    let h = history.lock().unwrap();
    assert_eq!(
        h.created.len(),
        2,
        "no duplicate Job after the restart: {h:?}"
    );
    assert_eq!(h.max_alive, 1, "{h:?}");
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_run_jobs_concurrently() {
    let ks = start().await;
    let client = ks.client();
    let (history, _watch) = watch_jobs(&client);
    let mut a = Agent::start(&ks, "agent-a", &[]).await;
    let mut b = Agent::start(&ks, "agent-b", &[]).await;
    a.wait_ready().await;
    b.wait_ready().await;
    for rev in 1..=3 {
        write_requests(&client, &blob_only(&format!("replica{rev}")), rev).await;
    }
    let conns = blob_only("replica3");
    wait_applied_as(&client, &conns, "blob_conn").await;
    wait_no_job(&client).await;

    // Stopping the leader releases the Lease; the other replica takes over.
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let holder = leases
        .get("sc-agent")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    let (leader, follower) = match holder.as_str() {
        "agent-a" => (&mut a, &mut b),
        "agent-b" => (&mut b, &mut a),
        other => panic!("unexpected Lease holder {other}"),
    };
    assert_eq!(leader.terminate().await, Some(0), "{}", leader.log());
    let next = blob_only("after-failover");
    write_requests(&client, &next, 4).await;
    wait_applied_as(&client, &next, "blob_conn").await;
    wait_no_job(&client).await;
    let other = if holder == "agent-a" {
        "agent-b"
    } else {
        "agent-a"
    };
    let now_holder = leases
        .get("sc-agent")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(now_holder.as_deref(), Some(other), "{}", follower.log());
    let h = history.lock().unwrap();
    assert_eq!(h.max_alive, 1, "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_detects_drift_and_list_configuration_hides_credentials() {
    let ks = start().await;
    let client = ks.client();
    // Report: the agent leaves the drift below for validate to find (it would repair it).
    let mut reported = blob("validated");
    reported["driftPolicy"] = json!("Report");
    let conns = json!({
        "blob_conn": reported,
        "openai": {
            "namespace": "apps", "targetType": "openai", "authType": "workloadIdentity",
            "clientType": "python",
            "parameters": {"resourceName": "my-openai", "clientId": CLIENT_ID, "tenantId": TENANT_ID},
        },
        "kv_csi": {
            "namespace": "apps", "targetType": "keyvault", "authType": "keyvaultCsi",
            "parameters": {"keyvaultName": "my-vault", "tenantId": TENANT_ID,
                           "clientId": "22222222-3333-4444-5555-666666666666",
                           "objects": [{"name": "db-password", "type": "secret"}]},
        },
    });
    create_spc_crd(&client).await;
    write_requests(&client, &conns, 1).await;
    let agent = Agent::start(&ks, "agent-a", &[]).await;
    agent.wait_ready().await;
    wait_applied_as(&client, &conns, "blob_conn").await;
    wait_applied_as(&client, &conns, "openai").await;
    wait_applied_as(&client, &conns, "kv_csi").await;
    wait_no_job(&client).await;

    // Without the workload-identity webhook and the CSI driver, validate names them.
    let v = cli(&ks, &["validate", "openai", "-n", NS]).await;
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stdout.contains(
            "MutatingWebhookConfiguration azure-wi-webhook-mutating-webhook-configuration"
        ),
        "{v:?}"
    );
    let v = cli(&ks, &["validate", "kv_csi", "-n", NS]).await;
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stdout.contains("CSIDriver secrets-store.csi.k8s.io"),
        "{v:?}"
    );
    create_prerequisites(&client).await;

    for name in ["blob_conn", "openai", "kv_csi"] {
        let v = cli(&ks, &["validate", name, "-n", NS]).await;
        assert_eq!(v.code, 0, "{name}: {v:?}");
    }

    // list-configuration: every key, credentials as "".
    let lc = cli(
        &ks,
        &["list-configuration", "blob_conn", "-n", NS, "-o", "json"],
    )
    .await;
    assert_eq!(lc.code, 0, "{lc:?}");
    let out: Value = serde_json::from_str(&lc.stdout).unwrap();
    let rows = out["configurations"].as_array().unwrap();
    let conn_string = rows
        .iter()
        .find(|r| r["name"] == "AZURE_STORAGEBLOB_CONNECTIONSTRING")
        .expect("the connection string key is listed");
    assert_eq!(conn_string["value"], "");
    let text = cli(&ks, &["list-configuration", "blob_conn", "-n", NS]).await;
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.stdout.contains("AZURE_STORAGEBLOB_CONNECTIONSTRING"));
    for o in [&lc, &text] {
        assert!(!o.stdout.contains(ACCOUNT_KEY) && !o.stderr.contains(ACCOUNT_KEY));
        assert!(!o.stdout.contains("AccountKey="), "{}", o.stdout);
    }

    // A workload using the identity's ServiceAccount without the WI label.
    create(
        &client,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"serviceAccountName": format!("sc-account-{CLIENT_ID}"),
                             "containers": [{"name": "web", "image": "nginx"}]},
                },
            },
        }),
    )
    .await;
    let v = cli(&ks, &["validate", "openai", "-n", NS, "-o", "json"]).await;
    assert_eq!(v.code, 1, "{v:?}");
    let report: Value = serde_json::from_str(&v.stdout).unwrap();
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["object"] == "Deployment apps/web")
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        finding["remedy"]
            .as_str()
            .unwrap()
            .contains("azure.workload.identity/use")
    );

    // A changed ServiceAccount annotation.
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), "apps");
    let edit =
        json!({"metadata": {"annotations": {"azure.workload.identity/client-id": "someone-else"}}});
    sas.patch(
        &format!("sc-account-{CLIENT_ID}"),
        &PatchParams::default(),
        &Patch::Merge(&edit),
    )
    .await
    .unwrap();
    let v = cli(&ks, &["validate", "openai", "-n", NS]).await;
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stdout.contains(&format!("ServiceAccount apps/sc-account-{CLIENT_ID}: annotation azure.workload.identity/client-id")),
        "{v:?}"
    );

    // A deleted SecretProviderClass.
    let spcs = dynamic(
        &client,
        "secrets-store.csi.x-k8s.io/v1",
        "SecretProviderClass",
        "apps",
    );
    spcs.delete("sc-kvcsi-spc", &DeleteParams::default())
        .await
        .unwrap();
    wait_until(WAIT, "the SecretProviderClass to be gone", || async {
        matches!(spcs.get_opt("sc-kvcsi-spc").await, Ok(None)).then_some(())
    })
    .await;
    let v = cli(&ks, &["validate", "kv_csi", "-n", NS]).await;
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stdout
            .contains("SecretProviderClass apps/sc-kvcsi-spc: the SecretProviderClass is missing"),
        "{v:?}"
    );

    // A hand-edited Secret.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "apps");
    let edit = json!({"stringData": {"AZURE_STORAGEBLOB_CONNECTIONSTRING": "hand-edited-value"}});
    secrets
        .patch(
            "sc-blobconn-secret",
            &PatchParams::default(),
            &Patch::Merge(&edit),
        )
        .await
        .unwrap();
    let v = cli(&ks, &["validate", "blob_conn", "-n", NS]).await;
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stdout.contains("Secret apps/sc-blobconn-secret")
            && v.stdout
                .contains("the value of key AZURE_STORAGEBLOB_CONNECTIONSTRING was changed"),
        "{v:?}"
    );
    assert!(!v.stdout.contains("hand-edited-value") && !v.stdout.contains(ACCOUNT_KEY));

    // A deleted Secret.
    secrets
        .delete("sc-blobconn-secret", &DeleteParams::default())
        .await
        .unwrap();
    wait_until(WAIT, "the Secret to be gone", || async {
        matches!(secrets.get_opt("sc-blobconn-secret").await, Ok(None)).then_some(())
    })
    .await;
    let v = cli(&ks, &["validate", "blob_conn", "-n", NS, "-o", "json"]).await;
    assert_eq!(v.code, 1, "{v:?}");
    let report: Value = serde_json::from_str(&v.stdout).unwrap();
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["object"] == "Secret apps/sc-blobconn-secret"
                && f["problem"] == "the Secret is missing"),
        "{report}"
    );
    drop(agent);
}

/// Writes request shard `name` (ConfigMap, or Secret when `secret`) of `revision`; the first
/// shard announces `shards`.
async fn write_shard(
    client: &kube::Client,
    name: &str,
    secret: bool,
    revision: u64,
    shards: Option<usize>,
    connections: &Value,
) {
    let mut annotations = json!({"sc-extension.io/revision": revision.to_string()});
    if let Some(n) = shards {
        annotations["sc-extension.io/shards"] = json!(n.to_string());
    }
    let mut labels = json!({"app.kubernetes.io/managed-by": "Helm"});
    if shards.is_none() {
        let base = if secret {
            "sc-protected"
        } else {
            "sc-requests"
        };
        labels["sc-extension.io/shard-of"] = json!(base);
    }
    let (kind, key) = if secret {
        ("Secret", "stringData")
    } else {
        ("ConfigMap", "data")
    };
    let obj = json!({
        "apiVersion": "v1", "kind": kind,
        "metadata": {"name": name, "namespace": NS, "labels": labels, "annotations": annotations},
        key: {"connections.json": connections.to_string()},
    });
    dynamic(client, "v1", kind, NS)
        .patch(
            name,
            &PatchParams::apply("helm").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("writing {kind} {name}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_requests_are_read_once_every_shard_is_there_and_run_in_bounded_change_sets() {
    let ks = start().await;
    let client = ks.client();
    // sc-job reads the second protected shard as the chart's Role allows it.
    let roles = dynamic(&client, "rbac.authorization.k8s.io/v1", "Role", NS);
    let patch = json!({"rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create", "update"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["sc-protected", "sc-protected-1"], "verbs": ["get"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "resourceNames": ["sc-job"], "verbs": ["get", "delete"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    ]});
    roles
        .patch("sc-job", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("widening the sc-job Role");
    let mut agent = Agent::start(&ks, "agent-a", &["--changeset-limit=3"]).await;
    agent.wait_ready().await;

    // Eight connections: four in each request shard; the secrets of the first four in the
    // second protected shard and of the others in the first.
    let mut all = serde_json::Map::new();
    let (mut public, mut protected) = (vec![json!({}), json!({})], vec![json!({}), json!({})]);
    for i in 0..8 {
        let name = format!("blob_{i}");
        let mut conn = blob(&format!("store{i}"));
        let key = format!("a2V5LW9mLXNoYXJkLXRlc3Qt{i}A==");
        conn["secrets"]["accountKey"] = json!(key);
        all.insert(name.clone(), conn.clone());
        protected[usize::from(i < 4)][&name] = json!({"secrets": conn["secrets"].take()});
        conn.as_object_mut().unwrap().remove("secrets");
        public[i / 4][&name] = conn;
    }
    let all = Value::Object(all);
    write_shard(&client, "sc-protected", true, 1, Some(2), &protected[0]).await;
    write_shard(&client, "sc-protected-1", true, 1, None, &protected[1]).await;
    write_shard(&client, "sc-requests", false, 1, Some(2), &public[0]).await;

    // The second request shard is missing: the agent waits for it and writes nothing.
    wait_until(WAIT, "the agent waiting for sc-requests-1", || async {
        agent
            .log()
            .contains("waiting for every shard of the requests")
            .then_some(())
    })
    .await;
    assert!(
        agent
            .log()
            .contains("ConfigMap sc-requests-1 does not exist yet")
    );
    assert!(
        metadata(&client, "blob_0", "requested.json")
            .await
            .is_none()
    );
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), NS);
    assert!(jobs.get_opt("sc-job").await.unwrap().is_none());

    // A shard of another revision is not read either.
    write_shard(&client, "sc-requests-1", false, 0, None, &public[1]).await;
    wait_until(
        WAIT,
        "the agent seeing sc-requests-1 of revision 0",
        || async {
            agent
                .log()
                .contains(
                    "ConfigMap sc-requests-1 is of revision 0 while sc-requests is of revision 1",
                )
                .then_some(())
        },
    )
    .await;
    assert!(
        metadata(&client, "blob_0", "requested.json")
            .await
            .is_none()
    );

    write_shard(&client, "sc-requests-1", false, 1, None, &public[1]).await;
    for i in 0..8 {
        wait_applied_as(&client, &all, &format!("blob_{i}")).await;
    }
    wait_no_job(&client).await;

    // The secrets of both protected shards reached their Secrets.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "apps");
    for i in [0, 7] {
        let s = secrets
            .get(&format!("sc-blob{i}-secret"))
            .await
            .expect("the Secret exists");
        let want = format!("a2V5LW9mLXNoYXJkLXRlc3Qt{i}A==");
        assert!(
            s.data
                .unwrap_or_default()
                .values()
                .any(|v| String::from_utf8_lossy(&v.0).contains(&want)),
            "sc-blob{i}-secret holds no value with its account key"
        );
    }
    // At most three connections per run: at least three runs for eight connections.
    let mut runs: std::collections::BTreeMap<String, usize> = Default::default();
    for i in 0..8 {
        let journal = metadata(&client, &format!("blob_{i}"), "journal.json")
            .await
            .expect("a journal");
        let ready = journal
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|e| e["result"] == "Ready")
            .expect("a Ready entry")
            .clone();
        *runs
            .entry(ready["changeset"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(runs.len() >= 3, "{runs:?}");
    assert!(runs.values().all(|n| *n <= 3), "{runs:?}");
    let _ = agent.terminate().await;
}
