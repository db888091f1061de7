//! The accepted spellings of target types, auth types and client types: every documented
//! form and alias the request parser takes, for generating enumerations (the chart's
//! values schema, completions, documentation).
//!
//! The parser compares names case-insensitively and ignores `-`, `_`, `.` and spaces, so
//! it accepts more strings than are listed here (`SERVICE_PRINCIPAL`, `Storage Blob`); the
//! lists hold the documented forms: the request schema's (camelCase), the documentation's
//! (kebab-case, as in the catalog data and the Azure CLI) and the aliases. Every listed
//! spelling parses, and every string the parser accepts is one of them up to case and
//! separators.

use crate::catalog::Catalog;
use crate::types::{AUTH_TYPE_SPELLINGS, CLIENT_TYPE_SPELLINGS};
use serde::Serialize;

/// The spellings of one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spellings {
    /// The canonical name (the request schema's; a target's id).
    pub canonical: String,
    /// Every accepted spelling in its documented form, the canonical name first, without
    /// duplicates.
    pub accepted: Vec<String>,
}

/// The accepted spellings of every target type, auth type and client type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedSpellings {
    /// Target types, sorted by id: the id (`storage-blob`) and its camelCase form
    /// (`storageBlob`).
    pub target_types: Vec<Spellings>,
    /// Auth types, in display order.
    pub auth_types: Vec<Spellings>,
    /// Client types, in display order.
    pub client_types: Vec<Spellings>,
}

impl AcceptedSpellings {
    /// Every accepted spelling of one kind, flattened (an enumeration for a schema).
    pub fn flat(list: &[Spellings]) -> Vec<&str> {
        list.iter()
            .flat_map(|s| s.accepted.iter().map(String::as_str))
            .collect()
    }
}

/// The enumeration of a values schema for one kind: every accepted spelling as documented,
/// and its all-lower-case, capitalized, all-upper-case and snake-case forms
/// (`workloadIdentity`, `workloadidentity`, `WorkloadIdentity`, `WORKLOADIDENTITY`,
/// `workload_identity`, `WORKLOAD_IDENTITY`), in order, without duplicates. Each one
/// parses to the value it spells.
pub fn schema_enum(list: &[Spellings]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in list.iter().flat_map(|s| s.accepted.iter()) {
        let mut chars = s.chars();
        let capitalized: String = match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => String::new(),
        };
        let snake = snake_case(s);
        for form in [
            s.clone(),
            s.to_lowercase(),
            capitalized,
            s.to_uppercase(),
            snake.clone(),
            snake.to_uppercase(),
        ] {
            if !out.contains(&form) {
                out.push(form);
            }
        }
    }
    out
}

/// `workloadIdentity` and `workload-identity` -> `workload_identity`.
fn snake_case(s: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if c.is_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        if c == '-' {
            out.push('_');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// `storage-blob` -> `storageBlob`.
fn camel_case(id: &str) -> String {
    let mut out = String::new();
    for (i, part) in id.split('-').enumerate() {
        let mut chars = part.chars();
        if i > 0
            && let Some(first) = chars.next()
        {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        } else {
            out.push_str(part);
        }
    }
    out
}

fn spellings(canonical: &str, forms: impl IntoIterator<Item = String>) -> Spellings {
    let mut accepted: Vec<String> = vec![canonical.to_string()];
    for f in forms {
        if !accepted.contains(&f) {
            accepted.push(f);
        }
    }
    Spellings {
        canonical: canonical.to_string(),
        accepted,
    }
}

/// The accepted spellings of the target types of `catalog` and of every auth type and
/// client type. Pure: the same catalog gives the same lists.
pub fn accepted_spellings_of(catalog: &Catalog) -> AcceptedSpellings {
    let target_types = catalog
        .targets()
        .iter()
        .map(|t| spellings(t, [camel_case(t)]))
        .collect();
    let auth_types = AUTH_TYPE_SPELLINGS
        .iter()
        .map(|(a, names)| {
            let tsv = a.tsv_name().map(str::to_string);
            spellings(
                a.as_str(),
                tsv.into_iter().chain(names.iter().map(|n| n.to_string())),
            )
        })
        .collect();
    let client_types = CLIENT_TYPE_SPELLINGS
        .iter()
        .map(|(c, names)| {
            spellings(
                c.as_str(),
                std::iter::once(c.tsv_name().to_string())
                    .chain(names.iter().map(|n| n.to_string())),
            )
        })
        .collect();
    AcceptedSpellings {
        target_types,
        auth_types,
        client_types,
    }
}

/// The accepted spellings of the shipped catalog's target types and of every auth type
/// and client type.
pub fn accepted_spellings() -> AcceptedSpellings {
    accepted_spellings_of(crate::catalog())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_enum_member_parses_to_its_value() {
        let all = accepted_spellings();
        let cat = crate::catalog();
        for t in &all.target_types {
            for form in schema_enum(std::slice::from_ref(t)) {
                assert_eq!(
                    cat.resolve_target(&form),
                    Some(t.canonical.as_str()),
                    "{form}"
                );
            }
        }
        for a in &all.auth_types {
            for form in schema_enum(std::slice::from_ref(a)) {
                let parsed = crate::AuthType::parse(&form).map(|a| a.as_str());
                assert_eq!(parsed, Some(a.canonical.as_str()), "{form}");
            }
        }
        for c in &all.client_types {
            for form in schema_enum(std::slice::from_ref(c)) {
                let parsed = crate::ClientType::parse(&form).map(|c| c.as_str());
                assert_eq!(parsed, Some(c.canonical.as_str()), "{form}");
            }
        }
        let auth = schema_enum(&all.auth_types);
        for form in [
            "workloadIdentity",
            "WorkloadIdentity",
            "workloadidentity",
            "WORKLOADIDENTITY",
            "workload-identity",
            "WORKLOAD_IDENTITY",
            "workload_identity",
            "Secret",
        ] {
            assert!(auth.iter().any(|a| a == form), "{form} is missing");
        }
        assert!(!auth.iter().any(|a| a == "password"));
    }

    #[test]
    fn camel_case_of_ids() {
        assert_eq!(camel_case("storage-blob"), "storageBlob");
        assert_eq!(camel_case("redis-enterprise"), "redisEnterprise");
        assert_eq!(camel_case("sql"), "sql");
    }
}
