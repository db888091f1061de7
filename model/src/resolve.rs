//! The validated request set: cross-connection checks (object name collisions, which
//! connection is first of its target type), the final configuration keys and values of
//! each connection, and its content hash.

use crate::catalog::catalog;
use crate::error::{FieldError, ValidationErrors};
use crate::names;
use crate::request::{
    ConnectionRequest, ConnectionSpec, is_true, parse_connection, parse_connections,
};
use crate::secret::SecretString;
use crate::types::{AuthType, WorkloadRef};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::BTreeMap;

type HmacSha256 = Hmac<Sha256>;

/// The value of a configuration key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// A non-secret value, safe to show.
    Plain(String),
    /// A credential.
    Secret(SecretString),
}

impl KeyValue {
    /// The value (for writing the Secret; never log it when [`KeyValue::is_secret`]).
    pub fn expose(&self) -> &str {
        match self {
            KeyValue::Plain(s) => s,
            KeyValue::Secret(s) => s.expose(),
        }
    }

    /// Whether the value is a credential.
    pub fn is_secret(&self) -> bool {
        matches!(self, KeyValue::Secret(_))
    }

    /// The value for display: the value itself, or `<redacted>` for a credential.
    pub fn display(&self) -> &str {
        match self {
            KeyValue::Plain(s) => s,
            KeyValue::Secret(_) => "<redacted>",
        }
    }

    /// The value as configuration listings show it (as Service Connector does): the value
    /// itself, or an empty string for a credential.
    pub fn listed(&self) -> &str {
        match self {
            KeyValue::Plain(s) => s,
            KeyValue::Secret(_) => "",
        }
    }
}

/// One final configuration key of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedKey {
    /// The key in the Secret (after the connection infix and `customizedKeys`).
    pub name: String,
    /// The documented name (or the `configurations` key) it comes from.
    pub default_name: String,
    /// What the value is.
    pub description: String,
    /// The value.
    pub value: KeyValue,
}

/// A validated connection with its final keys and names.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The request's non-secret part.
    pub spec: ConnectionSpec,
    /// The secret inputs.
    pub secrets: BTreeMap<String, SecretString>,
    /// Whether it is the first connection of its target family in its namespace (its keys
    /// carry no connection infix).
    pub is_first: bool,
    /// The final configuration keys, in documented order, then `configurations` keys.
    pub keys: Vec<ResolvedKey>,
    /// HMAC-SHA256 (hex), keyed by the key the set was validated with, of the canonical spec,
    /// the final key names and the secret inputs.
    pub hash: String,
    /// The tenant ID of the workload identity, from this connection or from another one in
    /// the namespace that uses the same client ID (the ServiceAccount is shared).
    pub identity_tenant_id: Option<String>,
    /// HMAC-SHA256 (hex, 32 digits), keyed like [`Connection::hash`], of what the pods of a
    /// listed workload consume: the Secret's keys and values, the ServiceAccount and its
    /// annotations, the SecretProviderClass. It changes only when they do (not when, say,
    /// another workload is listed), and reveals nothing of a secret: it is the value of the
    /// pod-template annotation that rolls the workloads out
    /// ([`crate::names::restart_annotation`]).
    pub rollout_hash: String,
}

impl Connection {
    /// The connection name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Its content hash under another key (see [`validate_connections_keyed`]).
    pub fn hash_with_key(&self, hash_key: &str) -> String {
        content_hash(&self.spec, &self.secrets, &self.keys, hash_key)
    }

    /// The Secret this connection writes (`None` for `keyvaultCsi`, whose Secret, if any,
    /// is written by the CSI driver).
    pub fn secret_name(&self) -> Option<String> {
        (self.spec.auth_type != AuthType::KeyvaultCsi).then(|| names::secret_name(&self.spec.name))
    }

    /// The workload-identity ServiceAccount this connection uses, if any.
    pub fn service_account_name(&self) -> Option<String> {
        self.workload_identity_client_id()
            .map(names::service_account_name)
    }

    /// The client ID of the workload identity, for `workloadIdentity` and for
    /// `keyvaultCsi` with `useWorkloadIdentity`.
    pub fn workload_identity_client_id(&self) -> Option<&str> {
        if uses_workload_identity(&self.spec) {
            self.spec.parameters.get("clientId").map(String::as_str)
        } else {
            None
        }
    }

    /// The SecretProviderClass of a `keyvaultCsi` connection.
    pub fn secret_provider_class_name(&self) -> Option<String> {
        (self.spec.auth_type == AuthType::KeyvaultCsi)
            .then(|| names::secret_provider_class_name(&self.spec.name))
    }

