//! The requests as the chart renders them: ConfigMap `sc-requests` and Secret `sc-protected`
//! (each maybe split over shards), merged into one map of connections with their protected
//! settings, and the key of the content hashes.

use crate::shards::merge_into;
use crate::{CONNECTIONS_KEY, REVISION_ANNOTATION};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The requests as the chart rendered them, with the protected inputs merged in (so its
/// `Debug` form shows no content).
#[derive(Clone)]
pub struct Requests {
    /// The Helm revision (0 when unknown).
    pub revision: i64,
    /// The `connections` subtree with each connection's `secrets`.
    pub connections: Value,
    /// The key of the content hashes: see [`hash_key`].
    pub hash_key: String,
}

/// The key of the content hashes (HMAC): the uid of the protected Secret, which only those who
/// may read that Secret see, so the hashes recorded in ConfigMaps cannot be tested offline
/// against guessed secrets. Empty when there is no protected Secret (then no secret either).
/// A new protected Secret (a reinstall) changes every hash once: each connection is applied
/// again, idempotently.
pub fn hash_key(protected: Option<&Secret>) -> String {
    protected
        .and_then(|s| s.metadata.uid.clone())
        .unwrap_or_default()
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.connections.as_object().map_or(0, |m| m.len());
        f.debug_struct("Requests")
            .field("revision", &self.revision)
            .field("connections", &count)
            .finish()
    }
}

impl Requests {
    /// Merges `connections.json` of the request ConfigMap(s) with that of the protected
    /// Secret(s): `public` and `protected` are the shards in order, by object name, each with
    /// its `connections.json` when it has one.
    pub fn parse(
        revision: i64,
        public: &[(&str, Option<&[u8]>)],
        protected: &[(&str, Option<&[u8]>)],
        hash_key: &str,
    ) -> Result<Requests, String> {
        let mut connections = serde_json::Map::new();
        for (name, text) in public {
            let part: Value = match text {
                Some(t) if !t.trim_ascii().is_empty() => serde_json::from_slice(t).map_err(|e| {
                    format!("ConfigMap {name} key {CONNECTIONS_KEY} is not JSON ({e}): upgrade the release with valid values")
                })?,
                _ => Value::Null,
            };
            merge_into(&mut connections, part, &format!("ConfigMap {name}"))?;
        }
        let mut secrets = serde_json::Map::new();
        for (name, bytes) in protected {
            let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
                continue;
            };
            // Never include serde's message: it may quote the secret text.
            let part: Value = serde_json::from_slice(bytes).map_err(|_| {
                format!("Secret {name} key {CONNECTIONS_KEY} is not JSON: upgrade the release with valid protected values")
            })?;
            merge_into(&mut secrets, part, &format!("Secret {name}"))?;
        }
        merge_protected(&mut connections, secrets);
        Ok(Requests {
            revision,
            connections: Value::Object(connections),
            hash_key: hash_key.to_string(),
        })
    }

    /// [`Requests::parse`] of the request ConfigMaps and protected Secrets (each in shard
    /// order, as [`crate::shards::gather`] returns them); the revision is the first
    /// ConfigMap's.
    pub fn from_objects(
        public: &[Arc<ConfigMap>],
        protected: &[Arc<Secret>],
        hash_key: &str,
    ) -> Result<Requests, String> {
        let name = |m: &ObjectMeta| m.name.clone().unwrap_or_default();
        let public_names: Vec<String> = public.iter().map(|o| name(&o.metadata)).collect();
        let protected_names: Vec<String> = protected.iter().map(|o| name(&o.metadata)).collect();
        let public_parts: Vec<(&str, Option<&[u8]>)> = public_names
            .iter()
            .zip(public)
            .map(|(n, cm)| (n.as_str(), configmap_connections(cm)))
            .collect();
        let protected_parts: Vec<(&str, Option<&[u8]>)> = protected_names
            .iter()
            .zip(protected)
            .map(|(n, s)| (n.as_str(), secret_connections(s)))
            .collect();
        let revision = public
            .first()
            .map_or(0, |cm| revision_of(cm.metadata.annotations.as_ref()));
        Requests::parse(revision, &public_parts, &protected_parts, hash_key)
    }
}

