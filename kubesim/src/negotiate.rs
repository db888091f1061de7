//! Output negotiation of resource responses, as kube-apiserver's `negotiation` package and
//! `handlers/response.go` do it: the first media range of the `Accept` header the server can
//! serve decides between the object itself, a `meta.k8s.io/v1` Table, and the metadata-only
//! `PartialObjectMetadata` / `PartialObjectMetadataList`. Responses are always JSON (clients
//! decode by the response's Content-Type), so a protobuf range counts as a JSON one, except
//! for Tables, which the API server serves as JSON or YAML only.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::resources::ResourceInfo;

/// What a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The object or list itself.
    Object,
    /// A `meta.k8s.io/v1` Table.
    Table,
    /// `PartialObjectMetadata`: only the object's `metadata`.
    Metadata,
    /// `PartialObjectMetadataList`: only the list's and its items' `metadata`.
    MetadataList,
}

/// The media types the API server lists in its 406 message.
const ACCEPTED: &str = "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// The output the `Accept` header asks for; 406 NotAcceptable when no media range of it can be
/// served (an unknown `as=` kind, a `g`/`v` other than `meta.k8s.io`/`v1`, a media type the
/// server does not speak).
pub fn negotiate(accept: &str) -> Result<Output, ApiError> {
    if accept.trim().is_empty() {
        return Ok(Output::Object);
    }
    for range in accept.split(',') {
        let mut params = range.split(';');
        let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
        let (json_like, table_ok) = match media.as_str() {
            "application/json" | "application/yaml" | "*/*" | "application/*" => (true, true),
            "application/vnd.kubernetes.protobuf" => (true, false),
            _ => (false, false),
        };
        if !json_like {
            continue;
        }
        let (mut kind, mut group, mut version) = (None, None, None);
        for p in params {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "as" => kind = Some(v),
                "g" => group = Some(v),
                "v" => version = Some(v),
                _ => {}
            }
        }
        if kind.is_none() && group.is_none() && version.is_none() {
            return Ok(Output::Object);
        }
        if group.as_deref() != Some("meta.k8s.io") || version.as_deref() != Some("v1") {
            continue;
        }
        match kind.as_deref() {
            Some("Table") if table_ok => return Ok(Output::Table),
            Some("PartialObjectMetadata") => return Ok(Output::Metadata),
            Some("PartialObjectMetadataList") => return Ok(Output::MetadataList),
            _ => {}
        }
    }
    Err(not_acceptable(format!(
        "only the following media types are accepted: {ACCEPTED}"
    )))
}

/// 406 NotAcceptable with the API server's Status.
pub fn not_acceptable(message: String) -> ApiError {
    ApiError::new(406, "NotAcceptable", message)
}

/// The Go type the API server names in its 406 messages (`*core.Secret`, `*apps.DeploymentList`,
/// `*unstructured.Unstructured`).
fn go_type(info: &ResourceInfo, list: bool) -> String {
    let suffix = if list { "List" } else { "" };
    if info.custom {
        return format!("*unstructured.Unstructured{suffix}");
    }
    let package = match info.group.as_str() {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    format!("*{package}.{}{suffix}", info.kind)
}

/// An object as `PartialObjectMetadata`.
pub fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// The response for one object under `output` (Table aside): the object, its
/// `PartialObjectMetadata`, or 406 when a list was asked for. Status bodies pass unchanged.
pub fn object(output: Output, info: &ResourceInfo, obj: Value) -> Result<Value, ApiError> {
    if obj.get("kind").and_then(Value::as_str) == Some("Status") {
        return Ok(obj);
    }
    match output {
        Output::Object | Output::Table => Ok(obj),
        Output::Metadata => Ok(partial(&obj)),
        Output::MetadataList => Err(not_acceptable(format!(
            "you requested PartialObjectMetadataList, but the requested object is not a list ({})",
            go_type(info, false)
        ))),
    }
}

/// The response for a list under `output` (Table aside): `None` for the list itself, its
/// `PartialObjectMetadataList` (list metadata kept: resourceVersion, continue), or 406 when a
/// single object was asked for.
pub fn list<'a>(
    output: Output,
    info: &ResourceInfo,
    meta: &Value,
    items: impl Iterator<Item = &'a Value>,
) -> Result<Option<Value>, ApiError> {
    match output {
        Output::Object | Output::Table => Ok(None),
        Output::Metadata => Err(not_acceptable(format!(
            "you requested PartialObjectMetadata, but the requested object is a list ({})",
            go_type(info, true)
        ))),
        Output::MetadataList => Ok(Some(json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "items": items.map(partial).collect::<Vec<_>>(),
        }))),
    }
}

