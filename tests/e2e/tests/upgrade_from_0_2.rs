//! Upgrading over the formats added after 0.1.0 (`tests/e2e/fixtures/upgrade-0.2/drift`):
//! `drift.json` in metadata ConfigMaps (a `Drifted` connection and a `Failed/Contested` one),
//! a concluded change set whose entry carries `cause: repair`, and a Deployment with sc-job's
//! record (`sc-extension.io/injected-*`) and roll-out annotation
//! (`sc-extension.io/restarted-for-*`). The set is loaded into a fresh kubesim and the release
//! upgraded to this chart with the values of its Helm record, as an extension upgrade does.
//! Checked: nothing is lost, no sc-job runs for the unchanged Ready connections, the Drifted
//! connection stays Drifted without a run (driftPolicy Report), the workload is neither
//! patched nor rolled out again, and nothing leaks.

use sc_e2e::fixtures::{
    Hashes, journal, listed, live_versions, load_upgrade_fixtures, parsed, read_json,
    upgrade_0_2_dir,
};
use sc_e2e::{Cluster, Helm, RELEASE, SETTLE, wait_for_state};
use serde_json::Value;
use std::collections::BTreeMap;

const FIXTURE_SECRET: &str = "fake-account-key-for-fixtures-not-a-secret";

/// sc-job's journal entries of `connection` that record a run (`action` set).
fn runs(c: &Cluster, connection: &str) -> Vec<Value> {
    journal(c, connection)
        .into_iter()
        .filter(|e| !e["action"].is_null())
        .collect()
}

