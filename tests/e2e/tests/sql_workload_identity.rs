//! The SQL tutorial's scenario (an app connects to Azure SQL Database with workload identity,
//! client type Python) on this product, with the real helm and kubectl on kubesim:
//!
//! - it installs; the Secret holds exactly the catalog's keys for sql + workloadIdentity +
//!   python, the ServiceAccount `sc-account-<clientId>` carries the client ID;
//! - the federated credential the user must create (issuer from the cluster's
//!   `/.well-known/openid-configuration`, subject, audience, the `az` command with the cluster's
//!   resource group from `Azure.Cluster.ResourceId`) is printed by `sc-agent wait` (what the
//!   install hook runs) and by `sc-agent show`, and by helm's NOTES with the configured issuer;
//! - the missing workload-identity webhook and Secrets Store CSI driver are findings in
//!   `sc-agent show` and `validate`, and a `PrerequisiteMissing` event; creating their
//!   MutatingWebhookConfiguration and CSIDriver clears them;
//! - the install hook's log, which helm 3 and 4 print after a successful install, holds the
//!   same command; `identityName` fills its `--identity-name`, `identityResourceGroup` its
//!   `--resource-group` (in `show`, `wait`, `plan` and the NOTES alike);
//! - `helm template` refuses an unknown target type naming the key (helm 3 and 4).

use sc_e2e::{
    Cluster, Helm, SETTLE, chart_dir, run_command, secret_value, tool, wait_for_state,
    with_both_helms,
};
use serde_json::{Value, json};
use std::process::Command;

const CLIENT_ID: &str = "7d3e9c1a-5b2f-4e8d-9a6c-0f1e2d3c4b5a";
const TENANT_ID: &str = "3f2e1d0c-9b8a-4765-8432-10fedcba9876";
/// The user-assigned identity's name (`identityName`), in the printed `az` command.
const IDENTITY_NAME: &str = "contoso-orders-identity";
const CLUSTER_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-e2e/providers/Microsoft.ContainerService/managedClusters/aks-e2e";

