//! What the requests want, connection by connection: hashes and validation errors, and the connections dropped because their metadata ConfigMap name is taken. Derived
//! by the observe stage, read by the plan stage. No I/O.

use crate::contract::Requests;
use serde_json::{Map, Value};
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

/// What [`rederive`] needs to check a connection again alone: a fingerprint of its request
/// (secrets merged in), and what the checks of its whole set gave it.
#[derive(Debug, Clone, Default)]
pub struct Recheck {
    /// A keyed hash of the request's JSON text (the key is random per process: it is never
    /// shown, and says nothing of a secret outside it).
    pub fingerprint: u64,
    /// [`sc_model::cross_signature`], when the request parsed.
    pub signature: Option<u64>,
    /// Whether it was first of its target family in its namespace.
    pub is_first: bool,
    /// The tenant ID its workload identity was given.
    pub identity_tenant_id: Option<String>,
}

/// The fingerprint of a connection's request (see [`Recheck::fingerprint`]).
pub fn fingerprint(request: &Value) -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    struct Writer<H>(H);
    impl<H: std::hash::Hasher> std::io::Write for Writer<H> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = Writer(KEY.get_or_init(Default::default).build_hasher());
    // Writing to a hasher cannot fail.
    let _ = serde_json::to_writer(&mut w, request);
    w.0.finish()
}

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

/// The connections of `connections` derived from `previous` (what [`desired`] gave for the
/// request objects before, sorted by name, no connection dropped): only the connections whose
/// request changed are checked again, alone. That gives what [`desired`] would when the
/// same connections are requested, every one of them was and is valid, and no changed one
/// changed what the checks of the others read ([`sc_model::cross_signature`]); otherwise the
/// requests come back, to be checked whole.
pub fn rederive(
    previous: &[Desired],
    connections: Map<String, Value>,
    hash_key: &str,
    guard: &sc_model::NamespaceGuard,
) -> Result<Vec<Desired>, Map<String, Value>> {
    let usable = !previous.is_empty()
        && previous.len() == connections.len()
        && previous
            .iter()
            .all(|d| d.errors.is_empty() && d.recheck.signature.is_some());
    if !usable {
        return Err(connections);
    }
    let mut out = previous.to_vec();
    let mut rechecked = 0;
    let mut whole = false;
    for (name, raw) in &connections {
        let Ok(i) = out.binary_search_by(|d| d.name.as_str().cmp(name)) else {
            whole = true;
            break;
        };
        let fingerprint = fingerprint(raw);
        if fingerprint == out[i].recheck.fingerprint {
            continue;
        }
        rechecked += 1;
        if rechecked > RECHECK_AT_MOST {
            whole = true;
            break;
        }
        let was = &out[i].recheck;
        let (mut check, signature) = sc_model::recheck_connection(
            name,
            raw,
            hash_key,
            was.is_first,
            was.identity_tenant_id.clone(),
        );
        guard.apply(std::slice::from_mut(&mut check));
        if !check.is_valid() || signature != was.signature {
            whole = true;
            break;
        }
        out[i] = Desired::of(check, fingerprint);
    }
    if whole {
        return Err(connections);
    }
    Ok(out)
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
/// namespace `guard` refuses is invalid: its error names its `namespace` key.
pub fn desired(requests: Requests, guard: &sc_model::NamespaceGuard) -> Vec<Desired> {
    let fingerprints: BTreeMap<String, u64> = requests
        .connections
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, raw)| (name.clone(), fingerprint(raw)))
        .collect();
    let mut checks = sc_model::check_connections_owned(requests.connections, &requests.hash_key);
    guard.apply(&mut checks);
    checks
        .into_iter()
        .map(|c| {
            let fp = fingerprints.get(&c.name).copied().unwrap_or_default();
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

    fn requests(conns: &Map<String, Value>) -> Requests {
        Requests {
            revision: 1,
            connections: Value::Object(conns.clone()),
            hash_key: "uid-1".into(),
        }
    }

    /// The fields the plan reads, and what a recheck needs.
    fn seen(d: &[Desired]) -> Vec<String> {
        d.iter()
            .map(|d| {
                format!(
                    "{} {} {:?} {:?} {:?} {} {:?}",
                    d.name,
                    d.hash,
                    d.errors,
                    d.drift_policy,
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
        let before = desired(requests(&conns), &guard);
        conns.insert("c3".into(), blob("apps", "acct3", "bmV3LWtleQ=="));
        conns.insert("c0".into(), blob("apps", "renamed", "a2V5"));
        let whole = desired(requests(&conns), &guard);
        let again = rederive(&before, conns.clone(), "uid-1", &guard).expect("rederived");
        assert_eq!(seen(&again), seen(&whole));
        assert_ne!(seen(&again), seen(&before));
        // Unchanged requests give what they gave.
        let same = rederive(&whole, conns.clone(), "uid-1", &guard).expect("rederived");
        assert_eq!(seen(&same), seen(&whole));
    }

    #[test]
    fn what_may_change_other_connections_is_checked_whole() {
        let guard = sc_model::NamespaceGuard::new(Some("sc-system"), Vec::<String>::new());
        let mut conns = Map::new();
        for i in 0..3 {
            conns.insert(format!("c{i}"), blob("apps", &format!("acct{i}"), "a2V5"));
        }
        let before = desired(requests(&conns), &guard);
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
            assert!(
                rederive(&before, changed, "uid-1", &guard).is_err(),
                "{what}"
            );
        }
        // An invalid set is never the base of a recheck.
        let mut bad = conns.clone();
        bad["c1"]["secrets"] = serde_json::json!({});
        let invalid = desired(requests(&bad), &guard);
        assert!(rederive(&invalid, conns, "uid-1", &guard).is_err());
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
