//! Upgrading the extension itself: the objects version 0.1.0 wrote
//! (`tests/e2e/fixtures/upgrade-0.1/`) are loaded into a fresh kubesim, then the release is
//! upgraded to this version's chart with the values recovered from Helm's release record
//! (`helm get values`), as an extension upgrade does. Checked: no connection is lost, no
//! sc-job runs for a connection whose request did not change, phases stay as they were, and a
//! change set in flight is finished or redone exactly once.
//!
//! The fixtures' hashes are rekeyed by the loader (a re-created `sc-protected` has a new uid,
//! an in-place upgrade keeps it). A helm upgrade is a new Helm revision, and a new revision asks
//! again for a connection that failed for good (`docs/internals.md`, "The agent's loop"): such a
//! connection gets exactly one run at the new revision, fails the same way, and no more.

use sc_e2e::fixtures::{
    HELD_SERVICE_ACCOUNT, Hashes, Loaded, journal, listed, live_versions, load_upgrade_fixtures,
    parsed, read_json,
};
use sc_e2e::{Cluster, Helm, JOB, RELEASE, SETTLE, expected, wait_for_state};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The credentials in the fixtures: fake, but scanned for like real ones.
const FIXTURE_SECRETS: [&str; 2] = [
    "fake-account-key-for-fixtures-not-a-secret",
    "fake-cache-key",
];

fn set_dir(set: &str) -> PathBuf {
    sc_e2e::fixtures::upgrade_0_1_dir().join(set)
}

/// What the cluster held right after the load, before the upgrade.
struct Baseline {
    /// Names of the Events in the release namespace.
    events: BTreeSet<String>,
    /// Each connection's journal entries.
    journals: BTreeMap<String, Vec<Value>>,
    /// kind/namespace/name of each materialized object -> (uid, resourceVersion).
    objects: BTreeMap<String, (Value, Value)>,
}

fn baseline(c: &Cluster, dir: &Path, connections: &[&str]) -> Baseline {
    Baseline {
        events: events(c)
            .iter()
            .filter_map(|e| e["metadata"]["name"].as_str().map(str::to_string))
            .collect(),
        journals: connections
            .iter()
            .map(|n| (n.to_string(), journal(c, n)))
            .collect(),
        objects: live_versions(c, dir, "materialized.json"),
    }
}

fn events(c: &Cluster) -> Vec<Value> {
    sc_e2e::fixtures::items(&c.get_json(&["events", "-n", &c.release_ns()]))
}

/// The notes of the Events with `reason` on `object` (kind/name) created since the baseline.
fn new_events_on(c: &Cluster, base: &Baseline, object: &str, reason: &str) -> Vec<String> {
    events(c)
        .into_iter()
        .filter(|e| {
            let io = &e["involvedObject"];
            let on = format!(
                "{}/{}",
                io["kind"].as_str().unwrap_or_default(),
                io["name"].as_str().unwrap_or_default()
            );
            e["reason"] == reason
                && on == object
                && !base
                    .events
                    .contains(e["metadata"]["name"].as_str().unwrap_or_default())
        })
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The notes of the agent's Events with `reason` (on `sc-requests`) since the baseline.
fn new_events(c: &Cluster, base: &Baseline, reason: &str) -> Vec<String> {
    new_events_on(c, base, "ConfigMap/sc-requests", reason)
}

/// The pods the Job controller created for Jobs `sc-job` since the baseline.
fn new_job_pods(c: &Cluster, base: &Baseline) -> Vec<String> {
    new_events_on(c, base, &format!("Job/{JOB}"), "SuccessfulCreate")
}

/// A change set run since the baseline, as the journals of its connections record it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Created {
    id: String,
    revision: i64,
    apply: Vec<String>,
    delete: Vec<String>,
}