/// The documented keys of a target, auth type and client type (`sc-agent catalog`).
fn documented_keys(c: &Cluster, target: &str, auth: &str, client: &str) -> Vec<String> {
    let out = c.sc_agent(&[
        "catalog", "--target", target, "--auth", auth, "--client", client, "-o", "json",
    ]);
    let keys: Value = serde_json::from_str(out.ok()).expect("the catalog is JSON");
    let mut names: Vec<String> = keys
        .as_array()
        .expect("a list of keys")
        .iter()
        .map(|k| k["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

fn show(c: &Cluster, rel: &str, name: &str) -> Value {
    let out = c.sc_agent(&["show", name, "-n", rel, "-o", "json"]);
    serde_json::from_str(out.ok()).expect("sc-agent show -o json prints JSON")
}

fn prerequisite_objects(v: &Value) -> Vec<String> {
    v["prerequisites"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["object"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn sql_workload_identity(helm: Helm) {
    let c = Cluster::start();
    let app = c.create_namespace("sql-app");
    let rel = c.release_ns();
    let other = c.create_namespace("sql-pw");
    c.ensure_spc_crd();
    // The tutorial's other option, a password, beside it: its value must appear nowhere.
    let password = secret_value("sql-password");
    c.remember_secret(&password);
    let protected = json!({"connections": {"sql_pw": {"secrets": {"password": password}}}});
    let settings = json!({"connections": {
        "sql_pw": {
            "namespace": other, "targetType": "sql", "authType": "secret", "clientType": "python",
            "parameters": {"server": "contoso-sql-server", "database": "contoso-orders", "user": "app"},
        },
        "sql_conn": {
            "namespace": app, "targetType": "sql", "authType": "workloadIdentity",
            "clientType": "python", "identityName": IDENTITY_NAME,
            "parameters": {"server": "contoso-sql-server", "database": "contoso-orders",
                           "clientId": CLIENT_ID, "tenantId": TENANT_ID},
        },
        "kv_csi": {
            "namespace": app, "targetType": "keyvault", "authType": "keyvaultCsi",
            "parameters": {"keyvaultName": "contoso-vault", "tenantId": TENANT_ID,
                           "clientId": "22222222-3333-4444-5555-666666666666",
                           "objects": [{"name": "db-password", "type": "secret"}]},
        },
    }});
    let file = c.write_values("settings", &settings);
    let protected_file = c.write_values("protected", &protected);
    let install = c.helm_upgrade(
        helm,
        &[&file, &protected_file],
        &[
            "--set-string",
            &format!("Azure.Cluster.ResourceId={CLUSTER_ID}"),
        ],
    );
    let notes = install.ok().to_string();
    c.wait_job_gone();

    // The Secret: exactly the documented keys, the identity's client ID as the user.
    let secret = c.get("secret", &app, "sc-sqlconn-secret");
    let mut keys: Vec<String> = secret["data"]
        .as_object()
        .expect("the Secret has data")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        documented_keys(&c, "sql", "workloadIdentity", "python")
    );
    assert_eq!(
        keys,
        [
            "AZURE_SQL_AUTHENTICATION",
            "AZURE_SQL_DATABASE",
            "AZURE_SQL_PORT",
            "AZURE_SQL_SERVER",
            "AZURE_SQL_USER"
        ]
    );
    let decoded = |k: &str| {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD
            .decode(secret["data"][k].as_str().unwrap_or_default())
            .expect("base64");
        String::from_utf8(b).expect("UTF-8")
    };
    assert_eq!(
        decoded("AZURE_SQL_SERVER"),
        "contoso-sql-server.database.windows.net"
    );
    assert_eq!(decoded("AZURE_SQL_DATABASE"), "contoso-orders");
    assert_eq!(decoded("AZURE_SQL_USER"), CLIENT_ID);

    // The ServiceAccount carries the client ID.
    let sa_name = format!("sc-account-{CLIENT_ID}");
    let sa = c.get("serviceaccount", &app, &sa_name);
    assert_eq!(
        sa["metadata"]["annotations"]["azure.workload.identity/client-id"],
        CLIENT_ID
    );

    // The federated credential, with the issuer of the cluster's discovery document.
    let discovery: Value = serde_json::from_str(
        c.kubectl(&["get", "--raw", "/.well-known/openid-configuration"])
            .ok(),
    )
    .expect("the discovery document is JSON");
    let issuer = discovery["issuer"].as_str().expect("an issuer").to_string();
    let subject = format!("system:serviceaccount:{app}:{sa_name}");
    let wait = c.sc_agent(&["wait", "--revision", "1", "-n", &rel, "--timeout", "60s"]);
    let text = wait.ok();
    for want in [
        format!("issuer:   {issuer} (from the cluster's /.well-known/openid-configuration)"),
        format!("subject:  {subject}"),
        "audience: api://AzureADTokenExchange".to_string(),
        format!("az identity federated-credential create --name sc-{app}-"),
        format!(
            "--identity-name {IDENTITY_NAME} --resource-group rg-e2e --issuer {issuer} --subject {subject} --audiences api://AzureADTokenExchange"
        ),
    ] {
        assert!(
            text.contains(&want),
            "sc-agent wait does not print {want:?}:\n{text}"
        );
    }
    let v = show(&c, &rel, "sql_conn");
    let fc = &v["federatedCredential"];
    assert_eq!(fc["issuer"], issuer.as_str(), "{v}");
    assert_eq!(fc["subject"], subject.as_str(), "{v}");
    assert_eq!(fc["audience"], "api://AzureADTokenExchange");
    assert_eq!(fc["issuerSource"]["source"], "discovery");
    assert_eq!(v["cluster"]["resourceGroup"], "rg-e2e");
    let command = fc["command"].as_str().expect("a command");
    assert!(text.contains(command), "{text}");
    // The install hook's log, which helm prints after a successful install too (on stderr;
    // helm 4 as one `level=INFO msg="..."` line): the same command, with the issuer of the
    // discovery document and the subject.
    assert!(
        command.contains(&format!("--issuer {issuer} --subject {subject} "))
            && install.stderr.contains(command),
        "{}: the hook's log lacks {command}:\n{}",
        helm.tool(),
        install.all()
    );
    // The same credential in text form, and the Azure values recorded by the chart.
    let shown = c
        .sc_agent(&["show", "sql_conn", "-n", &rel])
        .ok()
        .to_string();
    assert!(
        shown.contains("Federated credential:") && shown.contains(&subject),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("Cluster:    {CLUSTER_ID} (resource group rg-e2e")),
        "{shown}"
    );
    // helm's NOTES: the subject and the command, the issuer a placeholder (none configured).
    assert!(
        notes.contains(&format!("sql_conn: subject {subject}")),
        "{notes}"
    );
    assert!(notes.contains("--issuer <oidc-issuer-url>"), "{notes}");
    assert!(
        notes.contains(&format!(
            "--identity-name {IDENTITY_NAME} --resource-group rg-e2e "
        )),
        "{notes}"
    );

    if !c.is_embedded() {
        sc_e2e::skipped(
            "sql_workload_identity",
            "not checked: the prerequisite findings (the test installs the webhook configuration and the CSI \
             driver, which a shared cluster may already have)",
        );
        return;
    }
    // Prerequisites: neither the webhook nor the CSI driver is installed.
    let webhook = "MutatingWebhookConfiguration azure-wi-webhook-mutating-webhook-configuration";
    let csi = "CSIDriver secrets-store.csi.k8s.io";
    assert_eq!(prerequisite_objects(&v), [webhook]);
    assert_eq!(v["prerequisites"][0]["missing"], true);
    assert_eq!(prerequisite_objects(&show(&c, &rel, "kv_csi")), [csi]);
    let validate = c.sc_agent(&["validate", "sql_conn", "-n", &rel]);
    assert_eq!(validate.code, 1, "{}", validate.all());
    assert!(validate.all().contains(webhook), "{}", validate.all());
    wait_for_state(
        SETTLE,
        "a PrerequisiteMissing event naming the webhook",
        || {
            let events = c
                .kubectl(&[
                    "get",
                    "events,events.events.k8s.io",
                    "-n",
                    &rel,
                    "-o",
                    "json",
                ])
                .all();
            if events.contains("PrerequisiteMissing") && events.contains(webhook) {
                Ok(())
            } else {
                Err("no PrerequisiteMissing event yet".to_string())
            }
        },
    );

    // Installing them clears the findings.
    c.apply(&json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "azure-wi-webhook-mutating-webhook-configuration"},
        "webhooks": [{
            "name": "mutation.azure-workload-identity.io",
            "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"service": {"name": "azure-wi-webhook-webhook-service",
                                         "namespace": "kube-system", "path": "/mutate-v1-pod"}},
        }],
    }));
    c.apply(&json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
        "metadata": {"name": "secrets-store.csi.k8s.io"},
        "spec": {"podInfoOnMount": true, "attachRequired": false},
    }));
    assert_eq!(
        prerequisite_objects(&show(&c, &rel, "sql_conn")),
        Vec::<String>::new()
    );
    assert_eq!(
        prerequisite_objects(&show(&c, &rel, "kv_csi")),
        Vec::<String>::new()
    );
    let validate = c.sc_agent(&["validate", "sql_conn", "-n", &rel]);
    assert_eq!(validate.code, 0, "{}", validate.all());
    c.leak_scan(&["sql_conn", "kv_csi", "sql_pw"]);
}