    /// A boolean parameter (`"true"`, `"yes"`, `"1"` are true).
    pub fn bool_parameter(&self, name: &str) -> bool {
        self.spec.parameters.get(name).is_some_and(|v| is_true(v))
    }
}

/// A validated set of connection requests, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct RequestSet {
    connections: Vec<Connection>,
}

impl RequestSet {
    /// The connections, sorted by name.
    pub fn connections(&self) -> &[Connection] {
        &self.connections
    }

    /// A connection by name.
    pub fn get(&self, name: &str) -> Option<&Connection> {
        self.connections
            .binary_search_by(|c| c.spec.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.connections[i])
    }
}

/// Whether a connection uses a workload identity (`workloadIdentity`, or `keyvaultCsi` with
/// `useWorkloadIdentity`).
fn uses_workload_identity(spec: &ConnectionSpec) -> bool {
    match spec.auth_type {
        AuthType::WorkloadIdentity => true,
        AuthType::KeyvaultCsi => spec
            .parameters
            .get("useWorkloadIdentity")
            .is_some_and(|s| is_true(s)),
        _ => false,
    }
}

/// Targets whose keys share a prefix are one family for the connection-infix rule
/// (`AZURE_COSMOS_*` for every Cosmos DB API, `AZURE_REDIS_*` for both Redis targets).
pub fn target_family(target: &str) -> &str {
    if target.starts_with("cosmos-") {
        "cosmos"
    } else if target.starts_with("redis") {
        "redis"
    } else {
        target
    }
}

/// The key name a non-first connection uses: the upper-cased compact connection name is
/// inserted after the second `_`-separated segment of an environment-style key
/// (`AZURE_STORAGEBLOB_CONNECTIONSTRING` -> `AZURE_STORAGEBLOB_CONN2_CONNECTIONSTRING`).
/// Keys with fewer segments get it appended; Spring property names (with `.` or lower-case
/// letters) are kept as they are.
pub fn infixed_key(key: &str, connection: &str) -> String {
    let env_style = key
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !env_style {
        return key.to_string();
    }
    let infix = names::key_infix(connection);
    let parts: Vec<&str> = key.splitn(3, '_').collect();
    match parts[..] {
        [a, b, rest] => format!("{a}_{b}_{infix}_{rest}"),
        _ => format!("{key}_{infix}"),
    }
}

/// Parses and validates a `connections` subtree (the non-secret requests and the protected
/// `secrets`, already merged), returning every problem found. Content hashes are keyed with an
/// empty key: see [`validate_connections_keyed`].
pub fn validate_connections(connections: &Value) -> Result<RequestSet, ValidationErrors> {
    validate_connections_keyed(connections, "")
}

/// [`validate_connections`] with the content hashes keyed by `hash_key` (HMAC-SHA256): a hash
/// recorded where secrets may not be read reveals nothing that can be tested offline against
/// guessed secrets by whoever does not know the key.
pub fn validate_connections_keyed(
    connections: &Value,
    hash_key: &str,
) -> Result<RequestSet, ValidationErrors> {
    let mut errors = Vec::new();
    let requests = parse_connections(connections, &mut errors);
    let set = resolve(requests, hash_key, &mut errors);
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(ValidationErrors(errors))
    }
}

