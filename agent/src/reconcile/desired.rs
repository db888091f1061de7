//! What the requests want, connection by connection: hashes and validation errors, and the connections dropped because their metadata ConfigMap name is taken. Derived
//! by the observe stage, read by the plan stage. No I/O.

use crate::contract::Requests;
use std::collections::BTreeMap;

/// What the requests want for one connection.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The connection name.
    pub name: String,
    /// Its content hash (also for an invalid request).
    pub hash: String,
    /// The validation errors (empty when valid), as `path: message`.
    pub errors: Vec<String>,
    /// What to do about drift of its objects.
    pub drift_policy: sc_model::DriftPolicy,
    /// What checking it again alone needs ([`rederive`]).
    pub recheck: Recheck,
}

/// What [`rederive`] needs to check a connection again alone: a fingerprint of its texts,
/// and what the checks of its whole set gave it.
#[derive(Debug, Clone, Default)]
pub struct Recheck {
    /// A keyed hash of its request's and its protected entry's JSON texts (the key is random
    /// per process: it is never shown, and says nothing of a secret outside it).
    pub fingerprint: u64,
    /// [`sc_model::cross_signature`], when the request parsed.
    pub signature: Option<u64>,
    /// Whether it was first of its target family in its namespace.
    pub is_first: bool,
    /// The tenant ID its workload identity was given.
    pub identity_tenant_id: Option<String>,
}

/// The fingerprint of a connection's texts (see [`Recheck::fingerprint`]).
pub fn fingerprint(raw: &crate::contract::RawConnection<'_>) -> u64 {
    use std::hash::{BuildHasher as _, Hash as _, Hasher as _};
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let mut h = KEY.get_or_init(Default::default).build_hasher();
    raw.request.get().hash(&mut h);
    raw.protected.map(|p| p.get()).hash(&mut h);
    h.finish()
}

/// The fingerprints of the connections of `raw` (none when the texts could not be read
/// apart: see [`crate::contract::raw_connections`]).
pub type Fingerprints<'a> = BTreeMap<&'a str, u64>;

impl Desired {
    fn of(c: sc_model::ConnectionCheck, fingerprint: u64) -> Desired {
        let (drift_policy, recheck) = match &c.connection {
            Some(conn) => (
                conn.spec.drift_policy,
                Recheck {
                    fingerprint,
                    signature: Some(sc_model::cross_signature(&conn.spec)),
                    is_first: conn.is_first,
                    identity_tenant_id: conn.identity_tenant_id.clone(),
                },
            ),
            None => (
                sc_model::DriftPolicy::default(),
                Recheck {
                    fingerprint,
                    ..Default::default()
                },
            ),
        };
        Desired {
            name: c.name,
            hash: c.hash,
            errors: c.errors.iter().map(ToString::to_string).collect(),
            drift_policy,
            recheck,
        }
    }
}

/// Requests changed in more connections than this are checked whole.
const RECHECK_AT_MOST: usize = 256;

/// The connections of the requests `raw` (their texts) derived from `previous` (what
/// [`desired`] gave for the request objects before, sorted by name, no connection dropped):
/// only the connections whose texts changed are parsed and checked again, alone. That gives
/// what [`desired`] would when the same connections are requested, every one of them was and
/// is valid, and no changed one changed what the checks of the others read
/// ([`sc_model::cross_signature`]); otherwise `None`: check the requests whole.
pub fn rederive(
    previous: &[Desired],
    raw: &BTreeMap<&str, crate::contract::RawConnection<'_>>,
    hash_key: &str,
    guard: &sc_model::NamespaceGuard,
) -> Option<Vec<Desired>> {
    let usable = !previous.is_empty()
        && previous.len() == raw.len()
        && previous
            .iter()
            .all(|d| d.errors.is_empty() && d.recheck.signature.is_some());
    if !usable {
        return None;
    }
    let mut out = previous.to_vec();
    let mut rechecked = 0;
    for (name, texts) in raw {
        let i = out.binary_search_by(|d| d.name.as_str().cmp(name)).ok()?;
        let fingerprint = fingerprint(texts);
        if fingerprint == out[i].recheck.fingerprint {
            continue;
        }
        rechecked += 1;
        if rechecked > RECHECK_AT_MOST {
            return None;
        }
        let value = texts.value()?;
        let was = &out[i].recheck;
        let (mut check, signature) = sc_model::recheck_connection(
            name,
            &value,
            hash_key,
            was.is_first,
            was.identity_tenant_id.clone(),
        );
        guard.apply(std::slice::from_mut(&mut check));
        if !check.is_valid() || signature != was.signature {
            return None;
        }
        out[i] = Desired::of(check, fingerprint);
    }
    Some(out)
}

