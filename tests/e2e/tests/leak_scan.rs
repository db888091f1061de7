//! The leak scan itself: each of its surfaces reads what it names (not an error or nothing),
//! and a fake secret value placed on a surface makes the scan fail naming that surface.
//! A release with a Storage Blob connection (a secret) and a workload-identity connection
//! (a federated credential); its Secret is deleted (a `Drifted` event) and the connection
//! reapplied with `sc-agent reapply`.

use sc_e2e::{Cluster, Helm, SETTLE, secret_value, wait_for_state};
use serde_json::json;

#[test]
fn every_surface_is_read_and_a_planted_value_is_found() {
    let c = Cluster::start();
    let apps = c.create_namespace("apps");
    let rel = c.release_ns();
    let key = secret_value("leak-scan-key");
    c.remember_secret(&key);
    let settings = json!({"connections": {
        "blob": {"namespace": apps, "targetType": "storage-blob", "authType": "secret",
                 "clientType": "python", "parameters": {"accountName": "e2eleak"},
                 "driftPolicy": "Report"},
        "bus": {"namespace": apps, "targetType": "servicebus", "authType": "workloadIdentity",
                "clientType": "dotnet",
                "parameters": {"namespaceName": "e2ebus",
                               "clientId": "0a1b2c3d-0000-4000-8000-000000000001"}},
    }});
    let protected = json!({"connections": {"blob": {"secrets": {"accountKey": key}}}});
    let files = [
        c.write_values("settings", &settings),
        c.write_values("protected", &protected),
    ];
    c.helm_upgrade(Helm::V3, &[&files[0], &files[1]], &[]).ok();
    c.wait_job_gone();

    // Drift: the Secret is deleted; with driftPolicy Report the agent posts `Drifted`.
    c.kubectl(&["delete", "secret", "sc-blob-secret", "-n", &apps])
        .ok();
    wait_for_state(SETTLE, "a Drifted event", || {
        let events = c
            .kubectl(&["get", "events", "-n", &rel, "-o", "json"])
            .all();
        if events.contains("\"Drifted\"") {
            Ok(())
        } else {
            Err("no Drifted event yet".to_string())
        }
    });
    c.sc_agent(&["reapply", "blob", "-n", &rel]).ok();
    wait_for_state(SETTLE, "reapply to restore the Secret", || {
        c.try_get("secret", &apps, "sc-blob-secret")
            .map(|_| ())
            .ok_or_else(|| "no Secret yet".to_string())
    });
    c.wait_job_gone();

    // Each surface reads what it names.
    let surfaces = c.leak_surfaces();
    let find = |prefix: &str| -> String {
        surfaces
            .iter()
            .filter(|(place, _)| place.starts_with(prefix))
            .map(|(_, text)| text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let expect = [
        ("objects: kubectl get events.events.k8s.io", "\"Drifted\""),
        ("drift events", "sc-blob-secret"),
        ("logs", "sc-job"),
        ("commands: output #", "reapply"),
        ("notes", "federated-credential create"),
        (
            "federated credentials: sc-agent plan",
            "api://AzureADTokenExchange",
        ),
        (
            "federated credentials: sc-agent plan",
            "https://issuer.example/leak-scan",
        ),
        ("federated credentials: sc-agent wait", "bus"),
    ];
    for (prefix, needle) in expect {
        let text = find(prefix);
        assert!(
            text.contains(needle),
            "the leak surface {prefix:?} does not show {needle:?}:\n{}",
            text.chars().take(3000).collect::<String>()
        );
    }
    let plan = find("federated credentials: sc-agent plan");
    assert!(
        !plan.contains("error") && plan.contains("sc-blob-secret"),
        "sc-agent plan of the release's values failed:\n{plan}"
    );
    if sc_e2e::workspace_root().join("dist/images").is_dir() {
        assert!(
            find("images").contains("\"architecture\""),
            "no image config read from dist/images"
        );
    }
    if c.run("sc-agent", &["completion", "--help"], None).success() {
        assert!(!find("completion").is_empty(), "no completion script read");
    }
    c.leak_scan(&["blob", "bus"]);

    // A fake value planted in a Drifted event is found, and the surface named.
    let planted = secret_value("planted-in-an-event");
    c.apply(&json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "leak-scan-probe", "namespace": rel},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "leak-scan-probe", "reportingInstance": "probe",
        "action": "Probe", "reason": "Drifted", "type": "Warning",
        "regarding": {"kind": "ConfigMap", "namespace": rel, "name": "sc-requests"},
        "note": format!("probe {planted}"),
    }));
    c.remember_secret(&planted);
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.scan_cluster()))
        .expect_err("the scan missed a value planted in a Drifted event");
    let message = found.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("drift events") || message.contains("objects: kubectl get events"),
        "{message}"
    );
    c.kubectl(&[
        "delete",
        "events.events.k8s.io",
        "leak-scan-probe",
        "-n",
        &rel,
    ])
    .ok();
}
