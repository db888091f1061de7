//! What other projects' suites expect of an API server, checked with real clients (the python
//! client, kubectl): deletes that answer the deleted object, bodies as kube-apiserver's
//! encoder writes them, a complete Node, audience-aware TokenReviews, the node field
//! selector, the pod phase of a crash-looping container and a terminating namespace's
//! conditions.

use std::time::Duration;

use kubesim::testing::{run, run_with_stdin, wait_until};
use kubesim::{Kubesim, Options};
use serde_json::Value;

async fn start() -> Kubesim {
    Kubesim::start(Options::default())
        .await
        .expect("kubesim starts")
}

async fn python(ks: &Kubesim, script: &str) -> String {
    let out = run_with_stdin(ks, "python", &["-"], Some(script)).await;
    out.ok("the python client script");
    assert!(out.stdout.contains("python-ok"), "{out:?}");
    out.stdout
}

async fn kubectl_json(ks: &Kubesim, args: &[&str]) -> Option<Value> {
    let out = run(ks, "kubectl", args).await;
    if !out.success() {
        return None;
    }
    serde_json::from_str(&out.stdout).ok()
}

/// Services, ServiceAccounts, Pods, Namespaces (ReturnDeletedObject in their registry
/// stores) answer a delete with the object; ConfigMaps with a `Status` whose details omit
/// the core group.
#[tokio::test]
async fn deletes_answer_the_object_where_kube_apiserver_does() {
    let ks = start().await;
    python(
        &ks,
        r#"
import json
from kubernetes import client, config
config.load_kube_config()
core = client.CoreV1Api()

svc = client.V1Service(metadata=client.V1ObjectMeta(name="web"),
    spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]))
core.create_namespaced_service("default", svc)
gone = core.delete_namespaced_service("web", "default")
assert gone.kind == "Service" and gone.metadata.name == "web", gone
assert gone.spec.cluster_ip, gone

core.create_namespaced_service_account("default", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="robot")))
gone = core.delete_namespaced_service_account("robot", "default")
assert gone.kind == "ServiceAccount" and gone.metadata.name == "robot", gone

core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm")))
raw = core.delete_namespaced_config_map("cm", "default", _preload_content=False).data.decode()
status = json.loads(raw)
assert status["kind"] == "Status" and status["status"] == "Success", raw
assert status["details"]["name"] == "cm" and status["details"]["kind"] == "configmaps", raw
assert "group" not in status["details"], raw
assert raw.startswith('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"cm","kind":"configmaps","uid":'), raw
print("python-ok")
"#,
    )
    .await;
}

