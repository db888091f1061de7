//! A container's environment as the kubelet builds it: `envFrom` sources first (with their
//! prefix), then `env` entries (literal values with `$(VAR)` expansion, `secretKeyRef`,
//! `configMapKeyRef`, `fieldRef`, `resourceFieldRef`). Secrets and ConfigMaps are read
//! through a lookup closure, so this module does no I/O.

use std::collections::BTreeMap;

use serde_json::Value;

/// Which kind of object a reference names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Secret,
    ConfigMap,
}

impl SourceKind {
    fn lower(self) -> &'static str {
        match self {
            SourceKind::Secret => "secret",
            SourceKind::ConfigMap => "configmap",
        }
    }
    fn kind(self) -> &'static str {
        match self {
            SourceKind::Secret => "Secret",
            SourceKind::ConfigMap => "ConfigMap",
        }
    }
}

/// The decoded data of a Secret (values base64-decoded) or ConfigMap, or `None` if absent.
pub type Lookup<'a> = dyn Fn(SourceKind, &str) -> Option<BTreeMap<String, String>> + 'a;

/// Why a container cannot be configured (the kubelet's CreateContainerConfigError message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The environment of `container` in `pod`, in definition order (a later entry overrides an
/// earlier one with the same name). `base` is prepended (service variables, KUBECONFIG...).
pub fn container_env(
    pod: &Value,
    container: &Value,
    base: &[(String, String)],
    lookup: &Lookup<'_>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let mut env: Vec<(String, String)> = base.to_vec();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let prefix = source["prefix"].as_str().unwrap_or("");
        let (kind, r) = if source["secretRef"].is_object() {
            (SourceKind::Secret, &source["secretRef"])
        } else if source["configMapRef"].is_object() {
            (SourceKind::ConfigMap, &source["configMapRef"])
        } else {
            continue;
        };
        let name = r["name"].as_str().unwrap_or("");
        match lookup(kind, name) {
            Some(data) => {
                for (k, v) in data {
                    let key = format!("{prefix}{k}");
                    if is_env_name(&key) {
                        set(&mut env, key, v);
                    }
                }
            }
            None if r["optional"].as_bool() == Some(true) => {}
            None => {
                return Err(ConfigError(format!(
                    "{} \"{name}\" not found",
                    kind.lower()
                )));
            }
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let Some(name) = var["name"].as_str() else {
            continue;
        };
        let value = if let Some(v) = var.get("value").and_then(Value::as_str) {
            Some(expand(v, &env))
        } else if let Some(from) = var.get("valueFrom") {
            value_from(pod, container, ns, from, lookup)?
        } else {
            Some(String::new())
        };
        if let Some(value) = value {
            set(&mut env, name.to_string(), value);
        }
    }
    Ok(env)
}

fn set(env: &mut Vec<(String, String)>, key: String, value: String) {
    env.retain(|(k, _)| *k != key);
    env.push((key, value));
}

/// A C identifier-like name as accepted for environment variables: no `=`, not empty, no
/// leading digit.
fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn value_from(
    pod: &Value,
    container: &Value,
    ns: &str,
    from: &Value,
    lookup: &Lookup<'_>,
) -> Result<Option<String>, ConfigError> {
    for (field, kind) in [
        ("secretKeyRef", SourceKind::Secret),
        ("configMapKeyRef", SourceKind::ConfigMap),
    ] {
        let r = &from[field];
        if !r.is_object() {
            continue;
        }
        let name = r["name"].as_str().unwrap_or("");
        let key = r["key"].as_str().unwrap_or("");
        let optional = r["optional"].as_bool() == Some(true);
        return match lookup(kind, name) {
            Some(data) => match data.get(key) {
                Some(v) => Ok(Some(v.clone())),
                None if optional => Ok(None),
                None => Err(ConfigError(format!(
                    "couldn't find key {key} in {} {ns}/{name}",
                    kind.kind()
                ))),
            },
            None if optional => Ok(None),
            None => Err(ConfigError(format!(
                "{} \"{name}\" not found",
                kind.lower()
            ))),
        };
    }
    if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
        return field_ref(pod, path).map(Some);
    }
    if let Some(res) = from["resourceFieldRef"]["resource"].as_str() {
        let (section, name) = res.split_once('.').unwrap_or(("limits", res));
        let v = container["resources"][section][name]
            .as_str()
            .map(str::to_string);
        let v = v.or_else(|| {
            container["resources"][section][name]
                .as_i64()
                .map(|n| n.to_string())
        });
        return Ok(Some(v.unwrap_or_else(|| "0".into())));
    }
    Ok(Some(String::new()))
}

