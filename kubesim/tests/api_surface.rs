//! The API groups beyond the core workloads (policy, networking, admissionregistration,
//! storage, scheduling, autoscaling/v2, discovery), the bootstrap objects and ServiceAccount
//! issuer discovery, driven by kubectl 1.33 and 1.37, helm 3 and 4 and the python client.

use kubesim::testing::{CmdOutput, run, run_with_stdin};
use kubesim::{Kubesim, Options};

async fn start() -> Kubesim {
    Kubesim::start(Options::default())
        .await
        .expect("kubesim starts")
}

async fn ok(ks: &Kubesim, tool: &str, args: &[&str]) -> String {
    let out: CmdOutput = run(ks, tool, args).await;
    out.ok(&format!("{tool} {}", args.join(" "))).to_string()
}

fn header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: x}
data: {a: \"1\"}
";

const PDB: &str = "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
  labels: {app: x}
spec:
  maxUnavailable: 25%
  selector:
    matchLabels: {app: x}
";

const NETPOL: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
  labels: {app: x}
spec:
  podSelector:
    matchLabels: {app: x}
";

const INGRESS: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  labels: {app: x}
spec:
  rules:
  - host: web.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {name: web, port: {number: 80}}
";

const CLUSTER_KINDS: &str = "apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata:
  name: secrets-store.csi.k8s.io
spec:
  podInfoOnMount: true
  volumeLifecycleModes: [Ephemeral]
  tokenRequests:
  - audience: api://AzureADTokenExchange
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: azure-wi-webhook
webhooks:
- name: mutation.azure-workload-identity.io
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig:
    service: {name: azure-wi-webhook, namespace: kube-system, path: /mutate}
  rules:
  - apiGroups: [\"\"]
    apiVersions: [v1]
    operations: [CREATE]
    resources: [pods]
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: high
value: 1000
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: fast
  annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}
provisioner: disk.csi.azure.com
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 5
";

/// `kubectl apply --prune -l app=x -f dir/` (the default prune list needs policy and
/// networking among others), then the kinds' table columns.
async fn prune_and_print(tool: &str) {
    let ks = start().await;
    let dir = tempfile::tempdir().unwrap();
    for (file, text) in [
        ("cm.yaml", CONFIGMAP),
        ("pdb.yaml", PDB),
        ("netpol.yaml", NETPOL),
        ("ingress.yaml", INGRESS),
    ] {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let d = format!("{}/", dir.path().display());
    let applied = ok(&ks, tool, &["apply", "--prune", "-l", "app=x", "-f", &d]).await;
    assert!(
        applied.contains("poddisruptionbudget.policy/web created")
            && applied.contains("networkpolicy.networking.k8s.io/web created")
            && applied.contains("ingress.networking.k8s.io/web created"),
        "{applied}"
    );
    std::fs::remove_file(dir.path().join("pdb.yaml")).unwrap();
    std::fs::remove_file(dir.path().join("ingress.yaml")).unwrap();
    // The default prune list (core kinds, batch, apps and networking Ingress) leaves PDBs be.
    let pruned = ok(&ks, tool, &["apply", "--prune", "-l", "app=x", "-f", &d]).await;
    assert!(
        pruned.contains("ingress.networking.k8s.io/web pruned")
            && !pruned.contains("poddisruptionbudget"),
        "{pruned}"
    );
    let allowlist = ok(
        &ks,
        tool,
        &[
            "apply",
            "--prune",
            "-l",
            "app=x",
            "--prune-allowlist=policy/v1/PodDisruptionBudget",
            "--prune-allowlist=networking.k8s.io/v1/NetworkPolicy",
            "-f",
            &d,
        ],
    )
    .await;
    assert!(
        allowlist.contains("poddisruptionbudget.policy/web pruned"),
        "{allowlist}"
    );
    let left = ok(
        &ks,
        tool,
        &["get", "pdb,ingress,netpol,cm", "-l", "app=x", "-o", "name"],
    )
    .await;
    assert_eq!(
        left.lines().collect::<Vec<_>>(),
        ["networkpolicy.networking.k8s.io/web", "configmap/settings"],
        "{left}"
    );

    run_with_stdin(&ks, tool, &["apply", "-f", "-"], Some(PDB))
        .await
        .ok("apply pdb");
    run_with_stdin(&ks, tool, &["apply", "-f", "-"], Some(CLUSTER_KINDS))
        .await
        .ok("apply cluster kinds");
    let pdb = ok(&ks, tool, &["get", "pdb"]).await;
    assert_eq!(
        header(&pdb),
        [
            "NAME",
            "MIN",
            "AVAILABLE",
            "MAX",
            "UNAVAILABLE",
            "ALLOWED",
            "DISRUPTIONS",
            "AGE"
        ],
        "{pdb}"
    );
    let row: Vec<&str> = pdb.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..4], ["web", "N/A", "25%", "0"], "{pdb}");
    let all = ok(
        &ks,
        tool,
        &["get", "pdb,netpol,csidriver,mutatingwebhookconfigurations"],
    )
    .await;
    for expected in [
        "POD-SELECTOR",
        "networkpolicy.networking.k8s.io/web   app=x",
        "ATTACHREQUIRED   PODINFOONMOUNT   STORAGECAPACITY   TOKENREQUESTS",
        "csidriver.storage.k8s.io/secrets-store.csi.k8s.io   true             true             false             api://AzureADTokenExchange   false               Ephemeral",
        "WEBHOOKS",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/azure-wi-webhook   1",
    ] {
        assert!(all.contains(expected), "{expected:?} missing from:\n{all}");
    }
    let sc = ok(&ks, tool, &["get", "storageclass"]).await;
    assert!(
        sc.lines()
            .nth(1)
            .unwrap()
            .starts_with("fast (default)   disk.csi.azure.com   Delete          Immediate"),
        "{sc}"
    );
    let pc = ok(&ks, tool, &["get", "priorityclass"]).await;
    for name in ["high", "system-cluster-critical", "system-node-critical"] {
        assert!(pc.contains(name), "{pc}");
    }
    let hpa = ok(&ks, tool, &["get", "hpa", "web"]).await;
    assert!(
        hpa.contains("Deployment/web   cpu: <unknown>/80%   1         5"),
        "{hpa}"
    );
    let webhook = ok(
        &ks,
        tool,
        &[
            "get",
            "mutatingwebhookconfiguration",
            "azure-wi-webhook",
            "-o",
            "jsonpath={.webhooks[0].failurePolicy} {.webhooks[0].timeoutSeconds} {.webhooks[0].clientConfig.service.port}",
        ],
    )
    .await;
    assert_eq!(webhook, "Fail 10 443");
}

