//! The accepted spellings of target, auth and client types: every listed name parses to
//! the value it is listed for, and the parser accepts no name the lists leave out.

use proptest::prelude::*;
use sc_model::{AuthType, ClientType, Spellings, accepted_spellings, catalog};
use std::collections::BTreeMap;

/// The parser's comparison, written out independently: lower case, without `-`, `_`, `.`
/// and spaces.
fn normalized(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '-' | '_' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `s` is one of the listed spellings up to case and separators.
fn is_listed(list: &[Spellings], s: &str) -> bool {
    let n = normalized(s);
    list.iter()
        .any(|v| v.accepted.iter().any(|a| normalized(a) == n))
}

fn find<'a>(list: &'a [Spellings], canonical: &str) -> &'a Spellings {
    list.iter()
        .find(|s| s.canonical == canonical)
        .unwrap_or_else(|| panic!("{canonical} not listed"))
}

#[test]
fn every_listed_name_parses_to_its_value() {
    let sp = accepted_spellings();
    let cat = catalog();
    for t in &sp.target_types {
        assert_eq!(t.accepted[0], t.canonical);
        for s in &t.accepted {
            assert_eq!(cat.resolve_target(s), Some(t.canonical.as_str()), "{s}");
        }
    }
    for a in &sp.auth_types {
        let value = AuthType::parse(&a.canonical).expect("canonical parses");
        assert_eq!(a.canonical, value.as_str());
        for s in &a.accepted {
            assert_eq!(AuthType::parse(s), Some(value), "{s}");
        }
    }
    for c in &sp.client_types {
        let value = ClientType::parse(&c.canonical).expect("canonical parses");
        assert_eq!(c.canonical, value.as_str());
        for s in &c.accepted {
            assert_eq!(ClientType::parse(s), Some(value), "{s}");
        }
    }
    // No spelling belongs to two values (it could not parse to both).
    for list in [&sp.target_types, &sp.auth_types, &sp.client_types] {
        let mut owner: BTreeMap<String, &str> = BTreeMap::new();
        for v in list.iter() {
            for s in &v.accepted {
                let previous = owner.insert(normalized(s), &v.canonical);
                assert!(
                    previous.is_none_or(|p| p == v.canonical),
                    "{s}: listed for {previous:?} and {}",
                    v.canonical
                );
            }
        }
    }
}

#[test]
fn every_canonical_name_and_documented_alias_is_listed() {
    let sp = accepted_spellings();
    let cat = catalog();
    // Every target of the catalog, every auth type and every client type, in each of its
    // canonical forms (request schema and documentation).
    assert_eq!(sp.target_types.len(), cat.targets().len());
    for t in cat.targets() {
        assert!(find(&sp.target_types, t).accepted.contains(t));
    }
    assert!(
        find(&sp.target_types, "storage-blob")
            .accepted
            .contains(&"storageBlob".to_string())
    );
    assert_eq!(sp.auth_types.len(), AuthType::ALL.len());
    for a in AuthType::ALL {
        let listed = &find(&sp.auth_types, a.as_str()).accepted;
        if let Some(tsv) = a.tsv_name() {
            assert!(listed.iter().any(|s| s == tsv), "{tsv}");
        }
    }
    assert_eq!(sp.client_types.len(), ClientType::ALL.len());
    for c in ClientType::ALL {
        let listed = &find(&sp.client_types, c.as_str()).accepted;
        assert!(listed.iter().any(|s| s == c.tsv_name()), "{}", c.tsv_name());
    }
    // The flattened enumeration of a kind holds every form.
    let auth_enum = sc_model::AcceptedSpellings::flat(&sp.auth_types);
    for s in [
        "workloadIdentity",
        "workload-identity",
        "connection-string",
        "keyvaultCsi",
    ] {
        assert!(auth_enum.contains(&s), "{s}");
    }
    // The aliases the parser has always taken (README, CATALOG.md) stay accepted and listed.
    for (alias, value) in [
        ("connection-string", AuthType::Secret),
        ("sp", AuthType::ServicePrincipal),
        ("wi", AuthType::WorkloadIdentity),
        ("csi", AuthType::KeyvaultCsi),
        ("keyvaultsecretsprovider", AuthType::KeyvaultCsi),
    ] {
        assert_eq!(AuthType::parse(alias), Some(value), "{alias}");
        assert!(is_listed(&sp.auth_types, alias), "{alias}");
    }
    for (alias, value) in [
        ("other", ClientType::None),
        (".net", ClientType::Dotnet),
        ("net", ClientType::Dotnet),
        ("csharp", ClientType::Dotnet),
        ("spring", ClientType::SpringBoot),
        ("spring-boot", ClientType::SpringBoot),
        ("kafka-springboot", ClientType::KafkaSpringBoot),
        ("node", ClientType::Nodejs),
        ("golang", ClientType::Go),
    ] {
        assert_eq!(ClientType::parse(alias), Some(value), "{alias}");
        assert!(is_listed(&sp.client_types, alias), "{alias}");
    }
    for unknown in [
        "password",
        "cobol",
        "msi",
        "user-identity",
        "system-identity",
    ] {
        assert_eq!(AuthType::parse(unknown), None, "{unknown}");
        assert_eq!(ClientType::parse(unknown), None, "{unknown}");
        assert!(!is_listed(&sp.auth_types, unknown), "{unknown}");
    }
}

/// Strings near the listed names: listed spellings with their case and separators changed,
/// with a letter dropped or added, and arbitrary short words.
fn candidate() -> impl Strategy<Value = String> {
    let sp = accepted_spellings();
    let mut names: Vec<String> = Vec::new();
    for list in [&sp.target_types, &sp.auth_types, &sp.client_types] {
        for v in list {
            names.extend(v.accepted.iter().cloned());
        }
    }
    let listed = prop::sample::select(names);
    prop_oneof![
        (listed.clone(), any::<bool>(), "[-_. ]?").prop_map(|(s, upper, sep)| {
            let s = if upper { s.to_uppercase() } else { s };
            let mid = s.len() / 2;
            if s.is_char_boundary(mid) {
                format!("{}{sep}{}", &s[..mid], &s[mid..])
            } else {
                s
            }
        }),
        (listed.clone(), any::<prop::sample::Index>()).prop_map(|(s, i)| {
            let mut s = s;
            if !s.is_empty() {
                let at = i.index(s.len());
                if s.is_char_boundary(at) {
                    s.remove(at);
                }
            }
            s
        }),
        (listed, "[a-z]").prop_map(|(s, c)| format!("{s}{c}")),
        "[a-zA-Z._ -]{1,12}",
    ]
}

proptest! {
    /// The parser accepts exactly the listed names (up to case and separators).
    #[test]
    fn parser_accepts_only_listed_names(s in candidate()) {
        let sp = accepted_spellings();
        prop_assert_eq!(AuthType::parse(&s).is_some(), is_listed(&sp.auth_types, &s), "{}", s);
        prop_assert_eq!(ClientType::parse(&s).is_some(), is_listed(&sp.client_types, &s), "{}", s);
        prop_assert_eq!(catalog().resolve_target(&s).is_some(), is_listed(&sp.target_types, &s), "{}", s);
    }
}
