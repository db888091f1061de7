//! The catalog of documented configuration names, built once from the data shipped in
//! `model/data/` (see `model/CATALOG.md`).
//!
//! For a (target, auth type, client type) it answers which keys exist, which are secret,
//! what they mean and how each value is formed from the connection's parameters.

use crate::template::Template;
use crate::types::{AuthType, ClientType, normalize};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

/// The documented configuration names (`config-names.tsv`, verbatim from the docs).
pub const CONFIG_NAMES_TSV: &str = include_str!("../data/config-names.tsv");
const SUBSTITUTIONS_TSV: &str = include_str!("../data/substitutions.tsv");
const OVERRIDES_TSV: &str = include_str!("../data/overrides.tsv");
const PARAMETERS_TSV: &str = include_str!("../data/parameters.tsv");

/// The target that supports the `keyvaultCsi` auth type.
pub const KEYVAULT_TARGET: &str = "keyvault";

/// One configuration key of a (target, auth type, client type) combination.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeySpec {
    /// The target id (`storage-blob`, ...).
    pub target: String,
    /// The auth type.
    pub auth_type: AuthType,
    /// The client type.
    pub client_type: ClientType,
    /// The key name (for the first connection of its target type in a namespace).
    pub name: String,
    /// The name as documented, when a documented erratum was corrected (see CATALOG.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documented_name: Option<String>,
    /// Whether the value is a credential.
    pub secret: bool,
    /// What the value is.
    pub description: String,
    /// How the value is formed from the parameters.
    #[serde(serialize_with = "serialize_display")]
    pub template: Template,
    /// The documented example value, verbatim.
    pub example: String,
}

fn serialize_display<S: serde::Serializer>(t: &Template, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

/// A named input of the value templates.
#[derive(Debug, Clone, Serialize)]
pub struct ParameterSpec {
    /// The parameter name (`accountName`, `clientSecret`, ...).
    pub name: String,
    /// Whether it is a secret input (read only from `secrets`).
    pub secret: bool,
    /// Whether it must be a GUID.
    pub guid: bool,
    /// What it is.
    pub description: String,
}

/// The catalog: every key of every supported combination, and the parameters.
#[derive(Debug)]
pub struct Catalog {
    keys: Vec<KeySpec>,
    /// By target and auth type: what every connection's check looks up, built once.
    combos: BTreeMap<String, BTreeMap<AuthType, Combo>>,
    parameters: BTreeMap<String, ParameterSpec>,
    targets: Vec<String>,
    /// The index in `targets` of each target's normalized spelling.
    spellings: BTreeMap<String, usize>,
    workload_identity_from_user_identity: Vec<String>,
}

/// What the catalog knows of one target and auth type.
#[derive(Debug, Default)]
struct Combo {
    /// The indexes in `keys` of each documented client type's keys.
    keys: BTreeMap<ClientType, Vec<usize>>,
    /// The parameters the templates of any of its client types use, in order of first use
    /// (client types in display order).
    parameters: Vec<String>,
}

/// The `auth_type` of the documented user-assigned managed identity rows.
const USER_IDENTITY: &str = "user-identity";
/// The `auth_type` of the workload-identity rows.
const WORKLOAD_IDENTITY: &str = "workload-identity";
/// Appended to the description of a workloadIdentity key read from a user-identity row, as
/// the data does for the workload-identity rows it derives.
const AS_USER_ASSIGNED_MI: &str = " (as user-assigned MI)";

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    Catalog::build().unwrap_or_else(|e| panic!("the shipped catalog data is inconsistent: {e}"))
});

/// The catalog built from the shipped data (built once, on first use).
pub fn catalog() -> &'static Catalog {
    &CATALOG
}

struct Substitution {
    targets: String,
    from: String,
    to: String,
}

impl Substitution {
    fn applies_to(&self, target: &str) -> bool {
        self.targets.split(',').any(|p| {
            p == "*"
                || p == target
                || p.strip_suffix('*')
                    .is_some_and(|prefix| target.starts_with(prefix))
        })
    }
}

struct Override {
    target: String,
    auth: String,
    client: String,
    name: String,
    new_name: String,
    template: String,
    description: String,
}

fn data_lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .skip(1)
        .map(|l| l.split('\t').collect())
}

