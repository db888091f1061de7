//! The API calls of sc-job on untyped objects, each retried with exponential backoff when the
//! error is transient (5xx, 429, 409 conflicts, timeouts, connection errors).

use backon::{ExponentialBuilder, Retryable};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Map, Value};
use std::future::Future;
use std::time::Duration;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = sc_contract::JOB_FIELD_MANAGER;

/// The API resource of a kind sc-job reads or writes (`None` for any other kind).
pub fn resource(kind: &str) -> Option<ApiResource> {
    let (group, version, plural) = match kind {
        "Secret" => ("", "v1", "secrets"),
        "ServiceAccount" => ("", "v1", "serviceaccounts"),
        "ConfigMap" => ("", "v1", "configmaps"),
        "Namespace" => ("", "v1", "namespaces"),
        "SecretProviderClass" => ("secrets-store.csi.x-k8s.io", "v1", "secretproviderclasses"),
        "Deployment" => ("apps", "v1", "deployments"),
        "StatefulSet" => ("apps", "v1", "statefulsets"),
        "DaemonSet" => ("apps", "v1", "daemonsets"),
        "CronJob" => ("batch", "v1", "cronjobs"),
        "Job" => ("batch", "v1", "jobs"),
        "Event" => ("", "v1", "events"),
        _ => return None,
    };
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        plural,
    ))
}

/// Whether an error is worth retrying: server errors, throttling, conflicts and transport
/// failures. Other 4xx answers are final.
pub fn is_transient(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) => {
            s.code >= 500 || s.code == 429 || (s.code == 409 && s.reason != "AlreadyExists")
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// Whether an error is a 409 Conflict on a resourceVersion precondition ("the object has been
/// modified"), not an AlreadyExists.
pub fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason != "AlreadyExists")
}

/// Whether an error is a 403 Forbidden.
pub fn is_forbidden(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 403)
}

/// Whether an error is a 404 Not Found.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

/// The backoff of API calls: 200 ms doubling up to 5 s, with jitter, 5 tries in all.
fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(4)
        .with_jitter()
}

/// Runs `op` until it succeeds, fails with a final error, or 5 tries have failed.
pub async fn retry<T, F, Fut>(op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    retry_with(backoff(), op).await
}

async fn retry_with<T, F, Fut>(backoff: ExponentialBuilder, op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    op.retry(backoff).when(is_transient).await
}

/// The metadata of the objects of one kind in one namespace, as a metadata-only list read them
/// (`PartialObjectMetadataList`): each object's `{"metadata": ...}` by name, and the list's
/// resourceVersion (of its first page).
#[derive(Debug, Default)]
pub struct MetadataList {
    /// The resourceVersion of the list: every object created after it has a larger one.
    pub resource_version: String,
    /// `{"metadata": ...}` of each object listed, by name.
    pub items: std::collections::BTreeMap<String, Value>,
}

/// What sc-job reads of the API server's answer to a write: the object's metadata. The rest
/// (a Secret's data, a ConfigMap's journal) is skipped by the parser, never held.
#[derive(serde::Deserialize)]
struct Written {
    #[serde(default)]
    metadata: Value,
}

impl Written {
    fn into_value(self) -> Value {
        let mut out = Map::new();
        out.insert("metadata".into(), self.metadata);
        Value::Object(out)
    }
}

/// A client for untyped objects.
#[derive(Clone)]
pub struct Kube {
    client: kube::Client,
}

