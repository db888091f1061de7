//! The request schema (`connections.<name>` of the chart values) and its parsing from JSON
//! or YAML values. Every scalar may be given as a string; unknown fields are errors.

use crate::catalog::{KEYVAULT_TARGET, catalog};
use crate::error::{FieldError, did_you_mean};
use crate::names::{self, is_dns_label, is_dns_subdomain, is_guid, is_secret_key};
use crate::secret::SecretString;
use crate::types::{AuthType, ClientType, DeletionPolicy, DriftPolicy, WorkloadKind, WorkloadRef};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The default namespace of a connection.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Parameters of a `keyvaultCsi` connection (besides the Key Vault objects).
pub const CSI_PARAMETERS: [&str; 5] = [
    "keyvaultName",
    "tenantId",
    "clientId",
    "useWorkloadIdentity",
    "syncSecret",
];

/// Parameter holding the Key Vault objects of a `keyvaultCsi` connection.
pub const CSI_OBJECTS_PARAMETER: &str = "objects";

/// One Key Vault object mounted by the CSI driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyVaultObject {
    /// The object's name in the vault.
    pub name: String,
    /// `secret`, `key` or `cert`.
    pub object_type: String,
    /// A version; empty for the latest.
    pub version: String,
    /// The file name (and synced Secret key) to use instead of the name.
    pub alias: Option<String>,
}

impl KeyVaultObject {
    /// The file name in the mount and the key in a synced Secret.
    pub fn file_name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

/// The non-secret part of a connection request, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSpec {
    /// The connection name (the key under `connections`).
    pub name: String,
    /// Where the objects are created.
    pub namespace: String,
    /// The catalog target id.
    pub target_type: String,
    /// The auth type.
    pub auth_type: AuthType,
    /// The client type.
    pub client_type: ClientType,
    /// Non-secret inputs of the value templates.
    pub parameters: BTreeMap<String, String>,
    /// Key Vault objects (`keyvaultCsi` only).
    pub keyvault_objects: Vec<KeyVaultObject>,
    /// Explicit non-secret keys, added or overriding documented keys.
    pub configurations: BTreeMap<String, String>,
    /// Renames: documented (or configured) key to custom key.
    pub customized_keys: BTreeMap<String, String>,
    /// Existing workloads to inject.
    pub workloads: Vec<WorkloadRef>,
    /// What happens to the objects when the connection is removed.
    pub deletion_policy: DeletionPolicy,
    /// What the agent does about drift of the materialized objects (not written when
    /// `Repair`, the default).
    #[serde(skip_serializing_if = "DriftPolicy::is_default")]
    pub drift_policy: DriftPolicy,
    /// Explicitly the first connection of its target type in its namespace.
    pub primary: bool,
    /// Whether a change of the Secret or ServiceAccount rolls the listed workloads out
    /// (default true). Serialized only when false, so the content hash of a request that
    /// does not set it is the one earlier versions computed.
    #[serde(skip_serializing_if = "is_true_flag")]
    pub restart_on_change: bool,
    /// The name of the user-assigned identity (workload identity only), for the printed
    /// `az identity federated-credential create` command. Serialized only when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_name: Option<String>,
    /// The identity's resource group, when it is not the cluster's. Serialized only when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_resource_group: Option<String>,
}

fn is_true_flag(b: &bool) -> bool {
    *b
}

/// A connection request: its spec and its secret inputs (from the protected settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRequest {
    /// The non-secret part.
    pub spec: ConnectionSpec,
    /// Secret inputs, by parameter name or by documented key name.
    pub secrets: BTreeMap<String, SecretString>,
}

/// The fields of a connection, each with its accepted aliases.
const FIELDS: [(&str, &[&str]); 15] = [
    ("namespace", &["namespace"]),
    ("targetType", &["targetType", "target_type", "target"]),
    (
        "authType",
        &["authType", "auth_type", "auth", "authentication"],
    ),
    ("clientType", &["clientType", "client_type", "client"]),
    ("parameters", &["parameters", "params"]),
    ("configurations", &["configurations", "configuration"]),
    (
        "customizedKeys",
        &["customizedKeys", "customized_keys", "customizedKeyNames"],
    ),
    ("workloads", &["workloads", "workload"]),
    ("deletionPolicy", &["deletionPolicy", "deletion_policy"]),
    ("driftPolicy", &["driftPolicy", "drift_policy"]),
    ("primary", &["primary"]),
    (
        "restartOnChange",
        &["restartOnChange", "restart_on_change", "rolloutOnChange"],
    ),
    ("identityName", &["identityName", "identity_name"]),
    (
        "identityResourceGroup",
        &["identityResourceGroup", "identity_resource_group"],
    ),
    ("secrets", &["secrets"]),
];

