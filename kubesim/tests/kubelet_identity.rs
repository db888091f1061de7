//! A pod's process reaches the API with its own ServiceAccount identity (kube-rs
//! `Config::infer()` taking the in-cluster configuration the kubelet gives it), and RBAC
//! applies to it; and
//! stopping the kubesim binary leaves no pod process behind.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kubesim::cluster::{LogOptions, WriteOptions};
use kubesim::store::ResKey;
use kubesim::testing::wait_until;
use kubesim::{Kubesim, Options};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn probe_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kubesim-probe"))
        .parent()
        .expect("bin dir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_uses_its_service_account_and_rbac_applies() {
    let ks = Kubesim::start(Options {
        bin_dir: Some(probe_dir().to_path_buf()),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = ks.cluster();
    let create = |group: &str, resource: &str, obj: serde_json::Value| {
        c.create(
            &ResKey::new(group, resource),
            "default",
            obj,
            &WriteOptions::default(),
        )
        .expect("create");
    };
    create(
        "",
        "serviceaccounts",
        json!({"metadata": {"name": "reader"}}),
    );
    create(
        "rbac.authorization.k8s.io",
        "roles",
        json!({"metadata": {"name": "read-configmaps"},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
    );
    create(
        "rbac.authorization.k8s.io",
        "rolebindings",
        json!({"metadata": {"name": "reader"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
               "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}]}),
    );
    create(
        "",
        "pods",
        json!({"metadata": {"name": "probe"},
               "spec": {"serviceAccountName": "reader", "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "example.org/tools/kubesim-probe:1.0",
                                        "args": ["configmaps", "secrets"]}]}}),
    );
    let pod = wait_until(WAIT, "probe pod finished", || {
        let c = c.clone();
        async move {
            c.get(&ResKey::new("", "pods"), "default", "probe")
                .ok()
                .filter(|p| {
                    matches!(
                        p["status"]["phase"].as_str(),
                        Some("Succeeded") | Some("Failed")
                    )
                })
        }
    })
    .await;
    let mut log = Vec::new();
    let mut s = c
        .pod_logs(
            "default",
            "probe",
            LogOptions {
                container: "main".into(),
                ..Default::default()
            },
        )
        .unwrap();
    while let Some(chunk) = s.next().await {
        log.extend_from_slice(&chunk.unwrap());
    }
    let log = String::from_utf8(log).unwrap();
    assert_eq!(pod["status"]["phase"], "Succeeded", "{log}");
    assert!(log.contains("namespace: default"), "{log}");
    assert!(log.contains("configmaps: ok"), "{log}");
    assert!(log.contains("secrets: denied 403 Forbidden"), "{log}");
}

/// Running and not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_binary_leaves_no_pod_process() {
    stop_binary_and_check("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_binary_leaves_no_pod_process() {
    stop_binary_and_check("KILL").await;
}

/// Start the binary, run a pod whose shell has a child, send `signal` to kubesim, and wait
/// until neither the shell nor its child exists.
async fn stop_binary_and_check(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until(WAIT, "kubeconfig written", || {
        let k = kubeconfig.clone();
        async move { k.is_file().then_some(()) }
    })
    .await;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "sleeper"},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "sleep 3600 & sleep 3600"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let pid = wait_until(WAIT, "sleeper running", || {
        let pods = pods.clone();
        async move {
            let p = pods.get("sleeper").await.ok()?;
            let id = p
                .status?
                .container_statuses?
                .first()?
                .container_id
                .clone()?;
            id.trim_start_matches("process://").parse::<i32>().ok()
        }
    })
    .await;
    assert!(alive(pid));
    let children: Vec<i32> =
        wait_until(WAIT, "the pod's shell to start its child", || async move {
            let list: Vec<i32> =
                std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|s| s.parse().ok())
                    .collect();
            (!list.is_empty()).then_some(list)
        })
        .await;
    let server_pid = server.id().unwrap();
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(server_pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(WAIT, server.wait())
        .await
        .expect("kubesim exits")
        .unwrap();
    if signal == "TERM" {
        assert!(exit.success(), "kubesim exited with {exit}");
    }
    wait_until(WAIT, "pod processes gone", || {
        let all: Vec<i32> = std::iter::once(pid)
            .chain(children.iter().copied())
            .collect();
        async move { all.iter().all(|p| !alive(*p)).then_some(()) }
    })
    .await;
    // The pods' root directory goes too.
    let prefix = format!("kubesim-pods-{server_pid}-");
    wait_until(WAIT, "the pods' root directory removed", || {
        let prefix = prefix.clone();
        async move {
            let left = std::fs::read_dir(std::env::temp_dir())
                .unwrap()
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with(&prefix));
            (!left).then_some(())
        }
    })
    .await;
}
