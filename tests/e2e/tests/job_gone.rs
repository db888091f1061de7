//! A repair whose Job goes before it runs is run again. The agent started the repair of a
//! deleted Secret (a change set and Job `sc-job`), but the Job is deleted while its pod cannot
//! be scheduled (every node tainted): its change set has no record of a run. The agent must
//! report the run failed (a `JobFailed` event naming the change set and the connection), not
//! applied, and run the same repair again; once the nodes take pods, the Secret is back. (A Job
//! never created because a Job of an earlier change set was still there takes the same path.)
//!
//! Needs kubesim (its scheduler honours taints): the scenario is skipped on another cluster.

use sc_e2e::{Cluster, Helm, SETTLE, secret_value, wait_for_state};
use serde_json::{Value, json};

/// The change set id Job `sc-job` carries, if it exists.
fn job_changeset(c: &Cluster, ns: &str) -> Option<String> {
    let job = c.try_get("job", ns, "sc-job")?;
    job["metadata"]["annotations"]["sc-extension.io/changeset-id"]
        .as_str()
        .map(str::to_string)
}

/// The notes of the events with `reason` in `ns`.
#[test]
fn a_repair_whose_job_is_deleted_before_it_ran_runs_again() {
    sc_e2e::require_embedded!("it taints every node of the cluster");
    let helm = Helm::V4;
    let c = Cluster::start();
    let apps = c.create_namespace("apps");
    let key = secret_value("job-gone-key");
    c.remember_secret(&key);
    let settings = json!({"connections": {"blob": {
        "namespace": apps,
        "targetType": "storage-blob",
        "authType": "secret",
        "clientType": "python",
        "parameters": {"accountName": "jobgone"},
    }}});
    let protected = json!({"connections": {"blob": {"secrets": {"accountKey": key}}}});
    let files = [
        c.write_values("settings", &settings),
        c.write_values("protected", &protected),
    ];
    c.helm_upgrade(
        helm,
        &[&files[0], &files[1]],
        &["--set=agent.drift.intervalSeconds=1"],
    )
    .ok();
    c.wait_job_gone();
    let rel = c.release_ns();
    let data = c
        .try_get("secret", &apps, "sc-blob-secret")
        .expect("the Secret")["data"]
        .clone();

    // No node takes a pod; the Secret is deleted: the repair's Job is created, its pod pending.
    c.taint_all_nodes(true);
    c.kubectl(&["delete", "secret", "sc-blob-secret", "-n", &apps])
        .ok();
    let first = wait_for_state(SETTLE, "the repair's Job", || {
        job_changeset(&c, &rel).ok_or_else(|| "no Job sc-job yet".to_string())
    });

    // The Job is deleted before it ran: the run failed, and the same repair runs again.
    c.kubectl(&["delete", "job", "sc-job", "-n", &rel, "--wait=false"])
        .ok();
    let failed = wait_for_state(SETTLE, "a JobFailed event of the gone Job", || {
        let notes = c.event_notes(&rel, "JobFailed");
        notes
            .into_iter()
            .find(|n| n.contains(&first))
            .ok_or_else(|| "no JobFailed event names the change set".to_string())
    });
    assert!(
        failed.contains("gone without a record") && failed.contains("failed connections: blob"),
        "{failed}"
    );
    let status: Value = c.metadata("blob")["data"]["status.json"]
        .as_str()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    assert_ne!(
        status["changeset"],
        first.as_str(),
        "the gone Job's change set is recorded as run: {status}"
    );
    let second = wait_for_state(SETTLE, "the repair's second Job", || {
        match job_changeset(&c, &rel) {
            Some(id) if id != first => Ok(id),
            other => Err(format!("Job sc-job carries {other:?}")),
        }
    });
    let journal: Vec<Value> = c.metadata("blob")["data"]["journal.json"]
        .as_str()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    assert!(
        journal
            .iter()
            .any(|e| e["changeset"] == first.as_str() && e["result"] == "Failed"),
        "the gone run is not in the journal: {journal:?}"
    );

    // The nodes take pods again: the second run restores the Secret as it was.
    c.taint_all_nodes(false);
    wait_for_state(SETTLE, "the deleted Secret to be back", || {
        match c.try_get("secret", &apps, "sc-blob-secret") {
            Some(s) => {
                assert_eq!(s["data"], data, "the recreated Secret has other data");
                Ok(())
            }
            None => Err("not yet".to_string()),
        }
    });
    // The second run records the repair as its own (a success writes no event).
    wait_for_state(SETTLE, "the second run recorded applied", || {
        let status: Value = c.metadata("blob")["data"]["status.json"]
            .as_str()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        if status["changeset"] == second.as_str() && status["phase"] == "Ready" {
            Ok(())
        } else {
            Err(format!("status.json: {status}"))
        }
    });
    // One episode of drift, repaired once: the gone run is the same repair, not a new one.
    let drifted = c.event_notes(&rel, "Drifted");
    assert_eq!(drifted.len(), 1, "{drifted:?}");
}