with_both_helms!(sql_workload_identity);

/// The configured issuer wins over discovery, in `sc-agent show` and in helm's NOTES, and the
/// credential's name is the same in both.
#[test]
fn configured_issuer_wins() {
    let c = Cluster::start();
    let app = c.create_namespace("sql-app");
    let rel = c.release_ns();
    let issuer = "https://westeurope.oic.prod-aks.azure.com/tenant/cluster/";
    let settings = json!({
        "connections": {"sql_conn": {
            "namespace": app, "targetType": "sql", "authType": "WORKLOAD_IDENTITY",
            "clientType": "Python", "identity_name": IDENTITY_NAME,
            "identityResourceGroup": "rg-identities",
            "parameters": {"server": "s1", "database": "d1", "clientId": CLIENT_ID},
        }},
        "workloadIdentity": {"oidcIssuerUrl": issuer},
    });
    let file = c.write_values("settings", &settings);
    let notes = c.helm_upgrade(Helm::V3, &[&file], &[]).ok().to_string();
    c.wait_job_gone();
    let v = show(&c, &rel, "sql_conn");
    assert_eq!(v["federatedCredential"]["issuer"], issuer, "{v}");
    assert_eq!(v["federatedCredential"]["issuerSource"]["source"], "value");
    let command = v["federatedCredential"]["command"]
        .as_str()
        .expect("a command");
    // The identity's name and resource group from the request (the flat alias too).
    assert!(
        command.contains(&format!(
            "--identity-name {IDENTITY_NAME} --resource-group rg-identities "
        )),
        "{command}"
    );
    assert!(
        notes.contains(command),
        "NOTES do not hold {command}:\n{notes}"
    );
    // `plan` without a cluster: the same command from the same values.
    let plan = c.sc_agent(&["plan", "-f", &file.display().to_string(), "-o", "json"]);
    let plan: Value = serde_json::from_str(plan.ok()).expect("the plan is JSON");
    assert_eq!(
        plan["connections"][0]["federatedCredential"]["command"],
        command
    );
}