#[tokio::test]
async fn kubectl_1_37_prunes_and_prints_the_api_groups() {
    prune_and_print("kubectl").await;
}

#[tokio::test]
async fn kubectl_1_33_prunes_and_prints_the_api_groups() {
    prune_and_print("kubectl-1.33").await;
}

#[tokio::test]
async fn validation_of_the_new_kinds() {
    let ks = start().await;
    let both = PDB.replace(
        "maxUnavailable: 25%",
        "maxUnavailable: 1\n  minAvailable: 1",
    );
    let out = run_with_stdin(&ks, "kubectl", &["apply", "-f", "-"], Some(&both)).await;
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("The PodDisruptionBudget \"web\" is invalid: spec: Invalid value: ")
            && out
                .stderr
                .contains("minAvailable and maxUnavailable cannot be both set"),
        "{out:?}"
    );
    let webhook = "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: bad}
webhooks:
- name: short
  clientConfig: {url: https://example.com/validate}
";
    let out = run_with_stdin(&ks, "kubectl", &["apply", "-f", "-"], Some(webhook)).await;
    assert!(!out.success());
    for msg in [
        "webhooks[0].name: Invalid value: \"short\": should be a domain with at least three segments separated by dots",
        "webhooks[0].sideEffects: Required value",
        "webhooks[0].admissionReviewVersions: Required value",
    ] {
        assert!(out.stderr.contains(msg), "{msg:?} missing: {out:?}");
    }
    let reserved = "apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: system-mine}
value: 10
";
    let out = run_with_stdin(&ks, "kubectl", &["create", "-f", "-"], Some(reserved)).await;
    assert!(
        out.stderr
            .contains("priority class names with 'system-' prefix are reserved"),
        "{out:?}"
    );
}

