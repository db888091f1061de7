//! The catalog reproduces every documented row (name and secret flag) of the auth types a
//! cluster supports: secret, service-principal and workload-identity. The only differences
//! are the documented errata corrections of CATALOG.md, listed here.

use sc_model::{AuthType, ClientType, catalog};
use std::collections::BTreeMap;

/// (target, auth_type, documented name) -> name in the catalog (CATALOG.md, erratum 2).
const RENAMED: [(&str, &str, &str, &str); 1] = [(
    "cosmos-gremlin",
    "workload-identity",
    "AZURE_CLIENTID",
    "AZURE_COSMOS_CLIENTID",
)];

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
    let mut per_combo: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 7, "bad row {line}");
        let (target, auth, client, name, secret) = (f[0], f[1], f[2], f[3], f[6] == "yes");
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
        checked, 1382,
        "rows of secret, service-principal and workload-identity"
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
    assert!(cat.auth_types("fabric-sql").is_empty());
    assert_eq!(
        cat.auth_types("sql"),
        vec![AuthType::Secret, AuthType::ServicePrincipal]
    );
}
