//! Workload identity for SQL Database, MySQL and PostgreSQL (and Fabric SQL): the keys of
//! their user-assigned managed identity tables (CATALOG.md). For every client type the
//! rendered Secret holds exactly the documented keys with the written-out values: the
//! endpoint and the identity's client ID, no credential; the ServiceAccount
//! `sc-account-<clientId>` carries the client ID.

use base64::Engine;
use sc_model::{AuthType, ClientType, Connection, catalog, validate_connections};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const CLIENT_ID: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const TENANT_ID: &str = "22222222-2222-2222-2222-222222222222";

fn connection(target: &str, client: &str, extra: Value) -> Connection {
    let mut parameters = match target {
        "sql" => json!({"server": "contoso-sql", "database": "orders"}),
        "fabric-sql" => {
            json!({"host": "abc123.database.fabric.microsoft.com", "database": "orders"})
        }
        _ => json!({"server": "contoso-sql", "database": "orders", "user": "orders-app"}),
    };
    parameters["clientId"] = json!(CLIENT_ID);
    parameters["tenantId"] = json!(TENANT_ID);
    if let (Some(p), Some(e)) = (parameters.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            p.insert(k.clone(), v.clone());
        }
    }
    let request = json!({"orders_db": {
        "namespace": "shop",
        "targetType": target,
        "authType": "workloadIdentity",
        "clientType": client,
        "parameters": parameters,
    }});
    let set = validate_connections(&request)
        .unwrap_or_else(|e| panic!("{target}/{client}: refused:\n{e}"));
    set.connections()[0].clone()
}

/// The Secret's data, decoded, as the cluster would store it.
fn secret_data(c: &Connection) -> BTreeMap<String, String> {
    let secret = c.desired().secret.expect("a Secret");
    assert_eq!(secret["metadata"]["name"], "sc-ordersdb-secret");
    assert_eq!(secret["metadata"]["namespace"], "shop");
    let b64 = base64::engine::general_purpose::STANDARD;
    secret["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, v)| {
            let bytes = b64.decode(v.as_str().expect("a string")).expect("base64");
            (k.clone(), String::from_utf8(bytes).expect("utf-8"))
        })
        .collect()
}

fn assert_service_account(c: &Connection) {
    let d = c.desired();
    let sa = d.service_account.expect("a ServiceAccount");
    assert_eq!(sa["metadata"]["name"], format!("sc-account-{CLIENT_ID}"));
    assert_eq!(sa["metadata"]["namespace"], "shop");
    assert_eq!(
        sa["metadata"]["annotations"]["azure.workload.identity/client-id"],
        CLIENT_ID
    );
    assert_eq!(
        sa["metadata"]["annotations"]["azure.workload.identity/tenant-id"],
        TENANT_ID
    );
    assert_eq!(
        d.patch.service_account.as_deref(),
        Some(format!("sc-account-{CLIENT_ID}").as_str())
    );
}

/// Checks one client type: the Secret holds exactly `expected`, nothing is a credential,
/// the client ID is where the docs put the identity, and the ServiceAccount is there.
fn check(target: &str, client: ClientType, expected: &[(&str, &str)]) {
    let c = connection(target, client.as_str(), json!({}));
    let want: BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(secret_data(&c), want, "{target}/{client}");
    assert!(
        c.keys.iter().all(|k| !k.value.is_secret()),
        "{target}/{client}: a credential key"
    );
    assert!(
        want.values().any(|v| v.contains(CLIENT_ID)),
        "{target}/{client}: no key carries the identity's client ID"
    );
    assert!(
        !want.keys().any(|k| {
            let k = k.to_ascii_uppercase();
            (k.contains("PASSWORD") && !k.contains("PASSWORDLESS")) || k.contains("SECRET")
        }),
        "{target}/{client}: credential key name"
    );
    assert_service_account(&c);
}

/// Every client type the catalog documents for the target's workload identity is checked.
fn assert_every_client_checked(target: &str, checked: &[ClientType]) {
    let mut documented = catalog().client_types(target, AuthType::WorkloadIdentity);
    documented.sort();
    let mut checked = checked.to_vec();
    checked.sort();
    assert_eq!(documented, checked, "{target}");
}