/// The text of a scalar: strings as they are, numbers and booleans as written.
pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Whether a boolean input is true (`true`, `yes`, `1`, case-insensitive).
pub(crate) fn is_true(s: &str) -> bool {
    parse_bool(s) == Some(true)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" | "" => Some(false),
        _ => None,
    }
}

/// Collects the errors of one connection.
struct Ctx<'a> {
    base: String,
    errors: &'a mut Vec<FieldError>,
}

impl Ctx<'_> {
    fn err(&mut self, field: &str, message: impl Into<String>) {
        let path = if field.is_empty() {
            self.base.clone()
        } else {
            format!("{}.{field}", self.base)
        };
        self.errors.push(FieldError::new(path, message));
    }

    /// A map of scalars at `field`; non-scalar entries are reported.
    fn scalar_map(&mut self, field: &str, v: &Value) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match v {
            Value::Null => {}
            Value::Object(m) => {
                for (k, v) in m {
                    match scalar(v) {
                        Some(s) => {
                            out.insert(k.clone(), s);
                        }
                        None if v.is_null() => {}
                        None => self.err(
                            &format!("{field}.{k}"),
                            format!("must be a string, number or boolean, not {}", kind_of(v)),
                        ),
                    }
                }
            }
            other => self.err(
                field,
                format!("must be a map of KEY: value, not {}", kind_of(other)),
            ),
        }
        out
    }
}

/// A type field given as a string, or as a map `{type: ...}` (flat Arc settings such as
/// `connections.c.target.type=storage-blob`).
fn type_field(ctx: &mut Ctx<'_>, field: &str, v: &Value) -> Option<String> {
    if let Some(s) = scalar(v) {
        return Some(s);
    }
    if let Value::Object(m) = v {
        for k in m.keys() {
            if k != "type" {
                ctx.err(
                    &format!("{field}.{k}"),
                    format!(
                        "unknown field{}; only type is accepted",
                        did_you_mean(k, ["type"])
                    ),
                );
            }
        }
        if let Some(t) = m.get("type").and_then(scalar) {
            return Some(t);
        }
    }
    ctx.err(field, format!("must be a string, not {}", kind_of(v)));
    None
}

/// A field naming one of a set of values (`targetType`, `authType`, `clientType`): its key
/// and parsed value; `absent` is the value when the field is missing, or the error to report.
fn named_field<T>(
    ctx: &mut Ctx<'_>,
    field: Option<(String, Value)>,
    parse: impl FnOnce(&str) -> Option<T>,
    unknown: impl FnOnce(&str) -> String,
    absent: Result<(&str, T), (&str, &str)>,
) -> Option<(String, T)> {
    match field {
        Some((k, v)) => {
            let name = type_field(ctx, &k, &v)?;
            match parse(&name) {
                Some(t) => Some((k, t)),
                None => {
                    ctx.err(&k, unknown(&name));
                    None
                }
            }
        }
        None => match absent {
            Ok((k, t)) => Some((k.to_string(), t)),
            Err((k, message)) => {
                ctx.err(k, message);
                None
            }
        },
    }
}