/// Cross-connection checks and key resolution over requests that passed their own checks.
fn resolve(
    requests: Vec<ConnectionRequest>,
    hash_key: &str,
    errors: &mut Vec<FieldError>,
) -> RequestSet {
    // Which connection is first per (namespace, target family).
    let mut groups: BTreeMap<(String, String), Vec<&ConnectionRequest>> = BTreeMap::new();
    for r in &requests {
        groups
            .entry((
                r.spec.namespace.clone(),
                target_family(&r.spec.target_type).to_string(),
            ))
            .or_default()
            .push(r);
    }
    let mut first: BTreeMap<String, bool> = BTreeMap::new();
    for ((ns, family), members) in &groups {
        let primaries: Vec<&str> = members
            .iter()
            .filter(|r| r.spec.primary)
            .map(|r| r.spec.name.as_str())
            .collect();
        if primaries.len() > 1 {
            for p in &primaries[1..] {
                errors.push(FieldError::new(
                    format!("connections.{p}.primary"),
                    format!(
                        "connections {} are all primary for {family} in namespace {ns}: set primary on one of them only",
                        primaries.join(", ")
                    ),
                ));
            }
        }
        // Members are sorted by name: the smallest is first unless one is primary.
        let chosen = primaries.first().copied().unwrap_or(&members[0].spec.name);
        for m in members {
            first.insert(m.spec.name.clone(), m.spec.name == chosen);
        }
    }

    // Object name collisions in a namespace.
    let mut owners: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for r in &requests {
        let objects = if r.spec.auth_type == AuthType::KeyvaultCsi {
            let mut v = vec![(
                "SecretProviderClass",
                names::secret_provider_class_name(&r.spec.name),
            )];
            if r.spec
                .parameters
                .get("syncSecret")
                .is_some_and(|s| is_true(s))
            {
                v.push(("Secret", names::secret_name(&r.spec.name)));
            }
            v
        } else {
            vec![("Secret", names::secret_name(&r.spec.name))]
        };
        for (kind, name) in objects {
            let key = (r.spec.namespace.clone(), kind.to_string(), name.clone());
            match owners.get(&key) {
                Some(other) => errors.push(FieldError::new(
                    format!("connections.{}", r.spec.name),
                    format!(
                        "maps to {kind} {}/{name}, as connection {other} does: rename one of the two connections",
                        r.spec.namespace
                    ),
                )),
                None => {
                    owners.insert(key, r.spec.name.clone());
                }
            }
        }
    }

    // A shared ServiceAccount has one tenant ID annotation.
    let mut tenants: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    for r in &requests {
        if !uses_workload_identity(&r.spec) {
            continue;
        }
        let (Some(cid), Some(tid)) = (
            r.spec.parameters.get("clientId"),
            r.spec.parameters.get("tenantId"),
        ) else {
            continue;
        };
        let key = (r.spec.namespace.clone(), cid.to_ascii_lowercase());
        match tenants.get(&key) {
            Some((other, other_tid)) if !other_tid.eq_ignore_ascii_case(tid) => errors.push(FieldError::new(
                format!("connections.{}.parameters.tenantId", r.spec.name),
                format!(
                    "client ID {cid} has tenant ID {other_tid} in connection {other}: the ServiceAccount {} is shared, so give the same tenantId",
                    names::service_account_name(cid)
                ),
            )),
            Some(_) => {}
            None => {
                tenants.insert(key, (r.spec.name.clone(), tid.clone()));
            }
        }
    }

    // A workload can use one workload-identity ServiceAccount only.
    let mut wi_users: BTreeMap<(String, WorkloadRef), (String, String)> = BTreeMap::new();
    for r in &requests {
        let Some(cid) = r
            .spec
            .parameters
            .get("clientId")
            .filter(|_| uses_workload_identity(&r.spec))
        else {
            continue;
        };
        let sa = names::service_account_name(cid);
        for (i, w) in r.spec.workloads.iter().enumerate() {
            let key = (r.spec.namespace.clone(), w.clone());
            match wi_users.get(&key) {
                Some((other, other_sa)) if *other_sa != sa => errors.push(FieldError::new(
                    format!("connections.{}.workloads[{i}]", r.spec.name),
                    format!(
                        "{}/{} would need ServiceAccount {sa}, but connection {other} gives it {other_sa}: a pod has one ServiceAccount, so use the same clientId or inject the workload from one of them",
                        w.kind, w.name
                    ),
                )),
                Some(_) => {}
                None => {
                    wi_users.insert(key, (r.spec.name.clone(), sa.clone()));
                }
            }
        }
    }

    let given: Vec<(ConnectionRequest, bool, Option<String>)> = requests
        .into_iter()
        .map(|r| {
            let is_first = first.get(&r.spec.name).copied().unwrap_or(true);
            let identity_tenant_id = r
                .spec
                .parameters
                .get("clientId")
                .filter(|_| uses_workload_identity(&r.spec))
                .and_then(|cid| tenants.get(&(r.spec.namespace.clone(), cid.to_ascii_lowercase())))
                .map(|(_, tid)| tid.clone());
            (r, is_first, identity_tenant_id)
        })
        .collect();
    // Each connection's keys and hashes depend on it alone now.
    let (connections, errs) =
        crate::par::map_in_order(given, |(r, is_first, identity_tenant_id), errors| {
            finish(r, is_first, identity_tenant_id, hash_key, errors)
        });
    errors.extend(errs);
    RequestSet { connections }
}

/// A connection that passed its own checks, given what the cross-connection checks gave it.
fn finish(
    r: ConnectionRequest,
    is_first: bool,
    identity_tenant_id: Option<String>,
    hash_key: &str,
    errors: &mut Vec<FieldError>,
) -> Connection {
    let keys = resolve_keys(&r, is_first, errors);
    let hash = content_hash(&r.spec, &r.secrets, &keys, hash_key);
    let mut c = Connection {
        spec: r.spec,
        secrets: r.secrets,
        is_first,
        keys,
        hash,
        identity_tenant_id,
        rollout_hash: String::new(),
    };
    c.rollout_hash = rollout_hash(&c, hash_key);
    c
}