#[test]
fn sql_tutorial_python() {
    // The SQL tutorial: `az aks connection create sql --workload-identity <identity>`,
    // client type Python.
    check(
        "sql",
        ClientType::Python,
        &[
            ("AZURE_SQL_SERVER", "contoso-sql.database.windows.net"),
            ("AZURE_SQL_PORT", "1433"),
            ("AZURE_SQL_DATABASE", "orders"),
            ("AZURE_SQL_USER", CLIENT_ID),
            ("AZURE_SQL_AUTHENTICATION", "ActiveDirectoryMsi"),
        ],
    );
    // No database user or password is needed: the identity is the user.
    let request = json!({"sql_wi": {
        "targetType": "sql", "authType": "workloadIdentity", "clientType": "python",
        "parameters": {"server": "contoso-sql", "database": "orders", "clientId": CLIENT_ID},
    }});
    let set = validate_connections(&request).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.connections()[0].keys.len(), 5);
}

#[test]
fn sql_every_client_type() {
    use ClientType::*;
    let jdbc = format!(
        "jdbc:sqlserver://contoso-sql.database.windows.net:1433;databaseName=orders;msiClientId={CLIENT_ID};authentication=ActiveDirectoryMSI;"
    );
    let ado = format!(
        "Data Source=contoso-sql.database.windows.net,1433;Initial Catalog=orders;User ID={CLIENT_ID};Authentication=ActiveDirectoryManagedIdentity"
    );
    check(
        "sql",
        None,
        &[
            ("AZURE_SQL_HOST", "contoso-sql.database.windows.net"),
            ("AZURE_SQL_PORT", "1433"),
            ("AZURE_SQL_DATABASE", "orders"),
            ("AZURE_SQL_AUTHENTICATION", "azure-active-directory-default"),
            ("AZURE_SQL_USERNAME", CLIENT_ID),
        ],
    );
    check("sql", Dotnet, &[("AZURE_SQL_CONNECTIONSTRING", &ado)]);
    check("sql", Java, &[("AZURE_SQL_CONNECTIONSTRING", &jdbc)]);
    check("sql", SpringBoot, &[("spring.datasource.url", &jdbc)]);
    check(
        "sql",
        Nodejs,
        &[
            ("AZURE_SQL_SERVER", "contoso-sql.database.windows.net"),
            ("AZURE_SQL_PORT", "1433"),
            ("AZURE_SQL_DATABASE", "orders"),
            (
                "AZURE_SQL_AUTHENTICATIONTYPE",
                "azure-active-directory-default",
            ),
            ("AZURE_SQL_CLIENTID", CLIENT_ID),
        ],
    );
    // Python: sql_tutorial_python.
    assert_every_client_checked("sql", &[None, Python, Dotnet, Java, SpringBoot, Nodejs]);
}

