//! Scenario 3: a connection whose Secret name is taken by a foreign Secret fails the upgrade
//! with the reason; the documented debugging flow (`kubectl get job`, `describe`, `logs`)
//! names the object and the remedy; once the foreign Secret is gone the next upgrade succeeds.
//! On kubesim, the pods run from the shipped image archives (`make images`). The release sets
//! `job.podSecurityContext` and `job.securityContext`, and the failed sc-job's pod shows them.

use sc_e2e::{
    Cluster, Helm, JOB, merged, secret_value, skipped, three_connections, with_both_helms,
};

/// Security contexts of sc-job that differ from the defaults, harmless on any cluster.
const JOB_SECURITY: [&str; 2] = [
    "--set=job.podSecurityContext.supplementalGroups={4242}",
    "--set=job.securityContext.runAsUser=65532",
];
use serde_json::{Value, json};

fn cache(ns: &str, key: &str) -> (Value, Value) {
    (
        json!({"connections": {"cache": {
            "namespace": ns,
            "targetType": "redis",
            "authType": "secret",
            "clientType": "python",
            "parameters": {"server": "e2e-cache"},
        }}}),
        json!({"connections": {"cache": {"secrets": {"accessKey": key}}}}),
    )
}

fn failure(helm: Helm) {
    let c = Cluster::start_from_images();
    let apps = c.create_namespace("apps");
    let rel = c.release_ns();
    let key = secret_value("cache-key");
    c.remember_secret(&key);
    let foreign = secret_value("foreign");
    c.remember_secret(&foreign);
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "sc-cache-secret",
        "-n",
        &apps,
        &format!("--from-literal=password={foreign}"),
    ])
    .ok();

    // Revision 1: one healthy connection.
    let blob_key = secret_value("account-key");
    c.remember_secret(&blob_key);
    let (three, three_protected) = three_connections(&apps, &blob_key);
    let blob = json!({"connections": {"blob": three["connections"]["blob"]}});
    let blob_files = [
        c.write_values("blob", &blob),
        c.write_values("blob-protected", &three_protected),
    ];
    c.helm_upgrade(helm, &[&blob_files[0], &blob_files[1]], &JOB_SECURITY)
        .ok();
    c.wait_job_gone();
    c.assert_deployed(helm, 1);

    // Revision 2 adds cache, whose Secret name is taken.
    let (cache_settings, cache_protected) = cache(&apps, &key);
    let settings = merged(&[&blob, &cache_settings]);
    let protected = merged(&[&three_protected, &cache_protected]);
    let files = [
        c.write_values("settings", &settings),
        c.write_values("protected", &protected),
    ];
    let out = c.helm_upgrade(helm, &[&files[0], &files[1]], &JOB_SECURITY);
    assert!(
        !out.success(),
        "the upgrade succeeded despite the foreign Secret:\n{}",
        out.all()
    );
    let list = c.helm(helm, &["list", "-n", &rel]);
    assert!(
        list.ok().contains("failed"),
        "`helm list -n {rel}` does not show the failed release:\n{}",
        list.stdout
    );

    // The reason, as recorded by sc-job, is what helm printed (the wait hook's log).
    let status = c.metadata_status("cache");
    assert_eq!(status["phase"], "Failed", "status of cache: {status}");
    let remedy = status["error"]["remedy"]
        .as_str()
        .expect("a recorded remedy")
        .to_string();
    assert!(!remedy.is_empty(), "empty remedy: {status}");
    let printed = out.all();
    assert!(
        printed.contains("sc-cache-secret"),
        "helm's output does not name the Secret:\n{printed}"
    );
    assert!(
        printed.contains(&remedy),
        "helm's output does not give the remedy {remedy:?}:\n{printed}"
    );

    // The documented flow.
    let jobs = c.kubectl(&["get", "job", "-n", &rel]);
    assert!(
        jobs.ok().contains(JOB),
        "`kubectl get job -n {rel}` does not list sc-job:\n{}",
        jobs.stdout
    );
    let describe = c.kubectl(&["describe", "job/sc-job", "-n", &rel]);
    let text = describe.ok();
    assert!(
        text.contains("sc-cache-secret"),
        "`kubectl describe job/sc-job` does not name the Secret:\n{text}"
    );
    assert!(
        text.contains(&remedy),
        "`kubectl describe job/sc-job` does not give the remedy:\n{text}"
    );
    let logs = c.kubectl(&["logs", "job/sc-job", "-n", &rel]);
    let text = logs.ok();
    assert!(
        text.contains("sc-cache-secret"),
        "`kubectl logs job/sc-job` does not name the Secret:\n{text}"
    );
    assert!(
        text.contains(&remedy),
        "`kubectl logs job/sc-job` does not give the remedy:\n{text}"
    );
    // The failed sc-job's pod is kept: it has the configured security contexts, the rest of
    // the restricted defaults, and ran from the sc-job image.
    let pods = c.get_json(&["pods", "-n", &rel, "-l", &format!("job-name={JOB}")]);
    let pod = &pods["items"][0];
    let spec = &pod["spec"];
    assert_eq!(
        spec["securityContext"]["supplementalGroups"],
        serde_json::json!([4242]),
        "job.podSecurityContext did not reach the sc-job pod: {}",
        spec["securityContext"]
    );
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    let csc = &spec["containers"][0]["securityContext"];
    assert_eq!(
        csc["runAsUser"], 65532,
        "job.securityContext did not reach the sc-job container: {csc}"
    );
    assert_eq!(csc["allowPrivilegeEscalation"], false, "{csc}");
    assert_eq!(
        csc["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{csc}"
    );
    if c.is_embedded() {
        c.assert_runs_from_image(pod, "sc-job");
    } else {
        skipped(
            "failure",
            "not checked: that sc-job ran from dist/images (the cluster pulls its own images)",
        );
    }
    // The foreign Secret is untouched.
    let kept = c.get("secret", &apps, "sc-cache-secret");
    assert!(
        kept["metadata"]["labels"]["app.kubernetes.io/managed-by"].is_null(),
        "the foreign Secret was taken over: {kept}"
    );
    c.leak_scan(&["blob", "cache"]);

    // The remedy: remove the foreign Secret and run the same upgrade again. The new revision
    // asks again, so the agent runs the unchanged connection once more and it succeeds.
    c.kubectl(&["delete", "secret", "sc-cache-secret", "-n", &apps])
        .ok();
    c.helm_upgrade(helm, &[&files[0], &files[1]], &JOB_SECURITY)
        .ok();
    c.wait_job_gone();
    c.assert_materialized(&sc_e2e::expected(&merged(&[&settings, &protected])));
    c.assert_deployed(helm, 3);
    c.leak_scan(&["blob", "cache"]);
}

with_both_helms!(failure);
