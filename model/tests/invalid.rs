//! Table-driven invalid requests: each must be rejected with an error naming the key path.

use sc_model::{merge_values, validate_connections};
use serde_json::{Value, json};

const CID: &str = "11111111-1111-1111-1111-111111111111";
const CID2: &str = "99999999-1111-1111-1111-111111111111";
const TID: &str = "22222222-2222-2222-2222-222222222222";

fn secret_base() -> Value {
    json!({"c1": {
        "targetType": "storage-blob", "authType": "secret", "clientType": "python",
        "parameters": {"accountName": "acct"}, "secrets": {"accountKey": "k3y"},
    }})
}

fn wi_base() -> Value {
    json!({"c1": {
        "targetType": "storage-blob", "authType": "workloadIdentity", "clientType": "python",
        "parameters": {"accountName": "acct", "clientId": CID},
    }})
}

fn sp_base() -> Value {
    json!({"c1": {
        "targetType": "keyvault", "authType": "servicePrincipal", "clientType": "python",
        "parameters": {"keyvaultName": "vault1", "clientId": CID, "tenantId": TID},
        "secrets": {"clientSecret": "s3cret"},
    }})
}

fn csi_base() -> Value {
    json!({"c1": {
        "targetType": "keyvault", "authType": "keyvaultCsi",
        "parameters": {"keyvaultName": "vault1", "clientId": CID, "tenantId": TID,
                       "objects": [{"name": "db-password"}]},
    }})
}

fn with(mut base: Value, overlay: Value) -> Value {
    merge_values(&mut base, overlay);
    base
}

fn c1(v: Value) -> Value {
    json!({ "c1": v })
}

