//! Drift repair: what sc-job materialized is kept true by the agent, through the usual path
//! (a change set and an sc-job run). A deleted Secret comes back; a value changed with
//! `kubectl patch` is restored and the Warning event names the field manager; a Secret that
//! lost its `managed-by` label gets it back; a connection with `driftPolicy: Report` is only
//! reported (phase Drifted, an event, no run); another writer fighting over a Secret ends
//! `Failed/Contested` after a bounded number of runs; and `sc-agent reapply` forces a run.

use sc_e2e::{Cluster, Helm, SETTLE, secret_value, wait_for_state};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Repairs allowed per connection in the scenario (`agent.drift.repairs`).
const REPAIRS: usize = 2;

fn connection(ns: &str, account: &str, policy: &str) -> Value {
    json!({
        "namespace": ns,
        "targetType": "storage-blob",
        "authType": "secret",
        "clientType": "python",
        "parameters": {"accountName": account},
        "driftPolicy": policy,
    })
}

/// The data of Secret `name` in `ns` (base64 as stored), `None` when it does not exist.
fn secret_data(c: &Cluster, ns: &str, name: &str) -> Option<(String, Value)> {
    let s = c.try_get("secret", ns, name)?;
    Some((
        s["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        s["data"].clone(),
    ))
}

/// sc-job's journal entries of `connection`.
fn runs(c: &Cluster, connection: &str) -> usize {
    let cm = c.metadata(connection);
    let journal: Vec<Value> = cm["data"]["journal.json"]
        .as_str()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    journal.iter().filter(|e| e["action"] == "apply").count()
}

/// The phase `sc-agent list` shows for `connection`.
fn phase(c: &Cluster, connection: &str) -> String {
    let out = c.sc_agent(&["list", "-o", "json", "-n", &c.release_ns()]);
    let rows: Value = serde_json::from_str(out.ok()).unwrap_or(Value::Null);
    rows.as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == connection)
        .and_then(|r| r["phase"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The notes of the Warning events with `reason` in the release namespace.
/// The notes of the events with `reason` in the release namespace.
fn notes(c: &Cluster, reason: &str) -> Vec<String> {
    c.event_notes(&c.release_ns(), reason)
}

/// Another writer: kubectl run with `args(i)` (i = 1, 2, ...) every `pace`, at its own pace
/// (not a wait for a condition), until [`KubectlLoop::stop`].
struct KubectlLoop {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

fn kubectl_loop(
    c: &Cluster,
    pace: Duration,
    args: impl Fn(u64) -> Vec<String> + Send + 'static,
) -> KubectlLoop {
    let stop = Arc::new(AtomicBool::new(false));
    let kubeconfig = c.kubeconfig().to_path_buf();
    let thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) {
                i += 1;
                let _ = std::process::Command::new(sc_e2e::tool("kubectl"))
                    .env("KUBECONFIG", &kubeconfig)
                    .args(args(i))
                    .output();
                std::thread::sleep(pace);
            }
        })
    };
    KubectlLoop { stop, thread }
}

impl KubectlLoop {
    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.join().expect("the kubectl loop");
    }
}