/// Parses one connection (`value` is `connections.<name>`), checking everything that does
/// not depend on the other connections. `None` when it has errors (reported in `errors`).
pub fn parse_connection(
    name: &str,
    value: &Value,
    errors: &mut Vec<FieldError>,
) -> Option<ConnectionRequest> {
    let start = errors.len();
    let mut ctx = Ctx {
        base: format!("connections.{name}"),
        errors,
    };
    if !names::is_valid_connection_name(name) {
        ctx.err(
            "",
            format!(
                "bad connection name {name:?}: use 1-{} letters, digits or '_', with at least one letter or digit",
                names::MAX_CONNECTION_NAME
            ),
        );
    }
    let obj: Map<String, Value> = match value {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        other => {
            ctx.err(
                "",
                format!(
                    "must be a map with targetType, authType, ..., not {}",
                    kind_of(other)
                ),
            );
            return None;
        }
    };

    if obj.len() == 1 && obj.contains_key("secrets") {
        ctx.err(
            "",
            "has protected settings (secrets) but no request: add its targetType and authType, or remove its secrets",
        );
        return None;
    }

    // Field names, with aliases, and unknown fields.
    let mut fields: BTreeMap<&str, (String, Value)> = BTreeMap::new();
    for (k, v) in &obj {
        let canonical = FIELDS
            .iter()
            .find(|(_, aliases)| aliases.contains(&k.as_str()))
            .map(|(c, _)| *c);
        match canonical {
            Some(c) => {
                if let Some((prev, _)) = fields.get(c) {
                    ctx.err(k, format!("duplicates {prev}: give {c} once"));
                } else if !v.is_null() {
                    fields.insert(c, (k.clone(), v.clone()));
                }
            }
            None => {
                let all = FIELDS.iter().map(|(c, _)| *c);
                ctx.err(
                    k,
                    format!(
                        "unknown field{}; the fields are namespace, targetType, authType, clientType, parameters, configurations, customizedKeys, workloads, deletionPolicy, driftPolicy, primary, restartOnChange, identityName, identityResourceGroup, secrets",
                        did_you_mean(k, all)
                    ),
                );
            }
        }
    }
    let get = |c: &str| fields.get(c).map(|(k, v)| (k.clone(), v.clone()));

    let namespace = match get("namespace") {
        Some((k, v)) => match scalar(&v) {
            Some(ns) if is_dns_label(&ns) => ns,
            Some(ns) => {
                ctx.err(
                    &k,
                    format!("bad namespace {ns:?}: use a DNS label (1-63 lower-case letters, digits or '-', starting and ending with a letter or digit)"),
                );
                String::new()
            }
            None => {
                ctx.err(&k, format!("must be a string, not {}", kind_of(&v)));
                String::new()
            }
        },
        None => DEFAULT_NAMESPACE.to_string(),
    };

    let cat = catalog();
    let target = named_field(
        &mut ctx,
        get("targetType"),
        |t| cat.resolve_target(t).map(str::to_string),
        |t| {
            format!(
                "unknown target {t:?}{}; see sc-agent catalog for the targets",
                did_you_mean(t, cat.targets().iter().map(String::as_str))
            )
        },
        Err((
            "targetType",
            "missing: set the target service, such as storage-blob",
        )),
    )
    .map(|(_, t)| t);

    let auth = named_field(
        &mut ctx,
        get("authType"),
        AuthType::parse,
        |a| {
            format!(
                "unknown auth type {a:?}{}; use secret, servicePrincipal, workloadIdentity or keyvaultCsi",
                did_you_mean(a, AuthType::ALL.iter().map(|a| a.as_str()))
            )
        },
        Err((
            "authType",
            "missing: set secret, servicePrincipal, workloadIdentity or keyvaultCsi",
        )),
    );

    let client = named_field(
        &mut ctx,
        get("clientType"),
        ClientType::parse,
        |c| {
            format!(
                "unknown client type {c:?}{}; use one of {}",
                did_you_mean(c, ClientType::ALL.iter().map(|c| c.as_str())),
                ClientType::ALL.map(|c| c.as_str()).join(", ")
            )
        },
        Ok(("clientType", ClientType::None)),
    );

    // Target / auth / client combination.
    let mut combination_ok = false;
    if let (Some(t), Some((ak, a)), Some((ck, c))) = (&target, &auth, &client) {
        let auths = cat.auth_types(t);
        if !auths.contains(a) {
            let supported: Vec<&str> = auths.iter().map(|a| a.as_str()).collect();
            let hint = if *a == AuthType::KeyvaultCsi {
                format!("keyvaultCsi is only for targetType {KEYVAULT_TARGET}")
            } else if supported.is_empty() {
                "this target has no auth type that works in a cluster".to_string()
            } else {
                format!("use {}", supported.join(" or "))
            };
            ctx.err(
                ak,
                format!("auth type {a} is not supported for target {t}: {hint}"),
            );
        } else {
            let clients = cat.client_types(t, *a);
            if clients.contains(c) {
                combination_ok = true;
            } else {
                let list: Vec<&str> = clients.iter().map(|c| c.as_str()).collect();
                if fields.contains_key("clientType") {
                    ctx.err(
                        ck,
                        format!(
                            "client type {c} is not documented for target {t} with auth type {a}: use one of {}",
                            list.join(", ")
                        ),
                    );
                } else {
                    ctx.err(
                        "clientType",
                        format!(
                            "missing: target {t} with auth type {a} documents no client type none (the default): set one of {}",
                            list.join(", ")
                        ),
                    );
                }
            }
        }
    }

    let mut parameters = BTreeMap::new();
    let mut keyvault_objects = Vec::new();
    if let Some((k, v)) = get("parameters") {
        match &v {
            Value::Object(m) => {
                let mut rest = m.clone();
                if let Some(objs) = rest.remove(CSI_OBJECTS_PARAMETER) {
                    if auth.as_ref().map(|(_, a)| *a) == Some(AuthType::KeyvaultCsi) {
                        keyvault_objects =
                            parse_objects(&mut ctx, &format!("{k}.{CSI_OBJECTS_PARAMETER}"), &objs);
                    } else {
                        ctx.err(
                            &format!("{k}.{CSI_OBJECTS_PARAMETER}"),
                            "Key Vault objects are only for authType keyvaultCsi: remove it",
                        );
                    }
                }
                parameters = ctx.scalar_map(&k, &Value::Object(rest));
            }
            other => ctx.err(
                &k,
                format!("must be a map of name: value, not {}", kind_of(other)),
            ),
        }
    }
    let params_field = get("parameters")
        .map(|(k, _)| k)
        .unwrap_or("parameters".into());
    let configurations = match get("configurations") {
        Some((k, v)) => ctx.scalar_map(&k, &v),
        None => BTreeMap::new(),
    };
    let conf_field = get("configurations")
        .map(|(k, _)| k)
        .unwrap_or("configurations".into());
    let customized_keys = match get("customizedKeys") {
        Some((k, v)) => ctx.scalar_map(&k, &v),
        None => BTreeMap::new(),
    };
    let custom_field = get("customizedKeys")
        .map(|(k, _)| k)
        .unwrap_or("customizedKeys".into());
    let secrets_raw = match get("secrets") {
        Some((k, v)) => ctx.scalar_map(&k, &v),
        None => BTreeMap::new(),
    };
    let secrets_field = get("secrets").map(|(k, _)| k).unwrap_or("secrets".into());
    check_values(&mut ctx, &params_field, &parameters, false);
    check_values(&mut ctx, &conf_field, &configurations, false);
    check_values(&mut ctx, &secrets_field, &secrets_raw, true);

    let workloads = match get("workloads") {
        Some((k, v)) => parse_workloads(&mut ctx, &k, &v),
        None => Vec::new(),
    };
    let deletion_policy = match get("deletionPolicy") {
        Some((k, v)) => match scalar(&v).as_deref().and_then(DeletionPolicy::parse) {
            Some(p) => p,
            None => {
                ctx.err(&k, format!("bad deletion policy {v}: use Retain or Delete"));
                DeletionPolicy::Retain
            }
        },
        None => DeletionPolicy::Retain,
    };
    let drift_policy = match get("driftPolicy") {
        Some((k, v)) => match scalar(&v).as_deref().and_then(DriftPolicy::parse) {
            Some(p) => p,
            None => {
                ctx.err(&k, format!("bad drift policy {v}: use Repair or Report"));
                DriftPolicy::Repair
            }
        },
        None => DriftPolicy::Repair,
    };
    let primary = match get("primary") {
        Some((k, v)) => match scalar(&v).as_deref().and_then(parse_bool) {
            Some(b) => b,
            None => {
                ctx.err(&k, format!("must be true or false, not {v}"));
                false
            }
        },
        None => false,
    };
    let restart_on_change = match get("restartOnChange") {
        Some((k, v)) => match scalar(&v).as_deref().and_then(parse_bool) {
            Some(b) => b,
            None => {
                ctx.err(
                    &k,
                    format!("must be true (roll the listed workloads out when the Secret or ServiceAccount changes) or false, not {v}"),
                );
                true
            }
        },
        None => true,
    };

    let identity_name = get("identityName").and_then(|(k, v)| {
        identity_field(
            &mut ctx,
            &k,
            &v,
            is_identity_name,
            "an identity name is 3-128 letters, digits, '-' or '_', starting with a letter or digit",
        )
    });
    let identity_resource_group = get("identityResourceGroup").and_then(|(k, v)| {
        identity_field(
            &mut ctx,
            &k,
            &v,
            is_resource_group,
            "a resource group name is 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending with '.'",
        )
    });
    let workload_identity = match &auth {
        Some((_, AuthType::WorkloadIdentity)) => true,
        Some((_, AuthType::KeyvaultCsi)) => parameters
            .get("useWorkloadIdentity")
            .and_then(|v| parse_bool(v))
            .unwrap_or(false),
        _ => false,
    };
    if !workload_identity && auth.is_some() {
        let set = [
            ("identityName", identity_name.is_some()),
            ("identityResourceGroup", identity_resource_group.is_some()),
        ];
        for (f, _) in set.into_iter().filter(|(_, set)| *set) {
            if let Some((k, _)) = get(f) {
                ctx.err(
                    &k,
                    "names the user-assigned identity of a workload-identity connection: this connection uses none; remove it",
                );
            }
        }
    }

    if !combination_ok {
        // The combination is unknown, but a credential among the plain parameters is
        // always wrong.
        for p in parameters.keys() {
            if cat.parameter(p).is_some_and(|s| s.secret) {
                ctx.err(
                    &format!("{params_field}.{p}"),
                    format!("{p} is a secret input: move it to {}.{secrets_field}.{p} (the protected settings)", ctx.base),
                );
            }
        }
    }
    if combination_ok && let (Some(t), Some((_, a)), Some((_, c))) = (&target, &auth, &client) {
        check_inputs(
            &mut ctx,
            Inputs {
                target: t,
                auth: *a,
                client: *c,
                parameters: &parameters,
                secrets: &secrets_raw,
                configurations: &configurations,
                customized_keys: &customized_keys,
                keyvault_objects: &keyvault_objects,
                params_field: &params_field,
                secrets_field: &secrets_field,
                conf_field: &conf_field,
                custom_field: &custom_field,
            },
        );
    }

    if ctx.errors.len() > start {
        return None;
    }
    let (Some(target_type), Some((_, auth_type)), Some((_, client_type))) = (target, auth, client)
    else {
        return None;
    };
    Some(ConnectionRequest {
        spec: ConnectionSpec {
            name: name.to_string(),
            namespace,
            target_type,
            auth_type,
            client_type,
            parameters,
            keyvault_objects,
            configurations,
            customized_keys,
            workloads,
            deletion_policy,
            drift_policy,
            primary,
            restart_on_change,
            identity_name,
            identity_resource_group,
        },
        secrets: secrets_raw
            .into_iter()
            .map(|(k, v)| (k, SecretString::new(v)))
            .collect(),
    })
}

