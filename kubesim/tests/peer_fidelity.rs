//! What other projects' suites expect of an API server, checked with real clients (the python
//! client, kubectl): deletes that answer the deleted object, bodies as kube-apiserver's
//! encoder writes them, a complete Node, audience-aware TokenReviews, the node field
//! selector, the pod phase of a crash-looping container and a terminating namespace's
//! conditions.

use kubesim::testing::run_with_stdin;
use kubesim::{Kubesim, Options};

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
