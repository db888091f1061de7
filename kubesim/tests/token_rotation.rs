//! Bound ServiceAccount tokens that expire, with a short lifetime (`token_lifetime`, the
//! `--token-lifetime` flag): a token used after its expiry gets 401 (the raw HTTP status, a
//! client, and kubectl's TokenReview), a token bound to a pod dies with the pod, and a pod's process keeps working while
//! the kubelet rotates its token several times.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use kubesim::cluster::{LogOptions, WriteOptions};
use kubesim::store::ResKey;
use kubesim::testing::{kubectl, wait_until};
use kubesim::{Kubesim, Options};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);

fn probe_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kubesim-probe"))
        .parent()
        .expect("bin dir")
}

async fn start(lifetime_secs: u64) -> Kubesim {
    Kubesim::start(Options {
        bin_dir: Some(probe_dir().to_path_buf()),
        token_lifetime: Some(Duration::from_secs(lifetime_secs)),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn create(ks: &Kubesim, group: &str, resource: &str, obj: Value) {
    ks.cluster()
        .create(
            &ResKey::new(group, resource),
            "default",
            obj,
            &WriteOptions::default(),
        )
        .expect("create");
}

/// The HTTP status of `GET /api` with `token` as bearer, on a plain connection.
async fn raw_status(ks: &Kubesim, token: &str) -> u16 {
    let addr = ks.addr();
    let mut conn = kubesim::testing::connect(ks).await.unwrap();
    let req = format!(
        "GET /api HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1).expect("a status line");
    status.parse().expect("a numeric status")
}

const PYTHON_WITH_TOKEN: &str = r#"
import sys
from kubernetes import client
from kubernetes.client.rest import ApiException
c = client.Configuration()
c.host = sys.argv[1]
c.api_key = {"authorization": "Bearer " + sys.argv[2]}
if len(sys.argv) > 3:
    c.ssl_ca_cert = sys.argv[3]
try:
    client.CoreApi(client.ApiClient(c)).get_api_versions()
    print("ok")
except ApiException as e:
    print(e.status, e.reason)
"#;

/// `GET /api` with the python `kubernetes` client over https (trusting the cluster CA) and
/// `token` as bearer: `ok` or the status.
async fn python_with_token(ks: &Kubesim, token: &str) -> String {
    let url = ks.url();
    let ca = ks.ca_file().expect("an https server");
    let ca = ca.display().to_string();
    let out = kubesim::testing::run_with_stdin(
        ks,
        "python",
        &["-", &url, token, &ca],
        Some(PYTHON_WITH_TOKEN),
    )
    .await;
    out.ok("python").trim().to_string()
}

/// A TokenReview of `token`: its `status`.
async fn review(ks: &Kubesim, token: &str) -> Value {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                        "spec": {"token": token}});
    let out = kubesim::testing::run_with_stdin(
        ks,
        "kubectl",
        &["create", "-f", "-", "-o", "json"],
        Some(&review.to_string()),
    )
    .await;
    let v: Value = serde_json::from_str(out.ok("kubectl create tokenreview")).unwrap();
    v["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_gets_401() {
    let ks = start(20).await;
    create(
        &ks,
        "",
        "serviceaccounts",
        json!({"metadata": {"name": "app"}}),
    );
    // kubectl asks for an hour; the cluster's lifetime caps it.
    let out = kubectl(
        &ks,
        &["create", "token", "app", "--duration=1h", "-o", "json"],
    )
    .await;
    let tr: Value = serde_json::from_str(out.ok("kubectl create token")).unwrap();
    assert_eq!(tr["spec"]["expirationSeconds"], 20, "{tr}");
    let token = tr["status"]["token"].as_str().unwrap().to_string();
    let expires: jiff::Timestamp = tr["status"]["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    assert_eq!(raw_status(&ks, &token).await, 200);
    assert_eq!(python_with_token(&ks, &token).await, "ok");
    let status = review(&ks, &token).await;
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["user"]["username"],
        "system:serviceaccount:default:app"
    );

    // Let the clock pass the expiry.
    let left = expires
        .duration_since(jiff::Timestamp::now())
        .unsigned_abs();
    tokio::time::sleep(left + Duration::from_secs(1)).await;

    assert_eq!(raw_status(&ks, &token).await, 401);
    assert_eq!(python_with_token(&ks, &token).await, "401 Unauthorized");
    let status = review(&ks, &token).await;
    assert_eq!(status["authenticated"], false, "{status}");
    assert_eq!(
        status["error"],
        "[invalid bearer token, service account token has expired]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_token_requests_follow_kube_apiserver() {
    let ks = Kubesim::start(Options::default()).await.unwrap();
    create(
        &ks,
        "",
        "serviceaccounts",
        json!({"metadata": {"name": "app"}}),
    );
    let out = kubectl(&ks, &["create", "token", "app", "--duration=5m"]).await;
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr
            .contains("may not specify a duration less than 10 minutes"),
        "{out:?}"
    );
    let out = kubectl(&ks, &["create", "token", "app", "-o", "json"]).await;
    let tr: Value = serde_json::from_str(out.ok("kubectl create token")).unwrap();
    assert_eq!(tr["spec"]["expirationSeconds"], 3600, "{tr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_token_dies_with_its_pod_or_service_account() {
    let ks = start(600).await;
    create(
        &ks,
        "",
        "serviceaccounts",
        json!({"metadata": {"name": "app"}}),
    );
    create(
        &ks,
        "",
        "pods",
        json!({"metadata": {"name": "holder"},
               "spec": {"serviceAccountName": "app", "automountServiceAccountToken": false,
                        "terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "main", "image": "example.org/tools/kubesim-probe:1.0",
                                        "env": [{"name": "PROBE_REPEAT_SECONDS", "value": "600"}]}]}}),
    );
    let bound = kubectl(
        &ks,
        &[
            "create",
            "token",
            "app",
            "--bound-object-kind=Pod",
            "--bound-object-name=holder",
        ],
    )
    .await;
    let bound = bound.ok("kubectl create token bound").trim().to_string();
    let unbound = kubectl(&ks, &["create", "token", "app"]).await;
    let unbound = unbound.ok("kubectl create token").trim().to_string();

    let status = review(&ks, &bound).await;
    assert_eq!(status["authenticated"], true, "{status}");
    let pod = ks
        .cluster()
        .get(&ResKey::new("", "pods"), "default", "holder")
        .unwrap();
    assert_eq!(
        status["user"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["holder"])
    );
    assert_eq!(
        status["user"]["extra"]["authentication.kubernetes.io/pod-uid"],
        json!([pod["metadata"]["uid"]])
    );
    assert_eq!(raw_status(&ks, &bound).await, 200);

    kubectl(&ks, &["delete", "pod", "holder", "--wait=false"])
        .await
        .ok("kubectl delete pod");
    wait_until(WAIT, "the bound token rejected", || {
        let ks = &ks;
        let bound = bound.clone();
        async move { (raw_status(ks, &bound).await == 401).then_some(()) }
    })
    .await;
    // The token not bound to the pod still works, until its ServiceAccount goes.
    assert_eq!(raw_status(&ks, &unbound).await, 200);
    kubectl(&ks, &["delete", "serviceaccount", "app"])
        .await
        .ok("kubectl delete serviceaccount");
    assert_eq!(raw_status(&ks, &unbound).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_keeps_working_across_token_rotations() {
    // Tokens live 120 s; the kubelet replaces them after 60 s, so the probe's kube-rs client,
    // which re-reads the kubeconfig's tokenFile about every minute, runs on three tokens
    // after the first one expired.
    let ks = start(120).await;
    create(
        &ks,
        "",
        "serviceaccounts",
        json!({"metadata": {"name": "reader"}}),
    );
    create(
        &ks,
        "rbac.authorization.k8s.io",
        "roles",
        json!({"metadata": {"name": "read-configmaps"},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}),
    );
    create(
        &ks,
        "rbac.authorization.k8s.io",
        "rolebindings",
        json!({"metadata": {"name": "reader"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
               "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}]}),
    );
    create(
        &ks,
        "",
        "pods",
        json!({"metadata": {"name": "probe"},
               "spec": {"serviceAccountName": "reader", "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "example.org/tools/kubesim-probe:1.0",
                                        "args": ["configmaps"],
                                        "env": [{"name": "PROBE_REPEAT_SECONDS", "value": "200"},
                                                {"name": "PROBE_INTERVAL_SECONDS", "value": "5"}]}]}}),
    );
    let c = ks.cluster();
    let pod = wait_until(Duration::from_secs(300), "probe pod finished", || {
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
    // The in-cluster path: https to the IP, the token file the kubelet rotates.
    assert!(
        log.contains(&format!("server: https://127.0.0.1:{}/", ks.addr().port())),
        "{log}"
    );
    let lines: Vec<(u64, &str)> = log
        .lines()
        .filter_map(|l| {
            let (secs, rest) = l.split_once(' ')?;
            Some((secs.parse().ok()?, rest))
        })
        .collect();
    assert!(
        lines
            .iter()
            .all(|(_, rest)| rest.starts_with("configmaps: ok")),
        "{log}"
    );
    // It listed after the first two tokens expired (at 120 s and 180 s).
    assert!(lines.iter().any(|(secs, _)| *secs >= 190), "{log}");
}
