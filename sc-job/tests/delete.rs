//! Removing connections: deletion policies, the shared workload-identity ServiceAccount, and
//! objects that are no longer ours.

mod common;

use common::*;
use kubesim::cluster::DeleteOptions;
use serde_json::{Value, json};

const CLIENT_ID: &str = "0a1b2c3d-0000-4000-8000-000000000001";
const ACCOUNT_KEY: &str = "ZGVsZXRlLXRlc3Qta2V5";

fn conns() -> Value {
    json!({
        "a": {"namespace": "default", "targetType": "openai", "authType": "workloadIdentity",
              "parameters": {"resourceName": "ai", "clientId": CLIENT_ID}, "deletionPolicy": "Delete"},
        "b": {"namespace": "default", "targetType": "storage-blob", "authType": "workloadIdentity",
              "parameters": {"accountName": "acct", "clientId": CLIENT_ID}, "deletionPolicy": "Delete"},
        "c": {"namespace": "default", "targetType": "storage-blob", "authType": "secret",
              "parameters": {"accountName": "acct2"}, "secrets": {"accountKey": ACCOUNT_KEY}},
        "d": {"namespace": "default", "targetType": "postgresql", "authType": "secret",
              "parameters": {"server": "pg", "database": "db", "user": "u"},
              "secrets": {"password": "pg-password-123"}, "deletionPolicy": "Delete"},
    })
}