/// An optional name of the identity's Azure resources: a scalar that `valid` accepts (it is
/// printed in an `az` command line, so nothing else gets through), else an error on `key`.
fn identity_field(
    ctx: &mut Ctx<'_>,
    key: &str,
    v: &Value,
    valid: fn(&str) -> bool,
    rule: &str,
) -> Option<String> {
    match scalar(v) {
        Some(s) if s.trim().is_empty() => None,
        Some(s) if valid(s.trim()) => Some(s.trim().to_string()),
        Some(s) if s.len() <= 200 && !s.chars().any(char::is_control) => {
            ctx.err(key, format!("bad value {s:?}: {rule}"));
            None
        }
        Some(_) => {
            ctx.err(key, format!("bad value: {rule}"));
            None
        }
        None => {
            ctx.err(key, format!("must be a string, not {}", kind_of(v)));
            None
        }
    }
}

/// A user-assigned managed identity's name: 3-128 characters, letters, digits, `-` and `_`,
/// starting with a letter or digit.
pub fn is_identity_name(s: &str) -> bool {
    (3..=128).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A resource group name: 1-90 characters, letters, digits, `-`, `_`, `.`, `(` and `)`, not
/// ending with `.`.
pub fn is_resource_group(s: &str) -> bool {
    (1..=90).contains(&s.len())
        && !s.ends_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
}

/// The longest parameter or configuration value (bytes): names, IDs, hosts and URLs.
pub const MAX_VALUE_LEN: usize = 4096;
/// The longest secret value (bytes): keys, passwords and connection strings.
pub const MAX_SECRET_LEN: usize = 65536;

/// Rejects values that no documented input can hold: control characters in plain values
/// (a newline would smuggle a line into connection strings and configuration files) and
/// values longer than [`MAX_VALUE_LEN`] / [`MAX_SECRET_LEN`]. Secret values are never echoed.
fn check_values(ctx: &mut Ctx<'_>, field: &str, values: &BTreeMap<String, String>, secret: bool) {
    let max = if secret {
        MAX_SECRET_LEN
    } else {
        MAX_VALUE_LEN
    };
    for (k, v) in values {
        if v.len() > max {
            ctx.err(
                &format!("{field}.{k}"),
                format!("too long: {} bytes, at most {max} are accepted", v.len()),
            );
        } else if !secret && v.chars().any(char::is_control) {
            ctx.err(
                &format!("{field}.{k}"),
                "contains a control character (such as a newline or tab): remove it",
            );
        }
    }
}

struct Inputs<'a> {
    target: &'a str,
    auth: AuthType,
    client: ClientType,
    parameters: &'a BTreeMap<String, String>,
    secrets: &'a BTreeMap<String, String>,
    configurations: &'a BTreeMap<String, String>,
    customized_keys: &'a BTreeMap<String, String>,
    keyvault_objects: &'a [KeyVaultObject],
    params_field: &'a str,
    secrets_field: &'a str,
    conf_field: &'a str,
    custom_field: &'a str,
}

