//! Scenario 6: `helm uninstall` removes the agent, the metadata and a failed sc-job; the
//! materialized Secrets and ServiceAccounts stay (they belong to the applications).

use sc_e2e::{
    Cluster, Helm, JOB, RELEASE, SETTLE, merged, secret_value, three_connections, wait_for_state,
    with_both_helms,
};
use serde_json::json;

fn uninstall(helm: Helm) {
    let c = Cluster::start();
    let apps = c.create_namespace("apps");
    let rel = c.release_ns();
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

    // A failing connection leaves sc-job behind.
    let foreign = secret_value("foreign");
    c.remember_secret(&foreign);
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "sc-taken-secret",
        "-n",
        &apps,
        &format!("--from-literal=password={foreign}"),
    ])
    .ok();
    let taken = json!({"connections": {"taken": {
        "namespace": apps,
        "targetType": "storage-blob",
        "authType": "secret",
        "clientType": "none",
        "parameters": {"accountName": "takenaccount"},
    }}});
    let taken_key = secret_value("taken-key");
    c.remember_secret(&taken_key);
    let taken_protected = json!({"connections": {"taken": {"secrets": {"accountKey": taken_key}}}});
    let files2 = [
        c.write_values("settings2", &merged(&[&settings, &taken])),
        c.write_values("protected2", &merged(&[&protected, &taken_protected])),
    ];
    let out = c.helm_upgrade(helm, &[&files2[0], &files2[1]], &[]);
    assert!(
        !out.success(),
        "the upgrade succeeded despite the foreign Secret:\n{}",
        out.all()
    );
    c.get("job", &rel, JOB);
    c.leak_scan(&["blob", "bus", "vault", "taken"]);
    let materialized = c.snapshot(&apps);

    c.helm(helm, &["uninstall", RELEASE, "-n", &rel]).ok();

    wait_for_state(
        SETTLE,
        "the agent, its metadata and every Job to be removed",
        || {
            let left = c.kubectl(&[
                "get",
                "deployments,jobs,configmaps,pods",
                "-n",
                &rel,
                "-o",
                "name",
            ]);
            let names: Vec<String> = left
                .ok()
                .lines()
                .map(str::to_string)
                .filter(|n| n != "configmap/kube-root-ca.crt")
                .collect();
            if names.is_empty() {
                Ok(())
            } else {
                Err(names.join(", "))
            }
        },
    );
    // Every status: helm 3 needs --all, helm 4 lists them all by default (and has no --all).
    let list = match helm {
        Helm::V3 => c.helm(helm, &["list", "-n", &rel, "--all"]),
        Helm::V4 => c.helm(helm, &["list", "-n", &rel]),
    };
    assert!(
        !list.ok().contains(RELEASE),
        "helm still lists the release:\n{}",
        list.stdout
    );
    assert!(
        c.kubectl(&[
            "get",
            "clusterrole",
            &format!("sc-job-{rel}"),
            "--ignore-not-found",
            "-o",
            "name"
        ])
        .ok()
        .trim()
        .is_empty(),
        "the ClusterRole of sc-job is left"
    );

    // What the connections materialized stays, unchanged.
    assert_eq!(
        c.snapshot(&apps),
        materialized,
        "uninstall changed the materialized objects"
    );
    for name in ["sc-blob-secret", "sc-bus-secret"] {
        c.get("secret", &apps, name);
    }
    c.get(
        "serviceaccount",
        &apps,
        "sc-account-0a1b2c3d-0000-4000-8000-000000000001",
    );
    c.get("secretproviderclass", &apps, "sc-vault-spc");
    c.scan_cluster();
}

with_both_helms!(uninstall);
