//! HTTPS and the in-cluster path: kubesim serves https with its own cluster CA; pods get
//! `KUBERNETES_SERVICE_HOST` / `_PORT` / `_PORT_HTTPS` and the ServiceAccount files `token`,
//! `ca.crt` and `namespace` at `/var/run/secrets/kubernetes.io/serviceaccount` and no
//! `KUBECONFIG`, so real clients in a pod (kube-rs, kubectl 1.33 and 1.37 through client-go,
//! the python client) take their in-cluster configuration, as on a real cluster; every
//! namespace has the CA as `kube-root-ca.crt`; `insecure_http` keeps plain http.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use kubesim::cluster::{LogOptions, WriteOptions};
use kubesim::store::ResKey;
use kubesim::testing::{kubectl, run, tool, wait_until};
use kubesim::{Kubesim, Options};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn probe_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kubesim-probe"))
        .parent()
        .expect("bin dir")
}

async fn start(options: Options) -> Kubesim {
    let ks = Kubesim::start(Options {
        bin_dir: Some(probe_dir().to_path_buf()),
        ..options
    })
    .await
    .expect("kubesim starts");
    // Mounting the files at the fixed path needs root (see the kubesim README).
    assert_eq!(
        ks.kubelet().in_cluster_files(),
        kubesim::kubelet::process::is_root() && !ks.options().insecure_http,
        "pods get the in-cluster files exactly when kubesim runs as root over https"
    );
    ks
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

/// Let the `default` ServiceAccount of `default` list ConfigMaps.
fn grant_configmaps(ks: &Kubesim) {
    create(
        ks,
        "rbac.authorization.k8s.io",
        "roles",
        json!({"metadata": {"name": "read-configmaps"},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
    );
    create(
        ks,
        "rbac.authorization.k8s.io",
        "rolebindings",
        json!({"metadata": {"name": "read-configmaps"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
               "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]}),
    );
}

/// Run a pod of one container with `command`; its phase and log once it has finished.
async fn run_pod(ks: &Kubesim, name: &str, command: Vec<String>) -> (String, String) {
    create(
        ks,
        "",
        "pods",
        json!({"metadata": {"name": name},
               "spec": {"restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "example.org/tools:1.0",
                                        "command": command}]}}),
    );
    let c = ks.cluster();
    let pod = wait_until(WAIT, &format!("pod {name} finished"), || {
        let c = c.clone();
        async move {
            c.get(&ResKey::new("", "pods"), "default", name)
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
            name,
            LogOptions {
                container: "main".into(),
                ..Default::default()
            },
        )
        .unwrap();
    while let Some(chunk) = s.next().await {
        log.extend_from_slice(&chunk.unwrap());
    }
    (
        pod["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        String::from_utf8(log).unwrap(),
    )
}

/// The kubeconfig names the https server and carries the CA; kubectl 1.33 and 1.37 verify the
/// server with it; the CA file beside the kubeconfig is the same CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_and_kubectl_use_https_with_the_cluster_ca() {
    let ks = start(Options::default()).await;
    assert!(ks.url().starts_with("https://127.0.0.1:"), "{}", ks.url());
    let kc: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(ks.kubeconfig_path()).unwrap()).unwrap();
    let cluster = &kc["clusters"][0]["cluster"];
    assert_eq!(cluster["server"], ks.url());
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(cluster["certificate-authority-data"].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(ca).unwrap(), ks.ca_pem().unwrap());
    assert_eq!(
        std::fs::read_to_string(ks.ca_file().unwrap()).unwrap(),
        ks.ca_pem().unwrap()
    );
    for version in ["kubectl-1.33", "kubectl-1.37"] {
        let out = run(&ks, version, &["get", "namespaces", "-o", "name"]).await;
        assert!(out.ok(version).contains("namespace/kube-system"), "{out:?}");
    }
    // A client that does not trust the CA is refused at the handshake.
    let out = run(
        &ks,
        "kubectl",
        &[
            "get",
            "namespaces",
            "--server",
            &ks.url(),
            "--certificate-authority",
            "/dev/null",
        ],
    )
    .await;
    assert!(!out.success(), "{out:?}");
}

/// Every namespace has `kube-root-ca.crt` with the CA; deleted, it comes back; changed, it is
/// reset, as kube-controller-manager's root-ca-cert-publisher does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_publishes_the_cluster_ca() {
    let ks = start(Options::default()).await;
    let ca = ks.ca_pem().unwrap().to_string();
    let published = |ns: &'static str| {
        let ks = &ks;
        async move {
            let out = kubectl(
                ks,
                &[
                    "get",
                    "configmap",
                    "kube-root-ca.crt",
                    "-n",
                    ns,
                    "-o",
                    "jsonpath={.data.ca\\.crt}",
                ],
            )
            .await;
            out.success().then_some(out.stdout)
        }
    };
    kubectl(&ks, &["create", "namespace", "fresh"])
        .await
        .ok("kubectl create namespace");
    for ns in ["default", "kube-system", "fresh"] {
        let got = wait_until(WAIT, &format!("kube-root-ca.crt in {ns}"), || published(ns)).await;
        assert_eq!(got, ca, "{ns}");
    }
    kubectl(
        &ks,
        &["delete", "configmap", "kube-root-ca.crt", "-n", "fresh"],
    )
    .await
    .ok("kubectl delete configmap");
    wait_until(WAIT, "kube-root-ca.crt recreated", || async {
        published("fresh").await.filter(|c| *c == ca)
    })
    .await;
    kubectl(
        &ks,
        &[
            "patch",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "fresh",
            "-p",
            r#"{"data":{"ca.crt":"changed"}}"#,
        ],
    )
    .await
    .ok("kubectl patch configmap");
    wait_until(WAIT, "kube-root-ca.crt reset", || async {
        published("fresh").await.filter(|c| *c == ca)
    })
    .await;
}

/// A pod's process gets the in-cluster variables and files, and no KUBECONFIG: its token is
/// the pod's bound ServiceAccount token, `ca.crt` the cluster CA, `namespace` its namespace;
/// the files are read-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_gets_the_in_cluster_files_and_variables() {
    let ks = start(Options::default()).await;
    if !ks.kubelet().in_cluster_files() {
        eprintln!("skipped: kubesim does not run as root, pods get a KUBECONFIG instead");
        return;
    }
    let script = r#"
d=/var/run/secrets/kubernetes.io/serviceaccount
echo "host=$KUBERNETES_SERVICE_HOST port=$KUBERNETES_SERVICE_PORT https=$KUBERNETES_SERVICE_PORT_HTTPS kubeconfig=${KUBECONFIG:-none}"
echo "namespace=$(cat $d/namespace)"
echo "token=$(cat $d/token)"
if touch $d/x 2>/dev/null; then echo writable; fi
cat $d/ca.crt
"#;
    let (phase, log) = run_pod(&ks, "files", vec!["sh".into(), "-c".into(), script.into()]).await;
    assert_eq!(phase, "Succeeded", "{log}");
    let port = ks.addr().port();
    assert!(
        log.contains(&format!(
            "host=127.0.0.1 port={port} https={port} kubeconfig=none\n"
        )),
        "{log}"
    );
    assert!(log.contains("namespace=default\n"), "{log}");
    assert!(!log.contains("writable"), "{log}");
    assert!(log.ends_with(ks.ca_pem().unwrap()), "{log}");
    let token = log
        .lines()
        .find_map(|l| l.strip_prefix("token="))
        .expect("the token line");
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                        "spec": {"token": token}});
    let out = kubesim::testing::run_with_stdin(
        &ks,
        "kubectl",
        &["create", "-f", "-", "-o", "json"],
        Some(&review.to_string()),
    )
    .await;
    let review: Value = serde_json::from_str(out.ok("kubectl create tokenreview")).unwrap();
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(
        review["status"]["user"]["username"],
        "system:serviceaccount:default:default"
    );
    assert_eq!(
        review["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["files"])
    );

    // The pod has the volume kube-apiserver's ServiceAccount admission adds, mounted read-only
    // at the in-cluster path.
    let pod = ks
        .cluster()
        .get(&ResKey::new("", "pods"), "default", "files")
        .unwrap();
    let volume = &pod["spec"]["volumes"][0];
    let name = volume["name"].as_str().unwrap();
    assert!(
        name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5,
        "{pod}"
    );
    let sources = &volume["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(
        sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"],
        json!([{"name": name, "readOnly": true,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}])
    );

    // automountServiceAccountToken: false (on the pod, or on its ServiceAccount): no volume,
    // no files, no KUBECONFIG.
    create(
        &ks,
        "",
        "serviceaccounts",
        json!({"metadata": {"name": "quiet"}, "automountServiceAccountToken": false}),
    );
    let script =
        "ls /var/run/secrets/kubernetes.io/serviceaccount; echo kubeconfig=${KUBECONFIG:-none}";
    for (pod, sa, automount) in [
        ("no-token", "default", Some(false)),
        ("quiet", "quiet", None),
    ] {
        let mut spec = json!({"serviceAccountName": sa, "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "example.org/tools:1.0",
                            "command": ["sh", "-c", script]}]});
        if let Some(a) = automount {
            spec["automountServiceAccountToken"] = json!(a);
        }
        create(
            &ks,
            "",
            "pods",
            json!({"metadata": {"name": pod}, "spec": spec}),
        );
        let c = ks.cluster();
        let done = wait_until(WAIT, &format!("pod {pod} finished"), || {
            let c = c.clone();
            async move {
                c.get(&ResKey::new("", "pods"), "default", pod)
                    .ok()
                    .filter(|p| p["status"]["phase"] == "Succeeded")
            }
        })
        .await;
        assert!(done["spec"]["volumes"].is_null(), "{done}");
        let out = kubectl(&ks, &["logs", pod]).await;
        assert_eq!(out.ok("kubectl logs"), "kubeconfig=none\n", "{pod}");
    }
}