/// Error `Status` bodies, objects and lists as kube-apiserver's JSON encoder writes them:
/// struct field order (`kind` before `apiVersion`), no empty core group, a final newline;
/// custom resources (unstructured) with their keys sorted.
#[tokio::test]
async fn bodies_are_written_as_the_api_server_encoder_writes_them() {
    let ks = start().await;
    python(
        &ks,
        r#"
from kubernetes import client, config
from kubernetes.client.rest import ApiException
config.load_kube_config()
core = client.CoreV1Api()

try:
    core.read_namespaced_config_map("nope", "default")
    raise SystemExit("expected 404")
except ApiException as e:
    body = e.body.decode() if isinstance(e.body, bytes) else e.body
    want = '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \\"nope\\" not found","reason":"NotFound","details":{"name":"nope","kind":"configmaps"},"code":404}\n'
    assert body == want, repr(body)

try:
    client.AppsV1Api().read_namespaced_deployment("nope", "default")
    raise SystemExit("expected 404")
except ApiException as e:
    body = e.body.decode() if isinstance(e.body, bytes) else e.body
    assert '"details":{"name":"nope","group":"apps","kind":"deployments"},"code":404}\n' in body, repr(body)

cm = client.V1ConfigMap(data={"a": "1"}, metadata=client.V1ObjectMeta(labels={"x": "y"}, name="ordered"))
core.create_namespaced_config_map("default", cm)
raw = core.read_namespaced_config_map("ordered", "default", _preload_content=False).data.decode()
assert raw.startswith('{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"ordered","namespace":"default","uid":'), raw
assert raw.endswith('"data":{"a":"1"}}\n'), repr(raw)
meta_keys = list(__import__("json").loads(raw)["metadata"].keys())
assert meta_keys[:6] == ["name", "namespace", "uid", "resourceVersion", "creationTimestamp", "labels"], meta_keys

raw = core.list_namespaced_config_map("default", _preload_content=False).data.decode()
assert raw.startswith('{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":'), raw
assert raw.endswith("]}\n"), repr(raw[-20:])
print("python-ok")
"#,
    )
    .await;

    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;
    run_with_stdin(&ks, "kubectl", &["apply", "-f", "-"], Some(crd))
        .await
        .ok("kubectl apply the CRD");
    let cr = "
apiVersion: example.com/v1
kind: Widget
metadata: {name: w, labels: {b: '2', a: '1'}}
spec: {zeta: 1, alpha: {d: 1, c: 2}}
";
    run_with_stdin(&ks, "kubectl", &["apply", "-f", "-"], Some(cr))
        .await
        .ok("kubectl apply the custom resource");
    let out = run(
        &ks,
        "kubectl",
        &[
            "get",
            "--raw",
            "/apis/example.com/v1/namespaces/default/widgets/w",
        ],
    )
    .await;
    let raw = out.ok("kubectl get --raw the custom resource");
    assert!(
        raw.starts_with(
            r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"annotations":"#
        ),
        "{raw}"
    );
    assert!(
        raw.contains(r#""labels":{"a":"1","b":"2"}"#)
            && raw.contains(r#""spec":{"alpha":{"c":2,"d":1},"zeta":1}"#),
        "{raw}"
    );
}

/// The Node carries every NodeSystemInfo field, so the python client's typed model (which
/// requires them) decodes it; `spec.unschedulable` is a node field selector.
#[tokio::test]
async fn the_node_decodes_and_selects_by_unschedulable() {
    let ks = start().await;
    wait_until(
        Duration::from_secs(30),
        "the node is registered",
        || async {
            kubectl_json(&ks, &["get", "node", "kubesim", "-o", "json"])
                .await
                .filter(|n| n["status"]["nodeInfo"].is_object())
        },
    )
    .await;
    python(
        &ks,
        r#"
from kubernetes import client, config
config.load_kube_config()
core = client.CoreV1Api()
node = core.read_node("kubesim")
info = node.status.node_info
for f in ["boot_id", "kernel_version", "machine_id", "os_image", "system_uuid", "container_runtime_version",
          "kubelet_version", "operating_system", "architecture"]:
    assert getattr(info, f), (f, info)
assert info.kube_proxy_version is not None, info
names = [n.metadata.name for n in core.list_node(field_selector="spec.unschedulable=false").items]
assert names == ["kubesim"], names
names = [n.metadata.name for n in core.list_node(field_selector="spec.unschedulable=true").items]
assert names == [], names
print("python-ok")
"#,
    )
    .await;
    run(&ks, "kubectl", &["cordon", "kubesim"])
        .await
        .ok("kubectl cordon");
    let out = run(
        &ks,
        "kubectl",
        &[
            "get",
            "nodes",
            "--field-selector",
            "spec.unschedulable=true",
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(
        out.ok("kubectl get nodes --field-selector").trim(),
        "node/kubesim"
    );
}

/// A TokenReview for an audience the token was not issued for is unauthenticated, with the
/// authenticator's error; otherwise `status.audiences` is the intersection.
#[tokio::test]
async fn token_reviews_check_audiences() {
    let ks = start().await;
    python(
        &ks,
        r#"
from kubernetes import client, config
config.load_kube_config()
core = client.CoreV1Api()
auth = client.AuthenticationV1Api()
issuer = "https://kubernetes.default.svc.cluster.local"
core.create_namespaced_service_account("default", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="app")))

def token(audiences):
    tr = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=audiences))
    return core.create_namespaced_service_account_token("app", "default", tr).status.token

def review(tok, audiences):
    spec = client.V1TokenReviewSpec(token=tok, audiences=audiences)
    return auth.create_token_review(client.V1TokenReview(spec=spec)).status

vault = token(["vault", "other"])
st = review(vault, ["vault"])
assert st.authenticated and st.audiences == ["vault"], st
assert st.user.username == "system:serviceaccount:default:app", st
st = review(vault, ["elsewhere"])
assert not st.authenticated, st
assert st.error == '[invalid bearer token, token audiences ["vault" "other"] is invalid for the target audiences ["elsewhere"]]', st.error
st = review(vault, None)
assert not st.authenticated, st

plain = token(None)
st = review(plain, None)
assert st.authenticated and st.audiences == [issuer], st
st = review(plain, ["vault"])
assert not st.authenticated, st
print("python-ok")
"#,
    )
    .await;
}

