//! `/openapi/v3`: the index and the per group-version documents, as kube-apiserver serves
//! them. Each document has a PATCH operation per kind (with its
//! `x-kubernetes-group-version-kind` and the `fieldValidation` parameter, which kubectl and
//! helm check before handing validation to the server) and, in `components.schemas`, the
//! schema of each kind with every schema it references (what `kubectl explain` reads).
//!
//! The built-in schemas are Kubernetes' published definitions, trimmed to the kinds kubesim
//! serves and what they reference (`openapi-definitions.json.gz`, written by
//! `scripts/openapi-definitions.py`). A custom type's schema is its CRD's `openAPIV3Schema`
//! (storage version) with `metadata` referencing `ObjectMeta`, named as kube-apiserver names
//! it (`com.example.v1.Widget` for `example.com/v1` `Widget`).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::resources::{GIT_VERSION, Registry, ResourceInfo};

const DEFINITIONS_GZ: &[u8] = include_bytes!("openapi-definitions.json.gz");
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The built-in definitions (decompressed once), by name.
fn definitions() -> &'static Map<String, Value> {
    static DEFS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFS.get_or_init(|| {
        use std::io::Read;
        let mut json = String::new();
        flate2::read::GzDecoder::new(DEFINITIONS_GZ)
            .read_to_string(&mut json)
            .expect("the embedded OpenAPI definitions decompress");
        serde_json::from_str(&json).expect("the embedded OpenAPI definitions parse")
    })
}

/// A digest of the embedded definitions (part of every document's hash).
fn definitions_digest() -> &'static str {
    static DIGEST: OnceLock<String> = OnceLock::new();
    DIGEST.get_or_init(|| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(DEFINITIONS_GZ))
    })
}

/// The name of a built-in kind's definition.
fn definition_of(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    definitions().iter().find_map(|(name, d)| {
        d["x-kubernetes-group-version-kind"]
            .as_array()?
            .iter()
            .any(|g| {
                g["group"].as_str().unwrap_or_default() == group
                    && g["version"] == version
                    && g["kind"] == kind
            })
            .then_some(name.as_str())
    })
}

/// `#/definitions/X` references inside `v`, as names.
fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/definitions/"))
            {
                out.push(r.to_string());
            }
            m.values().for_each(|x| references(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

/// A v2 definition as a v3 schema: `#/components/schemas/` references, and a reference with
/// siblings (a description) wrapped in `allOf`, as kube-apiserver writes its v3 documents.
fn to_v3(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let r = m
                .get("$ref")
                .and_then(Value::as_str)
                .map(|r| r.replace("#/definitions/", "#/components/schemas/"));
            let mut out = Map::new();
            for (k, x) in m {
                if k != "$ref" {
                    out.insert(k.clone(), to_v3(x));
                }
            }
            match r {
                Some(r) if out.is_empty() => json!({"$ref": r}),
                Some(r) => {
                    out.insert("allOf".into(), json!([{"$ref": r}]));
                    Value::Object(out)
                }
                None => Value::Object(out),
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(to_v3).collect()),
        other => other.clone(),
    }
}

/// The schema name kube-apiserver gives a custom type: the group reversed, then version and
/// kind (`example.com`, `v1`, `Widget` -> `com.example.v1.Widget`).
fn custom_schema_name(info: &ResourceInfo, version: &str) -> String {
    let mut parts: Vec<&str> = info.group.split('.').collect();
    parts.reverse();
    format!("{}.{version}.{}", parts.join("."), info.kind)
}

/// A custom type's schema at `version`, as its v3 document carries it.
fn custom_schema(info: &ResourceInfo, version: &str) -> Value {
    let mut s = info
        .schema(version)
        .cloned()
        .unwrap_or_else(|| json!({"type": "object"}));
    if let Some(m) = s.as_object_mut() {
        let props = m
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(p) = props {
            p.entry("apiVersion").or_insert_with(|| json!({"type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}));
            p.entry("kind").or_insert_with(|| json!({"type": "string",
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}));
            p.insert(
                "metadata".into(),
                json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}],
                "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}),
            );
        }
        m.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": info.group, "kind": info.kind, "version": version}]),
        );
    }
    s
}

/// Splits `api/v1` / `apis/batch/v1` into group and version.
fn split_gv(gv: &str) -> Option<(&str, &str)> {
    match gv.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => Some(("", v)),
        ["apis", g, v] => Some((g, v)),
        _ => None,
    }
}