fn cases() -> Vec<(&'static str, Value, &'static str)> {
    let long_name = "a".repeat(61);
    let long_ns = "n".repeat(64);
    let long_cron = "c".repeat(53);
    vec![
        (
            "unknown target",
            with(secret_base(), c1(json!({"targetType": "storage-blop"}))),
            "connections.c1.targetType",
        ),
        (
            "numeric target",
            with(secret_base(), c1(json!({"targetType": 5}))),
            "connections.c1.targetType",
        ),
        (
            "target as list",
            with(secret_base(), c1(json!({"targetType": ["sql"]}))),
            "connections.c1.targetType",
        ),
        (
            "target map with unknown field",
            json!({"c1": {"target": {"type": "storage-blob", "kind": "x"}, "authType": "secret", "parameters": {"accountName": "a"}, "secrets": {"accountKey": "k"}}}),
            "connections.c1.target.kind",
        ),
        (
            "missing target",
            with(secret_base(), c1(json!({"targetType": null}))),
            "connections.c1.targetType",
        ),
        (
            "missing auth",
            with(secret_base(), c1(json!({"authType": null}))),
            "connections.c1.authType",
        ),
        (
            "unknown auth",
            with(secret_base(), c1(json!({"authType": "password"}))),
            "connections.c1.authType",
        ),
        (
            "keyvault with secret",
            json!({"c1": {"targetType": "keyvault", "authType": "secret"}}),
            "connections.c1.authType",
        ),
        (
            "storage-file with service principal",
            json!({"c1": {"targetType": "storage-file", "authType": "servicePrincipal"}}),
            "connections.c1.authType",
        ),
        (
            "csi on storage",
            with(secret_base(), c1(json!({"authType": "keyvaultCsi"}))),
            "connections.c1.authType",
        ),
        (
            "fabric-sql is managed identity only",
            json!({"c1": {"targetType": "fabric-sql", "authType": "secret"}}),
            "connections.c1.authType",
        ),
        (
            "storage-file with workload identity",
            json!({"c1": {"targetType": "storage-file", "authType": "workloadIdentity"}}),
            "connections.c1.authType",
        ),
        (
            "sql workload identity without the identity's client id",
            json!({"c1": {"targetType": "sql", "authType": "workloadIdentity",
                "clientType": "python",
                "parameters": {"server": "srv1", "database": "db1"}}}),
            "connections.c1.parameters.clientId",
        ),
        (
            "mysql workload identity without the database user",
            json!({"c1": {"targetType": "mysql", "authType": "workloadIdentity",
                "clientType": "python",
                "parameters": {"server": "srv1", "database": "db1",
                    "clientId": "11111111-1111-1111-1111-111111111111"}}}),
            "connections.c1.parameters.user",
        ),
        (
            "postgresql workload identity with a password",
            json!({"c1": {"targetType": "postgresql", "authType": "workloadIdentity",
                "parameters": {"server": "srv1", "database": "db1", "user": "u1",
                    "clientId": "11111111-1111-1111-1111-111111111111"},
                "secrets": {"password": "PASSWORD1"}}}),
            "connections.c1.secrets.password",
        ),
        (
            "unknown client",
            with(secret_base(), c1(json!({"clientType": "cobol"}))),
            "connections.c1.clientType",
        ),
        (
            "client none not documented",
            json!({"c1": {"targetType": "eventhub", "authType": "secret"}}),
            "connections.c1.clientType",
        ),
        (
            "django not documented for blob",
            with(secret_base(), c1(json!({"clientType": "django"}))),
            "connections.c1.clientType",
        ),
        (
            "kafka spring boot for service bus",
            json!({"c1": {"targetType": "servicebus", "authType": "secret", "clientType": "kafkaSpringBoot"}}),
            "connections.c1.clientType",
        ),
        (
            "unknown field",
            with(secret_base(), c1(json!({"namespce": "x"}))),
            "connections.c1.namespce",
        ),
        (
            "unknown field param",
            with(secret_base(), c1(json!({"param": {}}))),
            "connections.c1.param",
        ),
        (
            "field given twice by alias",
            with(secret_base(), c1(json!({"target": "sql"}))),
            "connections.c1.target",
        ),
        (
            "upper-case namespace",
            with(secret_base(), c1(json!({"namespace": "Default"}))),
            "connections.c1.namespace",
        ),
        (
            "namespace too long",
            with(secret_base(), c1(json!({"namespace": long_ns}))),
            "connections.c1.namespace",
        ),
        (
            "namespace starting with dash",
            with(secret_base(), c1(json!({"namespace": "-ns"}))),
            "connections.c1.namespace",
        ),
        (
            "namespace as map",
            with(secret_base(), c1(json!({"namespace": {"a": 1}}))),
            "connections.c1.namespace",
        ),
        (
            "dash in connection name",
            json!({"my-conn": secret_base()["c1"].clone()}),
            "connections.my-conn",
        ),
        (
            "connection name too long",
            json!({ long_name.clone(): secret_base()["c1"].clone() }),
            "connections.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ),
        (
            "connection name without alphanumerics",
            json!({"___": secret_base()["c1"].clone()}),
            "connections.___",
        ),
        (
            "connection is a string",
            json!({"c1": "storage-blob"}),
            "connections.c1",
        ),
        (
            "connections is a list",
            json!([{"name": "c1"}]),
            "connections",
        ),
        (
            "missing parameter",
            with(
                secret_base(),
                c1(json!({"parameters": {"accountName": null}})),
            ),
            "connections.c1.parameters.accountName",
        ),
        (
            "missing secret",
            with(secret_base(), c1(json!({"secrets": null}))),
            "connections.c1.secrets.accountKey",
        ),
        (
            "secret in parameters",
            with(
                secret_base(),
                c1(json!({"parameters": {"accountKey": "k"}})),
            ),
            "connections.c1.parameters.accountKey",
        ),
        (
            "secret in parameters of unknown target",
            with(
                secret_base(),
                c1(json!({"targetType": "nope", "parameters": {"password": "p"}})),
            ),
            "connections.c1.parameters.password",
        ),
        (
            "plain input in secrets",
            with(secret_base(), c1(json!({"secrets": {"accountName": "a"}}))),
            "connections.c1.secrets.accountName",
        ),
        (
            "misspelled parameter",
            with(
                secret_base(),
                c1(json!({"parameters": {"acountName": "a"}})),
            ),
            "connections.c1.parameters.acountName",
        ),
        (
            "unknown secret",
            with(secret_base(), c1(json!({"secrets": {"foo": "x"}}))),
            "connections.c1.secrets.foo",
        ),
        (
            "empty parameter",
            with(
                secret_base(),
                c1(json!({"parameters": {"accountName": ""}})),
            ),
            "connections.c1.parameters.accountName",
        ),
        (
            "empty secret",
            with(secret_base(), c1(json!({"secrets": {"accountKey": ""}}))),
            "connections.c1.secrets.accountKey",
        ),
        (
            "parameter as list",
            with(
                secret_base(),
                c1(json!({"parameters": {"accountName": ["a"]}})),
            ),
            "connections.c1.parameters.accountName",
        ),
        (
            "parameters as string",
            with(secret_base(), c1(json!({"parameters": "accountName=a"}))),
            "connections.c1.parameters",
        ),
        (
            "secret as map",
            with(
                secret_base(),
                c1(json!({"secrets": {"accountKey": {"v": 1}}})),
            ),
            "connections.c1.secrets.accountKey",
        ),
        (
            "workload identity without client id",
            with(wi_base(), c1(json!({"parameters": {"clientId": null}}))),
            "connections.c1.parameters.clientId",
        ),
        (
            "malformed client id",
            with(wi_base(), c1(json!({"parameters": {"clientId": "abc"}}))),
            "connections.c1.parameters.clientId",
        ),
        (
            "malformed tenant id",
            with(
                wi_base(),
                c1(json!({"parameters": {"tenantId": "11111111-1111-1111-1111-11111111111z"}})),
            ),
            "connections.c1.parameters.tenantId",
        ),
        (
            "client secret missing",
            with(sp_base(), c1(json!({"secrets": null}))),
            "connections.c1.secrets.clientSecret",
        ),
        (
            "service principal tenant not a guid",
            with(
                sp_base(),
                c1(json!({"parameters": {"tenantId": "contoso.onmicrosoft.com"}})),
            ),
            "connections.c1.parameters.tenantId",
        ),
        (
            "service principal without tenant",
            with(sp_base(), c1(json!({"parameters": {"tenantId": null}}))),
            "connections.c1.parameters.tenantId",
        ),
        (
            "secret key in configurations",
            with(
                secret_base(),
                c1(json!({"configurations": {"AZURE_STORAGEBLOB_CONNECTIONSTRING": "x"}})),
            ),
            "connections.c1.configurations.AZURE_STORAGEBLOB_CONNECTIONSTRING",
        ),
        (
            "bad configuration key",
            with(
                secret_base(),
                c1(json!({"configurations": {"BAD KEY": "x"}})),
            ),
            "connections.c1.configurations.BAD KEY",
        ),
        (
            "configurations as list",
            with(secret_base(), c1(json!({"configurations": ["A=1"]}))),
            "connections.c1.configurations",
        ),
        (
            "customized unknown key",
            with(
                secret_base(),
                c1(json!({"customizedKeys": {"AZURE_STORAGEBLOB_CONNECTIONSTRIN": "X"}})),
            ),
            "connections.c1.customizedKeys.AZURE_STORAGEBLOB_CONNECTIONSTRIN",
        ),
        (
            "customized to a bad key",
            with(
                secret_base(),
                c1(json!({"customizedKeys": {"AZURE_STORAGEBLOB_CONNECTIONSTRING": "a b"}})),
            ),
            "connections.c1.customizedKeys.AZURE_STORAGEBLOB_CONNECTIONSTRING",
        ),
        (
            "customized onto a configuration",
            with(
                secret_base(),
                c1(
                    json!({"configurations": {"EXTRA": "1"}, "customizedKeys": {"AZURE_STORAGEBLOB_CONNECTIONSTRING": "EXTRA"}}),
                ),
            ),
            "connections.c1.customizedKeys.AZURE_STORAGEBLOB_CONNECTIONSTRING",
        ),
        (
            "two keys renamed to one",
            with(
                sp_base(),
                c1(
                    json!({"customizedKeys": {"AZURE_KEYVAULT_CLIENTID": "ID", "AZURE_KEYVAULT_TENANTID": "ID"}}),
                ),
            ),
            "connections.c1.customizedKeys.AZURE_KEYVAULT_TENANTID",
        ),
        (
            "customized onto a documented key",
            with(
                sp_base(),
                c1(
                    json!({"customizedKeys": {"AZURE_KEYVAULT_CLIENTID": "AZURE_KEYVAULT_TENANTID"}}),
                ),
            ),
            "connections.c1.customizedKeys.AZURE_KEYVAULT_CLIENTID",
        ),
        (
            "workload kind job",
            with(
                secret_base(),
                c1(json!({"workloads": [{"kind": "Job", "name": "x"}]})),
            ),
            "connections.c1.workloads[0].kind",
        ),
        (
            "workload kind pod",
            with(
                secret_base(),
                c1(json!({"workloads": [{"kind": "Pod", "name": "x"}]})),
            ),
            "connections.c1.workloads[0].kind",
        ),
        (
            "workload kind misspelled",
            with(
                secret_base(),
                c1(json!({"workloads": [{"kind": "Deploymnt", "name": "x"}]})),
            ),
            "connections.c1.workloads[0].kind",
        ),
        (
            "workload without kind",
            with(secret_base(), c1(json!({"workloads": [{"name": "x"}]}))),
            "connections.c1.workloads[0].kind",
        ),
        (
            "workload without name",
            with(
                secret_base(),
                c1(json!({"workloads": [{"kind": "Deployment"}]})),
            ),
            "connections.c1.workloads[0].name",
        ),
        (
            "workload bad name",
            with(
                secret_base(),
                c1(json!({"workloads": [{"kind": "Deployment", "name": "Web_App"}]})),
            ),
            "connections.c1.workloads[0].name",
        ),
        (
            "cron job name too long",
            with(
                secret_base(),
                c1(json!({"workloads": [{"kind": "CronJob", "name": long_cron}]})),
            ),
            "connections.c1.workloads[0].name",
        ),
        (
            "workload listed twice",
            with(
                secret_base(),
                c1(
                    json!({"workloads": [{"kind": "Deployment", "name": "w"}, {"kind": "deployment", "name": "w"}]}),
                ),
            ),
            "connections.c1.workloads[1]",
        ),
        (
            "workload unknown field",
            with(
                secret_base(),
                c1(json!({"workloads": [{"kind": "Deployment", "name": "w", "namespace": "x"}]})),
            ),
            "connections.c1.workloads[0].namespace",
        ),
        (
            "workload string without kind",
            with(secret_base(), c1(json!({"workloads": "web"}))),
            "connections.c1.workloads[0]",
        ),
        (
            "workloads as number",
            with(secret_base(), c1(json!({"workloads": 3}))),
            "connections.c1.workloads",
        ),
        (
            "workload entry as number",
            with(secret_base(), c1(json!({"workloads": [3]}))),
            "connections.c1.workloads[0]",
        ),
        (
            "bad deletion policy",
            with(secret_base(), c1(json!({"deletionPolicy": "Keep"}))),
            "connections.c1.deletionPolicy",
        ),
        (
            "bad drift policy",
            with(secret_base(), c1(json!({"driftPolicy": "Ignore"}))),
            "connections.c1.driftPolicy",
        ),
        (
            "bad primary",
            with(secret_base(), c1(json!({"primary": "maybe"}))),
            "connections.c1.primary",
        ),
        (
            "bad restartOnChange",
            with(secret_base(), c1(json!({"restartOnChange": "sometimes"}))),
            "connections.c1.restartOnChange",
        ),
        (
            "restartOnChange given twice",
            with(
                secret_base(),
                c1(json!({"restartOnChange": "true", "restart_on_change": false})),
            ),
            "connections.c1.restart_on_change",
        ),
        (
            "two primaries",
            json!({"a": with(secret_base(), c1(json!({"primary": true})))["c1"].clone(), "b": with(secret_base(), c1(json!({"primary": "true"})))["c1"].clone()}),
            "connections.b.primary",
        ),
        (
            "secret name collision",
            json!({"a_b": secret_base()["c1"].clone(), "ab": secret_base()["c1"].clone()}),
            "connections.ab",
        ),
        (
            "spc name collision",
            json!({"kv_1": csi_base()["c1"].clone(), "kv1": csi_base()["c1"].clone()}),
            "connections.kv_1",
        ),
        (
            "one workload, two identities",
            json!({
                "a": with(wi_base(), c1(json!({"workloads": [{"kind": "Deployment", "name": "web"}]})))["c1"].clone(),
                "b": with(wi_base(), c1(json!({"parameters": {"clientId": CID2}, "workloads": [{"kind": "Deployment", "name": "web"}]})))["c1"].clone(),
            }),
            "connections.b.workloads[0]",
        ),
        (
            "one identity, two tenants",
            json!({
                "a": with(wi_base(), c1(json!({"parameters": {"tenantId": TID}})))["c1"].clone(),
                "b": with(wi_base(), c1(json!({"parameters": {"tenantId": "33333333-2222-2222-2222-222222222222"}})))["c1"].clone(),
            }),
            "connections.b.parameters.tenantId",
        ),
        (
            "csi bad object version",
            with(
                csi_base(),
                c1(json!({"parameters": {"objects": [{"name": "x", "version": "1 or 2"}]}})),
            ),
            "connections.c1.parameters.objects[0].version",
        ),
        (
            "csi bad key vault name",
            with(
                csi_base(),
                c1(json!({"parameters": {"keyvaultName": "my_vault"}})),
            ),
            "connections.c1.parameters.keyvaultName",
        ),
        (
            "csi without objects",
            with(csi_base(), c1(json!({"parameters": {"objects": null}}))),
            "connections.c1.parameters.objects",
        ),
        (
            "csi bad object type",
            with(
                csi_base(),
                c1(json!({"parameters": {"objects": [{"name": "x", "type": "password"}]}})),
            ),
            "connections.c1.parameters.objects[0].type",
        ),
        (
            "csi bad object name",
            with(
                csi_base(),
                c1(json!({"parameters": {"objects": "secret/db_password"}})),
            ),
            "connections.c1.parameters.objects[0].name",
        ),
        (
            "csi object unknown field",
            with(
                csi_base(),
                c1(json!({"parameters": {"objects": [{"name": "x", "vesion": "1"}]}})),
            ),
            "connections.c1.parameters.objects[0].vesion",
        ),
        (
            "csi duplicate object",
            with(
                csi_base(),
                c1(json!({"parameters": {"objects": "a,secret/a"}})),
            ),
            "connections.c1.parameters.objects[1]",
        ),
        (
            "csi without key vault name",
            with(
                csi_base(),
                c1(json!({"parameters": {"keyvaultName": null}})),
            ),
            "connections.c1.parameters.keyvaultName",
        ),
        (
            "csi key vault name too long",
            with(
                csi_base(),
                c1(json!({"parameters": {"keyvaultName": "a-very-long-key-vault-name-1"}})),
            ),
            "connections.c1.parameters.keyvaultName",
        ),
        (
            "csi without tenant",
            with(csi_base(), c1(json!({"parameters": {"tenantId": null}}))),
            "connections.c1.parameters.tenantId",
        ),
        (
            "csi unknown parameter",
            with(csi_base(), c1(json!({"parameters": {"vaultName": "x"}}))),
            "connections.c1.parameters.vaultName",
        ),
        (
            "csi with secrets",
            with(csi_base(), c1(json!({"secrets": {"clientSecret": "x"}}))),
            "connections.c1.secrets.clientSecret",
        ),
        (
            "csi with customized keys",
            with(csi_base(), c1(json!({"customizedKeys": {"A": "B"}}))),
            "connections.c1.customizedKeys.A",
        ),
        (
            "csi bad boolean",
            with(
                csi_base(),
                c1(json!({"parameters": {"useWorkloadIdentity": "maybe"}})),
            ),
            "connections.c1.parameters.useWorkloadIdentity",
        ),
        (
            "objects on a non-csi connection",
            with(
                sp_base(),
                c1(json!({"parameters": {"objects": "secret/a"}})),
            ),
            "connections.c1.parameters.objects",
        ),
        (
            "sql missing password",
            json!({"c1": {"targetType": "sql", "authType": "secret", "clientType": "python", "parameters": {"server": "s", "database": "d", "user": "u"}}}),
            "connections.c1.secrets.password",
        ),
        (
            "service bus missing namespace",
            json!({"c1": {"targetType": "servicebus", "authType": "secret", "secrets": {"sharedAccessKey": "k"}, "parameters": {"sharedAccessKeyName": "p"}}}),
            "connections.c1.parameters.namespaceName",
        ),
        (
            "newline in a parameter",
            with(
                secret_base(),
                c1(json!({"parameters": {"accountName": "acct\nAZURE_X=1"}})),
            ),
            "connections.c1.parameters.accountName",
        ),
        (
            "control character in a configuration value",
            with(
                secret_base(),
                c1(json!({"configurations": {"EXTRA": "a\u{0}b"}})),
            ),
            "connections.c1.configurations.EXTRA",
        ),
        (
            "oversized parameter",
            with(
                secret_base(),
                c1(json!({"parameters": {"accountName": "a".repeat(2 << 20)}})),
            ),
            "connections.c1.parameters.accountName",
        ),
        (
            "oversized secret",
            with(
                secret_base(),
                c1(json!({"secrets": {"accountKey": "k".repeat(65537)}})),
            ),
            "connections.c1.secrets.accountKey",
        ),
    ]
}

#[test]
fn every_invalid_request_names_its_key() {
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    for (what, connections, path) in cases {
        let errors = match validate_connections(&connections) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => e,
        };
        assert!(
            errors
                .errors()
                .iter()
                .any(|e| e.path == path && !e.message.is_empty()),
            "{what}: no error at {path}; got:\n{errors}"
        );
        for e in errors.errors() {
            assert!(!e.message.ends_with('.'), "{what}: {e}");
            for secret in ["k3y", "s3cret"] {
                assert!(
                    !e.to_string().contains(secret),
                    "{what}: error shows a secret: {e}"
                );
            }
        }
    }
}

#[test]
fn the_bases_are_valid() {
    for base in [secret_base(), wi_base(), sp_base(), csi_base()] {
        if let Err(e) = validate_connections(&base) {
            panic!("{e}");
        }
    }
}

#[test]
fn suggestions_name_the_closest_match() {
    let e = validate_connections(&with(
        secret_base(),
        c1(json!({"targetType": "storage-blop"})),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("did you mean storage-blob?"), "{e}");
    let e = validate_connections(&with(secret_base(), c1(json!({"namespce": "x"})))).unwrap_err();
    assert!(e.to_string().contains("did you mean namespace?"), "{e}");
}