/// A requested connection the agent ignores: its metadata ConfigMap name is taken by an
/// earlier connection, or it gives no valid name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameClash {
    /// The ignored connection.
    pub dropped: String,
    /// The connection that holds the metadata ConfigMap name; `None` when the dropped
    /// connection's name gives no valid metadata ConfigMap name at all.
    pub taken_by: Option<String>,
}

/// Hashes and validation errors of every requested connection (the requests are consumed:
/// each connection's raw request is freed as soon as it is parsed). A connection to a
/// namespace `guard` refuses is invalid: its error names its `namespace` key. Each gets the
/// fingerprint of its texts from `fingerprints` (0 when absent: it is then checked again at
/// the next change).
pub fn desired(
    requests: Requests,
    guard: &sc_model::NamespaceGuard,
    fingerprints: &Fingerprints<'_>,
) -> Vec<Desired> {
    let mut checks = sc_model::check_connections_owned(requests.connections, &requests.hash_key);
    guard.apply(&mut checks);
    checks
        .into_iter()
        .map(|c| {
            let fp = fingerprints
                .get(c.name.as_str())
                .copied()
                .unwrap_or_default();
            Desired::of(c, fp)
        })
        .collect()
}

/// Whether `connection` gives a valid metadata ConfigMap name (one with at least a letter or a
/// digit after the prefix).
pub fn has_metadata_name(connection: &str) -> bool {
    let cm = crate::contract::metadata_name(connection);
    cm.len() != crate::contract::METADATA_PREFIX.len() && sc_model::names::is_dns_subdomain(&cm)
}