#[test]
fn mysql_every_client_type() {
    use ClientType::*;
    let host = "contoso-sql.mysql.database.azure.com";
    let django_python = [
        ("AZURE_MYSQL_NAME", "orders"),
        ("AZURE_MYSQL_HOST", host),
        ("AZURE_MYSQL_USER", "orders-app"),
        ("AZURE_MYSQL_CLIENTID", CLIENT_ID),
    ];
    check("mysql", Python, &django_python);
    check("mysql", Django, &django_python);
    let node_none = |user_key| {
        [
            ("AZURE_MYSQL_HOST", host),
            (user_key, "orders-app"),
            ("AZURE_MYSQL_DATABASE", "orders"),
            ("AZURE_MYSQL_PORT", "3306"),
            ("AZURE_MYSQL_SSL", "true"),
            ("AZURE_MYSQL_CLIENTID", CLIENT_ID),
        ]
    };
    check("mysql", None, &node_none("AZURE_MYSQL_USERNAME"));
    check("mysql", Nodejs, &node_none("AZURE_MYSQL_USER"));
    check(
        "mysql",
        Dotnet,
        &[
            ("AZURE_MYSQL_CLIENTID", CLIENT_ID),
            (
                "AZURE_MYSQL_CONNECTIONSTRING",
                "Server=contoso-sql.mysql.database.azure.com;Database=orders;Port=3306;User Id=orders-app;SSL Mode=Required;",
            ),
        ],
    );
    check(
        "mysql",
        Java,
        &[
            ("AZURE_MYSQL_CLIENTID", CLIENT_ID),
            (
                "AZURE_MYSQL_CONNECTIONSTRING",
                "jdbc:mysql://contoso-sql.mysql.database.azure.com:3306/orders?sslmode=required&user=orders-app",
            ),
        ],
    );
    check(
        "mysql",
        Go,
        &[
            ("AZURE_MYSQL_CLIENTID", CLIENT_ID),
            (
                "AZURE_MYSQL_CONNECTIONSTRING",
                "orders-app@tcp(contoso-sql.mysql.database.azure.com:3306)/orders?tls=true",
            ),
        ],
    );
    check(
        "mysql",
        Php,
        &[
            ("AZURE_MYSQL_DBNAME", "orders"),
            ("AZURE_MYSQL_HOST", host),
            ("AZURE_MYSQL_PORT", "3306"),
            ("AZURE_MYSQL_FLAG", "MySQL_CLIENT_SSL"),
            ("AZURE_MYSQL_USERNAME", "orders-app"),
            ("AZURE_MYSQL_CLIENTID", CLIENT_ID),
        ],
    );
    check(
        "mysql",
        Ruby,
        &[
            ("AZURE_MYSQL_DATABASE", "orders"),
            ("AZURE_MYSQL_HOST", host),
            ("AZURE_MYSQL_USERNAME", "orders-app"),
            ("AZURE_MYSQL_SSLMODE", "required"),
            ("AZURE_MYSQL_CLIENTID", CLIENT_ID),
        ],
    );
    check(
        "mysql",
        SpringBoot,
        &[
            ("spring.datasource.azure.passwordless-enabled", "true"),
            ("spring.cloud.azure.credential.client-id", CLIENT_ID),
            (
                "spring.cloud.azure.credential.client-managed-identity-enabled",
                "true",
            ),
            (
                "spring.datasource.url",
                "jdbc:mysql://contoso-sql.mysql.database.azure.com:3306/orders?sslmode=required",
            ),
            ("spring.datasource.username", "orders-app"),
        ],
    );
    assert_every_client_checked(
        "mysql",
        &[
            None, Python, Django, Dotnet, Java, SpringBoot, Nodejs, Go, Php, Ruby,
        ],
    );
}

#[test]
fn postgresql_every_client_type() {
    use ClientType::*;
    let host = "contoso-sql.postgres.database.azure.com";
    let with_cs = |cs: &'static str| {
        [
            ("AZURE_POSTGRESQL_CLIENTID", CLIENT_ID),
            ("AZURE_POSTGRESQL_CONNECTIONSTRING", cs),
        ]
    };
    check(
        "postgresql",
        Python,
        &with_cs(
            "dbname=orders host=contoso-sql.postgres.database.azure.com port=5432 sslmode=require user=orders-app",
        ),
    );
    check(
        "postgresql",
        Dotnet,
        &with_cs(
            "Server=contoso-sql.postgres.database.azure.com;Database=orders;Port=5432;Ssl Mode=Require;User Id=orders-app;",
        ),
    );
    check(
        "postgresql",
        Java,
        &with_cs(
            "jdbc:postgresql://contoso-sql.postgres.database.azure.com:5432/orders?sslmode=require&user=orders-app",
        ),
    );
    check(
        "postgresql",
        Go,
        &with_cs(
            "host=contoso-sql.postgres.database.azure.com dbname=orders sslmode=require user=orders-app",
        ),
    );
    let key_value = "host=contoso-sql.postgres.database.azure.com port=5432 dbname=orders sslmode=require user=orders-app";
    check("postgresql", Php, &with_cs(key_value));
    check("postgresql", Ruby, &with_cs(key_value));
    check(
        "postgresql",
        Django,
        &[
            ("AZURE_POSTGRESQL_NAME", "orders"),
            ("AZURE_POSTGRESQL_HOST", host),
            ("AZURE_POSTGRESQL_USER", "orders-app"),
            ("AZURE_POSTGRESQL_CLIENTID", CLIENT_ID),
        ],
    );
    let node_none = |user_key| {
        [
            ("AZURE_POSTGRESQL_HOST", host),
            (user_key, "orders-app"),
            ("AZURE_POSTGRESQL_DATABASE", "orders"),
            ("AZURE_POSTGRESQL_PORT", "5432"),
            ("AZURE_POSTGRESQL_SSL", "true"),
            ("AZURE_POSTGRESQL_CLIENTID", CLIENT_ID),
        ]
    };
    check("postgresql", None, &node_none("AZURE_POSTGRESQL_USERNAME"));
    check("postgresql", Nodejs, &node_none("AZURE_POSTGRESQL_USER"));
    check(
        "postgresql",
        SpringBoot,
        &[
            ("spring.datasource.azure.passwordless-enabled", "true"),
            ("spring.cloud.azure.credential.client-id", CLIENT_ID),
            (
                "spring.cloud.azure.credential.client-managed-identity-enabled",
                "true",
            ),
            (
                "spring.datasource.url",
                "jdbc:postgresql://contoso-sql.postgres.database.azure.com:5432/orders?sslmode=require",
            ),
            ("spring.datasource.username", "orders-app"),
        ],
    );
    assert_every_client_checked(
        "postgresql",
        &[
            None, Python, Django, Dotnet, Java, SpringBoot, Nodejs, Go, Php, Ruby,
        ],
    );
}