/// The aggregated discovery version (`v2`, `v2beta1`) `accept` asks for on `/api` and
/// `/apis`, or `None` for the plain documents: the first JSON media range that is either an
/// `apidiscovery.k8s.io` `APIGroupDiscoveryList` this server writes or a plain one decides.
pub fn discovery_version(accept: &str) -> Option<&'static str> {
    for range in accept.split(',') {
        let mut params = range.split(';');
        let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
        if !matches!(media.as_str(), "application/json" | "*/*" | "application/*") {
            continue;
        }
        let (mut kind, mut group, mut version) = (None, None, None);
        for p in params {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "as" => kind = Some(v),
                "g" => group = Some(v),
                "v" => version = Some(v),
                _ => {}
            }
        }
        if kind.is_none() && group.is_none() && version.is_none() {
            return None;
        }
        if kind.as_deref() == Some("APIGroupDiscoveryList")
            && group.as_deref() == Some("apidiscovery.k8s.io")
        {
            match version.as_deref() {
                Some("v2") => return Some("v2"),
                Some("v2beta1") => return Some("v2beta1"),
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    #[test]
    fn accept_ranges_in_order() {
        assert_eq!(negotiate("").unwrap(), Output::Object);
        assert_eq!(negotiate("application/json").unwrap(), Output::Object);
        assert_eq!(
            negotiate("application/vnd.kubernetes.protobuf, application/json").unwrap(),
            Output::Object
        );
        assert_eq!(
            negotiate("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json").unwrap(),
            Output::Table
        );
        assert_eq!(
            negotiate("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1").unwrap(),
            Output::Metadata
        );
        assert_eq!(
            negotiate("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json").unwrap(),
            Output::MetadataList
        );
        assert_eq!(
            negotiate(
                "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json"
            )
            .unwrap(),
            Output::Object
        );
        assert_eq!(
            negotiate("application/json;as=Foo;g=meta.k8s.io;v=v1, application/json").unwrap(),
            Output::Object
        );
        for bad in [
            "application/json;as=Foo;g=meta.k8s.io;v=v1",
            "application/json;as=PartialObjectMetadata;g=example.com;v=v1",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v2",
            "application/json;as=PartialObjectMetadata",
            "text/html",
        ] {
            let e = negotiate(bad).unwrap_err();
            assert_eq!((e.code, e.reason.as_str()), (406, "NotAcceptable"), "{bad}");
            assert_eq!(
                e.message,
                "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"
            );
        }
    }

    #[test]
    fn metadata_only_shapes() {
        let r = Registry::builtin();
        let secrets = r.get("", "secrets").unwrap();
        let secret = json!({"kind": "Secret", "apiVersion": "v1",
            "metadata": {"name": "s", "resourceVersion": "7"}, "data": {"k": "dg=="}});
        let p = object(Output::Metadata, secrets, secret.clone()).unwrap();
        assert_eq!(
            p,
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"name": "s", "resourceVersion": "7"}})
        );
        let e = object(Output::MetadataList, secrets, secret.clone()).unwrap_err();
        assert_eq!(
            e.message,
            "you requested PartialObjectMetadataList, but the requested object is not a list (*core.Secret)"
        );
        let meta = json!({"resourceVersion": "9", "continue": "abc"});
        let l = list(Output::MetadataList, secrets, &meta, [&secret].into_iter())
            .unwrap()
            .unwrap();
        assert_eq!(l["kind"], "PartialObjectMetadataList");
        assert_eq!(l["metadata"], meta);
        assert_eq!(l["items"][0], p);
        let e = list(Output::Metadata, secrets, &meta, [&secret].into_iter()).unwrap_err();
        assert_eq!(e.code, 406);
        assert!(e.message.ends_with("(*core.SecretList)"), "{}", e.message);
    }
}
