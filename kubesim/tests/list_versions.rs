//! List resourceVersion semantics as kube-apiserver serves them, checked with the python
//! client: `resourceVersionMatch=Exact` answers the state at an old version (410 Expired once
//! the history no longer reaches it), a future version is 504 `Too large resource version`,
//! a malformed `continue` token is 400, paged lists carry `remainingItemCount` and continue
//! from the snapshot of their first page; invalid list options are 422.

use kubesim::testing::run_with_stdin;
use kubesim::{Kubesim, Options};

async fn python(ks: &Kubesim, script: &str) -> String {
    let out = run_with_stdin(ks, "python", &["-"], Some(script)).await;
    out.ok("the python client script");
    assert!(out.stdout.contains("python-ok"), "{out:?}");
    out.stdout
}

const PRELUDE: &str = r#"
import json
from kubernetes import client, config
from kubernetes.client.rest import ApiException
config.load_kube_config()
core = client.CoreV1Api()

def status_of(call):
    try:
        call()
    except ApiException as e:
        return e.status, json.loads(e.body)
    raise AssertionError("the call succeeded")

def cm(name, value, labels=None):
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data={"v": value})
"#;

#[tokio::test]
async fn list_resource_versions_follow_kube_apiserver() {
    let ks = Kubesim::start(Options::default())
        .await
        .expect("kubesim starts");
    let first = python(
        &ks,
        &format!(
            "{PRELUDE}{}",
            r#"
core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="pages")))
core.create_namespaced_config_map("pages", cm("a", "1"))
old = core.list_namespaced_config_map("pages").metadata.resource_version
core.patch_namespaced_config_map("a", "pages", {"data": {"v": "2"}})
core.create_namespaced_config_map("pages", cm("b", "1"))

# Exact at the old version: the state then, with that version.
then = core.list_namespaced_config_map("pages", resource_version=old, resource_version_match="Exact")
assert then.metadata.resource_version == old, then.metadata
assert [(i.metadata.name, i.data["v"]) for i in then.items] == [("a", "1")], then.items
now = core.list_namespaced_config_map("pages")
assert [(i.metadata.name, i.data["v"]) for i in now.items] == [("a", "2"), ("b", "1")], now.items
# NotOlderThan an old version: the current state.
newer = core.list_namespaced_config_map("pages", resource_version=old, resource_version_match="NotOlderThan")
assert len(newer.items) == 2 and int(newer.metadata.resource_version) >= int(now.metadata.resource_version)

# A version the server has not reached: 504 after the wait.
future = str(int(now.metadata.resource_version) + 1000)
for match in ["NotOlderThan", "Exact"]:
    code, body = status_of(lambda: core.list_namespaced_config_map("pages", resource_version=future, resource_version_match=match))
    assert code == 504 and body["reason"] == "Timeout", body
    assert body["message"].startswith("Timeout: Too large resource version: %s, current: " % future), body
    assert body["details"]["causes"] == [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], body
    assert body["details"]["retryAfterSeconds"] == 1, body

# A malformed continue token: 400 with the storage layer's message.
code, body = status_of(lambda: core.list_namespaced_config_map("pages", limit=1, _continue="not-a-token!"))
assert code == 400 and body["reason"] == "BadRequest", body
assert body["message"] == "invalid continue token: continue key is not valid: illegal base64 data at input byte 11", body
code, body = status_of(lambda: core.list_namespaced_config_map("pages", limit=1, _continue="e30"))  # {}
assert body["message"] == "invalid continue token: continue key is not valid: server does not recognize this encoded version ", body

# Invalid list options.
code, body = status_of(lambda: core.list_namespaced_config_map("pages", resource_version_match="Exact"))
assert code == 422 and body["message"] == 'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided', body
code, body = status_of(lambda: core.list_namespaced_config_map("pages", resource_version="0", resource_version_match="Exact"))
assert code == 422 and 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"' in body["message"], body

# Pages: remainingItemCount, and the snapshot of the first page.
for n in "cdefg":
    core.create_namespaced_config_map("pages", cm(n, "1", {"page": "yes"}))
page = core.list_namespaced_config_map("pages", limit=3)
assert [i.metadata.name for i in page.items] == ["a", "b", "c"]
assert page.metadata.remaining_item_count == 4, page.metadata
token = page.metadata._continue
assert token
# Written after the first page: not in the rest of this list.
core.create_namespaced_config_map("pages", cm("h", "1"))
core.patch_namespaced_config_map("d", "pages", {"data": {"v": "changed"}})
page2 = core.list_namespaced_config_map("pages", limit=3, _continue=token)
assert [i.metadata.name for i in page2.items] == ["d", "e", "f"], page2.items
assert page2.items[0].data["v"] == "1", page2.items[0]
assert page2.metadata.resource_version == page.metadata.resource_version
assert page2.metadata.remaining_item_count == 1, page2.metadata
page3 = core.list_namespaced_config_map("pages", limit=3, _continue=page2.metadata._continue)
assert [i.metadata.name for i in page3.items] == ["g"], page3.items
assert page3.metadata._continue is None and page3.metadata.remaining_item_count is None
# With a selector the count is unknown: not set.
sel = core.list_namespaced_config_map("pages", limit=2, label_selector="page=yes")
assert sel.metadata._continue and sel.metadata.remaining_item_count is None, sel.metadata
# Across namespaces too.
every = core.list_config_map_for_all_namespaces(limit=1)
assert every.metadata.remaining_item_count is not None and every.metadata._continue
nxt = core.list_config_map_for_all_namespaces(limit=1, _continue=every.metadata._continue)
assert (nxt.items[0].metadata.namespace, nxt.items[0].metadata.name) > (every.items[0].metadata.namespace, every.items[0].metadata.name)
print("OLD", old)
print("TOKEN", token)
print("python-ok")
"#
        ),
    )
    .await;
    let value = |prefix: &str| {
        first
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .expect("printed")
            .trim()
            .to_string()
    };
    let (old, token) = (value("OLD "), value("TOKEN "));

    // The history compacted: that version and that token are gone.
    ks.cluster().store().compact();
    python(
        &ks,
        &format!(
            "{PRELUDE}old = {old:?}\ntoken = {token:?}\n{}",
            r#"
code, body = status_of(lambda: core.list_namespaced_config_map("pages", resource_version=old, resource_version_match="Exact"))
assert code == 410 and body["reason"] == "Expired", body
assert body["message"] == "The resourceVersion for the provided list is too old.", body
code, body = status_of(lambda: core.list_namespaced_config_map("pages", limit=3, _continue=token))
assert code == 410 and body["message"].startswith("The provided continue parameter is too old"), body
print("python-ok")
"#
        ),
    )
    .await;
}
