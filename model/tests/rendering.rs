//! Value rendering against the documented formats: every key of every client type of
//! storage (blob, queue, table, file), sql, postgresql, mysql, redis, keyvault, servicebus,
//! eventhub, cosmos-sql, appconfig and openai, for secret, service principal and workload
//! identity (for sql, postgresql and mysql: their user-assigned identity rows). The oracle is the documented example value with its placeholders replaced by
//! sample values (plain string replacement, independent of the catalog's own data); rows
//! corrected on purpose (CATALOG.md, errata) are checked against hand-written values.

use sc_model::{AuthType, ClientType, KeyValue, catalog, validate_connections};
use serde_json::{Map, Value, json};

const CLIENT_ID: &str = "11111111-1111-1111-1111-111111111111";
const TENANT_ID: &str = "22222222-2222-2222-2222-222222222222";
const SUBSCRIPTION_ID: &str = "33333333-3333-3333-3333-333333333333";

fn sample(param: &str) -> &'static str {
    match param {
        "clientId" => CLIENT_ID,
        "tenantId" => TENANT_ID,
        "subscriptionId" => SUBSCRIPTION_ID,
        "clientSecret" => "CLIENTSECRET1",
        "resourceGroup" => "rg1",
        "accountName" => "acct1",
        "accountKey" => "ACCOUNTKEY1",
        "database" => "db1",
        "user" => "usr1",
        "password" => "PASSWORD1",
        "server" => "srv1",
        "accessKey" => "ACCESSKEY1",
        "namespaceName" => "ns1",
        "sharedAccessKeyName" => "policy1",
        "sharedAccessKey" => "SHAREDKEY1",
        "keyvaultName" => "vault1",
        "resourceName" => "res1",
        "accessKeyId" => "id1",
        "accessKeySecret" => "APPCONFIGSECRET1",
        "apiKey" => "APIKEY1",
        other => panic!("no sample for {other}"),
    }
}

