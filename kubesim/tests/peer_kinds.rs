//! Kinds and endpoints other projects' suites use, checked with real clients (kubectl 1.33
//! and 1.37, the python client): ReplicationControllers with their controller and scale
//! subresource, APIServices, aggregated discovery, `pods/eviction` with PodDisruptionBudgets
//! (and `kubectl drain`), ComponentStatuses, CertificateSigningRequests' approval and
//! `pods/ephemeralcontainers`.

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

async fn apply(ks: &Kubesim, yaml: &str) {
    run_with_stdin(ks, "kubectl", &["apply", "-f", "-"], Some(yaml))
        .await
        .ok("kubectl apply");
}

/// A ReplicationController of `replicas` sleeping pods labelled `app: NAME`.
fn rc(name: &str, replicas: u32) -> String {
    format!(
        "
apiVersion: v1
kind: ReplicationController
metadata:
  name: {name}
spec:
  replicas: {replicas}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: [sleep, '3600']
"
    )
}

/// The RC once its status reports `ready` ready replicas for its current generation.
async fn rc_settled(ks: &Kubesim, name: &str, ready: i64) -> Value {
    wait_until(
        Duration::from_secs(60),
        &format!("rc/{name} has {ready} ready replicas"),
        || async {
            kubectl_json(ks, &["get", "rc", name, "-o", "json"])
                .await
                .filter(|r| {
                    r["status"]["observedGeneration"] == r["metadata"]["generation"]
                        && r["status"]["replicas"] == ready
                        && r["status"]["readyReplicas"].as_i64().unwrap_or(0) == ready
                })
        },
    )
    .await
}

async fn active_pods(ks: &Kubesim, selector: &str) -> Vec<Value> {
    kubectl_json(ks, &["get", "pods", "-l", selector, "-o", "json"])
        .await
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

/// As kube-controller-manager's replication manager: the selector and labels default to
/// the template's labels, pods are created and removed to match `spec.replicas`, owned by
/// the RC, and the status counts them; `kubectl scale rc` goes through the scale
/// subresource.
#[tokio::test]
async fn replication_controllers_keep_their_pods_and_scale() {
    let ks = start().await;
    apply(&ks, &rc("web", 2)).await;
    let r = rc_settled(&ks, "web", 2).await;
    assert_eq!(r["spec"]["selector"]["app"], "web", "{r}");
    assert_eq!(r["metadata"]["labels"]["app"], "web", "{r}");
    assert_eq!(r["metadata"]["generation"], 1, "{r}");
    assert_eq!(r["status"]["availableReplicas"], 2, "{r}");
    let pods = active_pods(&ks, "app=web").await;
    assert_eq!(pods.len(), 2, "{pods:?}");
    for p in &pods {
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "ReplicationController", "{p}");
        assert_eq!(owner["uid"], r["metadata"]["uid"], "{p}");
        assert!(p["metadata"]["name"].as_str().unwrap().starts_with("web-"));
    }
    let scale = kubectl_json(
        &ks,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/replicationcontrollers/web/scale",
        ],
    )
    .await
    .expect("the scale subresource");
    assert_eq!(scale["kind"], "Scale", "{scale}");
    assert_eq!(scale["status"]["selector"], "app=web", "{scale}");
    assert_eq!(scale["spec"]["replicas"], 2, "{scale}");

    run(&ks, "kubectl", &["scale", "rc", "web", "--replicas=3"])
        .await
        .ok("kubectl scale rc");
    let r = rc_settled(&ks, "web", 3).await;
    assert_eq!(r["metadata"]["generation"], 2, "{r}");
    let table = run(&ks, "kubectl", &["get", "rc", "web"]).await;
    let row: Vec<&str> = table
        .ok("kubectl get rc")
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..4], ["web", "3", "3", "3"], "{table:?}");

    run(&ks, "kubectl-1.33", &["scale", "rc", "web", "--replicas=1"])
        .await
        .ok("kubectl 1.33 scale rc");
    rc_settled(&ks, "web", 1).await;
    wait_until(Duration::from_secs(30), "one pod is left", || async {
        (active_pods(&ks, "app=web").await.len() == 1).then_some(())
    })
    .await;
}

