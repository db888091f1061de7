//! Guarded namespaces and the namespace of listed workloads, with the real sc-job binary
//! against kubesim: requests that did not come through the chart (an edited `sc-requests`)
//! are refused before anything is written, and a listed workload is only ever looked for in
//! its connection's namespace.

mod common;

use common::*;
use serde_json::{Value, json};

const ACCOUNT_KEY: &str = "ZmFrZS1ndWFyZC10ZXN0LWFjY291bnQta2V5";

fn deployment(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [
                    {"name": "app", "image": "example/app:1", "command": ["sleep", "3600"]},
                ]},
            },
        },
    })
}

fn blob(ns: &str, workload: &str) -> Value {
    json!({
        "namespace": ns, "targetType": "storage-blob", "authType": "secret",
        "parameters": {"accountName": "acct"}, "secrets": {"accountKey": ACCOUNT_KEY},
        "workloads": [{"kind": "Deployment", "name": workload}],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_namespace_is_refused_before_anything_is_written() {
    let ks = start().await;
    let c = ks.cluster();
    create_namespace(&c, "apps");
    create(&c, deployment("kube-system", "coredns"));
    create(&c, deployment(NS, "sc-agent-lookalike"));
    create(&c, deployment("apps", "web"));
    let coredns = get(&c, "Deployment", "kube-system", "coredns").unwrap();
    let conns = json!({
        "sys": blob("kube-system", "coredns"),
        "rel": blob(NS, "sc-agent-lookalike"),
        "good": blob("apps", "web"),
    });
    request_all(&c, "cs-1", 1, &conns);
    let run = run_job(&ks, &[]).await;
    run.expect_code(1);
    for (name, ns) in [("sys", "kube-system"), ("rel", NS)] {
        let key = format!("connections.{name}.namespace");
        assert!(
            run.stdout.contains(&format!("[{name}] invalid: {key}")),
            "{}",
            run.stdout
        );
        let status = metadata(&c, name, "status.json");
        assert_eq!(status["phase"], "Failed", "{status}");
        assert_eq!(status["error"]["reason"], "InvalidRequest", "{status}");
        let message = status["error"]["message"].as_str().unwrap();
        assert!(message.contains(&key), "{status}");
        assert!(message.contains("security.allowedNamespaces"), "{status}");
        assert!(
            get(&c, "Secret", ns, &format!("sc-{name}-secret")).is_none(),
            "a Secret was written in {ns}"
        );
    }
    // Nothing written in the guarded namespaces: no Secret, no patch.
    assert!(
        list(&c, "Secret", Some("kube-system")).is_empty(),
        "{:?}",
        list(&c, "Secret", Some("kube-system"))
    );
    let after = get(&c, "Deployment", "kube-system", "coredns").unwrap();
    assert_eq!(after["spec"], coredns["spec"], "coredns was patched");
    assert!(
        !after["metadata"].to_string().contains("sc-extension.io"),
        "coredns was annotated: {after}"
    );
    let lookalike = get(&c, "Deployment", NS, "sc-agent-lookalike").unwrap();
    assert!(
        !lookalike.to_string().contains("sc-rel-secret"),
        "the workload in the release namespace was patched: {lookalike}"
    );
    // The other connection went on.
    assert_eq!(metadata(&c, "good", "status.json")["phase"], "Ready");
    assert!(get(&c, "Secret", "apps", "sc-good-secret").is_some());
    assert_no_secret("sc-job's output", &run.stdout, &[ACCOUNT_KEY]);
    assert_no_secret("sc-job's errors", &run.stderr, &[ACCOUNT_KEY]);
    assert_no_secret("the ConfigMaps", &all_config_maps(&c), &[ACCOUNT_KEY]);

    // Named explicitly (the agent passes security.allowedNamespaces and rbac.namespaces),
    // kube-system is allowed; the release namespace stays guarded.
    request_all(&c, "cs-2", 2, &conns);
    let run = run_job(&ks, &["--allowed-namespace=kube-system,apps"]).await;
    run.expect_code(1);
    assert_eq!(metadata(&c, "sys", "status.json")["phase"], "Ready");
    assert!(get(&c, "Secret", "kube-system", "sc-sys-secret").is_some());
    assert_eq!(metadata(&c, "rel", "status.json")["phase"], "Failed");
    assert!(get(&c, "Secret", NS, "sc-rel-secret").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_workload_is_patched_only_in_the_connections_namespace() {
    let ks = start().await;
    let c = ks.cluster();
    create_namespace(&c, "apps");
    create_namespace(&c, "other");
    // `web` exists in `other` only; `api` in both.
    create(&c, deployment("other", "web"));
    create(&c, deployment("other", "api"));
    create(&c, deployment("apps", "api"));
    let before_web = get(&c, "Deployment", "other", "web").unwrap();
    let before_api = get(&c, "Deployment", "other", "api").unwrap();
    let web_spec = before_web["spec"].clone();
    let conns = json!({
        "onweb": blob("apps", "web"),
        "onapi": blob("apps", "api"),
    });
    request_all(&c, "cs-1", 1, &conns);
    let run = run_job(&ks, &[]).await;
    run.expect_code(1);
    // `web` is missing where the connection is: it is not found, not looked for elsewhere.
    let status = metadata(&c, "onweb", "status.json");
    assert_eq!(status["error"]["reason"], "WorkloadNotFound", "{status}");
    assert!(
        run.stdout
            .contains("[onapi] deployment apps/api: patched ("),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("other/"), "{}", run.stdout);
    let api = get(&c, "Deployment", "apps", "api").unwrap();
    assert!(api.to_string().contains("sc-onapi-secret"), "{api}");
    for (name, before) in [("web", before_web), ("api", before_api)] {
        let after = get(&c, "Deployment", "other", name).unwrap();
        assert_eq!(
            after["metadata"]["generation"], before["metadata"]["generation"],
            "other/{name} was written"
        );
        assert_eq!(after["spec"], before["spec"], "other/{name} was patched");
        assert!(
            !after["metadata"].to_string().contains("sc-extension.io"),
            "other/{name} was annotated: {after}"
        );
    }
    // A name that tries to reach another namespace is refused by validation.
    let conns = json!({"escape": blob("apps", "../other/web")});
    request_all(&c, "cs-2", 2, &conns);
    let run = run_job(&ks, &[]).await;
    run.expect_code(1);
    let status = metadata(&c, "escape", "status.json");
    assert_eq!(status["error"]["reason"], "InvalidRequest", "{status}");
    assert!(
        status["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connections.escape.workloads"),
        "{status}"
    );
    let after = get(&c, "Deployment", "other", "web").unwrap();
    assert_eq!(after["spec"], web_spec, "other/web was patched");
}
