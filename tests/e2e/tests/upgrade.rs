//! Scenario 2: an upgrade that adds, changes and removes connections. A removed connection
//! with `deletionPolicy: Retain` (the default) keeps its objects; with `Delete` they go. Then
//! an upgrade requesting nothing, and a rollback to the first revision.

use sc_e2e::{
    Cluster, Helm, RELEASE, expected, merged, secret_value, three_connections, with_both_helms,
};
use serde_json::json;

fn upgrade(helm: Helm) {
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
    c.assert_materialized(&expected(&merged(&[&settings, &protected])));
    let bus_secret = c.get("secret", &apps, "sc-bus-secret");

    // Revision 2: blob (Delete) and bus (Retain) removed, vault changed, cache added.
    let cache_key = secret_value("cache-key");
    c.remember_secret(&cache_key);
    let mut vault = settings["connections"]["vault"].clone();
    vault["parameters"]["keyvaultName"] = json!("e2e-vault-two");
    vault["parameters"]["objects"] = json!([
        {"name": "db-password", "type": "secret"},
        {"name": "tls-cert", "type": "cert", "alias": "tls.crt"},
    ]);
    let settings2 = json!({"connections": {
        "vault": vault,
        "cache": {
            "namespace": apps,
            "targetType": "redis",
            "authType": "secret",
            "clientType": "python",
            "parameters": {"server": "e2e-cache"},
        },
    }});
    let protected2 = json!({"connections": {"cache": {"secrets": {"accessKey": cache_key}}}});
    let files2 = [
        c.write_values("settings2", &settings2),
        c.write_values("protected2", &protected2),
    ];
    c.helm_upgrade(helm, &[&files2[0], &files2[1]], &[]).ok();
    c.wait_job_gone();

    let set = expected(&merged(&[&settings2, &protected2]));
    c.assert_materialized(&set);
    let spc = c.get("secretproviderclass", &apps, "sc-vault-spc");
    assert_eq!(spc["spec"]["parameters"]["keyvaultName"], "e2e-vault-two");

    // Delete: the Secret of blob is gone, once the removals are recorded.
    c.wait_metadata_gone(&["blob", "bus"]);
    assert!(
        c.try_get("secret", &apps, "sc-blob-secret").is_none(),
        "Secret sc-blob-secret (deletionPolicy Delete) is still there"
    );
    // Retain: the Secret and the ServiceAccount of bus stay, unchanged.
    let kept = c.get("secret", &apps, "sc-bus-secret");
    assert_eq!(
        kept["data"], bus_secret["data"],
        "the retained Secret of bus changed"
    );
    assert_eq!(
        kept["metadata"]["uid"], bus_secret["metadata"]["uid"],
        "the retained Secret of bus was recreated"
    );
    c.get(
        "serviceaccount",
        &apps,
        "sc-account-0a1b2c3d-0000-4000-8000-000000000001",
    );

    c.assert_deployed(helm, 2);
    c.leak_scan(&["vault", "cache"]);

    // Revision 3 requests nothing: the release still succeeds, and what the retained
    // connections created stays.
    c.helm_upgrade(helm, &[], &[]).ok();
    // The wait hook waits for requested connections only: with none requested it returns at
    // once, and the agent records the removals afterwards.
    c.wait_metadata_gone(&["vault", "cache"]);
    c.wait_job_gone();
    c.assert_deployed(helm, 3);
    c.get("secret", &apps, "sc-cache-secret");
    c.get("secretproviderclass", &apps, "sc-vault-spc");

    // A rollback to revision 1 (revision 4, through the post-rollback hook) brings its
    // connections back exactly.
    let rel = c.release_ns();
    c.helm(
        helm,
        &["rollback", RELEASE, "1", "-n", &rel, "--timeout", "4m"],
    )
    .ok();
    c.wait_job_gone();
    c.assert_materialized(&expected(&merged(&[&settings, &protected])));
    c.assert_deployed(helm, 4);
    c.leak_scan(&["blob", "bus", "vault"]);
}

with_both_helms!(upgrade);