/// The built-in group-versions are APIServices, local and available, as the aggregator
/// registers them (`kubectl get apiservices`, the python client).
#[tokio::test]
async fn api_services_are_listed_as_kube_apiserver_lists_them() {
    let ks = start().await;
    let out = run(&ks, "kubectl", &["get", "apiservices"]).await;
    let rows: Vec<Vec<&str>> = out
        .ok("kubectl get apiservices")
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "SERVICE", "AVAILABLE", "AGE"], "{out:?}");
    for name in [
        "v1.",
        "v1.apps",
        "v1.batch",
        "v2.autoscaling",
        "v1.apiregistration.k8s.io",
    ] {
        let row = rows.iter().find(|r| r[0] == name);
        assert!(
            row.is_some_and(|r| r[1] == "Local" && r[2] == "True"),
            "{name}: {out:?}"
        );
    }
    python(
        &ks,
        r#"
from kubernetes import client, config
config.load_kube_config()
api = client.ApiregistrationV1Api()
items = {s.metadata.name: s for s in api.list_api_service().items}
core = items["v1."]
assert core.spec.group is None and core.spec.version == "v1", core.spec
assert core.spec.service is None, core.spec
assert core.spec.group_priority_minimum == 18000, core.spec
apps = api.read_api_service("v1.apps")
assert apps.spec.group == "apps" and apps.spec.service is None, apps.spec
assert apps.metadata.labels["kube-aggregator.kubernetes.io/automanaged"] == "onstart"
cond = apps.status.conditions[0]
assert (cond.type, cond.status, cond.reason) == ("Available", "True", "Local"), cond
try:
    api.create_api_service(client.V1APIService(metadata=client.V1ObjectMeta(name="v1.wrong"),
        spec=client.V1APIServiceSpec(group="example.com", version="v1",
            group_priority_minimum=1000, version_priority=15)))
    raise SystemExit("a misnamed APIService was accepted")
except client.ApiException as e:
    assert e.status == 422 and "spec.version" in e.body, e.body
print("python-ok")
"#,
    )
    .await;
}

/// The group-versions of CustomResourceDefinitions get APIServices while a definition
/// serves them, as the API server's CRD registration controller does.
#[tokio::test]
async fn custom_resource_group_versions_are_api_services() {
    let ks = start().await;
    apply(
        &ks,
        "
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}
  - {name: v1beta1, served: true, storage: false, schema: {openAPIV3Schema: {type: object}}}
",
    )
    .await;
    for name in ["v1.example.com", "v1beta1.example.com"] {
        let s = wait_until(Duration::from_secs(10), name, || async {
            kubectl_json(&ks, &["get", "apiservice", name, "-o", "json"]).await
        })
        .await;
        assert_eq!(
            s["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"], "true",
            "{s}"
        );
        assert_eq!(s["spec"]["groupPriorityMinimum"], 1000, "{s}");
        assert_eq!(s["status"]["conditions"][0]["status"], "True", "{s}");
    }
    run(&ks, "kubectl", &["delete", "crd", "widgets.example.com"])
        .await
        .ok("kubectl delete crd");
    wait_until(Duration::from_secs(30), "the APIServices go", || async {
        let out = run(&ks, "kubectl", &["get", "apiservices", "-o", "name"]).await;
        (out.success() && !out.stdout.contains("example.com") && out.stdout.contains("v1.apps"))
            .then_some(())
    })
    .await;
}