async fn helm_installs_a_pdb_and_a_network_policy(helm: &str) {
    let ks = start().await;
    let chart = format!("{}/tests/charts/guarded", env!("CARGO_MANIFEST_DIR"));
    let installed = ok(
        &ks,
        helm,
        &["install", "g", &chart, "-n", "apps", "--create-namespace"],
    )
    .await;
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    let got = ok(
        &ks,
        "kubectl",
        &["-n", "apps", "get", "pdb,netpol", "-o", "name"],
    )
    .await;
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        [
            "poddisruptionbudget.policy/g-pdb",
            "networkpolicy.networking.k8s.io/g-netpol"
        ]
    );
    let upgraded = ok(
        &ks,
        helm,
        &[
            "upgrade",
            "g",
            &chart,
            "-n",
            "apps",
            "--set",
            "minAvailable=2",
        ],
    )
    .await;
    assert!(upgraded.contains("STATUS: deployed"), "{upgraded}");
    let min = ok(
        &ks,
        "kubectl",
        &[
            "-n",
            "apps",
            "get",
            "pdb",
            "g-pdb",
            "-o",
            "jsonpath={.spec.minAvailable} {.spec.maxUnavailable}",
        ],
    )
    .await;
    assert_eq!(min.trim(), "2");
    ok(&ks, helm, &["uninstall", "g", "-n", "apps"]).await;
    let left = ok(
        &ks,
        "kubectl",
        &["-n", "apps", "get", "pdb,netpol", "-o", "name"],
    )
    .await;
    assert!(left.trim().is_empty(), "{left}");
}

#[tokio::test]
async fn helm3_installs_a_pdb_and_a_network_policy() {
    helm_installs_a_pdb_and_a_network_policy("helm3").await;
}

#[tokio::test]
async fn helm4_installs_a_pdb_and_a_network_policy() {
    helm_installs_a_pdb_and_a_network_policy("helm4").await;
}