/// Rewrites a documented example into a template text: at each position the longest
/// matching `from` of the applicable substitutions is replaced.
fn substitute(example: &str, subs: &[&Substitution]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < example.len() {
        let rest = &example[i..];
        let best = subs
            .iter()
            .filter(|s| rest.starts_with(s.from.as_str()))
            .max_by_key(|s| s.from.len());
        match best {
            Some(s) => {
                out.push_str(&s.to);
                i += s.from.len();
            }
            None => {
                let c = rest.chars().next().unwrap_or_default();
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

impl Catalog {
    fn build() -> Result<Catalog, String> {
        let mut parameters = BTreeMap::new();
        for f in data_lines(PARAMETERS_TSV) {
            let [name, secret, format, description] = f[..] else {
                return Err(format!("parameters.tsv: bad line {f:?}"));
            };
            parameters.insert(
                name.to_string(),
                ParameterSpec {
                    name: name.to_string(),
                    secret: secret == "yes",
                    guid: format == "guid",
                    description: description.to_string(),
                },
            );
        }
        let subs: Vec<Substitution> = data_lines(SUBSTITUTIONS_TSV)
            .map(|f| match f[..] {
                [targets, from, to] => Ok(Substitution {
                    targets: targets.to_string(),
                    from: from.to_string(),
                    to: to.to_string(),
                }),
                _ => Err(format!("substitutions.tsv: bad line {f:?}")),
            })
            .collect::<Result<_, _>>()?;
        let overrides: Vec<Override> = data_lines(OVERRIDES_TSV)
            .map(|f| match f[..] {
                [
                    target,
                    auth,
                    client,
                    name,
                    new_name,
                    template,
                    description,
                    _reason,
                ] => Ok(Override {
                    target: target.to_string(),
                    auth: auth.to_string(),
                    client: client.to_string(),
                    name: name.to_string(),
                    new_name: new_name.to_string(),
                    template: template.to_string(),
                    description: description.to_string(),
                }),
                _ => Err(format!("overrides.tsv: bad line {f:?}")),
            })
            .collect::<Result<_, _>>()?;

        // Workload identity on AKS is a user-assigned managed identity: a target whose data
        // has user-identity rows but no (derived) workload-identity rows gets its
        // workloadIdentity keys from the user-identity rows.
        let mut user_identity = BTreeSet::new();
        let mut workload_identity = BTreeSet::new();
        for f in data_lines(CONFIG_NAMES_TSV) {
            match f[..] {
                [target, USER_IDENTITY, ..] => user_identity.insert(target),
                [target, WORKLOAD_IDENTITY, ..] => workload_identity.insert(target),
                _ => false,
            };
        }
        let derived: BTreeSet<&str> = user_identity
            .difference(&workload_identity)
            .copied()
            .collect();

        let mut keys = Vec::new();
        let mut targets = BTreeSet::new();
        for f in data_lines(CONFIG_NAMES_TSV) {
            let [target, doc_auth, client, name, description, example, secret] = f[..] else {
                return Err(format!("config-names.tsv: bad line {f:?}"));
            };
            targets.insert(target.to_string());
            // `auth`: the auth type column as the catalog reads it (overrides use it too).
            let from_user_identity = doc_auth == USER_IDENTITY && derived.contains(target);
            let auth = if from_user_identity {
                WORKLOAD_IDENTITY
            } else {
                doc_auth
            };
            let Some(auth_type) = AuthType::ALL
                .into_iter()
                .find(|a| a.tsv_name() == Some(auth))
            else {
                continue; // system- and user-assigned identities do not exist in a cluster
            };
            let client_type = ClientType::ALL
                .into_iter()
                .find(|c| c.tsv_name() == client)
                .ok_or_else(|| format!("config-names.tsv: unknown client type {client:?}"))?;
            let ov = overrides.iter().find(|o| {
                o.target == target
                    && o.auth == auth
                    && (o.client == "*" || o.client == client)
                    && o.name == name
            });
            let template_text = match ov {
                Some(o) if !o.template.is_empty() => o.template.clone(),
                _ => {
                    let applicable: Vec<&Substitution> =
                        subs.iter().filter(|s| s.applies_to(target)).collect();
                    substitute(example, &applicable)
                }
            };
            if template_text.contains('<') || template_text.contains('>') {
                return Err(format!(
                    "{target}/{auth}/{client}/{name}: placeholder left in {template_text:?}"
                ));
            }
            let template = Template::parse(&template_text)?;
            for p in template.params() {
                if !parameters.contains_key(p) {
                    return Err(format!(
                        "{target}/{auth}/{client}/{name}: unknown parameter {p}"
                    ));
                }
            }
            let (final_name, documented_name) = match ov {
                Some(o) if !o.new_name.is_empty() => (o.new_name.clone(), Some(name.to_string())),
                _ => (name.to_string(), None),
            };
            let mut description = match ov {
                Some(o) if !o.description.is_empty() => o.description.clone(),
                _ => description.to_string(),
            };
            if from_user_identity {
                description.push_str(AS_USER_ASSIGNED_MI);
            }
            keys.push(KeySpec {
                target: target.to_string(),
                auth_type,
                client_type,
                name: final_name,
                documented_name,
                secret: secret == "yes",
                description,
                template,
                example: example.to_string(),
            });
        }
        for o in &overrides {
            let used = keys.iter().any(|k| {
                k.target == o.target
                    && k.auth_type.tsv_name() == Some(o.auth.as_str())
                    && (o.client == "*" || k.client_type.tsv_name() == o.client)
                    && k.documented_name.as_deref().unwrap_or(&k.name) == o.name
            });
            if !used {
                return Err(format!(
                    "overrides.tsv: {}/{}/{}/{} matches no documented row",
                    o.target, o.auth, o.client, o.name
                ));
            }
        }
        let mut combos: BTreeMap<String, BTreeMap<AuthType, Combo>> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            combos
                .entry(k.target.clone())
                .or_default()
                .entry(k.auth_type)
                .or_default()
                .keys
                .entry(k.client_type)
                .or_default()
                .push(i);
        }
        for combo in combos.values_mut().flat_map(BTreeMap::values_mut) {
            let mut used: Vec<String> = Vec::new();
            for c in ClientType::ALL {
                for &i in combo.keys.get(&c).into_iter().flatten() {
                    for p in keys[i].template.params() {
                        if !used.iter().any(|u| u == p) && parameters.contains_key(p) {
                            used.push(p.to_string());
                        }
                    }
                }
            }
            combo.parameters = used;
        }
        let targets: Vec<String> = targets.into_iter().collect();
        let mut spellings = BTreeMap::new();
        for (i, t) in targets.iter().enumerate() {
            spellings.entry(normalize(t)).or_insert(i);
        }
        Ok(Catalog {
            keys,
            combos,
            parameters,
            targets,
            spellings,
            workload_identity_from_user_identity: derived.into_iter().map(str::to_string).collect(),
        })
    }

    /// Every key of every supported combination (auth types secret, servicePrincipal and
    /// workloadIdentity), in the order of the data.
    pub fn all_keys(&self) -> &[KeySpec] {
        &self.keys
    }

    /// The keys of one combination, in documented order (empty for `keyvaultCsi`, which
    /// produces a SecretProviderClass and no Secret keys).
    pub fn keys(&self, target: &str, auth: AuthType, client: ClientType) -> Vec<&KeySpec> {
        self.combo(target, auth)
            .and_then(|c| c.keys.get(&client))
            .map(|ix| ix.iter().map(|&i| &self.keys[i]).collect())
            .unwrap_or_default()
    }

    fn combo(&self, target: &str, auth: AuthType) -> Option<&Combo> {
        self.combos.get(target)?.get(&auth)
    }

    /// Every target id of the data, sorted.
    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    /// The targets whose workloadIdentity keys are their documented user-assigned managed
    /// identity (`user-identity`) rows, read as they are by the catalog because the data
    /// has no `workload-identity` rows for them (`fabric-sql`, `mysql`, `postgresql`,
    /// `sql`), sorted. Workload identity on AKS is a user-assigned managed identity.
    pub fn workload_identity_from_user_identity(&self) -> &[String] {
        &self.workload_identity_from_user_identity
    }

    /// The canonical target id for an accepted spelling (`storage-blob`, `storageBlob`,
    /// `STORAGE_BLOB`), if any.
    pub fn resolve_target(&self, s: &str) -> Option<&str> {
        let i = *self.spellings.get(&normalize(s))?;
        Some(self.targets[i].as_str())
    }

    /// The auth types supported for a target, in display order.
    pub fn auth_types(&self, target: &str) -> Vec<AuthType> {
        AuthType::ALL
            .into_iter()
            .filter(|&a| {
                if a == AuthType::KeyvaultCsi {
                    target == KEYVAULT_TARGET
                } else {
                    self.combo(target, a).is_some()
                }
            })
            .collect()
    }

    /// The client types documented for a target and auth type. `keyvaultCsi` accepts every
    /// client type (its output does not depend on it).
    pub fn client_types(&self, target: &str, auth: AuthType) -> Vec<ClientType> {
        if auth == AuthType::KeyvaultCsi {
            return if target == KEYVAULT_TARGET {
                ClientType::ALL.to_vec()
            } else {
                Vec::new()
            };
        }
        let Some(combo) = self.combo(target, auth) else {
            return Vec::new();
        };
        ClientType::ALL
            .into_iter()
            .filter(|c| combo.keys.contains_key(c))
            .collect()
    }

    /// The parameters the templates of any client type of a target and auth type use, in
    /// order of first use (client types in display order).
    pub fn combo_parameters(&self, target: &str, auth: AuthType) -> &[String] {
        self.combo(target, auth)
            .map_or(&[], |c| c.parameters.as_slice())
    }

    /// A parameter by name.
    pub fn parameter(&self, name: &str) -> Option<&ParameterSpec> {
        self.parameters.get(name)
    }

    /// Every parameter, sorted by name.
    pub fn parameters(&self) -> impl Iterator<Item = &ParameterSpec> {
        self.parameters.values()
    }

    /// The parameters the templates of a combination use, in order of first use.
    pub fn template_parameters(
        &self,
        target: &str,
        auth: AuthType,
        client: ClientType,
    ) -> Vec<&ParameterSpec> {
        let mut out: Vec<&ParameterSpec> = Vec::new();
        for k in self.keys(target, auth, client) {
            for p in k.template.params() {
                if !out.iter().any(|q| q.name == p)
                    && let Some(spec) = self.parameters.get(p)
                {
                    out.push(spec);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_indexes() {
        let c = catalog();
        assert_eq!(c.targets().len(), 27);
        let keys = c.keys("storage-blob", AuthType::Secret, ClientType::Python);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].name, "AZURE_STORAGEBLOB_CONNECTIONSTRING");
        assert!(keys[0].secret);
        assert_eq!(
            keys[0].template.to_string(),
            "DefaultEndpointsProtocol=https;AccountName=${accountName};AccountKey=${accountKey};EndpointSuffix=core.windows.net"
        );
        assert_eq!(
            c.auth_types("keyvault"),
            vec![
                AuthType::ServicePrincipal,
                AuthType::WorkloadIdentity,
                AuthType::KeyvaultCsi
            ]
        );
        assert_eq!(c.resolve_target("storageBlob"), Some("storage-blob"));
        assert_eq!(c.resolve_target("STORAGE_BLOB"), Some("storage-blob"));
        assert!(
            c.client_types("eventhub", AuthType::ServicePrincipal)
                .contains(&ClientType::KafkaSpringBoot)
        );
        assert!(
            !c.client_types("eventhub", AuthType::Secret)
                .contains(&ClientType::None)
        );
    }

    #[test]
    fn substitution_prefers_the_longest_match() {
        let a = Substitution {
            targets: "*".into(),
            from: "<p>".into(),
            to: "${password}".into(),
        };
        let b = Substitution {
            targets: "*".into(),
            from: "&password=<p>".into(),
            to: "&password=${password|url}".into(),
        };
        assert_eq!(
            substitute("x=<p>&password=<p>", &[&a, &b]),
            "x=${password}&password=${password|url}"
        );
        assert!(b.applies_to("sql"));
        let c = Substitution {
            targets: "storage-*,redis".into(),
            from: String::new(),
            to: String::new(),
        };
        assert!(
            c.applies_to("storage-file")
                && c.applies_to("redis")
                && !c.applies_to("redis-enterprise")
        );
    }
}