/// A container that cannot start under `restartPolicy: Always` crash-loops in a `Running`
/// pod, as the kubelet's getPhase counts a restarting container.
#[tokio::test]
async fn a_crash_looping_pod_is_running() {
    let ks = start().await;
    let pod = "
apiVersion: v1
kind: Pod
metadata: {name: loop}
spec:
  containers:
  - name: main
    image: alpine
    command: [/definitely/not/a/program]
";
    run_with_stdin(&ks, "kubectl", &["apply", "-f", "-"], Some(pod))
        .await
        .ok("kubectl apply the pod");
    let p = wait_until(Duration::from_secs(30), "the pod crash-loops", || async {
        kubectl_json(&ks, &["get", "pod", "loop", "-o", "json"])
            .await
            .filter(|p| {
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                    == "CrashLoopBackOff"
            })
    })
    .await;
    assert_eq!(p["status"]["phase"], "Running", "{p}");
    let last = &p["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["reason"], "StartError", "{p}");
}

/// A terminating namespace reports the namespace deleter's conditions: what remains, and
/// which finalizers hold it, until its content is gone.
#[tokio::test]
async fn a_terminating_namespace_reports_what_remains() {
    let ks = start().await;
    let objs = "
apiVersion: v1
kind: Namespace
metadata: {name: doomed}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: held, namespace: doomed, finalizers: [example.com/hold]}
";
    run_with_stdin(&ks, "kubectl", &["apply", "-f", "-"], Some(objs))
        .await
        .ok("kubectl apply");
    run(&ks, "kubectl", &["delete", "ns", "doomed", "--wait=false"])
        .await
        .ok("kubectl delete ns");
    let cond = |ns: &Value, ty: &str| -> Value {
        ns["status"]["conditions"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["type"] == ty).cloned())
            .unwrap_or(Value::Null)
    };
    let ns = wait_until(Duration::from_secs(30), "the conditions", || async {
        kubectl_json(&ks, &["get", "ns", "doomed", "-o", "json"])
            .await
            .filter(|ns| cond(ns, "NamespaceFinalizersRemaining")["status"] == "True")
    })
    .await;
    assert_eq!(ns["status"]["phase"], "Terminating");
    let remaining = cond(&ns, "NamespaceContentRemaining");
    assert_eq!(remaining["status"], "True", "{ns}");
    assert_eq!(remaining["reason"], "SomeResourcesRemain");
    assert_eq!(
        remaining["message"],
        "Some resources are remaining: configmaps. has 1 resource instances"
    );
    let fins = cond(&ns, "NamespaceFinalizersRemaining");
    assert_eq!(fins["reason"], "SomeFinalizerRemain");
    assert_eq!(
        fins["message"],
        "Some finalizers are remaining: example.com/hold in 1 resource instances"
    );
    for (ty, reason) in [
        ("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered"),
        ("NamespaceDeletionContentFailure", "ContentDeleted"),
    ] {
        assert_eq!(cond(&ns, ty)["status"], "False", "{ns}");
        assert_eq!(cond(&ns, ty)["reason"], reason, "{ns}");
    }
    run(
        &ks,
        "kubectl",
        &[
            "patch",
            "configmap",
            "held",
            "-n",
            "doomed",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    )
    .await
    .ok("kubectl patch the finalizer away");
    wait_until(Duration::from_secs(30), "the namespace is gone", || async {
        let out = run(&ks, "kubectl", &["get", "ns", "doomed"]).await;
        (!out.success() && out.stderr.contains("NotFound")).then_some(())
    })
    .await;
}