/// One requested connection as its texts: its request and its entry in the protected
/// settings, borrowed from the request objects, unparsed.
#[derive(Clone, Copy)]
pub struct RawConnection<'a> {
    /// Its request (`connections.json` of the request ConfigMaps).
    pub request: &'a RawValue,
    /// Its protected entry (`{"secrets": {...}}`), if any.
    pub protected: Option<&'a RawValue>,
}

impl RawConnection<'_> {
    /// The connection as [`Requests::parse`] gives it: its request with the `secrets` of its
    /// protected entry. `None` when a text is no valid JSON (the whole parse says why).
    pub fn value(&self) -> Option<Value> {
        let mut conn: Value = serde_json::from_str(self.request.get()).ok()?;
        if let Some(p) = self.protected {
            merge_secrets(&mut conn, serde_json::from_str(p.get()).ok()?);
        }
        Some(conn)
    }
}

/// Every requested connection of the request objects' shards (as [`Requests::from_objects`]
/// takes them) as its texts, without parsing a connection: what a reader that checks only the
/// connections whose texts changed needs. `None` whenever [`Requests::from_objects`] might
/// answer otherwise than with a map of connections (a text that is no map, a connection in
/// two shards, a name written with escapes): parse the requests whole then.
pub fn raw_connections<'a>(
    public: &'a [Arc<ConfigMap>],
    protected: &'a [Arc<Secret>],
) -> Option<BTreeMap<&'a str, RawConnection<'a>>> {
    type Part<'a> = Option<BTreeMap<&'a str, &'a RawValue>>;
    let parse = |t: &'a [u8]| -> Option<BTreeMap<&'a str, &'a RawValue>> {
        if t.trim_ascii().is_empty() {
            return Some(BTreeMap::new());
        }
        let part: Part<'a> = serde_json::from_slice(t).ok()?;
        Some(part.unwrap_or_default())
    };
    let mut out: BTreeMap<&'a str, RawConnection<'a>> = BTreeMap::new();
    for cm in public {
        let Some(text) = configmap_connections(cm) else {
            continue;
        };
        for (name, request) in parse(text)? {
            if out
                .insert(
                    name,
                    RawConnection {
                        request,
                        protected: None,
                    },
                )
                .is_some()
            {
                return None;
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in protected {
        let Some(bytes) = secret_connections(s).filter(|b| !b.is_empty()) else {
            continue;
        };
        for (name, entry) in parse(bytes)? {
            if !seen.insert(name) {
                return None;
            }
            if let Some(c) = out.get_mut(name) {
                c.protected = Some(entry);
            }
        }
    }
    Some(out)
}

/// Merges the protected settings (`{"<name>": {"secrets": {...}}}`) into the requests'
/// connections: each connection gets its `secrets`; protected entries of connections not in
/// the requests are ignored.
pub fn merge_protected(connections: &mut Map<String, Value>, protected: Map<String, Value>) {
    for (name, p) in protected {
        if let Some(c) = connections.get_mut(&name) {
            merge_secrets(c, p);
        }
    }
}

/// Gives one connection the `secrets` of its protected entry (when both are maps).
fn merge_secrets(connection: &mut Value, entry: Value) {
    if let (Value::Object(c), Value::Object(mut p)) = (connection, entry)
        && let Some(s) = p.remove("secrets")
    {
        c.insert("secrets".into(), s);
    }
}

/// `connections.json` of a request ConfigMap.
pub fn configmap_connections(cm: &ConfigMap) -> Option<&[u8]> {
    cm.data.as_ref()?.get(CONNECTIONS_KEY).map(|t| t.as_bytes())
}

/// `connections.json` of a protected Secret.
pub fn secret_connections(s: &Secret) -> Option<&[u8]> {
    match s.data.as_ref().and_then(|d| d.get(CONNECTIONS_KEY)) {
        Some(b) => Some(b.0.as_slice()),
        None => s
            .string_data
            .as_ref()?
            .get(CONNECTIONS_KEY)
            .map(|t| t.as_bytes()),
    }
}

/// The Helm revision recorded on an object (0 when absent or not a number).
pub fn revision_of(annotations: Option<&BTreeMap<String, String>>) -> i64 {
    annotations
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str, text: &str) -> Arc<ConfigMap> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name}, "data": {"connections.json": text}
            }))
            .unwrap(),
        )
    }

    fn secret(name: &str, text: &str) -> Arc<Secret> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "uid": "u"}, "stringData": {"connections.json": text}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn raw_connections_give_what_the_whole_parse_gives() {
        let public = [
            cm(
                "sc-requests",
                r#"{"b": {"namespace": "x"}, "a": {"namespace": "y", "n": 1}}"#,
            ),
            cm("sc-requests-1", r#"{"c": {"namespace": "z"}}"#),
        ];
        let protected = [secret(
            "sc-protected",
            r#"{"a": {"secrets": {"k": "v"}}, "gone": {"secrets": {"k": "w"}}}"#,
        )];
        let whole = Requests::from_objects(&public, &protected, "u").unwrap();
        let raw = raw_connections(&public, &protected).unwrap();
        assert_eq!(raw.keys().copied().collect::<Vec<_>>(), ["a", "b", "c"]);
        for (name, texts) in &raw {
            assert_eq!(
                texts.value().as_ref(),
                whole.connections.get(*name),
                "{name}"
            );
        }
        assert!(raw["a"].protected.is_some() && raw["b"].protected.is_none());
    }

    #[test]
    fn raw_connections_refuse_what_the_whole_parse_may_refuse() {
        let ok = [secret("sc-protected", "{}")];
        for text in ["[1]", "{not json", r#"{"a\u0062": {}}"#] {
            assert!(
                raw_connections(&[cm("sc-requests", text)], &ok).is_none(),
                "{text}"
            );
        }
        // One connection in two shards.
        let twice = [
            cm("sc-requests", r#"{"a": {}}"#),
            cm("sc-requests-1", r#"{"a": {}}"#),
        ];
        assert!(raw_connections(&twice, &ok).is_none());
        assert!(Requests::from_objects(&twice, &ok, "u").is_err());
        // Protected settings that are no JSON.
        let bad = [secret("sc-protected", "{\"a\": ")];
        assert!(raw_connections(&[cm("sc-requests", r#"{"a": {}}"#)], &bad).is_none());
        // Empty and null texts request nothing, as the whole parse reads them.
        let empty = [cm("sc-requests", "null"), cm("sc-requests-1", " ")];
        assert_eq!(raw_connections(&empty, &ok).map(|m| m.len()), Some(0));
        let whole = Requests::from_objects(&empty, &ok, "u").unwrap();
        assert_eq!(whole.connections.as_object().map(|m| m.len()), Some(0));
    }

    #[test]
    fn protected_inputs_are_merged_and_never_quoted_in_errors() {
        let r = Requests::parse(
            3,
            &[(
                "sc-requests",
                Some(br#"{"a": {"targetType": "storage-blob"}, "b": {}}"#),
            )],
            &[(
                "sc-protected",
                Some(
                    br#"{"a": {"secrets": {"accountKey": "s3cr3t-key"}}, "gone": {"secrets": {}}}"#,
                ),
            )],
            "uid",
        )
        .unwrap();
        assert_eq!(r.connections["a"]["secrets"]["accountKey"], "s3cr3t-key");
        assert!(r.connections.get("gone").is_none());
        let err = Requests::parse(
            1,
            &[("sc-requests", Some(b"{}"))],
            &[("sc-protected", Some(b"{\"a\": hunter2"))],
            "",
        )
        .unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!format!("{r:?}").contains("s3cr3t-key"), "{r:?}");
    }

    /// Two protected shards: the password of connection `first` is `p1`, of `second` `p2`.
    fn protected_shards(first: &str, second: &str) -> Vec<(&'static str, Option<&'static [u8]>)> {
        let shard = |conn: &str, password: &str| -> Option<&'static [u8]> {
            let text = format!(r#"{{"{conn}": {{"secrets": {{"password": "{password}"}}}}}}"#);
            Some(text.into_bytes().leak())
        };
        vec![
            ("sc-protected", shard(first, "p1")),
            ("sc-protected-1", shard(second, "p2")),
        ]
    }

    #[test]
    fn shards_are_merged_and_a_connection_in_two_is_refused() {
        let r = Requests::parse(
            2,
            &[
                ("sc-requests", Some(br#"{"a": {"targetType": "redis"}}"#)),
                ("sc-requests-1", Some(br#"{"b": {"targetType": "redis"}}"#)),
            ],
            &protected_shards("b", "a"),
            "uid",
        )
        .unwrap();
        assert_eq!(r.connections["a"]["secrets"]["password"], "p2");
        assert_eq!(r.connections["b"]["secrets"]["password"], "p1");
        let err = Requests::parse(
            2,
            &[
                ("sc-requests", Some(br#"{"a": {}}"#)),
                ("sc-requests-1", Some(br#"{"a": {}}"#)),
            ],
            &[],
            "",
        )
        .unwrap_err();
        assert!(
            err.contains("sc-requests-1") && err.contains("\"a\""),
            "{err}"
        );
        let err = Requests::parse(
            2,
            &[("sc-requests", Some(b"{}"))],
            &protected_shards("a", "a"),
            "",
        )
        .unwrap_err();
        assert!(
            err.contains("sc-protected-1") && !err.contains("p2"),
            "{err}"
        );
    }

    #[test]
    fn merges_protected_settings() {
        let Value::Object(mut conns) =
            serde_json::json!({"a": {"targetType": "storage-blob"}, "b": {}})
        else {
            unreachable!()
        };
        let Value::Object(prot) = serde_json::json!(
            {"a": {"secrets": {"connectionString": "s3cr3t"}}, "gone": {"secrets": {}}})
        else {
            unreachable!()
        };
        merge_protected(&mut conns, prot);
        assert_eq!(conns["a"]["secrets"]["connectionString"], "s3cr3t");
        assert!(conns.get("gone").is_none());
        assert!(conns["b"].get("secrets").is_none());
    }

    #[test]
    fn objects_are_read_in_shard_order_with_the_first_revision() {
        let cm = |name: &str, rev: &str, text: &str| {
            let mut c = ConfigMap::default();
            c.metadata.name = Some(name.into());
            c.metadata.annotations = Some(BTreeMap::from([(
                REVISION_ANNOTATION.to_string(),
                rev.to_string(),
            )]));
            c.data = Some(BTreeMap::from([(
                CONNECTIONS_KEY.to_string(),
                text.to_string(),
            )]));
            Arc::new(c)
        };
        let mut s = Secret::default();
        s.metadata.name = Some("sc-protected".into());
        s.string_data = Some(BTreeMap::from([(
            CONNECTIONS_KEY.to_string(),
            r#"{"b": {"secrets": {"password": "p"}}}"#.to_string(),
        )]));
        let r = Requests::from_objects(
            &[
                cm("sc-requests", "5", r#"{"a": {}}"#),
                cm("sc-requests-1", "5", r#"{"b": {}}"#),
            ],
            &[Arc::new(s)],
            "k",
        )
        .unwrap();
        assert_eq!(r.revision, 5);
        assert_eq!(r.connections["b"]["secrets"]["password"], "p");
        assert_eq!(r.hash_key, "k");
        let err = Requests::from_objects(&[cm("sc-requests", "1", "{")], &[], "").unwrap_err();
        assert!(err.contains("ConfigMap sc-requests"), "{err}");
    }
}
