//! Scenario 7: `helm test` passes on a healthy install.

use sc_e2e::{Cluster, Helm, RELEASE, secret_value, three_connections, with_both_helms};

fn helm_test(helm: Helm) {
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

    let out = c.helm(helm, &["test", RELEASE, "-n", &rel, "--timeout", "3m"]);
    let text = out.ok();
    assert!(
        text.contains("sc-test"),
        "helm test ran no sc-test:\n{text}"
    );
    assert!(
        text.contains("Succeeded"),
        "helm test did not report success:\n{text}"
    );
    c.leak_scan(&["blob", "bus", "vault"]);
}

with_both_helms!(helm_test);
