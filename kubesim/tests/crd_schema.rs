//! CustomResourceDefinition schemas as kube-apiserver applies them, seen by real clients
//! (kubectl 1.37 and 1.33, the python client): 422 answers worded as the OpenAPI validator
//! words them, strict field validation, pruning of undeclared fields, defaulting on writes and
//! on reads, and the structural check of the CRD itself.

use kubesim::testing::{run, run_with_stdin};
use kubesim::{Kubesim, Options};
use serde_json::Value;

const CRD: &str = r#"
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
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              replicas: {type: integer, minimum: 1, maximum: 10, default: 1}
              size: {type: string, enum: [S, M]}
              name: {type: string, maxLength: 5, pattern: '^[a-z]+$'}
              port: {x-kubernetes-int-or-string: true}
              tags: {type: array, maxItems: 2, items: {type: string}}
              labels: {type: object, additionalProperties: {type: string}}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status:
            type: object
            properties:
              ready: {type: boolean}
"#;

async fn cluster_with_crd() -> Kubesim {
    let ks = Kubesim::start(Options::default())
        .await
        .expect("kubesim starts");
    run_with_stdin(&ks, "kubectl", &["apply", "-f", "-"], Some(CRD))
        .await
        .ok("kubectl apply the CRD");
    ks
}

fn widget(spec: &str) -> String {
    format!("apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: w}}\nspec: {spec}\n")
}

/// kubectl prints the 422 as `The Widget "w" is invalid: <field>: <message>` from the Status'
/// details; both kubectl versions see the validator's wording.
#[tokio::test]
async fn kubectl_shows_schema_violations_as_the_api_server_words_them() {
    let ks = cluster_with_crd().await;
    for kubectl in ["kubectl-1.37", "kubectl-1.33"] {
        let out = run_with_stdin(
            &ks,
            kubectl,
            &["create", "-f", "-"],
            Some(&widget("{size: S, replicas: 0}")),
        )
        .await;
        assert!(!out.success(), "{kubectl}: {out:?}");
        assert!(
            out.stderr.contains(
                r#"The Widget "w" is invalid: spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"#
            ),
            "{kubectl}: {}",
            out.stderr
        );
        let out = run_with_stdin(
            &ks,
            kubectl,
            &["create", "-f", "-"],
            Some(&widget("{size: L, name: ABCDEFG, tags: [a, b, c]}")),
        )
        .await;
        assert!(!out.success(), "{kubectl}: {out:?}");
        for line in [
            r#"The Widget "w" is invalid: "#,
            r#"* spec.size: Unsupported value: "L": supported values: "S", "M""#,
            "* spec.name: Too long: may not be more than 5 bytes",
            r#"* spec.name: Invalid value: "ABCDEFG": spec.name in body should match '^[a-z]+$'"#,
            "* spec.tags: Too many: 3: must have at most 2 items",
        ] {
            assert!(
                out.stderr.contains(line),
                "{kubectl}: {line}\n{}",
                out.stderr
            );
        }
        // kubectl's default `--validate=strict` asks the server to refuse undeclared fields.
        let out = run_with_stdin(
            &ks,
            kubectl,
            &["create", "-f", "-"],
            Some(&widget("{size: S, bogus: 1}")),
        )
        .await;
        assert!(!out.success(), "{kubectl}: {out:?}");
        assert!(
            out.stderr.contains(
                r#"Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.bogus""#
            ),
            "{kubectl}: {}",
            out.stderr
        );
        // Nothing was stored by the refused requests.
        let out = run(&ks, kubectl, &["get", "widgets", "-o", "name"]).await;
        assert_eq!(out.ok("kubectl get widgets").trim(), "", "{kubectl}");
    }
}

/// The Status of a 422 (message, details and causes), pruning under the default `Warn`
/// validation with its warnings, defaults on create and on read, int-or-string, the status
/// subresource's schema, and the CRD's own structural check, through the python client.
#[tokio::test]
async fn python_client_sees_the_status_pruning_and_defaults() {
    let ks = cluster_with_crd().await;
    let script = r#"
import json, warnings
from kubernetes import client, config
from kubernetes.client.rest import ApiException
config.load_kube_config()
api = client.CustomObjectsApi()
G, V, P = "example.com", "v1", "widgets"

def body(spec, name="w"):
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}

try:
    api.create_namespaced_custom_object(G, V, "default", P, body({"size": "S", "replicas": 0}))
    raise SystemExit("expected 422")
except ApiException as e:
    assert e.status == 422, e
    st = json.loads(e.body)
    assert st["reason"] == "Invalid", st
    assert st["message"] == 'Widget.example.com "w" is invalid: spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1', st["message"]
    assert st["details"] == {"name": "w", "group": "example.com", "kind": "Widget", "causes": [
        {"reason": "FieldValueInvalid", "message": "Invalid value: 0: spec.replicas in body should be greater than or equal to 1", "field": "spec.replicas"}]}, st["details"]

try:
    api.create_namespaced_custom_object(G, V, "default", P, body({"replicas": "3"}))
    raise SystemExit("expected 422")
except ApiException as e:
    st = json.loads(e.body)
    assert st["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.size"},
        {"reason": "FieldValueTypeInvalid", "message": 'Invalid value: "string": spec.replicas in body must be of type integer: "string"', "field": "spec.replicas"},
    ], st["details"]
    assert st["message"].startswith('Widget.example.com "w" is invalid: [spec.size: Required value, spec.replicas: '), st["message"]

# Undeclared fields are pruned (with a warning); defaults are filled in; preserved subtrees stay.
resp = api.create_namespaced_custom_object(G, V, "default", P,
    body({"size": "S", "bogus": {"x": 1}, "port": "http", "labels": {"a": "b"}, "extra": {"any": {"thing": 1}}}),
    _preload_content=False)
