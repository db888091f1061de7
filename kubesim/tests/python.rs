//! The python `kubernetes` client against kubesim: CRUD, errors and a watch.

use kubesim::testing::run_with_stdin;
use kubesim::{Kubesim, Options};

const SCRIPT: &str = r#"
import threading
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config()
core = client.CoreV1Api()
batch = client.BatchV1Api()

# Create, read, update, patch, list, delete.
cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py", labels={"from": "python"}), data={"a": "1"})
created = core.create_namespaced_config_map("default", cm)
assert created.metadata.uid and created.metadata.resource_version
got = core.read_namespaced_config_map("py", "default")
got.data["b"] = "2"
replaced = core.replace_namespaced_config_map("py", "default", got)
assert replaced.data == {"a": "1", "b": "2"}, replaced.data
patched = core.patch_namespaced_config_map("py", "default", {"data": {"c": "3"}})
assert patched.data["c"] == "3"
names = [i.metadata.name for i in core.list_namespaced_config_map("default", label_selector="from=python").items]
assert names == ["py"], names

try:
    core.create_namespaced_config_map("default", cm)
    raise SystemExit("expected 409")
except ApiException as e:
    assert e.status == 409 and e.reason == "Conflict", (e.status, e.reason)

job = client.V1Job(
    metadata=client.V1ObjectMeta(name="pyjob"),
    spec=client.V1JobSpec(suspend=True, template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
        restart_policy="Never", containers=[client.V1Container(name="main", image="busybox:1.36")]))))
made = batch.create_namespaced_job("default", job)
assert made.spec.backoff_limit == 6
assert made.spec.selector.match_labels["batch.kubernetes.io/controller-uid"] == made.metadata.uid
batch.delete_namespaced_job("pyjob", "default", propagation_policy="Background")

# Watch: events for a change made while watching.
events = []
ready = threading.Event()
def watcher():
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, "default", timeout_seconds=20):
        events.append((ev["type"], ev["object"].metadata.name))
        if ev["object"].metadata.name == "py":
            ready.set()
        if ev["type"] == "DELETED" and ev["object"].metadata.name == "py":
            w.stop()
t = threading.Thread(target=watcher)
t.start()
assert ready.wait(20), "the watch did not list the existing ConfigMap"
core.delete_namespaced_config_map("py", "default")
t.join(30)
assert ("ADDED", "py") in events and ("DELETED", "py") in events, events

try:
    core.read_namespaced_config_map("py", "default")
    raise SystemExit("expected 404")
except ApiException as e:
    assert e.status == 404, e.status
print("python-ok")
"#;

#[tokio::test]
async fn python_client_crud_and_watch() {
    let ks = Kubesim::start(Options::default())
        .await
        .expect("kubesim starts");
    let out = run_with_stdin(&ks, "python", &["-"], Some(SCRIPT)).await;
    out.ok("the python client script");
    assert!(out.stdout.contains("python-ok"), "{out:?}");
}