/// A fingerprint of everything the cross-connection checks of a set read of one connection
/// (its name, namespace, target family, `primary`, auth type, the parameters that name shared
/// objects or identities, its workloads): while a connection's stays the same, a change of
/// that connection changes no other connection's check, nor what the checks give it.
pub fn cross_signature(spec: &ConnectionSpec) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    spec.name.hash(&mut h);
    spec.namespace.hash(&mut h);
    target_family(&spec.target_type).hash(&mut h);
    spec.primary.hash(&mut h);
    spec.auth_type.hash(&mut h);
    for p in ["syncSecret", "useWorkloadIdentity", "clientId", "tenantId"] {
        spec.parameters.get(p).hash(&mut h);
    }
    spec.workloads.hash(&mut h);
    h.finish()
}

/// Checks one connection of a set again, alone, given what the set's cross-connection checks
/// gave it when the set was last checked (whether it is first of its family, the tenant ID of
/// its workload identity). The result is the one the whole set would give only while every
/// other connection is unchanged and the connection's [`cross_signature`] (returned with it,
/// when it parsed) is the same as then; otherwise check the whole set.
pub fn recheck_connection(
    name: &str,
    value: &Value,
    hash_key: &str,
    is_first: bool,
    identity_tenant_id: Option<String>,
) -> (ConnectionCheck, Option<u64>) {
    let mut errors = Vec::new();
    let Some(r) = parse_connection(name, value, &mut errors) else {
        let check = ConnectionCheck {
            name: name.to_string(),
            hash: raw_hash(value, hash_key),
            errors,
            connection: None,
            invalid_spec: Some(invalid_spec(name, value.clone())),
        };
        return (check, None);
    };
    let signature = cross_signature(&r.spec);
    let c = finish(r, is_first, identity_tenant_id, hash_key, &mut errors);
    let check = ConnectionCheck {
        name: name.to_string(),
        hash: c.hash.clone(),
        errors,
        connection: Some(c),
        invalid_spec: None,
    };
    (check, Some(signature))
}