#[test]
fn drift_set_upgrades_without_reruns() {
    let dir = upgrade_0_2_dir().join("drift");
    let c = Cluster::start();
    let loaded = load_upgrade_fixtures(&c, &dir, Hashes::Rekeyed);
    assert!(!loaded.rekeyed.is_empty(), "no hash was rekeyed");
    c.remember_secret(FIXTURE_SECRET);
    let ns = c.release_ns();
    let all = ["fought", "rolled", "steady", "watched"];
    let runs_before: BTreeMap<&str, Vec<Value>> = all.iter().map(|n| (*n, runs(&c, n))).collect();
    let status_before: BTreeMap<&str, Value> =
        all.iter().map(|n| (*n, c.metadata_status(n))).collect();
    let drift_before: BTreeMap<&str, Value> = all
        .iter()
        .map(|n| (*n, c.metadata(n)["data"]["drift.json"].clone()))
        .collect();
    let materialized = live_versions(&c, &dir, "materialized.json");
    let workloads = live_versions(&c, &dir, "workloads.json");
    assert_eq!(workloads.len(), 1, "the Deployment web was not loaded");
    let web_before = c.get("deployment", "apps", "web");
    let captured_list = parsed(&read_json(&dir, "list.json").to_string(), "list.json");

    // The upgrade, with the values of the release's record.
    let out = c.run(
        Helm::V3.tool(),
        &["get", "values", RELEASE, "-n", &ns, "-o", "json"],
        None,
    );
    let values = parsed(out.ok(), "helm get values");
    let file = c.write_values("released", &values);
    // The result hook settles at once: the Contested connection fails the upgrade (nothing
    // runs it again before an operator's `sc-agent reapply`), the Drifted one under
    // `driftPolicy: Report` is shown as such; neither is waited for.
    let out = c.helm_upgrade(Helm::V3, &[&file], &[]);
    assert!(!out.success(), "the upgrade succeeded:\n{}", out.all());
    let log = out.all();
    assert!(log.contains("fought: Failed: Contested"), "{log}");
    assert!(
        log.contains("watched: Drifted (driftPolicy Report"),
        "{log}"
    );
    assert!(
        !log.contains("timed out"),
        "the hook waited for its timeout:\n{log}"
    );
    let revision = c.get("configmap", &ns, "sc-requests")["metadata"]["annotations"]
        ["sc-extension.io/revision"]
        .as_str()
        .map(str::to_string);
    assert_eq!(revision.as_deref(), Some("2"), "revision of sc-requests");

    // The agent settles: no Job left and every connection with its phase.
    wait_for_state(SETTLE, "the upgraded agent to settle", || {
        if c.try_get("job", &ns, sc_e2e::JOB).is_some_and(|j| {
            !sc_e2e::fixtures::job_finished(&j, "Failed")
                && !sc_e2e::fixtures::job_finished(&j, "Complete")
        }) {
            return Err("a Job is running".to_string());
        }
        let got = listed(&c);
        let phases: Vec<(&str, &str)> = all
            .iter()
            .map(|n| {
                (
                    *n,
                    got.get(*n).and_then(|e| e["phase"].as_str()).unwrap_or(""),
                )
            })
            .collect();
        if phases
            .iter()
            .any(|(_, p)| p.is_empty() || *p == "Pending" || *p == "Applying")
        {
            Err(format!("{phases:?}"))
        } else {
            Ok(())
        }
    });

    // Nothing lost: every connection is listed with its objects.
    let got = listed(&c);
    let want: BTreeMap<String, Value> = captured_list
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e["name"].as_str().unwrap_or_default().to_string(), e))
        .collect();
    for name in all {
        assert_eq!(
            got[name]["objects"], want[name]["objects"],
            "objects of {name} after the upgrade"
        );
    }
    // No run for the unchanged Ready connections, nor for the Drifted one (Report).
    for name in ["rolled", "steady", "watched"] {
        assert_eq!(runs(&c, name), runs_before[name], "runs of {name}");
        assert_eq!(
            c.metadata_status(name),
            status_before[name],
            "status.json of {name}"
        );
        assert_eq!(got[name]["phase"], want[name]["phase"], "phase of {name}");
    }
    assert_eq!(
        c.metadata("watched")["data"]["drift.json"],
        drift_before["watched"],
        "drift.json of the Drifted connection"
    );
    assert!(
        c.try_get("secret", "apps", "sc-watched-secret").is_none(),
        "the Drifted connection (driftPolicy Report) was repaired by the upgrade"
    );
    // The Ready connections' objects and the workload were not written.
    for (key, v) in &materialized {
        if key.contains("sc-rolled-") || key.contains("sc-steady-") {
            assert_eq!(
                live_versions(&c, &dir, "materialized.json").get(key),
                Some(v),
                "{key} was written"
            );
        }
    }
    assert_eq!(
        live_versions(&c, &dir, "workloads.json"),
        workloads,
        "the Deployment web was written"
    );
    let web = c.get("deployment", "apps", "web");
    assert_eq!(
        web["spec"], web_before["spec"],
        "web was patched or rolled out"
    );
    // The contested connection stays Failed/Contested, without a run: its request did not
    // change, and only `sc-agent reapply` ends a contest.
    assert_eq!(runs(&c, "fought"), runs_before["fought"], "runs of fought");
    assert_eq!(got["fought"]["phase"], "Failed", "phase of fought");
    // Its contest is kept (the objects it lists are observed again: the loaded Secret was
    // written by the loader, not by the other writer). Its repairs are not compared: they
    // leave the count once older than the window (`agent.drift.windowSeconds`), and the
    // fixture's are as old as the capture.
    let drift = |v: &Value| parsed(v.as_str().unwrap_or("null"), "drift.json");
    let (now, then) = (
        drift(&c.metadata("fought")["data"]["drift.json"]),
        drift(&drift_before["fought"]),
    );
    for key in ["contested", "hash"] {
        assert_eq!(
            now[key], then[key],
            "drift.json {key} of the contested connection"
        );
    }
    assert!(now["contested"].is_object(), "{now}");
    let shown = c.sc_agent(&["show", "fought", "-n", &ns]).ok().to_string();
    assert!(shown.contains("Contested"), "{shown}");
    c.leak_scan(&["fought", "rolled", "steady", "watched"]);
}