/// kubectl 1.33 and 1.37 read `/api` and `/apis` as aggregated discovery (no request per
/// group-version), and list the same resources as the plain documents describe; a client
/// that does not ask for it still gets `APIVersions` / `APIGroupList`.
#[tokio::test]
async fn aggregated_discovery_serves_what_plain_discovery_serves() {
    let ks = start().await;
    // The resources of the plain per group-version documents (preferred versions).
    let mut plain: Vec<String> = Vec::new();
    let api = kubectl_json(&ks, &["get", "--raw", "/api"]).await.unwrap();
    assert_eq!(api["kind"], "APIVersions", "{api}");
    let apis = kubectl_json(&ks, &["get", "--raw", "/apis"]).await.unwrap();
    assert_eq!(apis["kind"], "APIGroupList", "{apis}");
    let mut docs = vec![(String::new(), "/api/v1".to_string())];
    for g in apis["groups"].as_array().unwrap() {
        let gv = g["preferredVersion"]["groupVersion"].as_str().unwrap();
        docs.push((
            g["name"].as_str().unwrap().to_string(),
            format!("/apis/{gv}"),
        ));
    }
    for (group, path) in docs {
        let list = kubectl_json(&ks, &["get", "--raw", &path]).await.unwrap();
        for r in list["resources"].as_array().unwrap() {
            let name = r["name"].as_str().unwrap();
            if name.contains('/') {
                continue;
            }
            plain.push(if group.is_empty() {
                name.to_string()
            } else {
                format!("{name}.{group}")
            });
        }
    }
    plain.sort();
    for kubectl in ["kubectl-1.33", "kubectl-1.37"] {
        let out = run(&ks, kubectl, &["api-resources", "-v=8"]).await;
        out.ok("kubectl api-resources -v=8");
        assert_eq!(
            out.stderr
                .matches("Content-Type: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
                .count(),
            2,
            "{kubectl}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("/apis/apps/v1"),
            "{kubectl} asked a group-version: {}",
            out.stderr
        );
        let out = run(&ks, kubectl, &["api-resources", "-o", "name"]).await;
        let mut names: Vec<String> = out
            .ok("kubectl api-resources -o name")
            .lines()
            .map(str::to_string)
            .collect();
        names.sort();
        assert_eq!(names, plain, "{kubectl}");
    }
    python(
        &ks,
        r#"
import json, urllib3
from kubernetes import client, config
config.load_kube_config()
cfg = client.Configuration.get_default_copy()
http = urllib3.PoolManager()
def get(path, accept):
    headers = {"Accept": accept}
    auth = cfg.auth_settings().get("BearerToken")
    if auth:
        headers[auth["key"]] = auth["value"]
    return http.request("GET", cfg.host + path, headers=headers)
for v in ["v2", "v2beta1"]:
    r = get("/apis", "application/json;g=apidiscovery.k8s.io;v=%s;as=APIGroupDiscoveryList,application/json" % v)
    assert r.headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=%s;as=APIGroupDiscoveryList" % v, r.headers
    doc = json.loads(r.data)
    assert doc["apiVersion"] == "apidiscovery.k8s.io/" + v, doc["apiVersion"]
    apps = [g for g in doc["items"] if g["metadata"].get("name") == "apps"][0]
    deploy = [x for x in apps["versions"][0]["resources"] if x["resource"] == "deployments"][0]
    assert deploy["scope"] == "Namespaced" and deploy["shortNames"] == ["deploy"], deploy
    scale = [s for s in deploy["subresources"] if s["subresource"] == "scale"][0]
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}, scale
r = get("/api", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
core = json.loads(r.data)["items"][0]
pods = [x for x in core["versions"][0]["resources"] if x["resource"] == "pods"][0]
subs = {s["subresource"]: s["responseKind"]["kind"] for s in pods["subresources"]}
assert subs["eviction"] == "Eviction" and subs["log"] == "Pod", subs
assert json.loads(get("/apis", "application/json").data)["kind"] == "APIGroupList"
print("python-ok")
"#,
    )
    .await;
}

/// `pods/eviction` refuses (429) what would break a PodDisruptionBudget and otherwise
/// deletes the pod; `kubectl drain` cordons the node and evicts its pods.
#[tokio::test]
async fn eviction_honours_disruption_budgets_and_drain_empties_the_node() {
    let ks = start().await;
    apply(&ks, &rc("db", 2)).await;
    rc_settled(&ks, "db", 2).await;
    // kubectl sends the budget as protobuf.
    run(
        &ks,
        "kubectl",
        &[
            "create",
            "pdb",
            "db",
            "--selector=app=db",
            "--min-available=2",
        ],
    )
    .await
    .ok("kubectl create pdb");
    let pod = active_pods(&ks, "app=db").await[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let script = format!(
        r#"
import json
from kubernetes import client, config
config.load_kube_config()
core = client.CoreV1Api()
ev = client.V1Eviction(metadata=client.V1ObjectMeta(name="{pod}", namespace="default"))
try:
    core.create_namespaced_pod_eviction("{pod}", "default", ev)
    raise SystemExit("the eviction broke the budget")
except client.ApiException as e:
    assert e.status == 429, e
    body = json.loads(e.body)
    assert body["reason"] == "TooManyRequests", body
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget.", body
    cause = body["details"]["causes"][0]
    assert cause == {{"reason": "DisruptionBudget", "message": "The disruption budget db needs 2 healthy pods and has 2 currently"}}, cause
    assert e.headers["Retry-After"] == "10", e.headers
assert core.read_namespaced_pod("{pod}", "default").metadata.deletion_timestamp is None
client.PolicyV1Api().patch_namespaced_pod_disruption_budget("db", "default", {{"spec": {{"minAvailable": 1}}}})
core.create_namespaced_pod_eviction("{pod}", "default", ev)
try:
    gone = core.read_namespaced_pod("{pod}", "default").metadata.deletion_timestamp is not None
except client.ApiException as e:
    gone = e.status == 404
assert gone, "the evicted pod is not being deleted"
try:
    core.create_namespaced_pod_eviction("nope", "default", client.V1Eviction(metadata=client.V1ObjectMeta(name="nope")))
    raise SystemExit("evicted a pod that does not exist")
except client.ApiException as e:
    assert e.status == 404, e
print("python-ok")
"#
    );
    python(&ks, &script).await;
    rc_settled(&ks, "db", 2).await;

    // With the budget, drain would wait for ever: the second eviction needs a replacement
    // ready, and replacements stay Pending on the cordoned node. Drop the budget first.
    run(&ks, "kubectl", &["delete", "pdb", "db"])
        .await
        .ok("kubectl delete pdb");
    let out = run(
        &ks,
        "kubectl",
        &["drain", "kubesim", "--ignore-daemonsets", "--timeout=60s"],
    )
    .await;
    let stdout = out.ok("kubectl drain");
    assert!(stdout.contains("node/kubesim drained"), "{out:?}");
    assert_eq!(stdout.matches("evicted").count(), 2, "{out:?}");
    let node = kubectl_json(&ks, &["get", "node", "kubesim", "-o", "json"])
        .await
        .unwrap();
    assert_eq!(node["spec"]["unschedulable"], true, "{node}");
    // The RC's replacements wait for a schedulable node.
    let pending = wait_until(Duration::from_secs(30), "two replacements", || async {
        let pods = active_pods(&ks, "app=db").await;
        (pods.len() == 2).then_some(pods)
    })
    .await;
    for p in &pending {
        assert_eq!(p["status"]["phase"], "Pending", "{p}");
    }
}

/// `kubectl get cs` and the python client read the control plane's ComponentStatuses.
#[tokio::test]
async fn component_statuses_are_listed() {
    let ks = start().await;
    let out = run(&ks, "kubectl", &["get", "cs"]).await;
    let stdout = out.ok("kubectl get cs");
    for name in ["scheduler", "controller-manager", "etcd-0"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [name, "Healthy", "ok"]),
            "{name}: {out:?}"
        );
    }
    assert!(
        out.stderr
            .contains("v1 ComponentStatus is deprecated in v1.19+"),
        "{out:?}"
    );
    python(
        &ks,
        r#"
from kubernetes import client, config
config.load_kube_config()
core = client.CoreV1Api()
names = sorted(c.metadata.name for c in core.list_component_status().items)
assert names == ["controller-manager", "etcd-0", "scheduler"], names
c = core.read_component_status("etcd-0")
assert c.conditions[0].type == "Healthy" and c.conditions[0].status == "True", c
try:
    core.read_component_status("nope")
    raise SystemExit("found a component that does not exist")
except client.ApiException as e:
    assert e.status == 404, e
print("python-ok")
"#,
    )
    .await;
}