/// Placeholder replacements per target, applied in order with `str::replace`.
fn oracle_replacements(target: &str) -> Vec<(&'static str, String)> {
    let s = |p: &str| sample(p).to_string();
    let mut r: Vec<(&'static str, String)> = vec![
        ("<<identity-client-ID>>", s("clientId")),
        ("<client-ID>", s("clientId")),
        ("<client-Id>", s("clientId")),
        ("<client-id>", s("clientId")),
        ("<your Client ID>", s("clientId")),
        ("<identity-client-ID>", s("clientId")),
        ("your Client Id", s("clientId")),
        ("<tenant-ID>", s("tenantId")),
        ("<tenant-id>", s("tenantId")),
        ("<your Tenant ID>", s("tenantId")),
        ("<client-secret>", s("clientSecret")),
        ("<client-Secret>", s("clientSecret")),
        ("<your Client Secret >", s("clientSecret")),
        ("your Client Secret", s("clientSecret")),
        ("<subscription-ID>", s("subscriptionId")),
        ("<resource-group-name>", s("resourceGroup")),
    ];
    let mut add = |list: &[(&'static str, &str)]| {
        for (from, p) in list {
            r.push((from, sample(p).to_string()));
        }
    };
    match target {
        t if t.starts_with("storage-") => add(&[
            ("<account name>", "accountName"),
            ("<account-name>", "accountName"),
            ("<storage-account-name>", "accountName"),
            ("<account-key>", "accountKey"),
            ("<storage-account-key>", "accountKey"),
            ("00001111-aaaa-2222-bbbb-3333cccc4444", "clientId"),
            ("Aa1Bb~2Cc3.-Dd4Ee5Ff6Gg7Hh8Ii9_Jj0Kk1Ll2", "clientSecret"),
            ("storage-account-name", "accountName"),
        ]),
        "sql" => add(&[
            ("<sql-server>", "server"),
            ("<sql-database>", "database"),
            ("<sql-db>", "database"),
            ("<sql-username>", "user"),
            ("<sql-user>", "user"),
            ("<sql-password>", "password"),
            ("<msiClientId>", "clientId"),
        ]),
        "postgresql" => add(&[
            ("<PostgreSQL-server-name>", "server"),
            ("<your-postgres-server-name>", "server"),
            ("<database-name>", "database"),
            ("<username>", "user"),
            ("<database-password>", "password"),
            ("<password>", "password"),
        ]),
        "mysql" => add(&[
            // Decision (CATALOG.md): the flexible-server user, without "@server".
            ("<MySQL-DB-username>@<MySQL-DB-name>", "user"),
            ("<MySQL-DB-name>.mysql", "server"),
            ("<server-host>", "server"),
            ("<Uri.EscapeDataString(<MySQL-DB-password>)", "password"),
            ("<MySQL-DB-name>", "database"),
            ("<database-name>", "database"),
            ("<MySQL-DB-username>", "user"),
            ("<MySQL-DBusername>", "user"),
            ("<MySQL-DB-password>", "password"),
            ("MySQL-DB-name", "database"),
            ("MySQL-DB-username", "user"),
            ("MySQL-DB-password", "password"),
            ("identity-client-ID", "clientId"),
        ]),
        "redis" => add(&[
            ("<redis-server-name>", "server"),
            ("<RedisName>", "server"),
            ("<redis-key>", "accessKey"),
        ]),
        "keyvault" => add(&[("<vault-name>", "keyvaultName")]),
        "servicebus" => add(&[
            ("<Service-Bus-namespace>", "namespaceName"),
            ("<access-key-name>", "sharedAccessKeyName"),
            ("<access-key-value>", "sharedAccessKey"),
        ]),
        "eventhub" => add(&[
            ("<Event-Hubs-namespace>", "namespaceName"),
            ("servicelinkertesteventhub", "namespaceName"),
            ("<access-key-name>", "sharedAccessKeyName"),
            ("<access-key-value>", "sharedAccessKey"),
        ]),
        "cosmos-sql" => add(&[
            ("<database-server>", "accountName"),
            ("<database-name>", "database"),
            ("<account-key>", "accountKey"),
            ("<access-key>", "accountKey"),
        ]),
        "appconfig" => add(&[
            ("<App-Configuration-name>", "resourceName"),
            ("<AppConfigurationName>", "resourceName"),
            ("<ID>", "accessKeyId"),
            ("<secret>", "accessKeySecret"),
        ]),
        "openai" => add(&[
            ("<Azure-OpenAI-name>", "resourceName"),
            ("<api-key>", "apiKey"),
        ]),
        other => panic!("no oracle for {other}"),
    }
    // MySQL's host placeholder carries the ".mysql" suffix in the example.
    for (from, to) in r.iter_mut() {
        if *from == "<MySQL-DB-name>.mysql" {
            *to = format!("{to}.mysql");
        }
        if *from == "<server-host>" {
            *to = format!("{to}.mysql.database.azure.com");
        }
    }
    r
}

fn oracle(target: &str, example: &str) -> String {
    let mut v = example.to_string();
    for (from, to) in oracle_replacements(target) {
        v = v.replace(from, &to);
    }
    if target == "mysql" {
        v = v.replace(":<port>", ":3306");
    }
    v
}

/// The values of the rows corrected on purpose (CATALOG.md), by (target, auth, client, key).
fn corrected(target: &str, auth: AuthType, client: ClientType, key: &str) -> Option<String> {
    let v = match (target, auth, client, key) {
        ("servicebus", AuthType::ServicePrincipal, ClientType::SpringBoot, "spring.cloud.azure.tenant-id") => TENANT_ID.into(),
        ("servicebus", AuthType::ServicePrincipal, ClientType::SpringBoot, "spring.cloud.azure.client-secret") => "CLIENTSECRET1".into(),
        ("cosmos-sql", AuthType::WorkloadIdentity, ClientType::SpringBoot, "spring.cloud.azure.cosmos.database") => "db1".into(),
        ("sql", AuthType::Secret, ClientType::Dotnet, "AZURE_SQL_CONNECTIONSTRING") => {
            "Data Source=srv1.database.windows.net,1433;Initial Catalog=db1;User ID=usr1;Password=PASSWORD1".into()
        }
        ("sql", AuthType::ServicePrincipal, _, "AZURE_SQL_AUTHENTICATION") if client == ClientType::Python => {
            "ActiveDirectoryServicePrincipal".into()
        }
        ("postgresql", AuthType::Secret, ClientType::Dotnet, "AZURE_POSTGRESQL_CONNECTIONSTRING") => {
            "Server=srv1.postgres.database.azure.com;Database=db1;Port=5432;Ssl Mode=Require;User Id=usr1;Password=PASSWORD1;".into()
        }
        ("postgresql" | "mysql", AuthType::ServicePrincipal | AuthType::WorkloadIdentity, ClientType::SpringBoot, "spring.datasource.username") => "usr1".into(),
        ("sql", AuthType::WorkloadIdentity, ClientType::Python, "AZURE_SQL_USER") => CLIENT_ID.into(),
        ("keyvault", _, ClientType::SpringBoot, "azure.keyvault.uri" | "spring.cloud.azure.keyvault.secret.endpoint") => {
            "https://vault1.vault.azure.net/".into()
        }
        ("appconfig", AuthType::WorkloadIdentity, _, "AZURE_APPCONFIGURATION_ENDPOINT") => "https://res1.azconfig.io".into(),
        _ => return None,
    };
    Some(v)
}

fn request(target: &str, auth: AuthType, client: ClientType) -> Value {
    let cat = catalog();
    let mut params = Map::new();
    let mut secrets = Map::new();
    for p in cat.template_parameters(target, auth, client) {
        let v = json!(sample(&p.name));
        if p.secret {
            secrets.insert(p.name.clone(), v);
        } else {
            params.insert(p.name.clone(), v);
        }
    }
    if auth == AuthType::WorkloadIdentity {
        params.insert("clientId".into(), json!(CLIENT_ID));
    }
    json!({"c1": {
        "targetType": target,
        "authType": auth.as_str(),
        "clientType": client.as_str(),
        "parameters": params,
        "secrets": secrets,
    }})
}

#[test]
fn documented_formats_for_every_client_type() {
    let cat = catalog();
    let targets = [
        "storage-blob",
        "storage-queue",
        "storage-table",
        "storage-file",
        "sql",
        "postgresql",
        "mysql",
        "redis",
        "keyvault",
        "servicebus",
        "eventhub",
        "cosmos-sql",
        "appconfig",
        "openai",
    ];
    let mut checked = 0;
    for target in targets {
        for auth in cat.auth_types(target) {
            if auth == AuthType::KeyvaultCsi {
                continue;
            }
            let clients = cat.client_types(target, auth);
            assert!(!clients.is_empty(), "{target}/{auth}");
            for client in clients {
                let set = validate_connections(&request(target, auth, client))
                    .unwrap_or_else(|e| panic!("{target}/{auth}/{client}: {e}"));
                let conn = &set.connections()[0];
                let documented = cat.keys(target, auth, client);
                assert_eq!(conn.keys.len(), documented.len());
                for (key, spec) in conn.keys.iter().zip(&documented) {
                    assert_eq!(key.name, spec.name);
                    assert_eq!(key.value.is_secret(), spec.secret);
                    let expected = corrected(target, auth, client, &spec.name)
                        .unwrap_or_else(|| oracle(target, &spec.example));
                    assert_eq!(
                        key.value.expose(),
                        expected,
                        "{target}/{auth}/{client}/{}: documented {:?}",
                        spec.name,
                        spec.example
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 500, "checked {checked} values");
}

fn render_one(target: &str, auth: AuthType, client: ClientType, key: &str) -> String {
    let set = validate_connections(&request(target, auth, client)).unwrap();
    set.connections()[0]
        .keys
        .iter()
        .find(|k| k.name == key)
        .unwrap_or_else(|| panic!("{key}"))
        .value
        .expose()
        .to_string()
}

#[test]
fn spot_checks_written_out() {
    assert_eq!(
        render_one(
            "storage-blob",
            AuthType::Secret,
            ClientType::Python,
            "AZURE_STORAGEBLOB_CONNECTIONSTRING"
        ),
        "DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=ACCOUNTKEY1;EndpointSuffix=core.windows.net"
    );
    assert_eq!(
        render_one(
            "redis",
            AuthType::Secret,
            ClientType::Python,
            "AZURE_REDIS_CONNECTIONSTRING"
        ),
        "rediss://:ACCESSKEY1@srv1.redis.cache.windows.net:6380/0"
    );
    assert_eq!(
        render_one(
            "servicebus",
            AuthType::Secret,
            ClientType::None,
            "AZURE_SERVICEBUS_CONNECTIONSTRING"
        ),
        "Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=policy1;SharedAccessKey=SHAREDKEY1"
    );
    assert_eq!(
        render_one(
            "mysql",
            AuthType::Secret,
            ClientType::Java,
            "AZURE_MYSQL_CONNECTIONSTRING"
        ),
        "jdbc:mysql://srv1.mysql.database.azure.com:3306/db1?sslmode=required&user=usr1&password=PASSWORD1"
    );
    assert_eq!(
        render_one(
            "keyvault",
            AuthType::WorkloadIdentity,
            ClientType::Python,
            "AZURE_KEYVAULT_RESOURCEENDPOINT"
        ),
        "https://vault1.vault.azure.net/"
    );
    assert_eq!(
        render_one(
            "openai",
            AuthType::WorkloadIdentity,
            ClientType::Python,
            "AZURE_OPENAI_BASE"
        ),
        "https://res1.openai.azure.com/"
    );
}

#[test]
fn url_contexts_percent_encode_credentials() {
    let v = json!({"pg": {
        "targetType": "postgresql", "authType": "secret", "clientType": "java",
        "parameters": {"server": "srv1", "database": "db1", "user": "usr1"},
        "secrets": {"password": "p@ss/w=rd&x"},
    }});
    let set = validate_connections(&v).unwrap();
    let cs = &set.connections()[0].keys[0];
    assert_eq!(
        cs.value.expose(),
        "jdbc:postgresql://srv1.postgres.database.azure.com:5432/db1?sslmode=require&user=usr1&password=p%40ss%2Fw%3Drd%26x"
    );
    // Key=value forms keep the password as given.
    let v = json!({"pg": {
        "targetType": "postgresql", "authType": "secret", "clientType": "python",
        "parameters": {"server": "srv1", "database": "db1", "user": "usr1"},
        "secrets": {"password": "p@ss"},
    }});
    let set = validate_connections(&v).unwrap();
    assert!(
        set.connections()[0].keys[0]
            .value
            .expose()
            .ends_with("password=p@ss")
    );
}

#[test]
fn whole_values_and_configurations() {
    let v = json!({"blob": {
        "targetType": "storage-blob", "authType": "secret", "clientType": "python",
        "secrets": {"AZURE_STORAGEBLOB_CONNECTIONSTRING": "UseDevelopmentStorage=true"},
        "configurations": {"EXTRA_FLAG": true, "PORT": 8080},
        "customizedKeys": {"AZURE_STORAGEBLOB_CONNECTIONSTRING": "BLOB_CS", "PORT": "APP_PORT"},
    }});
    let set = validate_connections(&v).unwrap_or_else(|e| panic!("{e}"));
    let keys = &set.connections()[0].keys;
    let get = |n: &str| keys.iter().find(|k| k.name == n).map(|k| k.value.clone());
    assert_eq!(
        get("BLOB_CS"),
        Some(KeyValue::Secret("UseDevelopmentStorage=true".into()))
    );
    assert_eq!(get("EXTRA_FLAG"), Some(KeyValue::Plain("true".into())));
    assert_eq!(get("APP_PORT"), Some(KeyValue::Plain("8080".into())));
    assert_eq!(get("AZURE_STORAGEBLOB_CONNECTIONSTRING"), None);
}

#[test]
fn second_connection_of_a_target_gets_the_infix() {
    let conn = |extra: Value| {
        let mut v = json!({
            "targetType": "storage-blob", "authType": "workloadIdentity", "clientType": "springBoot",
            "parameters": {"accountName": "a", "clientId": CLIENT_ID},
        });
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v
    };
    let set = validate_connections(&json!({"blob_a": conn(json!({})), "Conn_2": conn(json!({}))}))
        .unwrap();
    // "Conn_2" sorts before "blob_a" (byte order), so it is the first.
    let names = |c: &str| -> Vec<String> {
        set.get(c)
            .unwrap()
            .keys
            .iter()
            .map(|k| k.name.clone())
            .collect()
    };
    assert!(set.get("Conn_2").unwrap().is_first);
    assert!(names("blob_a").contains(&"spring.cloud.azure.storage.blob.account-name".to_string()));
    // Spring property names are not changed; environment-style keys would be.
    assert_eq!(
        sc_model::resolve::infixed_key("AZURE_STORAGEBLOB_RESOURCEENDPOINT", "blob_a"),
        "AZURE_STORAGEBLOB_BLOBA_RESOURCEENDPOINT"
    );
    // An explicit primary wins over the name order, in another namespace independently.
    let set = validate_connections(&json!({
        "a": conn(json!({"clientType": "python"})),
        "b": conn(json!({"clientType": "python", "primary": "true"})),
        "c": conn(json!({"clientType": "python", "namespace": "other"})),
    }))
    .unwrap();
    assert!(!set.get("a").unwrap().is_first);
    assert!(set.get("b").unwrap().is_first);
    assert!(set.get("c").unwrap().is_first);
    assert_eq!(
        set.get("a").unwrap().keys[0].name,
        "AZURE_STORAGEBLOB_A_RESOURCEENDPOINT"
    );
    assert_eq!(
        set.get("b").unwrap().keys[0].name,
        "AZURE_STORAGEBLOB_RESOURCEENDPOINT"
    );
}

#[test]
fn hash_is_stable_and_tracks_secrets() {
    let v = request("storage-blob", AuthType::Secret, ClientType::Python);
    let h1 = validate_connections(&v).unwrap().connections()[0]
        .hash
        .clone();
    let h2 = validate_connections(&v).unwrap().connections()[0]
        .hash
        .clone();
    assert_eq!(h1, h2);
    assert_eq!(h1.len(), 64);
    assert!(h1.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut v2 = v.clone();
    v2["c1"]["secrets"]["accountKey"] = json!("OTHER");
    let h3 = validate_connections(&v2).unwrap().connections()[0]
        .hash
        .clone();
    assert_ne!(h1, h3);
    let dbg = format!("{:?}", validate_connections(&v2).unwrap());
    assert!(!dbg.contains("OTHER"), "Debug shows a secret: {dbg}");
}

#[test]
fn parameters_of_other_client_types_are_accepted() {
    // cosmos-sql python (secret) uses no database name; springBoot does. Switching the
    // client type must not make the request invalid.
    let v = json!({"c": {
        "targetType": "cosmos-sql", "authType": "secret", "clientType": "python",
        "parameters": {"accountName": "acct1", "database": "db1"},
        "secrets": {"accountKey": "ACCOUNTKEY1"},
    }});
    let set = validate_connections(&v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.connections()[0].keys.len(), 1);
}

#[test]
fn drift_policy_parses_its_string_forms_and_repair_leaves_the_hash_alone() {
    use sc_model::DriftPolicy;
    let v = request("storage-blob", AuthType::Secret, ClientType::Python);
    let set = validate_connections(&v).unwrap();
    let plain = &set.connections()[0];
    assert_eq!(plain.spec.drift_policy, DriftPolicy::Repair);
    let spec = serde_json::to_value(&plain.spec).unwrap();
    assert!(spec.get("driftPolicy").is_none(), "{spec}");
    for (written, policy) in [
        ("Repair", DriftPolicy::Repair),
        ("repair", DriftPolicy::Repair),
        ("Report", DriftPolicy::Report),
        ("REPORT", DriftPolicy::Report),
    ] {
        let mut v2 = v.clone();
        v2["c1"]["driftPolicy"] = json!(written);
        let set = validate_connections(&v2).unwrap_or_else(|e| panic!("{written}: {e}"));
        let c = &set.connections()[0];
        assert_eq!(c.spec.drift_policy, policy, "{written}");
        // An explicit Repair is the default: same spec, same hash.
        assert_eq!(
            c.hash == plain.hash,
            policy == DriftPolicy::Repair,
            "{written}"
        );
    }
    let mut v2 = v.clone();
    v2["c1"]["drift_policy"] = json!("Report");
    let set = validate_connections(&v2).unwrap();
    assert_eq!(
        serde_json::to_value(&set.connections()[0].spec).unwrap()["driftPolicy"],
        "Report"
    );
}