/// The change sets sc-job ran since the baseline, from the journals of `connections` (each
/// run records every connection it carried, applied, deleted or failed), in the order of
/// their first record.
fn jobs_created(c: &Cluster, base: &Baseline, connections: &[&str]) -> Vec<Created> {
    let mut entries: Vec<(String, String, Value)> = connections
        .iter()
        .flat_map(|n| {
            new_runs(c, base, n).into_iter().map(move |e| {
                let time = e["time"].as_str().unwrap_or_default().to_string();
                (time, n.to_string(), e)
            })
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<Created> = Vec::new();
    for (_, name, e) in entries {
        let id = e["changeset"].as_str().unwrap_or_default().to_string();
        let i = match out.iter().position(|r| r.id == id) {
            Some(i) => i,
            None => {
                out.push(Created {
                    id,
                    revision: e["revision"].as_i64().unwrap_or_default(),
                    apply: vec![],
                    delete: vec![],
                });
                out.len() - 1
            }
        };
        match e["action"].as_str() {
            Some("delete") => out[i].delete.push(name),
            _ => out[i].apply.push(name),
        }
    }
    for r in &mut out {
        r.apply.sort();
        r.delete.sort();
    }
    out
}

/// sc-job's journal entries of `connection` written since the baseline (the agent's own
/// `JobFailed` entries carry no `action`).
fn new_runs(c: &Cluster, base: &Baseline, connection: &str) -> Vec<Value> {
    let before = base.journals.get(connection).cloned().unwrap_or_default();
    journal(c, connection)
        .into_iter()
        .filter(|e| !e["action"].is_null() && !before.contains(e))
        .collect()
}

/// `helm get values` of the release (what the last revision was installed with), as a values
/// file for the upgrade. Its output holds the protected settings: it stays out of the outputs
/// the leak scan reads.
fn released_values(c: &Cluster) -> (Value, PathBuf) {
    let out = c.run(
        Helm::V3.tool(),
        &[
            "get",
            "values",
            RELEASE,
            "-n",
            &c.release_ns(),
            "-o",
            "json",
        ],
        None,
    );
    let values = parsed(out.ok(), "helm get values");
    let file = c.write_values("released", &values);
    (values, file)
}

/// The connections of `values` (secrets merged, as sc-agent reads them) keyed like the cluster.
fn current_hashes(values: &Value, key: &str) -> BTreeMap<String, String> {
    sc_model::check_connections_keyed(sc_model::connections_subtree(values), key)
        .into_iter()
        .map(|c| (c.name, c.hash))
        .collect()
}

fn start(set: &str) -> (Cluster, Loaded) {
    let c = Cluster::start();
    let loaded = load_upgrade_fixtures(&c, &set_dir(set), Hashes::Rekeyed);
    for s in FIXTURE_SECRETS {
        c.remember_secret(s);
    }
    (c, loaded)
}

/// The status.json of a connection.
fn status(c: &Cluster, connection: &str) -> Value {
    c.metadata_status(connection)
}

fn settled() {
    let dir = set_dir("settled");
    let (c, loaded) = start("settled");
    let ns = c.release_ns();
    let all = [
        "blob",
        "broken",
        "bus",
        "cache",
        "elsewhere",
        "gone",
        "vault",
    ];
    let base = baseline(&c, &dir, &all);
    let before: BTreeMap<String, Value> =
        all.iter().map(|n| (n.to_string(), status(&c, n))).collect();
    let captured_list = read_json(&dir, "list.json");

    let (values, file) = released_values(&c);
    let hashes = current_hashes(&values, &loaded.hash_key);
    let requested: BTreeSet<&str> = hashes.keys().map(String::as_str).collect();
    assert_eq!(
        requested,
        BTreeSet::from(["blob", "broken", "bus", "cache", "elsewhere", "vault"]),
        "the values of the last revision"
    );
    // The recovered values are the ones the fixtures were rendered from: same hashes.
    for (name, hash) in &hashes {
        let requested = &c.metadata(name)["data"]["requested.json"];
        let requested = parsed(requested.as_str().unwrap_or("null"), "requested.json");
        assert_eq!(requested["hash"], hash.as_str(), "requested hash of {name}");
    }

    // Revision 3: the upgrade. `broken` is invalid, so the result hook fails it, as revision 2.
    // Its unknown target type passed 0.1's schema; today's schema refuses it at install, so the
    // upgrade skips the schema to meet the state 0.1 left (as an upgrade that keeps the values
    // of an older chart does when it is forced through).
    let out = c.helm_upgrade(Helm::V3, &[&file], &["--skip-schema-validation"]);
    assert!(
        !out.success(),
        "the upgrade succeeded with an invalid connection requested:\n{}",
        out.all()
    );
    assert!(
        out.all().contains("broken"),
        "the failed upgrade does not name the invalid connection:\n{}",
        out.all()
    );
    let revision = c.get("configmap", &ns, "sc-requests")["metadata"]["annotations"]
        ["sc-extension.io/revision"]
        .as_str()
        .map(str::to_string);
    assert_eq!(revision.as_deref(), Some("3"), "revision of sc-requests");

    // The agent concludes revision 3's change set, removes the metadata of `gone` (its removal
    // was recorded by 0.1.0), and retries `elsewhere` alone at least once.
    wait_for_state(SETTLE, "the upgraded agent to settle", || {
        let runs = jobs_created(&c, &base, &all);
        let retries = runs
            .iter()
            .filter(|r| r.apply == ["elsewhere"] && r.delete.is_empty())
            .count();
        let concluded = new_events(&c, &base, "JobFailed").len();
        let gone = c
            .try_get(
                "configmap",
                &ns,
                &sc_model::names::metadata_config_map_name("gone"),
            )
            .is_none();
        if retries >= 1 && concluded >= 2 && gone {
            Ok(())
        } else {
            Err(format!(
                "created {runs:?}, {concluded} concluded as failed, gone's metadata removed: {gone}"
            ))
        }
    });

    // Every change set since the upgrade: one at revision 3 asking again for the failures, then
    // `elsewhere` alone (retryable).
    let runs = jobs_created(&c, &base, &all);
    let first: Vec<&Created> = runs.iter().filter(|r| r.apply.len() > 1).collect();
    assert_eq!(first.len(), 1, "change sets since the upgrade: {runs:?}");
    assert_eq!(
        (first[0].revision, &first[0].apply, &first[0].delete),
        (
            3,
            &vec!["broken".to_string(), "cache".into(), "elsewhere".into()],
            &vec![]
        ),
        "the change set of revision 3"
    );
    for r in &runs {
        if r.id != first[0].id {
            assert_eq!(
                (r.revision, &r.apply, &r.delete),
                (3, &vec!["elsewhere".to_string()], &vec![]),
                "a retry carried more than elsewhere: {runs:?}"
            );
        }
    }
    // Journals agree: no run for what is Ready or removed; one for each permanent failure (the
    // new revision asks again); every change set's run for `elsewhere`.
    for name in ["blob", "bus", "vault"] {
        assert_eq!(
            new_runs(&c, &base, name),
            Vec::<Value>::new(),
            "runs of {name}"
        );
        assert_eq!(status(&c, name), before[name], "status.json of {name}");
    }
    for (name, reason) in [("broken", "InvalidRequest"), ("cache", "NotManaged")] {
        let runs = new_runs(&c, &base, name);
        assert_eq!(runs.len(), 1, "runs of {name} since the upgrade: {runs:?}");
        assert_eq!(
            (
                &runs[0]["result"],
                &runs[0]["error"]["reason"],
                &runs[0]["revision"]
            ),
            (&json!("Failed"), &json!(reason), &json!(3)),
            "the run of {name}"
        );
        let s = status(&c, name);
        assert_eq!(
            (&s["phase"], &s["error"], &s["revision"]),
            (&json!("Failed"), &before[name]["error"], &json!(3)),
            "status.json of {name}"
        );
    }
    // Journal first: a change set run after it was read cannot make it longer than the list
    // of change sets read next.
    let elsewhere = new_runs(&c, &base, "elsewhere");
    let runs = jobs_created(&c, &base, &all);
    assert!(
        elsewhere.len() >= 2 && elsewhere.len() <= runs.len(),
        "{} runs of elsewhere for {} change sets",
        elsewhere.len(),
        runs.len()
    );
    for r in &elsewhere {
        assert_eq!(
            (&r["result"], &r["error"]["reason"]),
            (&json!("Failed"), &json!("NamespaceNotFound")),
            "a run of elsewhere: {r}"
        );
    }
    // One pod per change set: every run recorded its connections (a pod created after the
    // journals were read may not have yet).
    let pods = new_job_pods(&c, &base);
    assert!(
        runs.len() <= pods.len() && pods.len() <= runs.len() + 1,
        "{} pods created for {} change sets: {pods:?}",
        pods.len(),
        runs.len()
    );
    // Runs are reported by the Job controller and the journals, not by events of the agent's.
    for reason in ["JobCreated", "JobSucceeded"] {
        assert_eq!(
            new_events(&c, &base, reason),
            Vec::<String>::new(),
            "{reason}"
        );
    }

    // Phases as before, `gone` finished (its metadata removed by the agent, its Secret kept).
    let want: BTreeMap<String, Value> = captured_list
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["name"] != "gone")
        .map(|e| (e["name"].as_str().unwrap_or_default().to_string(), e))
        .collect();
    assert_eq!(want.len(), 6, "connections still requested in list.json");
    wait_for_state(SETTLE, "sc-agent list to show the phases as before", || {
        let got = listed(&c);
        if got == want {
            Ok(())
        } else {
            Err(serde_json::to_string(&got).unwrap_or_default())
        }
    });
    // What the Ready connections and `gone` materialized was not touched.
    assert_eq!(
        live_versions(&c, &dir, "materialized.json"),
        base.objects,
        "materialized objects (uid, resourceVersion)"
    );
    let ready: serde_json::Map<String, Value> = ["blob", "bus", "vault"]
        .iter()
        .map(|n| (n.to_string(), values["connections"][n].clone()))
        .collect();
    c.assert_materialized(&expected(&json!({"connections": ready})));
    c.get("secret", "apps", "sc-cache-secret");
    assert!(
        c.try_get("namespace", "", "missing").is_none(),
        "sc-job created a namespace"
    );
    c.leak_scan(&["blob", "bus", "vault", "cache", "elsewhere"]);
}

/// How the change set in flight gets unstuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unstick {
    /// Delete the held Job: the new agent redoes the change set.
    DeleteJob,
    /// Create its ServiceAccount with sc-job's permissions: the held Job finishes it.
    LetJobRun,
}