fn to_value(o: DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

impl Kube {
    /// Wraps `client`.
    pub fn new(client: kube::Client) -> Self {
        Kube { client }
    }

    fn api(&self, kind: &str, namespace: &str) -> Api<DynamicObject> {
        let ar = resource(kind)
            .unwrap_or_else(|| ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", kind)));
        if namespace.is_empty() {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), namespace, &ar)
        }
    }

    /// The request builder of `kind`'s collection in `namespace`.
    fn request(&self, kind: &str, namespace: &str) -> kube::core::Request {
        kube::core::Request::new(self.api(kind, namespace).resource_url())
    }

    /// Sends a write and reads the object's metadata from the answer (see [`Written`]).
    async fn written(&self, req: http::Request<Vec<u8>>) -> Result<Value, kube::Error> {
        let w: Written = self.client.request(req).await?;
        Ok(w.into_value())
    }

    /// The object, or `None` when it does not exist.
    pub async fn get(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, kube::Error> {
        let api = self.api(kind, namespace);
        retry(|| api.get_opt(name)).await.map(|o| o.map(to_value))
    }

    /// Lists the objects matching `label_selector` page by page (`page` per request), keeping
    /// only those `keep` accepts, without their managed fields: memory follows what is kept,
    /// not what is listed.
    pub async fn list_kept(
        &self,
        kind: &str,
        namespace: &str,
        label_selector: &str,
        page: u32,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<Value>, kube::Error> {
        let api = self.api(kind, namespace);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut lp = kube::api::ListParams::default()
                .labels(label_selector)
                .limit(page);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let list = retry(|| api.list(&lp)).await?;
            token = list.metadata.continue_.clone().filter(|t| !t.is_empty());
            for mut o in list.items {
                if keep(o.metadata.name.as_deref().unwrap_or_default()) {
                    o.metadata.managed_fields = None;
                    out.push(to_value(o));
                }
            }
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// The metadata of the objects of `kind` in `namespace` (of the one named `name` when
    /// given, through the field selector `metadata.name`), in pages of `page`, asking for
    /// `PartialObjectMetadataList`: labels, annotations, managedFields and resourceVersions,
    /// never a Secret's content. Only the objects `keep` accepts (by name) are kept. The
    /// list's resourceVersion is the first page's.
    pub async fn list_metadata(
        &self,
        kind: &str,
        namespace: &str,
        name: Option<&str>,
        page: u32,
        keep: impl Fn(&str) -> bool,
    ) -> Result<MetadataList, kube::Error> {
        let api = self.api(kind, namespace);
        let mut out = MetadataList::default();
        let mut token: Option<String> = None;
        loop {
            let mut lp = kube::api::ListParams::default().limit(page);
            if let Some(n) = name {
                lp = lp.fields(&format!("metadata.name={n}"));
            }
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let list = retry(|| api.list_metadata(&lp)).await?;
            if token.is_none() {
                out.resource_version = list.metadata.resource_version.clone().unwrap_or_default();
            }
            token = list.metadata.continue_.clone().filter(|t| !t.is_empty());
            for o in list.items {
                if let Some(n) = o.metadata.name.clone().filter(|n| keep(n)) {
                    let metadata = serde_json::to_value(&o.metadata).unwrap_or(Value::Null);
                    out.items
                        .insert(n, serde_json::json!({ "metadata": metadata }));
                }
            }
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Creates `object` (e.g. an Event with `generateName`).
    pub async fn create(
        &self,
        kind: &str,
        namespace: &str,
        object: &Value,
    ) -> Result<Value, kube::Error> {
        let request = self.request(kind, namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
        retry(|| async {
            let req = request
                .create(&params, body.clone())
                .map_err(kube::Error::BuildRequest)?;
            self.written(req).await
        })
        .await
    }

    /// Server-side apply of `object` (forced, field manager `sc-job`); the answer is the
    /// object's `{"metadata": ...}`.
    pub async fn apply(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        object: &Value,
    ) -> Result<Value, kube::Error> {
        self.apply_if(kind, namespace, name, object, None).await
    }

    /// Server-side apply of `object` (forced, field manager `sc-job`) on the precondition
    /// `resource_version` (set as its `metadata.resourceVersion`) when given: an existing
    /// object with another resourceVersion answers 409 Conflict, which is returned at once
    /// (other transient errors are retried). On a missing object the API server takes the
    /// create path, where the resourceVersion is not compared. The answer is the object's
    /// `{"metadata": ...}`.
    pub async fn apply_if(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        object: &Value,
        resource_version: Option<&str>,
    ) -> Result<Value, kube::Error> {
        let request = self.request(kind, namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let guarded = resource_version.filter(|rv| !rv.is_empty()).map(|rv| {
            let mut o = object.clone();
            o["metadata"]["resourceVersion"] = Value::String(rv.to_string());
            o
        });
        let patch = Patch::Apply(guarded.as_ref().unwrap_or(object));
        (|| async {
            let req = request
                .patch(name, &params, &patch)
                .map_err(kube::Error::BuildRequest)?;
            self.written(req).await
        })
        .retry(backoff())
        .when(|e| is_transient(e) && !(guarded.is_some() && is_conflict(e)))
        .await
    }

    /// Removes the keys `keys` of a Secret's `data` (a merge patch, field manager `sc-job`)
    /// on the precondition `resource_version`: 409 Conflict when the Secret changed since,
    /// returned at once (other transient errors are retried).
    pub async fn remove_data_keys(
        &self,
        namespace: &str,
        name: &str,
        keys: &[String],
        resource_version: &str,
    ) -> Result<Value, kube::Error> {
        let api = self.api("Secret", namespace);
        let data: Map<String, Value> = keys.iter().map(|k| (k.clone(), Value::Null)).collect();
        let body = serde_json::json!({
            "metadata": {"resourceVersion": resource_version},
            "data": data,
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        let patch = Patch::Merge(&body);
        (|| api.patch(name, &params, &patch))
            .retry(backoff())
            .when(|e| is_transient(e) && !is_conflict(e))
            .await
            .map(to_value)
    }

    /// An RFC 6902 JSON patch.
    pub async fn json_patch(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        ops: &[Value],
    ) -> Result<Value, kube::Error> {
        let api = self.api(kind, namespace);
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(ops.to_vec())).map_err(kube::Error::SerdeError)?;
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        let patch = Patch::<()>::Json(patch);
        retry(|| api.patch(name, &params, &patch))
            .await
            .map(to_value)
    }

    /// Replaces `object` (its `metadata.resourceVersion` is the precondition); no retry, the
    /// caller re-reads on conflict.
    pub async fn replace(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        object: &Value,
    ) -> Result<Value, kube::Error> {
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
        let req = self
            .request(kind, namespace)
            .replace(name, &pp, body)
            .map_err(kube::Error::BuildRequest)?;
        self.written(req).await
    }

    /// Deletes the object with background propagation; `false` when it did not exist.
    /// `uid` makes the deletion conditional on the object being the one that was read.
    pub async fn delete(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<bool, kube::Error> {
        let api = self.api(kind, namespace);
        let mut dp = DeleteParams::background();
        if let Some(uid) = uid {
            dp = dp.preconditions(kube::api::Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            });
        }
        match retry(|| api.delete(name, &dp)).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether the API server serves `plural` in `group_version` (`group/version`).
    pub async fn serves(&self, group_version: &str, plural: &str) -> Result<bool, kube::Error> {
        match retry(|| self.client.list_api_group_resources(group_version)).await {
            Ok(list) => Ok(list.resources.iter().any(|r| r.name == plural)),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_err(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Status::failure("x", reason).with_code(code).boxed())
    }

    #[test]
    fn transient_errors() {
        assert!(is_transient(&api_err(500, "InternalError")));
        assert!(is_transient(&api_err(503, "ServiceUnavailable")));
        assert!(is_transient(&api_err(429, "TooManyRequests")));
        assert!(is_transient(&api_err(409, "Conflict")));
        assert!(!is_transient(&api_err(409, "AlreadyExists")));
        assert!(!is_transient(&api_err(404, "NotFound")));
        assert!(!is_transient(&api_err(403, "Forbidden")));
        assert!(!is_transient(&api_err(422, "Invalid")));
    }

    #[tokio::test]
    async fn retries_transient_errors_only_and_a_bounded_number_of_times() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let calls = AtomicU32::new(0);
        let fast = || {
            backoff()
                .with_min_delay(Duration::from_millis(1))
                .with_max_delay(Duration::from_millis(2))
        };
        let r = retry_with(fast(), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n < 2 {
                Err(api_err(503, "ServiceUnavailable"))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        calls.store(0, Ordering::SeqCst);
        let r: Result<(), _> = retry_with(fast(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(api_err(403, "Forbidden"))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a final error is not retried"
        );

        calls.store(0, Ordering::SeqCst);
        let r: Result<(), _> = retry_with(fast(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(api_err(500, "InternalError"))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 5, "5 tries in all");
    }

    #[test]
    fn known_kinds_have_resources() {
        let ar = resource("SecretProviderClass").unwrap();
        assert_eq!(ar.api_version, "secrets-store.csi.x-k8s.io/v1");
        assert_eq!(ar.plural, "secretproviderclasses");
        assert!(resource("Pod").is_none());
    }
}