fn without(all: &Value, names: &[&str]) -> Value {
    let mut m = all.as_object().unwrap().clone();
    for n in names {
        m.remove(*n);
    }
    Value::Object(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_policies_and_the_shared_service_account() {
    let ks = start().await;
    let c = ks.cluster();
    let all = conns();
    let sa_name = format!("sc-account-{CLIENT_ID}");
    request_all(&c, "cs-1", 1, &all);
    run_job(&ks, &[]).await.expect_code(0);
    let sa = get(&c, "ServiceAccount", "default", &sa_name).expect("shared ServiceAccount");
    assert_eq!(
        sa["metadata"]["annotations"]["sc-extension.io/connections"],
        "a,b"
    );

    // d's Secret is replaced by one that is not ours: deleting d must leave it alone.
    c.delete(
        &res("Secret"),
        "default",
        "sc-d-secret",
        &DeleteOptions::default(),
    )
    .expect("delete");
    create(
        &c,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "sc-d-secret", "namespace": "default"},
               "stringData": {"k": "v"}}),
    );

    // Remove a and d (Delete): a's Secret goes, the ServiceAccount stays for b.
    let rest = without(&all, &["a", "d"]);
    write_requests(&c, &rest, 2);
    write_changeset(&c, "cs-2", 2, &rest, &[], &["a", "d"]);
    let run = run_job(&ks, &[]).await;
    run.expect_code(0);
    let out = &run.stdout;
    assert!(
        out.contains("[a] secret default/sc-a-secret: deleted"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "[a] serviceaccount default/{sa_name}: kept (still used by b)"
        )),
        "{out}"
    );
    assert!(
        out.contains("[d] secret default/sc-d-secret: kept (not created by this connection)"),
        "{out}"
    );
    assert!(
        out.contains("sc-job: 0 applied, 0 failed, 2 deleted"),
        "{out}"
    );
    assert!(get(&c, "Secret", "default", "sc-a-secret").is_none());
    assert!(
        get(&c, "Secret", "default", "sc-d-secret").is_some(),
        "a Secret that is not ours was deleted"
    );
    let sa = get(&c, "ServiceAccount", "default", &sa_name).expect("still used by b");
    assert_eq!(
        sa["metadata"]["annotations"]["sc-extension.io/connections"],
        "b"
    );
    let status = metadata(&c, "a", "status.json");
    assert_eq!(status["phase"], "Deleted");
    assert_eq!(status["deletionPolicy"], "Delete");

    // Remove c (Retain, the default): nothing is deleted.
    let rest = without(&all, &["a", "c", "d"]);
    write_requests(&c, &rest, 3);
    write_changeset(&c, "cs-3", 3, &rest, &[], &["c"]);
    let run = run_job(&ks, &[]).await;
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("[c] removed from the request; deletionPolicy Retain keeps its objects"),
        "{}",
        run.stdout
    );
    assert!(get(&c, "Secret", "default", "sc-c-secret").is_some());
    assert_eq!(metadata(&c, "c", "status.json")["phase"], "Deleted");
    assert_eq!(metadata(&c, "c", "status.json")["deletionPolicy"], "Retain");

    // Remove b, the last user: the ServiceAccount goes too.
    write_requests(&c, &json!({}), 4);
    write_changeset(&c, "cs-4", 4, &json!({}), &[], &["b"]);
    let run = run_job(&ks, &[]).await;
    run.expect_code(0);
    assert!(
        run.stdout
            .contains(&format!("[b] serviceaccount default/{sa_name}: deleted")),
        "{}",
        run.stdout
    );
    assert!(get(&c, "ServiceAccount", "default", &sa_name).is_none());
    assert!(get(&c, "Secret", "default", "sc-b-secret").is_none());
    let journal = metadata(&c, "b", "journal.json");
    assert_eq!(journal.as_array().unwrap().len(), 2);
    assert_eq!(journal[1]["result"], "Deleted");
    assert_eq!(journal[1]["action"], "delete");
    assert_no_secret(
        "a ConfigMap",
        &all_config_maps(&c),
        &[ACCOUNT_KEY, "pg-password-123"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_a_connection_no_longer_has_are_pruned_per_its_policy() {
    let ks = start().await;
    let c = ks.cluster();
    let old_e = "11111111-0000-4000-8000-00000000000e";
    let old_f = "11111111-0000-4000-8000-00000000000f";
    let new_id = "22222222-0000-4000-8000-000000000001";
    let conns = |e: &str, f: &str| {
        json!({
            "e": {"namespace": "default", "targetType": "openai", "authType": "workloadIdentity",
                  "parameters": {"resourceName": "ai", "clientId": e}, "deletionPolicy": "Delete"},
            "f": {"namespace": "default", "targetType": "storage-blob", "authType": "workloadIdentity",
                  "parameters": {"accountName": "acct", "clientId": f}},
        })
    };
    request_all(&c, "cs-1", 1, &conns(old_e, old_f));
    run_job(&ks, &[]).await.expect_code(0);
    assert!(
        get(
            &c,
            "ServiceAccount",
            "default",
            &format!("sc-account-{old_e}")
        )
        .is_some()
    );

    // Both move to a new identity.
    request_all(&c, "cs-2", 2, &conns(new_id, new_id));
    let run = run_job(&ks, &[]).await;
    run.expect_code(0);
    let out = &run.stdout;
    assert!(
        out.contains(&format!(
            "[e] serviceaccount default/sc-account-{old_e}: deleted"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("[f] serviceaccount default/sc-account-{old_f}: no longer used, kept (deletionPolicy Retain)")),
        "{out}"
    );
    assert!(
        get(
            &c,
            "ServiceAccount",
            "default",
            &format!("sc-account-{old_e}")
        )
        .is_none()
    );
    assert!(
        get(
            &c,
            "ServiceAccount",
            "default",
            &format!("sc-account-{old_f}")
        )
        .is_some()
    );
    let sa = get(
        &c,
        "ServiceAccount",
        "default",
        &format!("sc-account-{new_id}"),
    )
    .unwrap();
    assert_eq!(
        sa["metadata"]["annotations"]["sc-extension.io/connections"],
        "e,f"
    );
    let objects = metadata(&c, "e", "status.json")["objects"].to_string();
    assert!(!objects.contains(old_e), "{objects}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_without_a_recorded_apply_uses_the_agents_spec() {
    let ks = start().await;
    let c = ks.cluster();
    create(
        &c,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "sc-conn-old", "namespace": NS},
               "data": {"spec.json": "{\"namespace\":\"default\",\"deletionPolicy\":\"Delete\"}"}}),
    );
    create(
        &c,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "sc-old-secret", "namespace": "default",
                            "labels": {"app.kubernetes.io/managed-by": "sc-extension",
                                       "sc-extension.io/connection": "old"},
                            "annotations": {"sc-extension.io/connection-name": "old"}},
               "stringData": {"K": "v"}}),
    );
    write_requests(&c, &json!({}), 5);
    write_changeset(&c, "cs-5", 5, &json!({}), &[], &["old"]);
    let run = run_job(&ks, &[]).await;
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("[old] secret default/sc-old-secret: deleted"),
        "{}",
        run.stdout
    );
    assert!(get(&c, "Secret", "default", "sc-old-secret").is_none());
    assert_eq!(metadata(&c, "old", "status.json")["phase"], "Deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_removal_takes_its_name_off_the_shared_service_account() {
    let ks = start().await;
    let c = ks.cluster();
    let sa_name = format!("sc-account-{CLIENT_ID}");
    let all = json!({
        "r1": {"namespace": "default", "targetType": "openai", "authType": "workloadIdentity",
               "parameters": {"resourceName": "ai", "clientId": CLIENT_ID}},
        "r2": {"namespace": "default", "targetType": "storage-blob", "authType": "workloadIdentity",
               "parameters": {"accountName": "acct", "clientId": CLIENT_ID}},
    });
    request_all(&c, "cs-1", 1, &all);
    run_job(&ks, &[]).await.expect_code(0);
    let users = |c: &kubesim::cluster::Cluster| {
        get(c, "ServiceAccount", "default", &sa_name).expect("shared ServiceAccount")["metadata"]
            ["annotations"]["sc-extension.io/connections"]
            .clone()
    };
    assert_eq!(users(&c), "r1,r2");

    // r1 removed with Retain (the default): its objects stay, r2 alone uses the account.
    let rest = without(&all, &["r1"]);
    write_requests(&c, &rest, 2);
    write_changeset(&c, "cs-2", 2, &rest, &[], &["r1"]);
    let run = run_job(&ks, &[]).await;
    run.expect_code(0);
    assert!(
        run.stdout.contains(&format!(
            "[r1] serviceaccount default/{sa_name}: kept (still used by r2)"
        )),
        "{}",
        run.stdout
    );
    assert_eq!(users(&c), "r2");
    assert!(get(&c, "Secret", "default", "sc-r1-secret").is_some());
}
