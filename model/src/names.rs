//! Names of the objects a connection creates, and the DNS name rules they obey.
//!
//! - Secret: `sc-<connection name, non-alphanumerics removed, lower-cased>-secret`
//! - ServiceAccount: `sc-account-<clientId, lower-cased>`
//! - SecretProviderClass: `sc-<connection name, non-alphanumerics removed, lower-cased>-spc`
//! - CSI volume in a pod template: `sc-<...>-kv`, shortened to 63 characters when needed
//!
//! A connection name is at most 60 characters, so Secret and SecretProviderClass names are
//! at most 70 characters: always valid DNS subdomain names (253). Names that must be DNS
//! labels (63) are shortened by [`fit_dns_label`], which keeps them unique by a hash suffix.

use sha2::{Digest, Sha256};

/// The longest accepted connection name (Service Connector's rule).
pub const MAX_CONNECTION_NAME: usize = 60;

/// Whether `name` is a valid connection name: 1-60 characters, letters, digits and `_`,
/// with at least one letter or digit.
pub fn is_valid_connection_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CONNECTION_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().any(|c| c.is_ascii_alphanumeric())
}

/// The connection name with every non-alphanumeric character removed, lower-cased.
pub fn compact_name(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The connection name with every non-alphanumeric character removed, upper-cased: the
/// infix of the configuration keys of a second connection of the same target type.
pub fn key_infix(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The Secret holding the connection's configuration.
pub fn secret_name(connection: &str) -> String {
    format!("sc-{}-secret", compact_name(connection))
}

/// The SecretProviderClass of a `keyvaultCsi` connection.
pub fn secret_provider_class_name(connection: &str) -> String {
    format!("sc-{}-spc", compact_name(connection))
}

/// The workload-identity ServiceAccount of a client ID (shared by connections using it).
pub fn service_account_name(client_id: &str) -> String {
    format!("sc-account-{}", client_id.to_ascii_lowercase())
}

/// The metadata ConfigMap of a connection in the release namespace: `sc-conn-<stem>`, with
/// the same stem as the Secret name (see `docs/internals.md`).
pub fn metadata_config_map_name(connection: &str) -> String {
    format!("sc-conn-{}", compact_name(connection))
}

/// The name of the CSI volume added to pod templates (a DNS label).
pub fn csi_volume_name(connection: &str) -> String {
    fit_dns_label(&format!("sc-{}-kv", compact_name(connection)))
}

/// The label value naming a connection (a connection name without leading or trailing
/// `_`, which label values do not allow).
pub fn connection_label_value(connection: &str) -> String {
    connection.trim_matches('_').to_string()
}

/// The annotation name part `<prefix><connection label>`, at most 63 characters: a label
/// that is not the connection name itself (leading or trailing `_` trimmed) or that does not
/// fit is cut and suffixed with `-` and 8 hex digits of the SHA-256 of the connection name,
/// so two connections never share one.
fn connection_annotation(prefix: &str, connection: &str) -> String {
    let label = connection_label_value(connection);
    let part = format!("{prefix}{label}");
    if label == connection && part.len() <= 63 {
        return format!("sc-extension.io/{part}");
    }
    let digest = hex::encode(Sha256::digest(connection.as_bytes()));
    let head: String = part.chars().take(54).collect();
    let head = head.trim_end_matches(['-', '_', '.']);
    format!("sc-extension.io/{head}-{}", &digest[..8])
}

/// The pod-template annotation of a listed workload whose value is the connection's
/// rollout hash: a new value rolls the workload out
/// (`sc-extension.io/restarted-for-<connection label>`).
pub fn restart_annotation(connection: &str) -> String {
    connection_annotation("restarted-for-", connection)
}

/// The annotation of a listed workload (on the workload, not its pod template) recording
/// what the connection added to its pod template, so that exactly that is removed later
/// (`sc-extension.io/injected-<connection label>`).
pub fn injected_annotation(connection: &str) -> String {
    connection_annotation("injected-", connection)
}

/// `name` if it is at most 63 characters, else its first 54 characters (trailing `-`
/// trimmed), `-` and 8 hex digits of its SHA-256: deterministic, unique in practice.
pub fn fit_dns_label(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    let head = name[..54].trim_end_matches('-');
    format!("{head}-{}", &digest[..8])
}

/// Whether `s` is an RFC 1123 DNS label: 1-63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS subdomain as Kubernetes checks object names: at most 253
/// characters, dot-separated parts of `[a-z0-9-]` that start and end alphanumeric (like
/// Kubernetes, no limit of 63 per part).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !p.starts_with('-')
                && !p.ends_with('-')
        })
}

/// Whether `s` is a valid Secret data key: 1-253 of `[-._a-zA-Z0-9]`, not `.` or `..`.
pub fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && s != "."
        && s != ".."
}

/// Whether `s` is a GUID in the 8-4-4-4-12 hexadecimal form.
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_annotations_are_valid_and_distinct() {
        assert_eq!(
            restart_annotation("blob_conn"),
            "sc-extension.io/restarted-for-blob_conn"
        );
        assert_eq!(
            injected_annotation("blob_conn"),
            "sc-extension.io/injected-blob_conn"
        );
        let long = "a".repeat(60);
        let mut seen = std::collections::BTreeSet::new();
        for c in [long.as_str(), "_a", "a", "a_", "x_y"] {
            for a in [restart_annotation(c), injected_annotation(c)] {
                let part = a.strip_prefix("sc-extension.io/").unwrap();
                assert!(part.len() <= 63, "{a}");
                assert!(
                    part.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                );
                assert!(part.ends_with(|c: char| c.is_ascii_alphanumeric()), "{a}");
                assert!(seen.insert(a.clone()), "{a} twice");
            }
        }
    }

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(secret_name("My_Blob_1"), "sc-myblob1-secret");
        assert_eq!(secret_provider_class_name("kv"), "sc-kv-spc");
        assert_eq!(metadata_config_map_name("My_Blob_1"), "sc-conn-myblob1");
        assert_eq!(
            service_account_name("AAAAAAAA-0000-0000-0000-000000000000"),
            "sc-account-aaaaaaaa-0000-0000-0000-000000000000"
        );
        assert_eq!(key_infix("conn_2"), "CONN2");
        assert!(is_guid("00000000-0000-0000-0000-000000000000"));
        assert!(!is_guid("00000000-0000-0000-0000-00000000000"));
        assert!(!is_guid("0000000g-0000-0000-0000-000000000000"));
        assert!(is_dns_label("a-b"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("A"));
        let long = fit_dns_label(&"x".repeat(80));
        assert_eq!(long.len(), 63);
        assert!(is_dns_label(&long));
    }
}