/// Drops the connections whose metadata ConfigMap name is taken by an earlier one (names that
/// differ only in non-alphanumeric characters or case, in different namespaces) or is not a
/// valid name (a connection name without a letter or digit); returns the kept connections and
/// the clashes. A dropped connection has nowhere to record a result, so no Job carries it.
pub fn without_metadata_clashes(desired: Vec<Desired>) -> (Vec<Desired>, Vec<NameClash>) {
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut kept = Vec::with_capacity(desired.len());
    let mut clashes = Vec::new();
    for d in desired {
        if !has_metadata_name(&d.name) {
            clashes.push(NameClash {
                dropped: d.name.clone(),
                taken_by: None,
            });
            continue;
        }
        let cm = crate::contract::metadata_name(&d.name);
        match owners.get(&cm) {
            Some(owner) => clashes.push(NameClash {
                dropped: d.name.clone(),
                taken_by: Some(owner.clone()),
            }),
            None => {
                owners.insert(cm, d.name.clone());
                kept.push(d);
            }
        }
    }
    (kept, clashes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use serde_json::{Map, Value};
    use std::sync::Arc;

    pub(crate) fn want(name: &str, hash: &str) -> Desired {
        Desired {
            name: name.into(),
            hash: hash.into(),
            errors: vec![],
            drift_policy: sc_model::DriftPolicy::Repair,
            recheck: Recheck::default(),
        }
    }

    fn blob(ns: &str, account: &str, key: &str) -> Value {
        serde_json::json!({"namespace": ns, "targetType": "storage-blob", "authType": "secret",
            "clientType": "python", "parameters": {"accountName": account},
            "secrets": {"accountKey": key}})
    }

    /// The request objects the chart writes for `conns` (secrets in the protected Secret).
    fn objects(conns: &Map<String, Value>) -> (Vec<Arc<ConfigMap>>, Vec<Arc<Secret>>) {
        let mut public = Map::new();
        let mut protected = Map::new();
        for (name, c) in conns {
            let mut c = c.clone();
            if let Some(s) = c.as_object_mut().and_then(|m| m.remove("secrets")) {
                protected.insert(name.clone(), serde_json::json!({ "secrets": s }));
            }
            public.insert(name.clone(), c);
        }
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "sc-requests"},
            "data": {"connections.json": Value::Object(public).to_string()}
        }))
        .unwrap();
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "sc-protected", "uid": "uid-1"},
            "stringData": {"connections.json": Value::Object(protected).to_string()}
        }))
        .unwrap();
        (vec![Arc::new(cm)], vec![Arc::new(secret)])
    }

    /// What the agent derives of `conns` from scratch.
    fn whole(conns: &Map<String, Value>, guard: &sc_model::NamespaceGuard) -> Vec<Desired> {
        let (public, protected) = objects(conns);
        let requests = Requests::from_objects(&public, &protected, "uid-1").unwrap();
        let raw = crate::contract::raw_connections(&public, &protected).expect("texts");
        let fingerprints: Fingerprints = raw.iter().map(|(n, t)| (*n, fingerprint(t))).collect();
        desired(requests, guard, &fingerprints)
    }

    /// What the agent derives of `conns` from `previous`.
    fn again(
        previous: &[Desired],
        conns: &Map<String, Value>,
        guard: &sc_model::NamespaceGuard,
    ) -> Option<Vec<Desired>> {
        let (public, protected) = objects(conns);
        let raw = crate::contract::raw_connections(&public, &protected).expect("texts");
        rederive(previous, &raw, "uid-1", guard)
    }

    /// The fields the plan reads, and what a recheck needs.
    fn seen(d: &[Desired]) -> Vec<String> {
        d.iter()
            .map(|d| {
                format!(
                    "{} {} {:?} {:?} {} {:?} {} {:?}",
                    d.name,
                    d.hash,
                    d.errors,
                    d.drift_policy,
                    d.recheck.fingerprint,
                    d.recheck.signature,
                    d.recheck.is_first,
                    d.recheck.identity_tenant_id
                )
            })
            .collect()
    }

    #[test]
    fn a_changed_connection_is_checked_again_alone_as_the_whole_set_would() {
        let guard = sc_model::NamespaceGuard::new(Some("sc-system"), Vec::<String>::new());
        let mut conns = Map::new();
        for i in 0..5 {
            conns.insert(format!("c{i}"), blob("apps", &format!("acct{i}"), "a2V5"));
        }
        let before = whole(&conns, &guard);
        conns.insert("c3".into(), blob("apps", "acct3", "bmV3LWtleQ=="));
        conns.insert("c0".into(), blob("apps", "renamed", "a2V5"));
        let now = whole(&conns, &guard);
        let rederived = again(&before, &conns, &guard).expect("rederived");
        assert_eq!(seen(&rederived), seen(&now));
        assert_ne!(seen(&rederived), seen(&before));
        // Unchanged requests give what they gave.
        let same = again(&now, &conns, &guard).expect("rederived");
        assert_eq!(seen(&same), seen(&now));
    }

    #[test]
    fn what_may_change_other_connections_is_checked_whole() {
        let guard = sc_model::NamespaceGuard::new(Some("sc-system"), Vec::<String>::new());
        let mut conns = Map::new();
        for i in 0..3 {
            conns.insert(format!("c{i}"), blob("apps", &format!("acct{i}"), "a2V5"));
        }
        let before = whole(&conns, &guard);
        type Change = Box<dyn Fn(&mut Map<String, Value>)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "another namespace",
                Box::new(|m| {
                    m.insert("c1".into(), blob("web", "acct1", "a2V5"));
                }),
            ),
            (
                "a connection added",
                Box::new(|m| {
                    m.insert("c9".into(), blob("apps", "acct9", "a2V5"));
                }),
            ),
            (
                "a connection removed",
                Box::new(|m| {
                    m.remove("c2");
                }),
            ),
            (
                "now invalid",
                Box::new(|m| {
                    m["c1"]["secrets"] = serde_json::json!({});
                }),
            ),
            (
                "refused namespace",
                Box::new(|m| {
                    m.insert("c1".into(), blob("kube-system", "acct1", "a2V5"));
                }),
            ),
        ];
        for (what, change) in cases {
            let mut changed = conns.clone();
            change(&mut changed);
            assert!(again(&before, &changed, &guard).is_none(), "{what}");
        }
        // An invalid set is never the base of a recheck.
        let mut bad = conns.clone();
        bad["c1"]["secrets"] = serde_json::json!({});
        let invalid = whole(&bad, &guard);
        assert!(again(&invalid, &conns, &guard).is_none());
    }

    #[test]
    fn clashing_metadata_names_keep_the_first_connection() {
        let (kept, clashes) = without_metadata_clashes(vec![
            want("Blob-1", "a"),
            want("blob_1", "b"),
            want("c", "c"),
        ]);
        let names: Vec<&str> = kept.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec!["Blob-1", "c"]);
        assert_eq!(
            clashes,
            vec![NameClash {
                dropped: "blob_1".to_string(),
                taken_by: Some("Blob-1".to_string())
            }]
        );
    }

    #[test]
    fn a_name_without_a_metadata_name_is_dropped() {
        let (kept, clashes) = without_metadata_clashes(vec![want("___", "a"), want("c", "c")]);
        let names: Vec<&str> = kept.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec!["c"]);
        assert_eq!(
            clashes,
            vec![NameClash {
                dropped: "___".to_string(),
                taken_by: None
            }]
        );
    }
}