/// Checks parameters, secrets, configurations and customized keys against the catalog.
fn check_inputs(ctx: &mut Ctx<'_>, i: Inputs<'_>) {
    let cat = catalog();
    let check_guid = |ctx: &mut Ctx<'_>, p: &str, v: &str| {
        if cat.parameter(p).is_some_and(|s| s.guid) && !is_guid(v) {
            ctx.err(
                &format!("{}.{p}", i.params_field),
                format!("{v:?} is not a GUID: give the ID in the form 00000000-0000-0000-0000-000000000000"),
            );
        }
    };

    if i.auth == AuthType::KeyvaultCsi {
        for (p, v) in i.parameters {
            if !CSI_PARAMETERS.contains(&p.as_str()) {
                ctx.err(
                    &format!("{}.{p}", i.params_field),
                    format!(
                        "unknown parameter for keyvaultCsi{}; the parameters are {}, {CSI_OBJECTS_PARAMETER}",
                        did_you_mean(p, CSI_PARAMETERS.iter().copied().chain([CSI_OBJECTS_PARAMETER])),
                        CSI_PARAMETERS.join(", ")
                    ),
                );
            } else if matches!(p.as_str(), "useWorkloadIdentity" | "syncSecret") {
                if parse_bool(v).is_none() {
                    ctx.err(
                        &format!("{}.{p}", i.params_field),
                        format!("must be true or false, not {v:?}"),
                    );
                }
            } else {
                check_guid(ctx, p, v);
            }
        }
        for p in ["keyvaultName", "tenantId", "clientId"] {
            if i.parameters.get(p).is_none_or(|v| v.is_empty()) {
                let why = match p {
                    "keyvaultName" => "the key vault name",
                    "tenantId" => "the tenant ID of the key vault",
                    _ => {
                        "the client ID of the azure-keyvault-secrets-provider add-on identity (or, with useWorkloadIdentity, of the workload identity)"
                    }
                };
                ctx.err(
                    &format!("{}.{p}", i.params_field),
                    format!("missing: set {why}"),
                );
            }
        }
        if let Some(kv) = i.parameters.get("keyvaultName")
            && !kv.is_empty()
            && (!(3..=24).contains(&kv.len())
                || !kv.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                || !kv.starts_with(|c: char| c.is_ascii_alphabetic()))
        {
            ctx.err(
                &format!("{}.keyvaultName", i.params_field),
                format!("bad key vault name {kv:?}: use 3-24 letters, digits or '-', starting with a letter"),
            );
        }
        if i.keyvault_objects.is_empty() {
            ctx.err(
                &format!("{}.{CSI_OBJECTS_PARAMETER}", i.params_field),
                "missing: list the Key Vault objects to mount, such as [{name: db-password, type: secret}] or \"secret/db-password\"",
            );
        }
        for (k, field) in [
            (i.secrets, i.secrets_field),
            (i.configurations, i.conf_field),
            (i.customized_keys, i.custom_field),
        ] {
            for key in k.keys() {
                ctx.err(
                    &format!("{field}.{key}"),
                    "not used by keyvaultCsi (the values come from the key vault): remove it",
                );
            }
        }
        return;
    }

    let keys = cat.keys(i.target, i.auth, i.client);
    // Parameters of any client type of the target and auth type are accepted (so changing
    // the client type does not invalidate the request); the client type's own are required.
    let mut allowed: Vec<&str> = cat
        .combo_parameters(i.target, i.auth)
        .iter()
        .map(String::as_str)
        .collect();
    if i.auth == AuthType::WorkloadIdentity {
        for extra in ["clientId", "tenantId"] {
            if !allowed.contains(&extra) {
                allowed.push(extra);
            }
        }
    }
    let secret_params: Vec<&str> = allowed
        .iter()
        .copied()
        .filter(|p| cat.parameter(p).is_some_and(|s| s.secret))
        .collect();
    let plain_params: Vec<&str> = allowed
        .iter()
        .copied()
        .filter(|p| !secret_params.contains(p))
        .collect();
    let combo = format!("{} with {} and {}", i.target, i.auth, i.client);

    for (p, v) in i.parameters {
        let path = format!("{}.{p}", i.params_field);
        if secret_params.contains(&p.as_str())
            || (cat.parameter(p).is_some_and(|s| s.secret) && !allowed.contains(&p.as_str()))
        {
            ctx.err(
                &path,
                format!(
                    "{p} is a secret input: move it to {}.{}.{p} (the protected settings)",
                    ctx.base, i.secrets_field
                ),
            );
        } else if !plain_params.contains(&p.as_str()) {
            ctx.err(
                &path,
                format!(
                    "unknown parameter for {combo}{}; the parameters are: {}",
                    did_you_mean(p, plain_params.iter().copied()),
                    if plain_params.is_empty() {
                        "none".to_string()
                    } else {
                        plain_params.join(", ")
                    }
                ),
            );
        } else if v.is_empty() {
            ctx.err(&path, "must not be empty");
        } else {
            check_guid(ctx, p, v);
        }
    }

    let key_names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    for (s, v) in i.secrets {
        let path = format!("{}.{s}", i.secrets_field);
        if secret_params.contains(&s.as_str()) || key_names.contains(&s.as_str()) {
            if v.is_empty() {
                ctx.err(&path, "must not be empty");
            }
        } else if plain_params.contains(&s.as_str()) {
            ctx.err(
                &path,
                format!(
                    "{s} is not a secret input: move it to {}.{}.{s}",
                    ctx.base, i.params_field
                ),
            );
        } else {
            ctx.err(
                &path,
                format!(
                    "unknown secret input for {combo}{}; give a secret parameter ({}) or a whole value by key name",
                    did_you_mean(s, secret_params.iter().copied().chain(key_names.iter().copied())),
                    if secret_params.is_empty() { "none".to_string() } else { secret_params.join(", ") }
                ),
            );
        }
    }

    for k in i.configurations.keys() {
        let path = format!("{}.{k}", i.conf_field);
        if !is_secret_key(k) {
            ctx.err(&path, "bad key: use 1-253 letters, digits, '-', '_' or '.'");
        } else if keys.iter().any(|ks| ks.name == *k && ks.secret) {
            ctx.err(
                &path,
                format!(
                    "{k} is a secret key: supply its value in {}.{}.{k}",
                    ctx.base, i.secrets_field
                ),
            );
        }
    }

    for (from, to) in i.customized_keys {
        let path = format!("{}.{from}", i.custom_field);
        if !key_names.contains(&from.as_str()) && !i.configurations.contains_key(from) {
            ctx.err(
                &path,
                format!(
                    "{from} is not a key of {combo}{}; see sc-agent catalog --target {} --auth {} --client {}",
                    did_you_mean(from, key_names.iter().copied()),
                    i.target, i.auth, i.client
                ),
            );
        } else if !is_secret_key(to) {
            ctx.err(
                &path,
                format!("bad key {to:?}: use 1-253 letters, digits, '-', '_' or '.'"),
            );
        }
    }

    // Required inputs: every template parameter of every key whose whole value is not given.
    let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for k in &keys {
        if i.secrets.contains_key(&k.name) || (!k.secret && i.configurations.contains_key(&k.name))
        {
            continue;
        }
        for p in k.template.params() {
            let present = if secret_params.contains(&p) {
                i.secrets.contains_key(p)
            } else {
                i.parameters.contains_key(p)
            };
            if !present {
                missing.entry(p).or_default().push(&k.name);
            }
        }
    }
    if i.auth == AuthType::WorkloadIdentity && !i.parameters.contains_key("clientId") {
        missing.entry("clientId").or_default();
    }
    for (p, used_by) in missing {
        let spec = cat.parameter(p);
        let secret = spec.is_some_and(|s| s.secret);
        let field = if secret {
            i.secrets_field
        } else {
            i.params_field
        };
        let what = spec.map(|s| s.description.as_str()).unwrap_or("");
        let by = if used_by.is_empty() {
            "the workload-identity ServiceAccount".to_string()
        } else {
            used_by.join(", ")
        };
        ctx.err(
            &format!("{field}.{p}"),
            format!("missing: set {what} (used by {by})"),
        );
    }
}

