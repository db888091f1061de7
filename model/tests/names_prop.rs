//! Property tests of the object names: always valid DNS names, deterministic, and
//! collisions between connections detected.

use proptest::prelude::*;
use sc_model::names::*;
use sc_model::validate_connections;
use serde_json::json;

fn connection_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_]{0,59}[A-Za-z0-9]".prop_map(|s| s)
}

fn blob() -> serde_json::Value {
    json!({"targetType": "storage-blob", "authType": "secret", "clientType": "python",
           "parameters": {"accountName": "a"}, "secrets": {"accountKey": "k"}})
}

proptest! {
    #[test]
    fn object_names_are_valid_dns_names(name in connection_name()) {
        prop_assert!(is_valid_connection_name(&name));
        let secret = secret_name(&name);
        prop_assert!(is_dns_subdomain(&secret), "{secret}");
        prop_assert!(secret.len() <= 70);
        prop_assert!(is_dns_subdomain(&secret_provider_class_name(&name)));
        prop_assert!(is_dns_label(&csi_volume_name(&name)));
        prop_assert_eq!(secret_name(&name), secret.clone());
        let label = connection_label_value(&name);
        prop_assert!(!label.is_empty() && label.len() <= 63);
        prop_assert!(label.starts_with(|c: char| c.is_ascii_alphanumeric()));
        prop_assert!(label.ends_with(|c: char| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn service_account_names_are_valid(id in "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}") {
        prop_assert!(is_guid(&id));
        let sa = service_account_name(&id);
        prop_assert!(is_dns_subdomain(&sa), "{sa}");
        prop_assert_eq!(sa, service_account_name(&id.to_lowercase()));
    }

    #[test]
    fn long_names_fit_a_label(s in "[a-z0-9][a-z0-9-]{0,200}[a-z0-9]") {
        let f = fit_dns_label(&s);
        prop_assert!(is_dns_label(&f), "{f}");
        prop_assert_eq!(&f, &fit_dns_label(&s));
        if s.len() <= 63 { prop_assert_eq!(&f, &s); }
    }

    #[test]
    fn distinct_long_names_stay_distinct(a in "[a-z]{70,90}", b in "[a-z]{70,90}") {
        prop_assume!(a != b);
        prop_assert_ne!(fit_dns_label(&a), fit_dns_label(&b));
    }

    #[test]
    fn invalid_connection_names_are_rejected(name in "[A-Za-z0-9_]{0,5}[^A-Za-z0-9_][A-Za-z0-9_]{0,5}") {
        prop_assert!(!is_valid_connection_name(&name));
        let errors = validate_connections(&json!({ name.clone(): blob() })).unwrap_err();
        let path = format!("connections.{name}");
        prop_assert!(errors.errors().iter().any(|e| e.path == path));
    }

    #[test]
    fn colliding_connections_are_reported(a in connection_name(), b in connection_name(), ns in "[a-z]{1,8}") {
        prop_assume!(a != b);
        let mut ca = blob();
        ca["namespace"] = json!(ns);
        let mut cb = blob();
        cb["namespace"] = json!(ns);
        let result = validate_connections(&json!({ a.clone(): ca, b.clone(): cb }));
        if secret_name(&a) == secret_name(&b) {
            let errors = result.unwrap_err();
            let later = if a < b { &b } else { &a };
            let earlier = if a < b { &a } else { &b };
            let e = errors.errors().iter().find(|e| e.path == format!("connections.{later}"));
            prop_assert!(e.is_some(), "{errors}");
            prop_assert!(e.unwrap().message.contains(earlier.as_str()));
        } else {
            prop_assert!(result.is_ok());
        }
    }

    #[test]
    fn case_variants_collide(name in "[a-z][a-z0-9]{0,20}") {
        let upper = name.to_uppercase();
        prop_assume!(upper != name);
        let errors = validate_connections(&json!({ name.clone(): blob(), upper.clone(): blob() })).unwrap_err();
        prop_assert!(errors.errors().iter().any(|e| e.message.contains("rename one of the two")));
    }
}
