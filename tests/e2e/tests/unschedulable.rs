//! Every node tainted `CriticalAddonsOnly=true:NoSchedule` (the common AKS error): sc-job's pod
//! cannot be scheduled, and instead of a silent wait
//!
//! - the agent posts one Warning event `Unschedulable` on `sc-requests` naming the pod, the
//!   scheduler's message and the chart value `tolerations`;
//! - `sc-agent show` lists the pod among the connection's preflight findings (UNSCHEDULABLE),
//!   and `sc-agent validate` reports it (exit 1), and a restarted agent's pod that waits too;
//! - the remedy, `helm upgrade --set tolerations[0].key=CriticalAddonsOnly,...`, works: the
//!   agent replaces the Job whose pod waits with the old placement (event `JobReplaced`),
//!   the upgrade succeeds, the connection is Ready and the finding is gone.
//!
//! A fresh install on such nodes fails with the wait hook's log naming the agent's pod and the
//! value, instead of a bare helm timeout: the hook's pod tolerates every NoSchedule taint.
//!
//! Needs kubesim (its scheduler honours taints): the scenario is skipped on another cluster.

use sc_e2e::{
    Cluster, Helm, SETTLE, secret_value, three_connections, wait_for_state, with_both_helms,
};
use serde_json::Value;

fn pod_findings(v: &Value) -> Vec<Value> {
    v["prerequisites"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["object"].as_str().is_some_and(|o| o.starts_with("Pod ")))
        .cloned()
        .collect()
}

/// The `Unschedulable` events of the agent in `ns` (their messages).
fn unschedulable_events(c: &Cluster, ns: &str) -> Vec<String> {
    c.event_notes(ns, "Unschedulable")
}

