//! Requests past `requests.shardBytes` continue in further ConfigMaps and Secrets
//! (`sc-requests-1`, `sc-protected-1`, ...): installed and upgraded through the chart, every
//! connection is applied, the agent reads the shards under the chart's RBAC, and an upgrade
//! that needs fewer shards leaves none behind.

use sc_e2e::{Cluster, Helm, expected, merged, secret_value};
use serde_json::{Value, json};

/// `n` storage-blob connections with an account key each: (settings, protected).
fn connections(c: &Cluster, apps: &str, n: usize, key_label: &str) -> (Value, Value) {
    let (mut settings, mut protected) = (serde_json::Map::new(), serde_json::Map::new());
    for i in 0..n {
        let name = format!("blob_{i:02}");
        let key = secret_value(&format!("{key_label}-{i}"));
        c.remember_secret(&key);
        settings.insert(
            name.clone(),
            json!({"namespace": apps, "targetType": "storage-blob", "authType": "secret",
                   "clientType": "python", "parameters": {"accountName": format!("store{i}")}}),
        );
        protected.insert(name, json!({"secrets": {"accountKey": key}}));
    }
    (
        json!({"connections": settings}),
        json!({"connections": protected}),
    )
}

/// The names of the request objects of `kind` (configmaps or secrets) in the release
/// namespace, and the number of shards the first one announces.
fn shards(c: &Cluster, kind: &str, first: &str) -> (Vec<String>, usize) {
    let ns = c.release_ns();
    let list = c.get_json(&[
        kind,
        "-n",
        &ns,
        "-l",
        "app.kubernetes.io/component=requests",
    ]);
    let mut names: Vec<String> = list["items"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let announced = c.get(kind, &ns, first)["metadata"]["annotations"]["sc-extension.io/shards"]
        .as_str()
        .expect("the first object announces its shards")
        .parse()
        .expect("a number");
    (names, announced)
}

#[test]
fn requests_larger_than_one_object_are_sharded_and_applied() {
    let helm = Helm::V3;
    let c = Cluster::start();
    let apps = c.create_namespace("apps");
    let shard_bytes = ["--set", "requests.shardBytes=2048"];

    // Revision 1: 40 connections, about 8 KiB of requests and 4 KiB of protected settings
    // (one change set of more than 32, which sc-job reads in a list).
    let (settings, protected) = connections(&c, &apps, 40, "key");
    let files = [
        c.write_values("settings", &settings),
        c.write_values("protected", &protected),
    ];
    // The wait hook passes only once the agent applied this revision.
    c.helm_upgrade(helm, &[&files[0], &files[1]], &shard_bytes)
        .ok();
    c.assert_deployed(helm, 1);
    c.wait_job_gone();
    c.assert_materialized(&expected(&merged(&[&settings, &protected])));
    let (configmaps, announced) = shards(&c, "configmaps", "sc-requests");
    assert!(announced >= 3, "{announced} request shards: {configmaps:?}");
    assert_eq!(configmaps.len(), announced, "{configmaps:?}");
    let (secrets, protected_shards) = shards(&c, "secrets", "sc-protected");
    assert!(protected_shards >= 2, "{secrets:?}");
    assert_eq!(secrets.len(), protected_shards, "{secrets:?}");

    // Revision 2: ten connections are left, one with a new key: fewer shards, and helm
    // deletes the ones no longer rendered.
    let (mut settings2, mut protected2) = connections(&c, &apps, 10, "key");
    let new_key = secret_value("new-key");
    c.remember_secret(&new_key);
    protected2["connections"]["blob_07"]["secrets"]["accountKey"] = json!(new_key);
    settings2["connections"]["blob_03"]["parameters"]["accountName"] = json!("renamed");
    let files2 = [
        c.write_values("settings2", &settings2),
        c.write_values("protected2", &protected2),
    ];
    c.helm_upgrade(helm, &[&files2[0], &files2[1]], &shard_bytes)
        .ok();
    c.assert_deployed(helm, 2);
    c.wait_job_gone();
    c.assert_materialized(&expected(&merged(&[&settings2, &protected2])));
    let (configmaps2, announced2) = shards(&c, "configmaps", "sc-requests");
    assert!(announced2 < announced, "{configmaps2:?}");
    assert_eq!(configmaps2.len(), announced2, "{configmaps2:?}");
    let (secrets2, protected_shards2) = shards(&c, "secrets", "sc-protected");
    assert_eq!(secrets2.len(), protected_shards2, "{secrets2:?}");

    c.leak_scan(&["blob_00", "blob_07"]);
}