/// The scenario, with the agent looking at the Secrets by name every second, or (`watch`)
/// watching them by label with a look every hour only, so that the watch must see each drift.
fn drift(helm: Helm, watch: bool) {
    let c = Cluster::start();
    let apps = c.create_namespace("apps");
    let key = secret_value("drift-key");
    let other_key = secret_value("drift-other-key");
    c.remember_secret(&key);
    c.remember_secret(&other_key);
    let settings = json!({"connections": {
        "blob": connection(&apps, "driftrepair", "Repair"),
        "watched": connection(&apps, "driftreport", "Report"),
    }});
    let protected = json!({"connections": {
        "blob": {"secrets": {"accountKey": key}},
        "watched": {"secrets": {"accountKey": other_key}},
    }});
    let files = [
        c.write_values("settings", &settings),
        c.write_values("protected", &protected),
    ];
    let limits = [
        if watch {
            "--set=agent.drift.watchSecrets=true,agent.drift.intervalSeconds=3600".to_string()
        } else {
            "--set=agent.drift.intervalSeconds=1".to_string()
        },
        format!("--set=agent.drift.repairs={REPAIRS}"),
    ];
    let limits: Vec<&str> = limits.iter().map(String::as_str).collect();
    c.helm_upgrade(helm, &[&files[0], &files[1]], &limits).ok();
    c.wait_job_gone();
    let rel = c.release_ns();

    // 1. A deleted Secret comes back, with the same data.
    let (uid, data) = secret_data(&c, &apps, "sc-blob-secret").expect("the Secret");
    let runs_before = runs(&c, "blob");
    c.kubectl(&["delete", "secret", "sc-blob-secret", "-n", &apps])
        .ok();
    wait_for_state(
        SETTLE,
        "the deleted Secret to be recreated",
        || match secret_data(&c, &apps, "sc-blob-secret") {
            Some((new_uid, new_data)) if new_uid != uid => {
                assert_eq!(new_data, data, "the recreated Secret has other data");
                Ok(())
            }
            other => Err(format!("{:?}", other.map(|o| o.0))),
        },
    );
    let deleted = notes(&c, "Drifted");
    assert!(
        deleted.iter().any(|n| n.contains(&format!(
            "connection blob: secret {apps}/sc-blob-secret was deleted; repairing"
        ))),
        "no Drifted event names the deleted Secret: {deleted:?}"
    );
    wait_for_state(SETTLE, "blob to be Ready again", || {
        let p = phase(&c, "blob");
        (p == "Ready").then_some(()).ok_or(p)
    });
    // One deletion, one repair: its pending mark goes once its run is under way (a repair
    // that finished before the agent's next step was otherwise run again and again).
    wait_for_state(SETTLE, "blob's repair to be no longer pending", || {
        let drift: Value = c.metadata("blob")["data"]["drift.json"]
            .as_str()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(Value::Null);
        (drift["repairPending"] != true)
            .then_some(())
            .ok_or(drift.to_string())
    });
    assert_eq!(
        runs(&c, "blob"),
        runs_before + 1,
        "one deleted Secret, one repair run"
    );

    // 2. A value changed by hand is restored and a key added by hand removed (an apply alone
    // would leave a field of another manager); the event names kubectl's field manager.
    let changed = json!({"data": {"AZURE_STORAGEBLOB_CONNECTIONSTRING": "Y2hhbmdlZA==",
                                   "ADDED_BY_HAND": "YWRkZWQ="}});
    c.kubectl(&[
        "patch",
        "secret",
        "sc-blob-secret",
        "-n",
        &apps,
        "--type=merge",
        "-p",
        &changed.to_string(),
    ])
    .ok();
    wait_for_state(SETTLE, "the patched value to be restored", || {
        let now = secret_data(&c, &apps, "sc-blob-secret").map(|d| d.1);
        (now.as_ref() == Some(&data))
            .then_some(())
            .ok_or_else(|| "still changed".to_string())
    });
    wait_for_state(SETTLE, "a Drifted event naming kubectl-patch", || {
        let all = notes(&c, "Drifted");
        all.iter()
            .any(|n| {
                n.contains(&format!(
                    "secret {apps}/sc-blob-secret was written by field manager kubectl-patch"
                ))
            })
            .then_some(())
            .ok_or(format!("{all:?}"))
    });

    // 3. driftPolicy Report: phase Drifted and an event, no run.
    let report_runs = runs(&c, "watched");
    c.kubectl(&["delete", "secret", "sc-watched-secret", "-n", &apps])
        .ok();
    wait_for_state(SETTLE, "watched to be Drifted", || {
        let p = phase(&c, "watched");
        (p == "Drifted").then_some(()).ok_or(p)
    });
    let reported = notes(&c, "Drifted");
    assert!(
        reported.iter().any(|n| n.contains(&format!(
            "connection watched: secret {apps}/sc-watched-secret was deleted; driftPolicy is Report"
        ))),
        "{reported:?}"
    );
    assert_eq!(runs(&c, "watched"), report_runs, "Report ran sc-job");
    assert!(c.try_get("secret", &apps, "sc-watched-secret").is_none());
    let shown = c.sc_agent(&["show", "watched", "-n", &rel]);
    assert!(
        shown
            .ok()
            .contains(&format!("secret {apps}/sc-watched-secret was deleted")),
        "{}",
        shown.all()
    );

    // 4. sc-agent reapply forces a run: the Report connection's Secret is back.
    c.sc_agent(&["reapply", "watched", "-n", &rel]).ok();
    wait_for_state(SETTLE, "reapply to restore the Secret", || {
        c.try_get("secret", &apps, "sc-watched-secret")
            .map(|_| ())
            .ok_or_else(|| "absent".to_string())
    });
    wait_for_state(SETTLE, "watched to be Ready after reapply", || {
        let p = phase(&c, "watched");
        let annotated =
            c.metadata("watched")["metadata"]["annotations"]["sc-extension.io/reapply"].is_string();
        (p == "Ready" && !annotated)
            .then_some(())
            .ok_or(format!("{p}, annotation kept: {annotated}"))
    });
    assert_eq!(runs(&c, "watched"), report_runs + 1);

    // 5. Another writer fighting over the Secret: a bounded number of runs, then
    // Failed/Contested naming it. reapply first clears the repairs counted so far.
    c.sc_agent(&["reapply", "blob", "-n", &rel]).ok();
    let before = runs(&c, "blob") + 1;
    wait_for_state(SETTLE, "the reapply run of blob", || {
        let n = runs(&c, "blob");
        (n >= before && phase(&c, "blob") == "Ready")
            .then_some(())
            .ok_or(format!("{n} runs"))
    });
    // The fighter's own pace (a controller's resync).
    let apps_ = apps.clone();
    let fighter = kubectl_loop(&c, Duration::from_millis(700), move |i| {
        use base64::Engine as _;
        let value = base64::engine::general_purpose::STANDARD.encode(format!("fight-{i}"));
        [
            "patch",
            "secret",
            "sc-blob-secret",
            "-n",
            &apps_,
            "--type=merge",
            "--field-manager=fighter",
            "-p",
            &format!("{{\"data\":{{\"AZURE_STORAGEBLOB_CONNECTIONSTRING\":\"{value}\"}}}}"),
        ]
        .map(str::to_string)
        .to_vec()
    });
    wait_for_state(SETTLE, "blob to be Failed", || {
        let p = phase(&c, "blob");
        (p == "Failed").then_some(()).ok_or(p)
    });
    fighter.stop();
    let repairs = runs(&c, "blob") - before;
    assert!(
        (1..=REPAIRS).contains(&repairs),
        "{repairs} repair runs while contested, at most {REPAIRS} allowed"
    );
    let shown = c.sc_agent(&["show", "blob", "-n", &rel]).ok().to_string();
    assert!(
        shown.contains("Error:      Contested:") && shown.contains("by field manager fighter"),
        "{shown}"
    );
    assert!(shown.contains("sc-agent reapply blob"), "{shown}");
    let contested = notes(&c, "Contested");
    assert!(
        contested.iter().any(|n| n.contains("fighter")),
        "{contested:?}"
    );

    // reapply ends the contest once the writer stopped: the value is ours again.
    c.sc_agent(&["reapply", "blob", "-n", &rel]).ok();
    wait_for_state(SETTLE, "blob to be Ready after the contest", || {
        let p = phase(&c, "blob");
        let now = secret_data(&c, &apps, "sc-blob-secret").map(|d| d.1);
        (p == "Ready" && now.as_ref() == Some(&data))
            .then_some(())
            .ok_or(p)
    });
    // 6. A Secret whose managed-by label was removed is taken back: the label returns
    // (the reapply above cleared the repairs counted so far).
    c.kubectl(&[
        "label",
        "secret",
        "sc-blob-secret",
        "-n",
        &apps,
        "app.kubernetes.io/managed-by-",
    ])
    .ok();
    wait_for_state(SETTLE, "the removed label to be restored", || {
        let s = c.try_get("secret", &apps, "sc-blob-secret");
        let label = s
            .as_ref()
            .and_then(|s| s["metadata"]["labels"]["app.kubernetes.io/managed-by"].as_str());
        (label == Some("sc-extension"))
            .then_some(())
            .ok_or(format!("label {label:?}"))
    });
    assert_eq!(
        secret_data(&c, &apps, "sc-blob-secret")
            .map(|d| d.1)
            .as_ref(),
        Some(&data),
        "the relabelled Secret has other data"
    );
    wait_for_state(SETTLE, "a Drifted event naming the lost label", || {
        let all = notes(&c, "Drifted");
        all.iter()
            .any(|n| n.contains(&format!("secret {apps}/sc-blob-secret lost its label")))
            .then_some(())
            .ok_or(format!("{all:?}"))
    });
    wait_for_state(SETTLE, "blob to be Ready after the label came back", || {
        let p = phase(&c, "blob");
        (p == "Ready").then_some(()).ok_or(p)
    });
    c.leak_scan(&["blob", "watched"]);
}