fn unschedulable_sc_job_is_a_finding(helm: Helm) {
    sc_e2e::require_embedded!("it taints every node of the cluster");
    let c = Cluster::start();
    let app = c.create_namespace("apps");
    let rel = c.release_ns();
    c.ensure_spc_crd();
    let key = secret_value("account-key");
    c.remember_secret(&key);
    let (mut settings, protected) = three_connections(&app, &key);
    let protected_file = c.write_values("protected", &protected);
    let file = c.write_values("settings", &settings);
    c.helm_upgrade(helm, &[&file, &protected_file], &[]).ok();
    c.wait_job_gone();

    // Every node tainted; a changed connection needs an sc-job run. (The wait hook's pod
    // could not run either: it is left out of this upgrade.)
    c.taint_all_nodes(true);
    settings["connections"]["blob"]["parameters"]["accountName"] = "e2estorage2".into();
    let file = c.write_values("settings-2", &settings);
    c.helm_upgrade(
        helm,
        &[&file, &protected_file],
        &["--set", "waitForResult.enabled=false"],
    )
    .ok();

    // The agent's event: the pod, the scheduler's message, the value to set.
    let events = wait_for_state(SETTLE, "an Unschedulable event of the agent", || {
        let events = unschedulable_events(&c, &rel);
        if events.is_empty() {
            Err("no Unschedulable event yet".to_string())
        } else {
            Ok(events)
        }
    });
    assert_eq!(events.len(), 1, "one event per pod: {events:?}");
    let event = &events[0];
    for want in [
        format!("Pod {rel}/sc-job-"),
        "untolerated taint {CriticalAddonsOnly: true}".to_string(),
        "tolerations[0].key=CriticalAddonsOnly,tolerations[0].operator=Exists".to_string(),
    ] {
        assert!(event.contains(&want), "the event lacks {want:?}: {event}");
    }

    // sc-agent show: a preflight finding of the connection.
    let show: Value =
        serde_json::from_str(c.sc_agent(&["show", "blob", "-n", &rel, "-o", "json"]).ok())
            .expect("show -o json prints JSON");
    let pods = pod_findings(&show);
    assert_eq!(pods.len(), 1, "{show}");
    let pod_object = pods[0]["object"].as_str().unwrap_or_default().to_string();
    assert!(
        pod_object.starts_with(&format!("Pod {rel}/sc-job-")),
        "{show}"
    );
    assert!(
        pods[0]["problem"]
            .as_str()
            .is_some_and(|p| p.contains("CriticalAddonsOnly")),
        "{show}"
    );
    assert!(
        pods[0]["remedy"]
            .as_str()
            .is_some_and(|r| r.contains("tolerations")),
        "{show}"
    );
    let text = c.sc_agent(&["show", "blob", "-n", &rel]).ok().to_string();
    assert!(
        text.contains(&format!("UNSCHEDULABLE {pod_object}")),
        "{text}"
    );
    // sc-agent validate: a finding labelled as in show, exit 1.
    let validate = c.sc_agent(&["validate", "blob", "-n", &rel]);
    assert_eq!(validate.code, 1, "{}", validate.all());
    assert!(
        validate
            .stdout
            .contains(&format!("UNSCHEDULABLE {pod_object}"))
            && validate.stdout.contains("tolerations"),
        "{}",
        validate.all()
    );

    // An agent pod no node accepts (a restart of the Deployment; the running one stays until
    // its successor is available): validate, run from the operator's machine, names it too.
    c.kubectl(&["rollout", "restart", "deployment/sc-agent", "-n", &rel])
        .ok();
    let agent_pod = format!("Pod {rel}/sc-agent-");
    wait_for_state(SETTLE, "validate naming the new agent pod", || {
        let v = c.sc_agent(&["validate", "blob", "-n", &rel]);
        let named = v.stdout.lines().any(|l| {
            l.contains(&agent_pod) && l.contains("untolerated taint {CriticalAddonsOnly: true}")
        });
        if v.code == 1 && named && v.stdout.contains(&pod_object) {
            Ok(())
        } else {
            Err(v.all())
        }
    });

    // The remedy: the tolerations value. The agent (restarted with it) replaces the Job whose
    // pod waits with the old placement; the upgrade's wait hook sees the connection Ready.
    let fixed = c.helm_upgrade(
        helm,
        &[&file, &protected_file],
        &[
            "--set",
            "tolerations[0].key=CriticalAddonsOnly,tolerations[0].operator=Exists",
        ],
    );
    assert!(
        fixed.ok().contains("STATUS: deployed") && fixed.stderr.contains("blob: Ready"),
        "{}",
        fixed.all()
    );
    let events = c.get_json(&["events", "-n", &rel]);
    assert!(
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["reason"] == "JobReplaced"),
        "no JobReplaced event: {events}"
    );
    c.wait_job_gone();
    // The waiting agent pod goes with the roll-out of the new placement: no finding is left.
    wait_for_state(SETTLE, "no unschedulable pod in show and validate", || {
        let out = c.sc_agent(&["show", "blob", "-n", &rel, "-o", "json"]);
        let show: Value = serde_json::from_str(out.ok()).expect("show -o json prints JSON");
        let validate = c.sc_agent(&["validate", "blob", "-n", &rel]);
        if show["phase"] == "Ready" && pod_findings(&show).is_empty() && validate.code == 0 {
            Ok(())
        } else {
            Err(format!("{show}\n{}", validate.all()))
        }
    });
    // Still one event for sc-job's pod: the agent reported each pod once.
    let events = unschedulable_events(&c, &rel);
    assert_eq!(
        events.iter().filter(|e| e.contains(&pod_object)).count(),
        1,
        "{events:?}"
    );
    c.leak_scan(&["blob", "bus", "vault"]);
}

with_both_helms!(unschedulable_sc_job_is_a_finding);

/// A fresh install on nodes that are all tainted: neither the agent nor sc-job can run, but the
/// wait hook does (it tolerates every NoSchedule taint, `waitForResult.tolerateNoSchedule`) and
/// fails the install naming the agent's pod, the taint and the `tolerations` value, instead of
/// a bare helm timeout.
fn a_fresh_install_on_tainted_nodes_says_why(helm: Helm) {
    sc_e2e::require_embedded!("it taints every node of the cluster");
    let c = Cluster::start();
    c.taint_all_nodes(true);
    let app = c.create_namespace("apps");
    let rel = c.release_ns();
    c.ensure_spc_crd();
    let key = secret_value("account-key");
    c.remember_secret(&key);
    let (settings, protected) = three_connections(&app, &key);
    let files = [
        c.write_values("settings", &settings),
        c.write_values("protected", &protected),
    ];
    let out = c.helm_upgrade(
        helm,
        &[&files[0], &files[1]],
        &["--set", "waitForResult.timeoutSeconds=5"],
    );
    assert!(!out.success(), "the install succeeded: {}", out.all());
    let log = out.all();
    for want in [
        format!("Pod {rel}/sc-agent-"),
        "untolerated taint {CriticalAddonsOnly: true}".to_string(),
        "tolerations[0].key=CriticalAddonsOnly,tolerations[0].operator=Exists".to_string(),
    ] {
        assert!(log.contains(&want), "helm's output lacks {want:?}:\n{log}");
    }
    c.leak_scan(&[]);
}

with_both_helms!(a_fresh_install_on_tainted_nodes_says_why);