created = json.loads(resp.data)
headers = resp.headers
assert resp.status == 201, resp.status
assert "bogus" not in created["spec"], created
assert created["spec"]["replicas"] == 1, created
assert created["spec"]["extra"] == {"any": {"thing": 1}}, created
assert created["spec"]["port"] == "http", created
warning = headers.get("Warning", "")
assert 'unknown field \\"spec.bogus\\"' in warning, dict(headers)

# The status subresource is validated and pruned against the schema too.
api.patch_namespaced_custom_object_status(G, V, "default", P, "w", {"status": {"ready": True, "junk": 1}})
got = api.get_namespaced_custom_object(G, V, "default", P, "w")
assert got["status"] == {"ready": True}, got
try:
    api.patch_namespaced_custom_object_status(G, V, "default", P, "w", {"status": {"ready": "yes"}})
    raise SystemExit("expected 422")
except ApiException as e:
    st = json.loads(e.body)
    assert st["details"]["causes"] == [{"reason": "FieldValueTypeInvalid", "message": 'Invalid value: "string": status.ready in body must be of type boolean: "string"', "field": "status.ready"}], st

# A default added to the CRD later shows on reads of objects stored before it.
ext = client.ApiextensionsV1Api()
crd = ext.read_custom_resource_definition("widgets.example.com")
crd.spec.versions[0].schema.open_apiv3_schema.properties["spec"].properties["mode"] = client.V1JSONSchemaProps(type="string", default="fast")
ext.replace_custom_resource_definition("widgets.example.com", crd)
got = api.get_namespaced_custom_object(G, V, "default", P, "w")
assert got["spec"]["mode"] == "fast", got
listed = api.list_namespaced_custom_object(G, V, "default", P)
assert listed["items"][0]["spec"]["mode"] == "fast", listed

# A CRD whose schema is not structural is refused.
bad = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
       "metadata": {"name": "gadgets.example.com"},
       "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                "versions": [{"name": "v1", "served": True, "storage": True,
                              "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"properties": {}}}}}}]}}
try:
    ext.create_custom_resource_definition(bad)
    raise SystemExit("expected 422")
except ApiException as e:
    st = json.loads(e.body)
    assert e.status == 422, e
    assert st["details"]["causes"] == [{"reason": "FieldValueRequired", "message": "Required value: must not be empty for specified object fields",
        "field": "spec.versions[0].schema.openAPIV3Schema.properties[spec].type"}], st
print("python-ok")
"#;
    let out = run_with_stdin(&ks, "python", &["-"], Some(script)).await;
    out.ok("the python client script");
    assert!(out.stdout.contains("python-ok"), "{out:?}");
    let got: Value = serde_json::from_str(
        run(&ks, "kubectl", &["get", "widget", "w", "-o", "json"])
            .await
            .ok("kubectl get widget"),
    )
    .expect("json");
    assert_eq!(got["spec"]["mode"], "fast", "{got}");
}

/// A CRD's scale subresource reads and writes the paths it declares (`kubectl scale`).
#[tokio::test]
async fn the_scale_subresource_follows_the_declared_paths() {
    let ks = Kubesim::start(Options::default())
        .await
        .expect("kubesim starts");
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: pools.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: pools, singular: pool, kind: Pool}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.size, statusReplicasPath: .status.size, labelSelectorPath: .status.selector}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer, maximum: 5}}}
          status: {type: object, properties: {size: {type: integer}, selector: {type: string}}}
"#;
    run_with_stdin(&ks, "kubectl", &["apply", "-f", "-"], Some(crd))
        .await
        .ok("kubectl apply the CRD");
    let pool = "apiVersion: example.com/v1\nkind: Pool\nmetadata: {name: p}\nspec: {size: 1}\n";
    run_with_stdin(&ks, "kubectl", &["apply", "-f", "-"], Some(pool))
        .await
        .ok("kubectl apply the pool");
    run(
        &ks,
        "kubectl",
        &[
            "patch",
            "pool",
            "p",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status": {"size": 1, "selector": "app=pool"}}"#,
        ],
    )
    .await
    .ok("kubectl patch the status");
    for kubectl in ["kubectl-1.37", "kubectl-1.33"] {
        run(&ks, kubectl, &["scale", "pool/p", "--replicas=3"])
            .await
            .ok("kubectl scale");
        let raw = run(
            &ks,
            kubectl,
            &[
                "get",
                "--raw",
                "/apis/example.com/v1/namespaces/default/pools/p/scale",
            ],
        )
        .await;
        let scale: Value = serde_json::from_str(raw.ok("get the scale")).expect("json");
        assert_eq!(scale["spec"]["replicas"], 3, "{kubectl}: {scale}");
        assert_eq!(scale["status"]["replicas"], 1, "{kubectl}: {scale}");
        assert_eq!(
            scale["status"]["selector"], "app=pool",
            "{kubectl}: {scale}"
        );
        let got = run(
            &ks,
            kubectl,
            &["get", "pool", "p", "-o", "jsonpath={.spec.size}"],
        )
        .await;
        assert_eq!(got.ok("get the pool"), "3", "{kubectl}");
        // The scaled object is validated against the schema.
        let out = run(&ks, kubectl, &["scale", "pool/p", "--replicas=9"]).await;
        assert!(!out.success(), "{kubectl}: {out:?}");
        assert!(
            out.stderr.contains(
                "spec.size: Invalid value: 9: spec.size in body should be less than or equal to 5"
            ),
            "{kubectl}: {}",
            out.stderr
        );
    }
}