#[test]
fn drift_helm3() {
    drift(Helm::V3, false);
}

#[test]
fn drift_helm4_watching_secrets() {
    drift(Helm::V4, true);
}

/// A writer that deletes the Secret as soon as it is back (before any look of the agent sees
/// it restored): each deletion read after a repair ran is a new repair, so after a bounded
/// number of runs the connection is `Failed/Contested`; `reapply` restores it once the
/// deleter stopped.
#[test]
fn a_secret_deleted_as_soon_as_it_is_back_is_contested() {
    let c = Cluster::start();
    let apps = c.create_namespace("apps");
    let key = secret_value("drift-deleter-key");
    c.remember_secret(&key);
    let settings = json!({"connections": {"blob": connection(&apps, "driftdeleter", "Repair")}});
    let protected = json!({"connections": {"blob": {"secrets": {"accountKey": key}}}});
    let files = [
        c.write_values("settings", &settings),
        c.write_values("protected", &protected),
    ];
    let limits = format!("--set=agent.drift.intervalSeconds=1,agent.drift.repairs={REPAIRS}");
    c.helm_upgrade(Helm::V4, &[&files[0], &files[1]], &[&limits])
        .ok();
    c.wait_job_gone();
    let rel = c.release_ns();
    let (_, data) = secret_data(&c, &apps, "sc-blob-secret").expect("the Secret");
    let before = runs(&c, "blob");

    // The deleter's own pace.
    let apps_ = apps.clone();
    let deleter = kubectl_loop(&c, Duration::from_millis(100), move |_| {
        [
            "delete",
            "secret",
            "sc-blob-secret",
            "-n",
            &apps_,
            "--ignore-not-found",
            "--wait=false",
        ]
        .map(str::to_string)
        .to_vec()
    });
    wait_for_state(SETTLE, "blob to be Failed", || {
        let p = phase(&c, "blob");
        (p == "Failed").then_some(()).ok_or(p)
    });
    deleter.stop();
    let repairs = runs(&c, "blob") - before;
    assert!(
        (1..=REPAIRS).contains(&repairs),
        "{repairs} repair runs while contested, at most {REPAIRS} allowed"
    );
    let shown = c.sc_agent(&["show", "blob", "-n", &rel]).ok().to_string();
    assert!(
        shown.contains("Error:      Contested:") && shown.contains("was deleted, again after"),
        "{shown}"
    );
    // reapply ends the contest once the deleter stopped: the Secret is back as it was.
    c.sc_agent(&["reapply", "blob", "-n", &rel]).ok();
    wait_for_state(SETTLE, "blob to be Ready after the contest", || {
        let p = phase(&c, "blob");
        let now = secret_data(&c, &apps, "sc-blob-secret").map(|d| d.1);
        (p == "Ready" && now.as_ref() == Some(&data))
            .then_some(())
            .ok_or(p)
    });
    c.leak_scan(&["blob"]);
}