fn parse_objects(ctx: &mut Ctx<'_>, field: &str, v: &Value) -> Vec<KeyVaultObject> {
    let mut out: Vec<KeyVaultObject> = Vec::new();
    let entries: Vec<(String, Value)> = match v {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("{field}[{i}]"), e.clone()))
            .collect(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(i, e)| (format!("{field}[{i}]"), Value::String(e.to_string())))
            .collect(),
        Value::Null => Vec::new(),
        other => {
            ctx.err(field, format!("must be a list of objects or a string such as \"secret/db-password,cert/tls\", not {}", kind_of(other)));
            return out;
        }
    };
    for (path, e) in entries {
        let (mut name, mut object_type, mut version, mut alias) =
            (String::new(), "secret".to_string(), String::new(), None);
        match &e {
            Value::String(s) => match s.split_once('/') {
                Some((t, n)) => {
                    object_type = t.to_string();
                    name = n.to_string();
                }
                None => name = s.clone(),
            },
            Value::Object(m) => {
                for (k, v) in m {
                    let Some(s) = scalar(v) else {
                        ctx.err(
                            &format!("{path}.{k}"),
                            format!("must be a string, not {}", kind_of(v)),
                        );
                        continue;
                    };
                    match k.as_str() {
                        "name" | "objectName" => name = s,
                        "type" | "objectType" => object_type = s,
                        "version" | "objectVersion" => version = s,
                        "alias" | "objectAlias" => alias = Some(s),
                        _ => ctx.err(
                            &format!("{path}.{k}"),
                            format!(
                                "unknown field{}; the fields are name, type, version, alias",
                                did_you_mean(k, ["name", "type", "version", "alias"])
                            ),
                        ),
                    }
                }
            }
            other => {
                ctx.err(
                    &path,
                    format!("must be a map or a string, not {}", kind_of(other)),
                );
                continue;
            }
        }
        let object_type = object_type.to_ascii_lowercase();
        if !matches!(object_type.as_str(), "secret" | "key" | "cert") {
            ctx.err(
                &format!("{path}.type"),
                format!("bad object type {object_type:?}: use secret, key or cert"),
            );
        }
        if name.is_empty()
            || name.len() > 127
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            ctx.err(
                &format!("{path}.name"),
                format!("bad Key Vault object name {name:?}: use 1-127 letters, digits or '-'"),
            );
        }
        if !version.bytes().all(|b| b.is_ascii_alphanumeric()) {
            ctx.err(
                &format!("{path}.version"),
                format!("bad object version {version:?}: use the version ID (letters and digits) or leave it out for the latest"),
            );
        }
        if let Some(a) = &alias
            && !is_secret_key(a)
        {
            ctx.err(
                &format!("{path}.alias"),
                format!("bad alias {a:?}: use letters, digits, '-', '_' or '.'"),
            );
        }
        let o = KeyVaultObject {
            name,
            object_type,
            version,
            alias,
        };
        if out.iter().any(|p| p.file_name() == o.file_name()) {
            ctx.err(
                &path,
                format!(
                    "{} is listed twice: give each object once, or an alias",
                    o.file_name()
                ),
            );
        }
        out.push(o);
    }
    out
}

