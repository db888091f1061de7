//! The catalog reproduces every documented row (name and secret flag) of the auth types a
//! cluster supports: secret, service-principal and workload-identity, and, for the targets
//! with no workload-identity rows, their user-identity rows as workload identity. The only
//! differences are the documented errata corrections of CATALOG.md, listed here.

use sc_model::{AuthType, ClientType, catalog};
use std::collections::BTreeMap;

/// (target, auth_type, documented name) -> name in the catalog (CATALOG.md, erratum 2).
const RENAMED: [(&str, &str, &str, &str); 1] = [(
    "cosmos-gremlin",
    "workload-identity",
    "AZURE_CLIENTID",
    "AZURE_COSMOS_CLIENTID",
)];

/// The targets whose workloadIdentity keys are their user-assigned identity rows: the data
/// has user-identity rows for them and no workload-identity rows (CATALOG.md).
const WI_FROM_USER_IDENTITY: [&str; 4] = ["fabric-sql", "mysql", "postgresql", "sql"];

fn tsv() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/config-names.tsv");
    std::fs::read_to_string(path).expect("read data/config-names.tsv")
}

#[test]
fn every_supported_row_is_reproduced() {
    let text = tsv();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("target\tauth_type\tclient_type\tname\tdescription\texample_value\tsecret")
    );
    let cat = catalog();
    let mut checked = 0;
    let mut renamed = 0;
    let mut from_user_identity = 0;
    let mut per_combo: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 7, "bad row {line}");
        let (target, doc_auth, client, name, secret) = (f[0], f[1], f[2], f[3], f[6] == "yes");
        let auth = if doc_auth == "user-identity" && WI_FROM_USER_IDENTITY.contains(&target) {
            from_user_identity += 1;
            "workload-identity"
        } else {
            doc_auth
        };
        let Some(auth_type) = AuthType::parse(auth)
            .filter(|_| matches!(auth, "secret" | "service-principal" | "workload-identity"))
        else {
            continue;
        };
        let client_type = ClientType::parse(client).expect("known client type");
        let expected_name = RENAMED
            .iter()
            .find(|(t, a, n, _)| *t == target && *a == auth && *n == name)
            .map(|(_, _, _, new)| {
                renamed += 1;
                *new
            })
            .unwrap_or(name);
        let keys = cat.keys(target, auth_type, client_type);
        let key = keys
            .iter()
            .find(|k| k.name == expected_name)
            .unwrap_or_else(|| panic!("{target}/{auth}/{client}: {name} missing from the catalog"));
        assert_eq!(
            key.secret, secret,
            "{target}/{auth}/{client}/{name}: secret flag"
        );
        if expected_name != name {
            assert_eq!(key.documented_name.as_deref(), Some(name));
        } else {
            assert_eq!(key.documented_name, None);
        }
        *per_combo
            .entry((target.into(), auth.into(), client.into()))
            .or_default() += 1;
        checked += 1;
    }
    assert_eq!(
        checked, 1481,
        "rows of secret, service-principal and workload-identity, and user-identity rows read as workload-identity"
    );
    assert_eq!(
        from_user_identity,
        6 + 42 + 33 + 18,
        "user-identity rows of fabric-sql, mysql, postgresql and sql"
    );
    assert_eq!(
        renamed, 7,
        "cosmos-gremlin workload-identity rows, one per client type"
    );
    // Nothing more than the documented rows.
    assert_eq!(cat.all_keys().len(), checked);
    for ((t, a, c), n) in per_combo {
        let keys = cat.keys(
            &t,
            AuthType::parse(&a).unwrap(),
            ClientType::parse(&c).unwrap(),
        );
        assert_eq!(keys.len(), n, "{t}/{a}/{c}");
    }
}

#[test]
fn every_template_uses_known_parameters_and_no_placeholder() {
    let cat = catalog();
    for k in cat.all_keys() {
        let t = k.template.to_string();
        assert!(!t.contains('<') && !t.contains('>'), "{}: {t}", k.name);
        for p in k.template.params() {
            assert!(
                cat.parameter(p).is_some(),
                "{}: unknown parameter {p}",
                k.name
            );
        }
    }
}

#[test]
fn secret_values_only_come_from_secret_parameters_or_constants() {
    // A key flagged secret must depend on a secret parameter (it is a credential); a key not
    // flagged secret must not embed one.
    let cat = catalog();
    for k in cat.all_keys() {
        let uses_secret = k
            .template
            .params()
            .iter()
            .any(|p| cat.parameter(p).is_some_and(|s| s.secret));
        assert_eq!(
            uses_secret, k.secret,
            "{}/{}/{}/{}: template {}",
            k.target, k.auth_type, k.client_type, k.name, k.template
        );
    }
}

#[test]
fn targets_and_auth_types() {
    let cat = catalog();
    assert_eq!(cat.targets().len(), 27);
    assert!(cat.auth_types("keyvault").contains(&AuthType::KeyvaultCsi));
    assert!(!cat.auth_types("keyvault").contains(&AuthType::Secret));
    assert_eq!(cat.auth_types("storage-file"), vec![AuthType::Secret]);
    assert_eq!(
        cat.auth_types("fabric-sql"),
        vec![AuthType::WorkloadIdentity]
    );
    for t in ["sql", "mysql", "postgresql"] {
        assert_eq!(
            cat.auth_types(t),
            vec![
                AuthType::Secret,
                AuthType::ServicePrincipal,
                AuthType::WorkloadIdentity
            ],
            "{t}"
        );
    }
}

#[test]
fn workload_identity_is_derived_exactly_where_the_data_has_no_workload_identity_rows() {
    // Independent of the catalog: the targets with user-identity rows and no
    // workload-identity rows, read from the data file.
    let text = tsv();
    let mut user = std::collections::BTreeSet::new();
    let mut wi = std::collections::BTreeSet::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        match f[1] {
            "user-identity" => user.insert(f[0]),
            "workload-identity" => wi.insert(f[0]),
            _ => false,
        };
    }
    let expected: Vec<&str> = user.difference(&wi).copied().collect();
    assert_eq!(expected, WI_FROM_USER_IDENTITY);
    assert_eq!(catalog().workload_identity_from_user_identity(), expected);
    // Every key read from a user-identity row says so, as the derived rows of the data do.
    for k in catalog().all_keys() {
        if k.auth_type == AuthType::WorkloadIdentity
            && WI_FROM_USER_IDENTITY.contains(&k.target.as_str())
        {
            assert!(
                k.description.ends_with(" (as user-assigned MI)"),
                "{}/{}: {}",
                k.target,
                k.name,
                k.description
            );
        }
    }
}