#[tokio::test]
async fn bootstrap_objects_exist_as_in_a_real_cluster() {
    let ks = start().await;
    let svc = ok(
        &ks,
        "kubectl",
        &[
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.type} {.spec.clusterIP} {.spec.ports[0].name} {.spec.ports[0].port} {.spec.ports[0].targetPort}",
        ],
    )
    .await;
    assert_eq!(
        svc,
        format!("ClusterIP 10.96.0.1 https 443 {}", ks.addr().port())
    );
    let slice = ok(&ks, "kubectl", &["get", "endpointslices", "kubernetes"]).await;
    assert!(
        slice.contains(&format!(
            "kubernetes   IPv4          {}   127.0.0.1",
            ks.addr().port()
        )),
        "{slice}"
    );
    let roles = ok(
        &ks,
        "kubectl",
        &[
            "get",
            "clusterroles",
            "cluster-admin",
            "admin",
            "edit",
            "view",
            "system:discovery",
            "system:basic-user",
            "system:public-info-viewer",
            "system:service-account-issuer-discovery",
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(roles.lines().count(), 8, "{roles}");
    let edit_labels = ok(
        &ks,
        "kubectl",
        &[
            "get",
            "clusterrole",
            "edit",
            "-o",
            "jsonpath={.metadata.labels}",
        ],
    )
    .await;
    assert!(
        edit_labels.contains(r#""rbac.authorization.k8s.io/aggregate-to-admin":"true""#),
        "{edit_labels}"
    );
    // The view role (bound in a namespace) lets a ServiceAccount read PDBs but not Secrets.
    ok(
        &ks,
        "kubectl",
        &[
            "create",
            "rolebinding",
            "viewer",
            "--clusterrole=view",
            "--serviceaccount=default:default",
        ],
    )
    .await;
    let can = |args: &'static [&'static str]| {
        let ks = &ks;
        async move { run(ks, "kubectl", args).await.stdout.trim().to_string() }
    };
    assert_eq!(
        can(&[
            "auth",
            "can-i",
            "list",
            "poddisruptionbudgets.policy",
            "--as=system:serviceaccount:default:default"
        ])
        .await,
        "yes"
    );
    assert_eq!(
        can(&[
            "auth",
            "can-i",
            "get",
            "secrets",
            "--as=system:serviceaccount:default:default"
        ])
        .await,
        "no"
    );
    let crbs = ok(
        &ks,
        "kubectl",
        &[
            "get",
            "clusterrolebinding",
            "system:service-account-issuer-discovery",
            "-o",
            "wide",
        ],
    )
    .await;
    assert!(crbs.contains("system:serviceaccounts"), "{crbs}");
}

#[tokio::test]
async fn service_account_issuer_discovery() {
    let ks = Kubesim::start(Options {
        service_account_issuer: Some("https://oidc.example.com/cluster-1".into()),
        ..Options::default()
    })
    .await
    .unwrap();
    let doc = ok(
        &ks,
        "kubectl",
        &["get", "--raw", "/.well-known/openid-configuration"],
    )
    .await;
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({
            "issuer": "https://oidc.example.com/cluster-1",
            "jwks_uri": format!("{}/openid/v1/jwks", ks.url()),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    );
    let jwks = ok(&ks, "kubectl", &["get", "--raw", "/openid/v1/jwks"]).await;
    assert_eq!(jwks.trim(), r#"{"keys":[]}"#);
    // Bound to system:serviceaccounts: a ServiceAccount may read it, another user may not.
    ok(
        &ks,
        "kubectl",
        &[
            "get",
            "--raw",
            "/.well-known/openid-configuration",
            "--as=system:serviceaccount:default:default",
        ],
    )
    .await;
    let denied = run(
        &ks,
        "kubectl",
        &["get", "--raw", "/openid/v1/jwks", "--as=jane"],
    )
    .await;
    assert!(!denied.success());
    assert!(denied.stderr.contains("forbidden"), "{denied:?}");
    // TokenRequests default their audience to the issuer.
    let token = ok(
        &ks,
        "kubectl",
        &[
            "create",
            "token",
            "default",
            "-o",
            "jsonpath={.spec.audiences[0]}",
        ],
    )
    .await;
    assert_eq!(token, "https://oidc.example.com/cluster-1");
}

const PYTHON_METADATA: &str = r#"
import json
from kubernetes import client, config
from kubernetes.client.rest import ApiException

config.load_kube_config()
core = client.CoreV1Api()
core.create_namespaced_secret("default", client.V1Secret(
    metadata=client.V1ObjectMeta(name="creds", labels={"k": "v"}), string_data={"password": "hunter2"}))

meta = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
r = core.read_namespaced_secret("creds", "default", _preload_content=False, _headers={"Accept": meta})
got = json.loads(r.data)
assert got["kind"] == "PartialObjectMetadata" and got["apiVersion"] == "meta.k8s.io/v1", got
assert set(got) == {"kind", "apiVersion", "metadata"}, got
assert got["metadata"]["name"] == "creds" and got["metadata"]["labels"] == {"k": "v"}, got

lst = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
r = core.list_namespaced_secret("default", limit=1, _preload_content=False, _headers={"Accept": lst})
got = json.loads(r.data)
assert got["kind"] == "PartialObjectMetadataList" and got["metadata"]["resourceVersion"], got
assert [i["metadata"]["name"] for i in got["items"]] == ["creds"], got
assert all(set(i) == {"kind", "apiVersion", "metadata"} for i in got["items"]), got
assert b"hunter2" not in r.data and b"aHVudGVyMg" not in r.data

for accept, fragment in [
    ("application/json;as=Foo;g=meta.k8s.io;v=v1", "only the following media types are accepted"),
    ("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v2", "only the following media types are accepted"),
    (lst, "you requested PartialObjectMetadataList, but the requested object is not a list"),
]:
    try:
        core.read_namespaced_secret("creds", "default", _preload_content=False, _headers={"Accept": accept})
        raise SystemExit("expected 406 for " + accept)
    except ApiException as e:
        body = json.loads(e.body)
        assert e.status == 406 and body["reason"] == "NotAcceptable" and body["code"] == 406, (e.status, e.body)
        assert fragment in body["message"], body
        assert body["kind"] == "Status" and body["status"] == "Failure", body
try:
    core.list_namespaced_secret("default", _preload_content=False, _headers={"Accept": meta})
    raise SystemExit("expected 406 for a list as PartialObjectMetadata")
except ApiException as e:
    assert e.status == 406 and "but the requested object is a list" in json.loads(e.body)["message"], e.body
print("metadata-ok")
"#;

#[tokio::test]
async fn python_reads_metadata_only() {
    let ks = start().await;
    let out = run_with_stdin(&ks, "python", &["-"], Some(PYTHON_METADATA)).await;
    out.ok("the python metadata script");
    assert!(out.stdout.contains("metadata-ok"), "{out:?}");
}
