//! Requests split over several objects. The chart puts the connection requests in ConfigMap
//! `sc-requests` and the protected settings in Secret `sc-protected`; past a size budget
//! they continue in `<name>-1`, `<name>-2`, ... The first object names their number
//! ([`SHARDS_ANNOTATION`]); every shard carries the Helm revision, and readers use a revision
//! only once all of its shards carry it. Gathering the shards of one revision is
//! [`gather`], which takes a way to fetch an object by name (a watch store, an API client):
//! no I/O here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

/// Annotation of the first object: how many objects hold the requests ("1" when absent).
pub const SHARDS_ANNOTATION: &str = "sc-extension.io/shards";
/// Label of every further shard: the name of the first object.
pub const SHARD_OF_LABEL: &str = "sc-extension.io/shard-of";
/// Annotation of every shard: the Helm revision that wrote it.
pub const REVISION_ANNOTATION: &str = "sc-extension.io/revision";
/// At most this many shards are read (a bound against a corrupted annotation).
pub const MAX_SHARDS: usize = 1000;

/// The name of shard `i` of `base`: `base`, `base-1`, `base-2`, ...
pub fn shard_name(base: &str, i: usize) -> String {
    if i == 0 {
        base.to_string()
    } else {
        format!("{base}-{i}")
    }
}

/// How many shards the first object `name` announces; an error names the annotation.
pub fn shard_count(
    name: &str,
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<usize, String> {
    match annotations.and_then(|a| a.get(SHARDS_ANNOTATION)) {
        None => Ok(1),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_SHARDS).contains(&n) => Ok(n),
            _ => Err(format!(
                "annotation {SHARDS_ANNOTATION} of {name} is {v:?}, not a number from 1 to {MAX_SHARDS}: upgrade the release so the chart writes it again"
            )),
        },
    }
}

/// The revision an object carries (its [`REVISION_ANNOTATION`], `None` when absent).
pub fn revision(annotations: Option<&BTreeMap<String, String>>) -> Option<&str> {
    annotations
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .map(|r| r.trim())
}

/// The shards of a request object.
#[derive(Debug)]
pub enum Shards<K> {
    /// Every shard, the first one first, all of the first one's revision.
    Complete(Vec<Arc<K>>),
    /// A shard is missing, unreadable or of another revision (an upgrade still writing
    /// them): read again later. The text names the shard.
    Incomplete(String),
    /// The first object announces no valid number of shards. The text names it.
    Invalid(String),
}

/// Why shard `name` cannot be used with `first` (`None` when it can).
fn unusable<K: k8s_openapi::Metadata<Ty = ObjectMeta>>(
    first: &K,
    shard: Option<&K>,
    name: &str,
    kind: &str,
) -> Option<String> {
    let want = revision(first.metadata().annotations.as_ref());
    match shard {
        None => Some(format!("{kind} {name} does not exist yet")),
        Some(s) if revision(s.metadata().annotations.as_ref()) != want => Some(format!(
            "{kind} {name} is of revision {} while {} is of revision {}",
            revision(s.metadata().annotations.as_ref()).unwrap_or("none"),
            first.metadata().name.as_deref().unwrap_or_default(),
            want.unwrap_or("none"),
        )),
        Some(_) => None,
    }
}

/// The shards of `first` (a `kind` such as `ConfigMap`), the further ones fetched by name
/// with `fetch`, one after the other, stopping at the first that is missing or of another
/// revision. A fetch error makes the shards incomplete, its text naming the shard.
pub async fn gather<K, O, E, F, Fut>(first: Arc<K>, kind: &str, mut fetch: F) -> Shards<K>
where
    K: k8s_openapi::Metadata<Ty = ObjectMeta>,
    O: Into<Arc<K>>,
    E: Display,
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Option<O>, E>>,
{
    let base = first.metadata().name.clone().unwrap_or_default();
    let count = match shard_count(
        &format!("{kind} {base}"),
        first.metadata().annotations.as_ref(),
    ) {
        Ok(n) => n,
        Err(e) => return Shards::Invalid(e),
    };
    let mut all = Vec::with_capacity(count);
    all.push(first.clone());
    for i in 1..count {
        let name = shard_name(&base, i);
        let shard: Option<Arc<K>> = match fetch(name.clone()).await {
            Ok(s) => s.map(Into::into),
            Err(e) => return Shards::Incomplete(format!("reading {kind} {name} failed: {e}")),
        };
        if let Some(why) = unusable(first.as_ref(), shard.as_deref(), &name, kind) {
            return Shards::Incomplete(why);
        }
        all.extend(shard);
    }
    Shards::Complete(all)
}

/// [`gather`] with a lookup that answers at once (a watch store).
pub fn from_store<K>(first: Arc<K>, kind: &str, get: impl Fn(&str) -> Option<Arc<K>>) -> Shards<K>
where
    K: k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    let fetch = |name: String| std::future::ready(Ok::<_, std::convert::Infallible>(get(&name)));
    let mut gathering = std::pin::pin!(gather(first, kind, fetch));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match gathering.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(shards) => shards,
        // Every fetch is ready at once, so the gathering is too.
        std::task::Poll::Pending => unreachable!("a store lookup never waits"),
    }
}