/// A CertificateSigningRequest is approved through its `approval` subresource, which changes
/// only its status; ephemeral containers are added through `pods/ephemeralcontainers`,
/// and may not be removed.
#[tokio::test]
async fn csr_approval_and_ephemeral_containers_are_subresources() {
    let ks = start().await;
    python(
        &ks,
        r#"
import base64
from kubernetes import client, config
config.load_kube_config()
certs = client.CertificatesV1Api()
csr = client.V1CertificateSigningRequest(metadata=client.V1ObjectMeta(name="fake"),
    spec=client.V1CertificateSigningRequestSpec(request=base64.b64encode(b"not a real request").decode(),
        signer_name="kubernetes.io/kube-apiserver-client", usages=["client auth"]))
certs.create_certificate_signing_request(csr)
certs.patch_certificate_signing_request_approval("fake", {"spec": {"signerName": "other/x"},
    "status": {"conditions": [{"type": "Approved", "status": "True", "reason": "Test", "message": "ok"}]}})
got = certs.read_certificate_signing_request_approval("fake")
assert got.status.conditions[0].type == "Approved", got.status
assert got.spec.signer_name == "kubernetes.io/kube-apiserver-client", got.spec

core = client.CoreV1Api()
pod = client.V1Pod(metadata=client.V1ObjectMeta(name="eph"),
    spec=client.V1PodSpec(restart_policy="Never",
        containers=[client.V1Container(name="main", image="busybox", command=["sleep", "60"])]))
core.create_namespaced_pod("default", pod)
assert core.read_namespaced_pod_ephemeralcontainers("eph", "default").spec.ephemeral_containers is None
body = core.read_namespaced_pod("eph", "default")
body.spec.ephemeral_containers = [client.V1EphemeralContainer(name="debug1", image="busybox", command=["sleep", "1"])]
body.spec.containers[0].image = "changed"
got = core.replace_namespaced_pod_ephemeralcontainers("eph", "default", body)
assert [c.name for c in got.spec.ephemeral_containers] == ["debug1"], got.spec.ephemeral_containers
assert got.spec.containers[0].image == "busybox", got.spec.containers
got = core.patch_namespaced_pod_ephemeralcontainers("eph", "default",
    {"spec": {"ephemeralContainers": [{"name": "debug2", "image": "busybox", "command": ["sleep", "1"]}]}})
assert sorted(c.name for c in got.spec.ephemeral_containers) == ["debug1", "debug2"], got.spec
try:
    core.patch_namespaced_pod_ephemeralcontainers("eph", "default", [{"op": "remove", "path": "/spec/ephemeralContainers/0"}])
    raise SystemExit("an ephemeral container was removed")
except client.ApiException as e:
    assert e.status == 422, e
print("python-ok")
"#,
    )
    .await;
}