fn parse_workloads(ctx: &mut Ctx<'_>, field: &str, v: &Value) -> Vec<WorkloadRef> {
    let entries: Vec<(String, Value)> = match v {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("{field}[{i}]"), e.clone()))
            .collect(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(i, e)| (format!("{field}[{i}]"), Value::String(e.to_string())))
            .collect(),
        other => {
            ctx.err(
                field,
                format!(
                    "must be a list such as [{{kind: Deployment, name: web}}], not {}",
                    kind_of(other)
                ),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<WorkloadRef> = Vec::new();
    for (path, e) in entries {
        let (kind, name) = match &e {
            Value::String(s) => match s.split_once('/') {
                Some((k, n)) => (Some(k.to_string()), Some(n.to_string())),
                None => {
                    ctx.err(
                        &path,
                        format!("bad workload {s:?}: use Kind/name, such as Deployment/web"),
                    );
                    continue;
                }
            },
            Value::Object(m) => {
                for k in m.keys() {
                    if k != "kind" && k != "name" {
                        ctx.err(
                            &format!("{path}.{k}"),
                            format!("unknown field{}; the fields are kind and name (the workload is in the connection's namespace)", did_you_mean(k, ["kind", "name"])),
                        );
                    }
                }
                (
                    m.get("kind").and_then(scalar),
                    m.get("name").and_then(scalar),
                )
            }
            other => {
                ctx.err(
                    &path,
                    format!("must be a map with kind and name, not {}", kind_of(other)),
                );
                continue;
            }
        };
        let kind = match kind {
            None => {
                ctx.err(
                    &format!("{path}.kind"),
                    "missing: set Deployment, StatefulSet, DaemonSet or CronJob",
                );
                None
            }
            Some(k) => match WorkloadKind::parse(&k) {
                Some(k) => Some(k),
                None => {
                    let why = match crate::types::normalize(&k).as_str() {
                        "pod" | "pods" | "job" | "jobs" => format!(
                            "the pod template of a {k} cannot change after it is created: reference the Secret in its manifest (envFrom secretRef) instead"
                        ),
                        _ => format!(
                            "unsupported kind{}: use Deployment, StatefulSet, DaemonSet or CronJob",
                            did_you_mean(&k, WorkloadKind::ALL.iter().map(|k| k.as_str()))
                        ),
                    };
                    ctx.err(&format!("{path}.kind"), format!("{k:?}: {why}"));
                    None
                }
            },
        };
        let name = match name {
            None => {
                ctx.err(&format!("{path}.name"), "missing: set the workload's name");
                None
            }
            Some(n) if !is_dns_subdomain(&n) => {
                ctx.err(&format!("{path}.name"), format!("bad workload name {n:?}: use a DNS name (lower-case letters, digits, '-' and '.')"));
                None
            }
            Some(n) if kind == Some(WorkloadKind::CronJob) && n.len() > 52 => {
                ctx.err(
                    &format!("{path}.name"),
                    format!("bad CronJob name {n:?}: at most 52 characters"),
                );
                None
            }
            Some(n) => Some(n),
        };
        if let (Some(kind), Some(name)) = (kind, name) {
            let w = WorkloadRef { kind, name };
            if out.contains(&w) {
                ctx.err(
                    &path,
                    format!("{}/{} is listed twice: list it once", w.kind, w.name),
                );
            } else {
                out.push(w);
            }
        }
    }
    out
}

/// Parses every connection of a `connections` subtree, checking each on its own. The
/// cross-connection checks are in [`crate::resolve`].
pub fn parse_connections(
    connections: &Value,
    errors: &mut Vec<FieldError>,
) -> Vec<ConnectionRequest> {
    let mut out = Vec::new();
    match connections {
        Value::Null => {}
        Value::Object(m) => {
            let entries: Vec<(&String, &Value)> = m.iter().collect();
            let (parsed, errs) = crate::par::map_in_order(entries, |(name, v), errors| {
                parse_connection(name, v, errors)
            });
            out.extend(parsed.into_iter().flatten());
            errors.extend(errs);
        }
        other => errors.push(FieldError::new(
            "connections",
            format!(
                "must be a map of connection name to connection, not {}",
                kind_of(other)
            ),
        )),
    }
    out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    out
}