/// Adds the connections of one shard (`part`, a JSON map named `what` in errors) to
/// `into`. A connection in two shards, or a shard that is not a map, is an error naming the
/// shard; the error never quotes the content (it may be a secret).
pub fn merge_into(into: &mut Map<String, Value>, part: Value, what: &str) -> Result<(), String> {
    match part {
        Value::Null => Ok(()),
        Value::Object(m) => {
            for (name, conn) in m {
                if into.contains_key(&name) {
                    return Err(format!(
                        "connection {name:?} is in {what} and in an earlier shard: upgrade the release so the chart writes the shards again"
                    ));
                }
                into.insert(name, conn);
            }
            Ok(())
        }
        _ => Err(format!(
            "{what} is not a map of connection name to connection: upgrade the release with valid values"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_and_counts() {
        assert_eq!(shard_name("sc-requests", 0), "sc-requests");
        assert_eq!(shard_name("sc-requests", 2), "sc-requests-2");
        assert_eq!(shard_count("sc-requests", None), Ok(1));
        assert_eq!(
            shard_count("sc-requests", Some(&ann(&[(SHARDS_ANNOTATION, "3")]))),
            Ok(3)
        );
        for bad in ["0", "x", "-1", "1001"] {
            let e =
                shard_count("sc-requests", Some(&ann(&[(SHARDS_ANNOTATION, bad)]))).unwrap_err();
            assert!(
                e.contains(SHARDS_ANNOTATION) && e.contains("sc-requests"),
                "{e}"
            );
        }
        assert_eq!(
            revision(Some(&ann(&[(REVISION_ANNOTATION, " 7 ")]))),
            Some("7")
        );
        assert_eq!(revision(None), None);
    }

    #[test]
    fn shards_merge_and_duplicates_are_refused_without_their_content() {
        let mut all = Map::new();
        merge_into(&mut all, json!({"a": {"x": 1}}), "ConfigMap sc-requests").unwrap();
        merge_into(&mut all, json!({"b": {"x": 2}}), "ConfigMap sc-requests-1").unwrap();
        merge_into(&mut all, Value::Null, "ConfigMap sc-requests-2").unwrap();
        assert_eq!(
            Value::Object(all.clone()),
            json!({"a": {"x": 1}, "b": {"x": 2}})
        );
        let e = merge_into(
            &mut all,
            json!({"a": {"s": "hunter2"}}),
            "Secret sc-protected-1",
        )
        .unwrap_err();
        assert!(e.contains("\"a\"") && e.contains("sc-protected-1"), "{e}");
        assert!(!e.contains("hunter2"));
        let e = merge_into(&mut all, json!([1]), "ConfigMap sc-requests-3").unwrap_err();
        assert!(e.contains("sc-requests-3"), "{e}");
    }

    fn cm(name: &str, revision: &str, shards: Option<&str>) -> Arc<ConfigMap> {
        let mut a = BTreeMap::from([(REVISION_ANNOTATION.to_string(), revision.to_string())]);
        if let Some(n) = shards {
            a.insert(SHARDS_ANNOTATION.to_string(), n.to_string());
        }
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.annotations = Some(a);
        Arc::new(c)
    }

    fn in_store(first: Arc<ConfigMap>, others: &[Arc<ConfigMap>]) -> Shards<ConfigMap> {
        from_store(first, "ConfigMap", |n| {
            others
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(n))
                .cloned()
        })
    }

    #[test]
    fn a_revision_is_read_once_every_shard_carries_it() {
        let first = cm("sc-requests", "4", Some("3"));
        let one = cm("sc-requests-1", "4", None);
        match in_store(first.clone(), std::slice::from_ref(&one)) {
            Shards::Incomplete(why) => assert!(why.contains("sc-requests-2"), "{why}"),
            other => panic!("{other:?}"),
        }
        match in_store(
            first.clone(),
            &[one.clone(), cm("sc-requests-2", "3", None)],
        ) {
            Shards::Incomplete(why) => {
                assert!(
                    why.contains("sc-requests-2") && why.contains("revision 3"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        // A stale shard past the announced number (helm deletes it after) is not read.
        let all = [
            one,
            cm("sc-requests-2", "4", None),
            cm("sc-requests-3", "2", None),
        ];
        match in_store(first, &all) {
            Shards::Complete(v) => assert_eq!(v.len(), 3),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(in_store(cm("sc-requests", "1", None), &[]), Shards::Complete(v) if v.len() == 1)
        );
        assert!(matches!(
            in_store(cm("sc-requests", "1", Some("many")), &[]),
            Shards::Invalid(_)
        ));
    }

    #[test]
    fn a_fetch_error_names_the_shard() {
        let first = cm("sc-protected", "2", Some("2"));
        let shards = std::pin::pin!(gather(first, "Secret", |_name| {
            std::future::ready(Err::<Option<ConfigMap>, _>("forbidden"))
        }));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match shards.poll(&mut cx) {
            std::task::Poll::Ready(Shards::Incomplete(why)) => {
                assert_eq!(why, "reading Secret sc-protected-1 failed: forbidden")
            }
            other => panic!("{other:?}"),
        }
    }
}