/// Real clients in a pod take the in-cluster path over https to an API server addressed by
/// IP: kube-rs (rustls: the IP SAN), kubectl 1.33 and 1.37 (client-go's InClusterConfig) and
/// the python client (`load_incluster_config`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_in_a_pod_take_the_in_cluster_path() {
    let ks = start(Options::default()).await;
    if !ks.kubelet().in_cluster_files() {
        eprintln!("skipped: kubesim does not run as root, pods get a KUBECONFIG instead");
        return;
    }
    grant_configmaps(&ks);
    let port = ks.addr().port();

    let (phase, log) = run_pod(
        &ks,
        "kube-rs",
        vec!["kubesim-probe".into(), "configmaps".into()],
    )
    .await;
    assert_eq!(phase, "Succeeded", "{log}");
    assert!(
        log.contains(&format!("server: https://127.0.0.1:{port}/")),
        "{log}"
    );
    assert!(log.contains("configmaps: ok"), "{log}");

    for version in ["kubectl-1.33", "kubectl-1.37"] {
        let bin = tool(version).display().to_string();
        let (phase, log) = run_pod(
            &ks,
            &version.replace('.', "-"),
            vec![
                bin,
                "get".into(),
                "configmaps".into(),
                "-o".into(),
                "name".into(),
                "-v=6".into(),
            ],
        )
        .await;
        assert_eq!(phase, "Succeeded", "{version}: {log}");
        assert!(
            log.contains("configmap/kube-root-ca.crt"),
            "{version}: {log}"
        );
        // client-go's in-cluster URL, and the namespace from the ServiceAccount files.
        assert!(
            log.contains(&format!(
                "https://127.0.0.1:{port}/api/v1/namespaces/default/configmaps"
            )),
            "{version}: {log}"
        );
    }

    let python = kubesim::testing::python().display().to_string();
    let script = r#"