#[test]
fn fabric_sql_every_client_type() {
    use ClientType::*;
    let h = "abc123.database.fabric.microsoft.com";
    let odbc_go = format!(
        "server=tcp:{h};port=1433;database=orders;user id={CLIENT_ID};fedauth=ActiveDirectoryManagedIdentity;"
    );
    let jdbc = format!(
        "jdbc:sqlserver://{h}:1433;databaseName=orders;msiClientId={CLIENT_ID};authentication=ActiveDirectoryMSI;"
    );
    let key = "FABRIC_SQL_CONNECTIONSTRING";
    check("fabric-sql", None, &[(key, &odbc_go)]);
    check("fabric-sql", Go, &[(key, &odbc_go)]);
    check("fabric-sql", Java, &[(key, &jdbc)]);
    check("fabric-sql", SpringBoot, &[(key, &jdbc)]);
    check(
        "fabric-sql",
        Dotnet,
        &[(
            key,
            &format!(
                "Data Source=tcp:{h},1433;Initial Catalog=orders;User ID={CLIENT_ID};Authentication=ActiveDirectoryManagedIdentity"
            ),
        )],
    );
    check(
        "fabric-sql",
        Python,
        &[(
            key,
            &format!(
                "Driver={{ODBC Driver 17 for SQL Server}};Server=tcp:{h},1433;Database=orders;UID={CLIENT_ID};Authentication=ActiveDirectoryMSI;"
            ),
        )],
    );
    assert_every_client_checked("fabric-sql", &[None, Python, Dotnet, Java, SpringBoot, Go]);
}

#[test]
fn database_workload_identity_takes_no_secret_input() {
    // Passwordless: no parameter of these combinations is a secret, so nothing in the
    // protected settings is needed and a password given anyway is refused.
    let cat = catalog();
    for target in cat.workload_identity_from_user_identity() {
        for client in cat.client_types(target, AuthType::WorkloadIdentity) {
            let params = cat.template_parameters(target, AuthType::WorkloadIdentity, client);
            assert!(
                params.iter().any(|p| p.name == "clientId"),
                "{target}/{client}: the identity's client ID is in no key"
            );
            assert!(
                params.iter().all(|p| !p.secret),
                "{target}/{client}: a secret parameter"
            );
        }
    }
    let request = json!({"pg": {
        "targetType": "postgresql", "authType": "workloadIdentity", "clientType": "python",
        "parameters": {"server": "s", "database": "d", "user": "u", "clientId": CLIENT_ID},
        "secrets": {"password": "PASSWORD1"},
    }});
    let e = validate_connections(&request).expect_err("a password with workload identity");
    assert!(
        e.errors()
            .iter()
            .any(|e| e.path == "connections.pg.secrets.password"),
        "{e}"
    );
    assert!(!e.to_string().contains("PASSWORD1"), "{e}");
}