/// The final keys of one connection; reports key collisions after renaming.
fn resolve_keys(
    r: &ConnectionRequest,
    is_first: bool,
    errors: &mut Vec<FieldError>,
) -> Vec<ResolvedKey> {
    let spec = &r.spec;
    let cat = catalog();
    let lookup = |p: &str| -> Option<&str> {
        spec.parameters
            .get(p)
            .map(String::as_str)
            .or_else(|| r.secrets.get(p).map(SecretString::expose))
    };
    let mut out: Vec<ResolvedKey> = Vec::new();
    for k in cat.keys(&spec.target_type, spec.auth_type, spec.client_type) {
        let value = if let Some(s) = r.secrets.get(&k.name) {
            KeyValue::Secret(s.clone())
        } else if let Some(v) = spec.configurations.get(&k.name).filter(|_| !k.secret) {
            KeyValue::Plain(v.clone())
        } else {
            // Presence of every input was checked when the connection was parsed.
            let text = k.template.render(lookup).unwrap_or_default();
            if k.secret {
                KeyValue::Secret(SecretString::new(text))
            } else {
                KeyValue::Plain(text)
            }
        };
        let name = match spec.customized_keys.get(&k.name) {
            Some(custom) => custom.clone(),
            None if is_first => k.name.clone(),
            None => infixed_key(&k.name, &spec.name),
        };
        out.push(ResolvedKey {
            name,
            default_name: k.name.clone(),
            description: k.description.clone(),
            value,
        });
    }
    for (k, v) in &spec.configurations {
        if out.iter().any(|o| o.default_name == *k) {
            continue;
        }
        out.push(ResolvedKey {
            name: spec
                .customized_keys
                .get(k)
                .cloned()
                .unwrap_or_else(|| k.clone()),
            default_name: k.clone(),
            description: "set by configurations".to_string(),
            value: KeyValue::Plain(v.clone()),
        });
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for k in &out {
        if let Some(prev) = seen.insert(&k.name, &k.default_name) {
            let (field, culprit) = if spec.customized_keys.contains_key(&k.default_name) {
                ("customizedKeys", &k.default_name)
            } else if spec.customized_keys.contains_key(prev) {
                ("customizedKeys", &prev.to_string())
            } else {
                ("configurations", &k.default_name)
            };
            errors.push(FieldError::new(
                format!("connections.{}.{field}.{culprit}", spec.name),
                format!(
                    "key {} would be produced by both {prev} and {}: choose another name",
                    k.name, k.default_name
                ),
            ));
        }
    }
    out
}

fn put(h: &mut HmacSha256, s: &str) {
    h.update(&(s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

fn keyed(hash_key: &str) -> HmacSha256 {
    // HMAC accepts keys of any length.
    HmacSha256::new_from_slice(hash_key.as_bytes()).expect("HMAC takes a key of any length")
}

/// [`Connection::rollout_hash`]: HMAC-SHA256 keyed by `hash_key` over the Secret's keys and
/// values, the ServiceAccount (name and annotations), the SecretProviderClass's spec and the
/// workload patch, length-prefixed; the first 32 hex digits.
fn rollout_hash(c: &Connection, hash_key: &str) -> String {
    let mut h = keyed(hash_key);
    put(&mut h, "sc-extension/rollout/v1");
    if c.secret_name().is_some() {
        put(&mut h, "secret");
        for k in &c.keys {
            put(&mut h, &k.name);
            put(&mut h, k.value.expose());
        }
    }
    if let Some(sa) = c.service_account_object() {
        put(&mut h, "serviceAccount");
        put(&mut h, &sa["metadata"]["name"].to_string());
        put(&mut h, &sa["metadata"]["annotations"].to_string());
    }
    if let Some(spc) = c.secret_provider_class_object() {
        put(&mut h, "secretProviderClass");
        put(&mut h, &spc["spec"].to_string());
    }
    let patch = c.workload_patch();
    put(&mut h, "envFrom");
    put(&mut h, patch.env_from_secret.as_deref().unwrap_or_default());
    put(&mut h, "csiVolume");
    put(
        &mut h,
        &serde_json::to_string(&patch.csi_volume).unwrap_or_default(),
    );
    let mut hex = hex::encode(h.finalize().into_bytes());
    hex.truncate(32);
    hex
}

/// HMAC-SHA256 keyed by `hash_key` over a canonical form of the spec, the final key names and
/// the secret inputs (length-prefixed, in sorted order). Hex; computed from, but revealing
/// nothing about, the secret bytes.
fn content_hash(
    spec: &ConnectionSpec,
    secrets: &BTreeMap<String, SecretString>,
    keys: &[ResolvedKey],
    hash_key: &str,
) -> String {
    let mut h = keyed(hash_key);
    put(&mut h, "sc-extension/connection/v1");
    let spec = serde_json::to_string(spec).unwrap_or_default();
    put(&mut h, &spec);
    for k in keys {
        put(&mut h, &k.name);
    }
    put(&mut h, "secrets");
    for (k, v) in secrets {
        put(&mut h, k);
        put(&mut h, v.expose());
    }
    hex::encode(h.finalize().into_bytes())
}

/// The outcome of checking one connection of a request set, valid or not.
#[derive(Debug, Clone)]
pub struct ConnectionCheck {
    /// The connection name (the key under `connections`).
    pub name: String,
    /// The content hash: [`Connection::hash`] when the connection parsed, else a SHA-256
    /// over its raw request (secrets included, revealing nothing about them), so a failure
    /// can be recorded against the exact input that caused it.
    pub hash: String,
    /// The errors that concern this connection (its own and cross-connection ones).
    pub errors: Vec<FieldError>,
    /// The resolved connection, when it parsed (it may still have cross-connection errors).
    pub connection: Option<Connection>,
    /// When it did not parse: its request without `secrets`, with its `name`, as JSON text.
    pub invalid_spec: Option<String>,
}

impl ConnectionCheck {
    /// Whether the connection has no error.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks every connection of a `connections` subtree (secrets merged in) and returns one
/// [`ConnectionCheck`] per connection, sorted by name: unlike [`validate_connections`], an
/// invalid connection does not hide the others, and every connection gets a content hash.
/// Hashes are keyed with an empty key: see [`check_connections_keyed`].
pub fn check_connections(connections: &Value) -> Vec<ConnectionCheck> {
    check_connections_keyed(connections, "")
}

/// [`check_connections`] with the content hashes keyed by `hash_key` (HMAC-SHA256).
pub fn check_connections_keyed(connections: &Value, hash_key: &str) -> Vec<ConnectionCheck> {
    check_connections_owned(connections.clone(), hash_key)
}

/// [`check_connections_keyed`], consuming the request: each connection's raw request is
/// dropped as soon as it is parsed, so thousands of connections are never held twice.
pub fn check_connections_owned(connections: Value, hash_key: &str) -> Vec<ConnectionCheck> {
    let Value::Object(raw) = connections else {
        return Vec::new();
    };
    let mut names = Vec::with_capacity(raw.len());
    let mut requests = Vec::with_capacity(raw.len());
    // Connections that did not parse: (hash, spec text).
    let mut unparsed: BTreeMap<String, (String, String)> = BTreeMap::new();
    let entries: Vec<(String, Value)> = raw.into_iter().collect();
    let (parsed, mut errors) = crate::par::map_in_order(entries, |(name, value), errors| {
        let parsed = match parse_connection(&name, &value, errors) {
            Some(c) => Ok(c),
            None => Err((raw_hash(&value, hash_key), invalid_spec(&name, value))),
        };
        (name, parsed)
    });
    for (name, parsed) in parsed {
        match parsed {
            Ok(c) => requests.push(c),
            Err(unparsable) => {
                unparsed.insert(name.clone(), unparsable);
            }
        }
        names.push(name);
    }
    requests.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    let set = resolve(requests, hash_key, &mut errors);
    // Each resolved connection moves into its check (no copies, no scans by name).
    let mut resolved: BTreeMap<String, Connection> = set
        .connections
        .into_iter()
        .map(|c| (c.spec.name.clone(), c))
        .collect();
    // Each error goes to the connection its path names, in one pass (thousands of
    // connections may each have errors, as without their protected settings).
    let mut own_errors: BTreeMap<String, Vec<FieldError>> = BTreeMap::new();
    {
        let known: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).collect();
        for e in &errors {
            if let Some(owner) = path_owner(&e.path, |n| known.contains(n)) {
                own_errors
                    .entry(owner.to_string())
                    .or_default()
                    .push(e.clone());
            }
        }
    }
    let mut out: Vec<ConnectionCheck> = names
        .into_iter()
        .map(|name| {
            let own = own_errors.remove(&name).unwrap_or_default();
            let connection = resolved.remove(&name);
            let (hash, invalid_spec) = match &connection {
                Some(c) => (c.hash.clone(), None),
                None => match unparsed.remove(&name) {
                    Some((hash, spec)) => (hash, Some(spec)),
                    None => (String::new(), None),
                },
            };
            ConnectionCheck {
                name,
                hash,
                errors: own,
                connection,
                invalid_spec,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The connection name a key path belongs to (`connections.<name>` or below it, `.` or `[`
/// after the name), among the names `is_name` accepts: the longest when several do.
pub fn path_owner(path: &str, is_name: impl Fn(&str) -> bool) -> Option<&str> {
    let rest = path.strip_prefix("connections.")?;
    let ends: Vec<usize> = rest
        .char_indices()
        .filter(|(_, c)| matches!(c, '.' | '['))
        .map(|(i, _)| i)
        .chain([rest.len()])
        .collect();
    ends.into_iter()
        .rev()
        .map(|i| &rest[..i])
        .find(|candidate| is_name(candidate))
}

/// The request of a connection that did not parse, without its secrets and with its name,
/// as JSON text.
fn invalid_spec(name: &str, mut raw: Value) -> String {
    if let Value::Object(m) = &mut raw {
        m.remove("secrets");
        m.insert("name".into(), Value::String(name.to_string()));
    }
    raw.to_string()
}

/// HMAC-SHA256 (hex) keyed by `hash_key` of the canonical JSON of an unparsable request.
fn raw_hash(value: &Value, hash_key: &str) -> String {
    fn canonical(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<&String, Value> =
                    m.iter().map(|(k, v)| (k, canonical(v))).collect();
                serde_json::to_value(sorted).unwrap_or(Value::Null)
            }
            Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    let mut h = keyed(hash_key);
    put(&mut h, "sc-extension/invalid-connection/v1");
    put(&mut h, &canonical(value).to_string());
    hex::encode(h.finalize().into_bytes())
}

#[cfg(test)]
mod check_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hashes_are_keyed() {
        let v = json!({
            "good": {"targetType": "storage-blob", "authType": "secret",
                     "parameters": {"accountName": "acct"},
                     "secrets": {"accountKey": "hunter2"}},
            "bad": {"targetType": "no-such-target", "secrets": {"x": "hunter2"}},
        });
        let a = check_connections_keyed(&v, "key-a");
        let a2 = check_connections_keyed(&v, "key-a");
        let b = check_connections_keyed(&v, "key-b");
        for i in 0..2 {
            assert_eq!(a[i].hash, a2[i].hash, "stable for one key");
            assert_ne!(a[i].hash, b[i].hash, "another key, another hash");
            assert_eq!(a[i].hash.len(), 64);
        }
        let set = validate_connections_keyed(&json!({"good": v["good"].clone()}), "key-a").unwrap();
        assert_eq!(set.get("good").unwrap().hash, a[1].hash);
        let plain = validate_connections(&json!({"good": v["good"].clone()})).unwrap();
        assert_eq!(plain.get("good").unwrap().hash_with_key("key-a"), a[1].hash);
    }

    #[test]
    fn invalid_connections_keep_a_hash_and_do_not_hide_the_others() {
        let v = json!({
            "good": {"targetType": "storage-blob", "authType": "secret",
                     "parameters": {"accountName": "acct"},
                     "secrets": {"accountKey": "x"}},
            "bad": {"targetType": "no-such-target", "authType": "secret"},
        });
        let checks = check_connections(&v);
        assert_eq!(checks.len(), 2);
        let bad = &checks[0];
        assert_eq!(bad.name, "bad");
        assert!(!bad.is_valid());
        assert!(bad.connection.is_none());
        assert_eq!(bad.hash.len(), 64);
        let good = &checks[1];
        assert_eq!(good.name, "good");
        assert!(good.is_valid(), "{:?}", good.errors);
        let alone = validate_connections(&json!({"good": v["good"].clone()})).unwrap();
        assert_eq!(good.hash, alone.get("good").unwrap().hash);
        // The hash of an invalid request follows its input.
        let mut v2 = v.clone();
        v2["bad"]["namespace"] = json!("other");
        assert_ne!(check_connections(&v2)[0].hash, bad.hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A set large enough to be checked on several threads gives each connection what it
    /// gets alone given the set's cross-connection results, and the errors of one pass in
    /// the order of the names.
    #[test]
    fn a_large_set_checks_as_one_pass() {
        let mut m = serde_json::Map::new();
        for i in 0..1500 {
            let ns = format!("ns{}", i % 3);
            let conn = match i % 5 {
                0 => serde_json::json!({"namespace": ns, "targetType": "storage-blob",
                    "authType": "secret", "parameters": {"accountName": format!("a{i}")},
                    "secrets": {"accountKey": "k"}}),
                1 => serde_json::json!({"namespace": ns, "targetType": "servicebus",
                    "authType": "workloadIdentity", "parameters": {"namespace": "sb",
                    "clientId": format!("00000000-0000-0000-0000-{:012}", i % 4),
                    "tenantId": "11111111-1111-1111-1111-111111111111"}}),
                2 => serde_json::json!({"namespace": ns, "targetType": "storage-blob",
                    "authType": "secret", "parameters": {}}),
                _ => serde_json::json!({"namespace": ns, "targetType": "storage-blob",
                    "authType": "secret", "parameters": {"accountName": "x"},
                    "secrets": {"accountKey": "k"}}),
            };
            m.insert(format!("c{i:04}"), conn);
        }
        let all = Value::Object(m.clone());
        let errors = validate_connections_keyed(&all, "key").unwrap_err().0;
        let mut seq = Vec::new();
        for (name, v) in &m {
            parse_connection(name, v, &mut seq);
        }
        assert!(!seq.is_empty());
        assert_eq!(errors[..seq.len()], seq[..]);
        // The checks connection by connection hold the same errors.
        let checks = check_connections_keyed(&all, "key");
        assert_eq!(checks.len(), 1500);
        let mut by_check: Vec<String> = checks
            .iter()
            .flat_map(|c| c.errors.iter().map(ToString::to_string))
            .collect();
        let mut by_set: Vec<String> = errors.iter().map(ToString::to_string).collect();
        by_check.sort();
        by_set.sort();
        assert_eq!(by_check, by_set);
        let valid: serde_json::Map<String, Value> = m
            .into_iter()
            .filter(|(n, _)| {
                !errors
                    .iter()
                    .any(|e| path_owner(&e.path, |o| o == n).is_some())
            })
            .collect();
        assert!(valid.len() > 512);
        let set = validate_connections_keyed(&Value::Object(valid.clone()), "key").unwrap();
        assert_eq!(set.connections().len(), valid.len());
        for c in set.connections() {
            let (alone, _) = recheck_connection(
                c.name(),
                &valid[c.name()],
                "key",
                c.is_first,
                c.identity_tenant_id.clone(),
            );
            let alone = alone.connection.unwrap();
            assert_eq!(alone.hash, c.hash, "{}", c.name());
            assert_eq!(alone.keys, c.keys, "{}", c.name());
        }
    }

    #[test]
    fn infix_goes_after_the_service_segment() {
        assert_eq!(
            infixed_key("AZURE_STORAGEBLOB_CONNECTIONSTRING", "conn_2"),
            "AZURE_STORAGEBLOB_CONN2_CONNECTIONSTRING"
        );
        assert_eq!(
            infixed_key("AZURE_AISERVICES_OPENAI_BASE", "ai"),
            "AZURE_AISERVICES_AI_OPENAI_BASE"
        );
        assert_eq!(
            infixed_key("MONGODBATLAS_CLUSTER_CONNECTIONSTRING", "m"),
            "MONGODBATLAS_CLUSTER_M_CONNECTIONSTRING"
        );
        assert_eq!(infixed_key("AZURE_CLIENTID", "x"), "AZURE_CLIENTID_X");
        assert_eq!(
            infixed_key("spring.datasource.url", "db2"),
            "spring.datasource.url"
        );
        assert_eq!(target_family("cosmos-table"), "cosmos");
        assert_eq!(target_family("redis-enterprise"), "redis");
        assert_eq!(target_family("sql"), "sql");
    }

    #[test]
    fn an_error_belongs_to_the_longest_connection_name_its_path_gives() {
        let names = ["a", "a.b", "a_b"];
        let owner = |p| path_owner(p, |n| names.contains(&n));
        assert_eq!(owner("connections.a.b.parameters.x"), Some("a.b"));
        assert_eq!(owner("connections.a.parameters"), Some("a"));
        assert_eq!(owner("connections.a_b.workloads[0].name"), Some("a_b"));
        assert_eq!(owner("connections.a"), Some("a"));
        assert_eq!(owner("connections.ab"), None);
        assert_eq!(owner("connections"), None);
        assert_eq!(owner("other.a"), None);
    }

    #[test]
    fn every_check_gets_its_own_errors_only() {
        // Names that are prefixes of each other, each missing its secret.
        let v = serde_json::json!({
            "a": {"namespace": "default", "targetType": "storage-blob", "authType": "secret",
                  "clientType": "python", "parameters": {"accountName": "a"}},
            "a.b": {"namespace": "default", "targetType": "storage-blob", "authType": "secret",
                    "clientType": "python", "parameters": {"accountName": "ab"}},
            "b": {"namespace": "default", "targetType": "storage-blob", "authType": "secret",
                  "clientType": "python", "parameters": {"accountName": "b"},
                  "secrets": {"accountKey": "a2V5"}},
        });
        let checks = check_connections(&v);
        let by: BTreeMap<&str, &ConnectionCheck> =
            checks.iter().map(|c| (c.name.as_str(), c)).collect();
        // "a.b" is no valid name, and misses its secret; "a" misses its secret only.
        let paths =
            |n: &str| -> Vec<String> { by[n].errors.iter().map(|e| e.path.clone()).collect() };
        assert_eq!(paths("a"), ["connections.a.secrets.accountKey"]);
        assert_eq!(
            paths("a.b"),
            ["connections.a.b", "connections.a.b.secrets.accountKey"]
        );
        assert!(by["b"].is_valid(), "{:?}", by["b"].errors);
    }

    fn blob(ns: &str, account: &str, key: &str) -> Value {
        serde_json::json!({"namespace": ns, "targetType": "storage-blob", "authType": "secret",
            "clientType": "python", "parameters": {"accountName": account},
            "secrets": {"accountKey": key}})
    }

    #[test]
    fn a_connection_rechecked_alone_is_checked_as_in_its_set() {
        let mut set = serde_json::Map::new();
        for (n, a) in [("a", "acct-a"), ("b", "acct-b"), ("c", "acct-c")] {
            set.insert(n.into(), blob("default", a, "a2V5"));
        }
        let before = check_connections_keyed(&Value::Object(set.clone()), "k");
        // b changes its key and account (not its cross signature).
        set.insert("b".into(), blob("default", "acct-b2", "bmV3"));
        let after = check_connections_keyed(&Value::Object(set.clone()), "k");
        let old_b = before[1].connection.as_ref().unwrap();
        assert!(!old_b.is_first, "a is first of the family");
        let (again, signature) = recheck_connection(
            "b",
            &set["b"],
            "k",
            old_b.is_first,
            old_b.identity_tenant_id.clone(),
        );
        assert_eq!(signature, Some(cross_signature(&old_b.spec)));
        assert_eq!(again.hash, after[1].hash);
        assert_ne!(again.hash, before[1].hash);
        assert_eq!(again.errors, after[1].errors);
        assert_eq!(
            again.connection.as_ref().unwrap().keys,
            after[1].connection.as_ref().unwrap().keys
        );
        // Another namespace is another signature: the set must be checked whole.
        let (_, moved) =
            recheck_connection("b", &blob("other", "acct-b", "a2V5"), "k", false, None);
        assert_ne!(moved, signature);
        // Unparsable: no signature, a hash of the raw request, its errors.
        let (bad, none) =
            recheck_connection("b", &serde_json::json!({"namespace": 1}), "k", false, None);
        assert!(none.is_none() && !bad.is_valid() && bad.invalid_spec.is_some());
    }

    #[test]
    fn credentials_are_never_shown() {
        let v = KeyValue::Secret(SecretString::new("pw"));
        assert_eq!(
            (v.display(), v.listed(), v.expose()),
            ("<redacted>", "", "pw")
        );
        let p = KeyValue::Plain("x".into());
        assert_eq!((p.display(), p.listed()), ("x", "x"));
        assert!(!format!("{v:?}").contains("pw"));
    }
}