impl Registry {
    /// Every served group-version as its OpenAPI path (`api/v1`, `apis/batch/v1`).
    fn openapi_gvs(&self) -> Vec<String> {
        let mut out = vec!["api/v1".to_string()];
        for (g, vs) in self.groups() {
            for v in vs {
                out.push(format!("apis/{g}/{v}"));
            }
        }
        out
    }

    /// `GET /openapi/v3`: the index of per group-version documents.
    pub fn openapi_index(&self) -> Value {
        let mut paths = Map::new();
        for gv in self.openapi_gvs() {
            paths.insert(gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", self.openapi_hash(&gv))}));
        }
        json!({"paths": paths})
    }

    /// A hash of what a document is made of (the served types, custom schemas and the
    /// embedded definitions), without building it.
    fn openapi_hash(&self, gv: &str) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(definitions_digest().as_bytes());
        h.update(gv.as_bytes());
        if let Some((group, version)) = split_gv(gv) {
            for i in self.served(group, version) {
                h.update(format!("|{}|{}|{}|", i.kind, i.resource, i.namespaced).as_bytes());
                if let Some(s) = i.schema(version) {
                    h.update(s.to_string().as_bytes());
                }
            }
        }
        hex::encode(&h.finalize()[..8]).to_uppercase()
    }

    /// `GET /openapi/v3/<gv>` for `gv` like `apis/batch/v1`.
    pub fn openapi_doc(&self, gv: &str) -> Option<Value> {
        let (group, version) = split_gv(gv)?;
        let served = self.served(group, version);
        if served.is_empty() {
            return None;
        }
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let mut paths = Map::new();
        let mut schemas = Map::new();
        let mut wanted: Vec<String> = Vec::new();
        for i in served {
            let path = if i.namespaced {
                format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", i.resource)
            } else {
                format!("{prefix}/{}/{{name}}", i.resource)
            };
            let op = json!({
                "patch": {
                    "description": format!("partially update the specified {}", i.kind),
                    "operationId": format!("patch{}", i.kind),
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": i.group, "version": version, "kind": i.kind},
                    "parameters": [
                        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                        {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
                    ],
                    "responses": {"200": {"description": "OK"}, "201": {"description": "Created"}},
                }
            });
            paths.insert(path, op);
            if i.custom {
                schemas.insert(custom_schema_name(i, version), custom_schema(i, version));
                wanted.push(OBJECT_META.to_string());
            } else if let Some(name) = definition_of(group, version, &i.kind) {
                wanted.push(name.to_string());
            }
        }
        let defs = definitions();
        let mut seen = BTreeSet::new();
        while let Some(name) = wanted.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(d) = defs.get(&name) {
                references(d, &mut wanted);
                schemas.insert(name, to_v3(d));
            }
        }
        Some(json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": GIT_VERSION},
            "paths": paths,
            "components": {"schemas": schemas},
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_kind_has_its_schema_and_everything_it_references() {
        let r = Registry::builtin();
        for i in r.all() {
            assert!(
                definition_of(&i.group, i.version(), &i.kind).is_some(),
                "no definition for {}/{} {}",
                i.group,
                i.version(),
                i.kind
            );
        }
        let doc = r.openapi_doc("apis/apps/v1").unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        let mut refs = Vec::new();
        references(
            &serde_json::from_str(
                &doc.to_string()
                    .replace("#/components/schemas/", "#/definitions/"),
            )
            .unwrap(),
            &mut refs,
        );
        for name in refs {
            assert!(
                schemas.contains_key(&name),
                "{name} is referenced, not included"
            );
        }
        assert!(schemas.contains_key("io.k8s.api.core.v1.PodSpec"));
        assert!(!schemas.contains_key("io.k8s.api.batch.v1.Job"));
    }

    #[test]
    fn a_custom_type_has_its_crd_schema_under_the_reversed_group() {
        let mut r = Registry::builtin();
        let crd = json!({"spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "description": "The widget.",
                             "properties": {"size": {"type": "string"}}}}}}}]}});
        let before = r.openapi_index();
        r.add_crd(&crd).unwrap();
        let doc = r.openapi_doc("apis/example.com/v1").unwrap();
        let w = &doc["components"]["schemas"]["com.example.v1.Widget"];
        assert_eq!(
            w["properties"]["spec"]["properties"]["size"]["type"],
            "string"
        );
        assert_eq!(w["x-kubernetes-group-version-kind"][0]["kind"], "Widget");
        assert!(doc["components"]["schemas"][OBJECT_META].is_object());
        assert!(
            before["paths"].get("apis/example.com/v1").is_none()
                && r.openapi_index()["paths"]["apis/example.com/v1"].is_object()
        );
    }
}