#[test]
fn a_second_sql_connection_gets_the_infix_and_shares_the_service_account() {
    let request = json!({
        "orders": {"targetType": "sql", "authType": "workloadIdentity", "clientType": "python",
            "parameters": {"server": "s1", "database": "orders", "clientId": CLIENT_ID}},
        "reports": {"targetType": "sql", "authType": "workloadIdentity", "clientType": "python",
            "parameters": {"server": "s1", "database": "reports", "clientId": CLIENT_ID}},
    });
    let set = validate_connections(&request).unwrap_or_else(|e| panic!("{e}"));
    let reports = set
        .connections()
        .iter()
        .find(|c| c.name() == "reports")
        .unwrap();
    let names: Vec<&str> = reports.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "AZURE_SQL_REPORTS_SERVER",
            "AZURE_SQL_REPORTS_PORT",
            "AZURE_SQL_REPORTS_DATABASE",
            "AZURE_SQL_REPORTS_USER",
            "AZURE_SQL_REPORTS_AUTHENTICATION",
        ]
    );
    let sas = set.service_accounts();
    assert_eq!(sas.len(), 1, "one identity, one ServiceAccount");
    assert_eq!(
        sas[0].0["metadata"]["name"],
        format!("sc-account-{CLIENT_ID}")
    );
}

/// `identityName` and `identityResourceGroup` name the user-assigned identity for the printed
/// `az` command: any scalar spelling (Arc passes strings), absent from the content hash when
/// unset, refused when malformed or on a connection without workload identity.
#[test]
fn the_identity_name_and_resource_group_are_optional_fields() {
    let base = json!({
        "namespace": "shop", "targetType": "sql", "authType": "workloadIdentity",
        "clientType": "python",
        "parameters": {"server": "contoso-sql", "database": "orders", "clientId": CLIENT_ID},
    });
    let with = |extra: Value| {
        let mut c = base.clone();
        for (k, v) in extra.as_object().expect("an object") {
            c[k] = v.clone();
        }
        json!({"orders_db": c})
    };
    let plain = validate_connections(&json!({"orders_db": base.clone()})).expect("valid");
    assert_eq!(plain.connections()[0].spec.identity_name, None);
    assert_eq!(plain.connections()[0].spec.identity_resource_group, None);
    for extra in [
        json!({"identityName": "orders-identity", "identityResourceGroup": "rg-identities"}),
        json!({"identity_name": " orders-identity ", "identity_resource_group": "rg-identities"}),
    ] {
        let set = validate_connections(&with(extra.clone())).expect("valid");
        let spec = &set.connections()[0].spec;
        assert_eq!(
            spec.identity_name.as_deref(),
            Some("orders-identity"),
            "{extra}"
        );
        assert_eq!(
            spec.identity_resource_group.as_deref(),
            Some("rg-identities")
        );
        assert_ne!(set.connections()[0].hash, plain.connections()[0].hash);
    }
    // Empty is unset: the hash of a request without the fields.
    let empty = validate_connections(&with(json!({"identityName": ""}))).expect("valid");
    assert_eq!(empty.connections()[0].hash, plain.connections()[0].hash);
    let mut secret = json!({"orders_db": base.clone()});
    secret["orders_db"]["authType"] = json!("secret");
    secret["orders_db"]["identityName"] = json!("");
    secret["orders_db"]["parameters"] = json!({"server": "s", "database": "d", "user": "u"});
    secret["orders_db"]["secrets"] = json!({"password": "p"});
    validate_connections(&secret).expect("an empty identityName is no identity");
    // Malformed values and connections without workload identity are refused, naming the key.
    for (extra, key) in [
        (
            json!({"identityName": "a b; rm -rf"}),
            "connections.orders_db.identityName",
        ),
        (
            json!({"identityName": "x"}),
            "connections.orders_db.identityName",
        ),
        (
            json!({"identityResourceGroup": "rg."}),
            "connections.orders_db.identityResourceGroup",
        ),
        (
            json!({"identityName": {"name": "x"}}),
            "connections.orders_db.identityName",
        ),
        (
            json!({"authType": "secret", "identityName": "orders-identity"}),
            "connections.orders_db.identityName",
        ),
    ] {
        let err = validate_connections(&with(extra.clone()))
            .expect_err(&format!("{extra} accepted"))
            .to_string();
        assert!(err.contains(key), "{extra}: {err}");
    }
}