fn in_flight(how: Unstick) {
    let dir = set_dir("in-flight");
    let (c, loaded) = start("in-flight");
    let ns = c.release_ns();
    let all = ["alpha", "beta", "delta", "gamma"];
    let base = baseline(&c, &dir, &all);
    let held = c.get("job", &ns, JOB);
    let held_id = held["metadata"]["annotations"]["sc-extension.io/changeset-id"].clone();
    assert_eq!(
        held["spec"]["template"]["spec"]["serviceAccountName"], HELD_SERVICE_ACCOUNT,
        "the loaded Job"
    );
    // Hold gamma's metadata so its journal can be read once the agent deletes it.
    let gamma_cm = sc_model::names::metadata_config_map_name("gamma");
    c.kubectl(&[
        "patch",
        "configmap",
        &gamma_cm,
        "-n",
        &ns,
        "--type=merge",
        "-p",
        &json!({"metadata": {"finalizers": [sc_e2e::fixtures::CAPTURE_HOLD]}}).to_string(),
    ])
    .ok();

    let (values, file) = released_values(&c);
    let hashes = current_hashes(&values, &loaded.hash_key);
    assert_eq!(
        hashes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["alpha", "beta", "delta"],
        "the values of the last revision"
    );
    // Revision 4 (no result hook: the release was installed without it).
    c.helm_upgrade(Helm::V3, &[&file], &[]).ok();
    c.kubectl(&[
        "rollout",
        "status",
        "deployment/sc-agent",
        "-n",
        &ns,
        "--timeout=120s",
    ])
    .ok();
    // The new agent leaves the Job in flight alone: it is still the one loaded.
    let job = c.get("job", &ns, JOB);
    assert_eq!(
        job["metadata"]["uid"], held["metadata"]["uid"],
        "the Job in flight"
    );

    match how {
        Unstick::DeleteJob => {
            c.kubectl(&["delete", "job", JOB, "-n", &ns]).ok();
        }
        Unstick::LetJobRun => {
            let subject = json!([{"kind": "ServiceAccount", "name": HELD_SERVICE_ACCOUNT,
                                  "namespace": ns}]);
            let objects = [
                json!({"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": HELD_SERVICE_ACCOUNT, "namespace": ns}}),
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": {"name": HELD_SERVICE_ACCOUNT, "namespace": ns},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                             "name": "sc-job"},
                 "subjects": subject}),
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                 "metadata": {"name": format!("{HELD_SERVICE_ACCOUNT}-{ns}")},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                             "name": format!("sc-job-{ns}")},
                 "subjects": subject}),
            ];
            let stream: Vec<String> = objects.iter().map(Value::to_string).collect();
            c.kubectl_stdin(&["create", "-f", "-"], &stream.join("\n---\n"))
                .ok();
        }
    }

    // Everything requested becomes Ready, gamma's removal is recorded and its metadata deleted.
    wait_for_state(SETTLE, "every connection to be applied", || {
        let got = listed(&c);
        let phases: BTreeMap<&str, &str> = got
            .iter()
            .map(|(n, e)| (n.as_str(), e["phase"].as_str().unwrap_or_default()))
            .collect();
        // gamma is listed while its metadata is held (Deleted).
        let want = BTreeMap::from([
            ("alpha", "Ready"),
            ("beta", "Ready"),
            ("delta", "Ready"),
            ("gamma", "Deleted"),
        ]);
        let gamma = c.get("configmap", &ns, &gamma_cm);
        let deleting = !gamma["metadata"]["deletionTimestamp"].is_null();
        let job_gone = c.try_get("job", &ns, JOB).is_none();
        if phases == want && deleting && job_gone {
            Ok(())
        } else {
            Err(format!(
                "phases {phases:?}, gamma's metadata being deleted: {deleting}, Job gone: {job_gone}"
            ))
        }
    });

    // Each change in flight or pending ran exactly once, in the change sets expected (the held
    // one aside, when it was let run).
    let runs: Vec<Created> = jobs_created(&c, &base, &all)
        .into_iter()
        .filter(|r| json!(r.id) != held_id)
        .collect();
    assert_eq!(runs.len(), 1, "change sets since the upgrade: {runs:?}");
    match how {
        Unstick::DeleteJob => {
            assert_eq!(
                (runs[0].revision, &runs[0].apply, &runs[0].delete),
                (
                    4,
                    &vec!["alpha".to_string(), "beta".into(), "delta".into()],
                    &vec!["gamma".to_string()]
                ),
                "the change set redoing the one in flight"
            );
            assert_ne!(json!(runs[0].id), held_id, "the change set was not redone");
        }
        Unstick::LetJobRun => {
            assert_eq!(
                (runs[0].revision, &runs[0].apply, &runs[0].delete),
                (4, &vec!["alpha".to_string(), "delta".into()], &vec![]),
                "the change set after the one in flight"
            );
        }
    }
    for name in ["alpha", "beta", "delta", "gamma"] {
        let r = new_runs(&c, &base, name);
        assert_eq!(r.len(), 1, "runs of {name} since the upgrade: {r:?}");
        let (action, result) = if name == "gamma" {
            ("delete", "Deleted")
        } else {
            ("apply", "Ready")
        };
        assert_eq!(
            (&r[0]["action"], &r[0]["result"]),
            (&json!(action), &json!(result)),
            "the run of {name}"
        );
        let id = &r[0]["changeset"];
        let in_held = *id == held_id;
        let want_held = how == Unstick::LetJobRun && (name == "beta" || name == "gamma");
        assert_eq!(in_held, want_held, "change set of the run of {name}: {id}");
        if name != "gamma" {
            assert_eq!(
                status(&c, name)["appliedHash"].as_str(),
                Some(hashes[name].as_str()),
                "applied hash of {name}"
            );
        }
    }
    // Outcomes: one run per change set since the upgrade (the held one, when it was let run,
    // and the agent's), all successful, reported by the journals and the Job controller.
    let ran: BTreeSet<String> = all
        .iter()
        .flat_map(|n| new_runs(&c, &base, n))
        .map(|e| e["changeset"].as_str().unwrap_or_default().to_string())
        .collect();
    let want_outcomes = match how {
        Unstick::DeleteJob => 1,
        Unstick::LetJobRun => 2,
    };
    assert_eq!(ran.len(), want_outcomes, "change sets run: {ran:?}");
    for reason in ["JobFailed", "JobCreated", "JobSucceeded"] {
        assert_eq!(
            new_events(&c, &base, reason),
            Vec::<String>::new(),
            "{reason}"
        );
    }
    let pods = new_job_pods(&c, &base);
    assert_eq!(pods.len(), want_outcomes, "pods created: {pods:?}");

    // Release gamma's metadata: the agent's delete completes, gamma is no longer listed; its
    // Secret (deletionPolicy Delete) is gone, the others hold what this version renders.
    c.kubectl(&[
        "patch",
        "configmap",
        &gamma_cm,
        "-n",
        &ns,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .ok();
    c.wait_metadata_gone(&["gamma"]);
    assert!(
        c.try_get("secret", "apps", "sc-gamma-secret").is_none(),
        "Secret sc-gamma-secret (deletionPolicy Delete) is still there"
    );
    let captured: BTreeSet<String> = read_json(&dir, "list.json")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .filter(|n| n != "gamma")
        .collect();
    assert_eq!(
        listed(&c).keys().cloned().collect::<BTreeSet<_>>(),
        captured,
        "connections listed after the upgrade"
    );
    c.assert_materialized(&expected(&values));
    c.leak_scan(&["alpha", "beta", "delta"]);
}

#[test]
fn settled_set_upgrades_without_reruns() {
    sc_e2e::require_embedded!(
        "loads captured objects (Helm's release records included) into the fixed namespaces sc-system and apps of a fresh cluster"
    );
    settled();
}

#[test]
fn in_flight_set_redone_once_when_its_job_is_deleted() {
    sc_e2e::require_embedded!(
        "loads captured objects (Helm's release records included) into the fixed namespaces sc-system and apps of a fresh cluster"
    );
    in_flight(Unstick::DeleteJob);
}

#[test]
fn in_flight_set_finished_once_by_its_held_job() {
    sc_e2e::require_embedded!(
        "loads captured objects (Helm's release records included) into the fixed namespaces sc-system and apps of a fresh cluster"
    );
    in_flight(Unstick::LetJobRun);
}
