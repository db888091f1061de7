//! Scenario 1: an install with three connections (Storage Blob / secret / Python, Service Bus /
//! workload identity / .NET, Key Vault / CSI) materializes exactly what sc-model renders. On
//! kubesim, the agent, the hooks and sc-job run from the shipped image archives (`make images`).

use sc_e2e::{
    Cluster, Helm, expected, image_digest, merged, secret_value, skipped, three_connections,
    with_both_helms,
};

fn install(helm: Helm) {
    let c = Cluster::start_from_images();
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
    c.assert_materialized(&set);

    // The workload-identity ServiceAccount and the SecretProviderClass are there by name.
    c.get(
        "serviceaccount",
        &apps,
        "sc-account-0a1b2c3d-0000-4000-8000-000000000001",
    );
    c.get("secretproviderclass", &apps, "sc-vault-spc");

    // One metadata ConfigMap per connection, owned by the request ConfigMap.
    let rel = c.release_ns();
    let cms = c.get_json(&[
        "configmaps",
        "-n",
        &rel,
        "-l",
        "app.kubernetes.io/component=connection",
    ]);
    let mut names: Vec<String> = cms["items"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| {
            i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["sc-conn-blob", "sc-conn-bus", "sc-conn-vault"]);
    for item in cms["items"].as_array().expect("a list") {
        assert_eq!(
            item["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "sc-extension"
        );
        assert_eq!(
            item["metadata"]["ownerReferences"][0]["name"], "sc-requests",
            "owner of {}",
            item["metadata"]["name"]
        );
    }

    c.assert_deployed(helm, 1);

    // The pods ran from the shipped images: the running agent's executable is the one in the
    // unpacked sc-agent image, and the sc-job image was unpacked for its pod.
    if c.is_embedded() {
        let agents = c.get_json(&[
            "pods",
            "-n",
            &rel,
            "-l",
            "app.kubernetes.io/component=agent",
        ]);
        let agent = &agents["items"][0];
        let pid = c.assert_runs_from_image(agent, "sc-agent");
        assert!(pid.is_some(), "the agent pod does not run: {agent}");
        // The agent reaches the API as in a real pod: the in-cluster configuration.
        c.assert_in_cluster_configuration(pid.unwrap_or_default(), "sc-agent");
        let job_root = c
            .image_root(&image_digest("sc-job"))
            .expect("started from the images");
        assert!(
            job_root.join("usr/local/bin/sc-job").is_file(),
            "no sc-job pod ran from the sc-job image ({} is not unpacked)",
            job_root.display()
        );
    } else {
        skipped(
            "install",
            "not checked: that the pods run from dist/images (the cluster pulls its own images)",
        );
    }
    c.leak_scan(&["blob", "bus", "vault"]);
}

with_both_helms!(install);