/// The downward API: `fieldRef.fieldPath` of a pod.
fn field_ref(pod: &Value, path: &str) -> Result<String, ConfigError> {
    let meta = &pod["metadata"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let keyed = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['").and_then(|r| r.strip_suffix("']")))
            .map(str::to_string)
    };
    Ok(match path {
        "metadata.name" => s(&meta["name"]),
        "metadata.namespace" => s(&meta["namespace"]),
        "metadata.uid" => s(&meta["uid"]),
        "spec.nodeName" => s(&pod["spec"]["nodeName"]),
        "spec.serviceAccountName" => pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default")
            .to_string(),
        "status.hostIP" | "status.podIP" => "127.0.0.1".into(),
        "status.hostIPs" | "status.podIPs" => "127.0.0.1".into(),
        "metadata.labels" | "metadata.annotations" => {
            let map = meta[path.trim_start_matches("metadata.")]
                .as_object()
                .cloned()
                .unwrap_or_default();
            map.iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => {
            if let Some(k) = keyed("metadata.labels") {
                s(&meta["labels"][&k])
            } else if let Some(k) = keyed("metadata.annotations") {
                s(&meta["annotations"][&k])
            } else {
                return Err(ConfigError(format!(
                    "unsupported fieldPath {path:?} in a fieldRef"
                )));
            }
        }
    })
}

/// Kubernetes `$(VAR)` expansion: a defined variable is replaced, an undefined reference
/// stays as written, `$$` is a literal `$`.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup(kind: SourceKind, name: &str) -> Option<BTreeMap<String, String>> {
        match (kind, name) {
            (SourceKind::Secret, "creds") => Some(
                [
                    ("USER".to_string(), "u".to_string()),
                    ("PASS".to_string(), "p".to_string()),
                ]
                .into(),
            ),
            (SourceKind::ConfigMap, "cfg") => {
                Some([("mode".to_string(), "fast".to_string())].into())
            }
            _ => None,
        }
    }

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
               "spec": {"serviceAccountName": "robot"}})
    }

    #[test]
    fn resolves_env_from_and_value_from() {
        let c = json!({
            "envFrom": [{"secretRef": {"name": "creds"}, "prefix": "DB_"}, {"configMapRef": {"name": "nope", "optional": true}}],
            "env": [
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                {"name": "URL", "value": "$(DB_USER)@host/$(MISSING)/$$(X)"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope", "optional": true}}},
                {"name": "DB_PASS", "value": "override"}
            ]
        });
        let env = container_env(&pod(), &c, &[("HOME".into(), "/h".into())], &lookup).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HOME"), Some("/h"));
        assert_eq!(get("DB_USER"), Some("u"));
        assert_eq!(get("DB_PASS"), Some("override"));
        assert_eq!(get("MODE"), Some("fast"));
        assert_eq!(get("URL"), Some("u@host/$(MISSING)/$(X)"));
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("APP"), Some("x"));
        assert_eq!(get("SA"), Some("robot"));
        assert_eq!(get("IP"), Some("127.0.0.1"));
        assert_eq!(get("OPT"), None);
    }

    #[test]
    fn missing_references_are_config_errors() {
        let c = json!({"envFrom": [{"secretRef": {"name": "gone"}}]});
        assert_eq!(
            container_env(&pod(), &c, &[], &lookup).unwrap_err().0,
            "secret \"gone\" not found"
        );
        let c = json!({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope"}}}]});
        assert_eq!(
            container_env(&pod(), &c, &[], &lookup).unwrap_err().0,
            "couldn't find key nope in Secret ns/creds"
        );
        let c = json!({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}}]});
        assert_eq!(
            container_env(&pod(), &c, &[], &lookup).unwrap_err().0,
            "configmap \"x\" not found"
        );
    }
}