/// `helm template` refuses an unknown target, auth or client type, naming the key.
#[test]
fn unknown_types_fail_at_install() {
    let home = tempfile::tempdir().expect("a temporary directory");
    for helm in [Helm::V3, Helm::V4] {
        for (key, value) in [
            ("targetType", "not-a-target"),
            ("authType", "password"),
            ("clientType", "cobol"),
        ] {
            let mut cmd = Command::new(tool(helm.tool()));
            cmd.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", home.path())
                .args([
                    "template",
                    "sc-extension",
                    &chart_dir().display().to_string(),
                    "-n",
                    "sc-system",
                ])
                .args(["--set-string", "connections.a.targetType=sql"])
                .args(["--set-string", "connections.a.authType=workloadIdentity"])
                .args(["--set-string", "connections.a.clientType=python"])
                .args(["--set-string", &format!("connections.a.{key}={value}")]);
            let out = run_command(cmd, &format!("{} template", helm.tool()), None);
            assert!(!out.success(), "{} accepted {key}={value}", helm.tool());
            let text = out.all();
            assert!(
                text.contains(&format!("connections.a.{key}"))
                    || text.contains(&format!("/connections/a/{key}")),
                "{}: the error does not name connections.a.{key}: {text}",
                helm.tool()
            );
        }
        // Every documented spelling form still passes.
        let mut cmd = Command::new(tool(helm.tool()));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .args([
                "template",
                "sc-extension",
                &chart_dir().display().to_string(),
                "-n",
                "sc-system",
            ])
            .args(["--set-string", "connections.a.targetType=StorageBlob"])
            .args(["--set-string", "connections.a.authType=Secret"])
            .args(["--set-string", "connections.a.clientType=.NET"])
            .args(["--set-string", "connections.b.target.type=sql"])
            .args(["--set-string", "connections.b.auth=workload-identity"]);
        let out = run_command(cmd, &format!("{} template", helm.tool()), None);
        assert!(out.success(), "{}", out.all());
    }
}