from kubernetes import client, config
config.load_incluster_config()
c = client.Configuration.get_default_copy()
print("host", c.host)
print("configmaps", [i.metadata.name for i in client.CoreV1Api().list_namespaced_config_map("default").items])
"#;
    let (phase, log) = run_pod(&ks, "python", vec![python, "-c".into(), script.into()]).await;
    assert_eq!(phase, "Succeeded", "{log}");
    assert!(
        log.contains(&format!("host https://127.0.0.1:{port}")),
        "{log}"
    );
    assert!(log.contains("'kube-root-ca.crt'"), "{log}");
}

/// With `insecure_http` kubesim serves plain http, without a CA: no CA in the kubeconfig, no
/// `kube-root-ca.crt`, and pods find the API through KUBECONFIG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_http_keeps_plain_http_and_kubeconfig() {
    let ks = start(Options {
        insecure_http: true,
        ..Default::default()
    })
    .await;
    assert!(ks.url().starts_with("http://127.0.0.1:"), "{}", ks.url());
    assert!(ks.ca_pem().is_none() && ks.ca_file().is_none());
    let text = std::fs::read_to_string(ks.kubeconfig_path()).unwrap();
    assert!(!text.contains("certificate-authority"), "{text}");
    let out = kubectl(&ks, &["get", "configmaps", "-o", "name"]).await;
    assert!(
        !out.ok("kubectl get").contains("kube-root-ca.crt"),
        "{out:?}"
    );
    grant_configmaps(&ks);
    let script = format!(
        "echo kubeconfig=${{KUBECONFIG:+set}}; exec {} configmaps",
        probe_dir().join("kubesim-probe").display()
    );
    let (phase, log) = run_pod(&ks, "plain", vec!["sh".into(), "-c".into(), script]).await;
    assert_eq!(phase, "Succeeded", "{log}");
    assert!(log.contains("kubeconfig=set"), "{log}");
    assert!(log.contains(&format!("server: {}/", ks.url())), "{log}");
    assert!(log.contains("configmaps: ok"), "{log}");
}
