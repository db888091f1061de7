//! Scenario 5: the documentation's sample Jobs (manifests/samples/) with `envFrom` the
//! connection's Secret print its keys (`kubectl logs job/...`); the workload-identity one runs
//! with the connection's ServiceAccount.

use sc_e2e::{
    Cluster, Helm, expected, merged, secret_value, three_connections, with_both_helms,
    workspace_root,
};

/// A sample Job of manifests/samples with its namespace, Secret and ServiceAccount replaced.
fn sample(file: &str, replacements: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(workspace_root().join("manifests/samples").join(file))
        .unwrap_or_else(|e| panic!("reading manifests/samples/{file} failed: {e}"));
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "manifests/samples/{file} has no {from:?}"
        );
        text = text.replace(from, to);
    }
    text
}

/// Runs a sample Job to completion and returns its log.
fn run_sample(c: &Cluster, ns: &str, job: &str, manifest: &str) -> String {
    c.kubectl_stdin(&["apply", "-f", "-"], manifest).ok();
    c.kubectl(&[
        "wait",
        "--for=condition=complete",
        &format!("job/{job}"),
        "-n",
        ns,
        "--timeout=120s",
    ])
    .ok();
    c.kubectl(&["logs", &format!("job/{job}"), "-n", ns])
        .ok()
        .to_string()
}

fn printenv(helm: Helm) {
    let c = Cluster::start();
    let apps = c.create_namespace("apps");
    c.ensure_spc_crd();
    let key = secret_value("account-key");
    c.remember_secret(&key);
    let (settings, protected) = three_connections(&apps, &key);
    let files = [
        c.write_values("settings", &settings),
        c.write_values("protected", &protected),
    ];
    c.helm_upgrade(helm, &[&files[0], &files[1]], &[]).ok();
    c.wait_job_gone();
    let set = expected(&merged(&[&settings, &protected]));

    // Secret auth: every key of the Secret is in the environment, with its value.
    let blob = set.get("blob").expect("connection blob");
    let manifest = sample(
        "secret-envfrom-job.yaml",
        &[
            ("namespace: default", &format!("namespace: {apps}")),
            ("sc-blobconn-secret", "sc-blob-secret"),
        ],
    );
    let log = run_sample(&c, &apps, "sc-sample-job", &manifest);
    assert!(!blob.keys.is_empty());
    for k in &blob.keys {
        let line = format!("{}={}", k.name, k.value.expose());
        assert!(
            log.lines().any(|l| l == line),
            "the printenv log has no line for {}:\n(log of {} lines)",
            k.name,
            log.lines().count()
        );
    }

    // Workload identity: the ServiceAccount and the Secret of bus.
    let bus = set.get("bus").expect("connection bus");
    let sa = bus.service_account_name().expect("a ServiceAccount");
    let manifest = sample(
        "workload-identity-job.yaml",
        &[
            ("namespace: ai", &format!("namespace: {apps}")),
            ("sc-account-0a1b2c3d-0000-4000-8000-000000000001", &sa),
            ("sc-openai-secret", "sc-bus-secret"),
        ],
    );
    let log = run_sample(&c, &apps, "sc-sample-wi-job", &manifest);
    for k in &bus.keys {
        let line = format!("{}={}", k.name, k.value.expose());
        assert!(
            log.lines().any(|l| l == line),
            "the workload-identity sample's log has no {line}:\n{log}"
        );
    }
    let job = c.get("job", &apps, "sc-sample-wi-job");
    let pod = &job["spec"]["template"];
    assert_eq!(pod["spec"]["serviceAccountName"], sa.as_str());
    assert_eq!(
        pod["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );

    c.leak_scan(&["blob", "bus", "vault"]);
}

with_both_helms!(printenv);
