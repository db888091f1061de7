//! Requests split over several objects (`sc-requests`, `sc-requests-1`, ...; the same for
//! `sc-protected`): gathering every shard of one revision. The rules are in
//! [`sc_model::shards`].

use kube::{Api, Resource, ResourceExt};
use sc_model::shards::{revision, shard_count, shard_name};
use std::sync::Arc;

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

fn check<K: Resource>(first: &K, shard: Option<&K>, name: &str, kind: &str) -> Option<String> {
    let want = revision(first.meta().annotations.as_ref());
    match shard {
        None => Some(format!("{kind} {name} does not exist yet")),
        Some(s) if revision(s.meta().annotations.as_ref()) != want => Some(format!(
            "{kind} {name} is of revision {} while {} is of revision {}",
            revision(s.meta().annotations.as_ref()).unwrap_or("none"),
            first.name_any(),
            want.unwrap_or("none"),
        )),
        Some(_) => None,
    }
}

/// The shards of `first`, the further ones looked up by name with `get` (a reflector's
/// store).
pub fn from_store<K: Resource>(
    first: Arc<K>,
    kind: &str,
    get: impl Fn(&str) -> Option<Arc<K>>,
) -> Shards<K> {
    let base = first.name_any();
    let count = match shard_count(&format!("{kind} {base}"), first.meta().annotations.as_ref()) {
        Ok(n) => n,
        Err(e) => return Shards::Invalid(e),
    };
    let mut all = Vec::with_capacity(count);
    for i in 1..count {
        let name = shard_name(&base, i);
        let shard = get(&name);
        if let Some(why) = check(first.as_ref(), shard.as_deref(), &name, kind) {
            return Shards::Incomplete(why);
        }
        all.extend(shard);
    }
    all.insert(0, first);
    Shards::Complete(all)
}

/// The shards of `first`, the further ones read through `api`.
pub async fn from_api<K>(first: Arc<K>, kind: &str, api: &Api<K>) -> Shards<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let base = first.name_any();
    let count = match shard_count(&format!("{kind} {base}"), first.meta().annotations.as_ref()) {
        Ok(n) => n,
        Err(e) => return Shards::Invalid(e),
    };
    let mut all = Vec::with_capacity(count);
    all.push(first.clone());
    for i in 1..count {
        let name = shard_name(&base, i);
        let shard = match api.get_opt(&name).await {
            Ok(s) => s,
            Err(e) => return Shards::Incomplete(format!("reading {kind} {name} failed: {e}")),
        };
        if let Some(why) = check(first.as_ref(), shard.as_ref(), &name, kind) {
            return Shards::Incomplete(why);
        }
        all.extend(shard.map(Arc::new));
    }
    Shards::Complete(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::collections::BTreeMap;

    fn cm(name: &str, revision: &str, shards: Option<&str>) -> Arc<ConfigMap> {
        let mut a = BTreeMap::from([(
            sc_model::shards::REVISION_ANNOTATION.to_string(),
            revision.to_string(),
        )]);
        if let Some(n) = shards {
            a.insert(
                sc_model::shards::SHARDS_ANNOTATION.to_string(),
                n.to_string(),
            );
        }
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.annotations = Some(a);
        Arc::new(c)
    }

    fn gather(first: Arc<ConfigMap>, others: &[Arc<ConfigMap>]) -> Shards<ConfigMap> {
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
        match gather(first.clone(), std::slice::from_ref(&one)) {
            Shards::Incomplete(why) => assert!(why.contains("sc-requests-2"), "{why}"),
            other => panic!("{other:?}"),
        }
        match gather(
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
        match gather(first, &all) {
            Shards::Complete(v) => assert_eq!(v.len(), 3),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(gather(cm("sc-requests", "1", None), &[]), Shards::Complete(v) if v.len() == 1)
        );
        assert!(matches!(
            gather(cm("sc-requests", "1", Some("many")), &[]),
            Shards::Invalid(_)
        ));
    }
}
