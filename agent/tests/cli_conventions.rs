//! The CLI conventions against the embedded cluster: `-o yaml` prints the value `-o json`
//! prints for every operator command, and `sc-agent run --log-format json` logs JSON lines.

mod common;

use common::*;
use serde_json::{Value, json};

const ACCOUNT_KEY: &str = "Y2xpLWNvbnZlbnRpb25zLWFjY291bnQta2V5";

/// Runs `args` with `-o json` and with `-o yaml`: both succeed (or both exit 1) and the YAML
/// reads back as the JSON value.
async fn yaml_equals_json(ks: &kubesim::Kubesim, args: &[&str]) -> Value {
    let json_out = cli(ks, &[args, &["-o", "json"]].concat()).await;
    let yaml_out = cli(ks, &[args, &["-o", "yaml"]].concat()).await;
    assert!(matches!(json_out.code, 0 | 1), "{json_out:?}");
    assert_eq!(json_out.code, yaml_out.code, "{args:?}: {yaml_out:?}");
    let from_json: Value = serde_json::from_str(&json_out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} -o json: {e}: {json_out:?}"));
    let from_yaml: Value = serde_saphyr::from_str(&yaml_out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} -o yaml: {e}: {yaml_out:?}"));
    assert_eq!(from_yaml, from_json, "{args:?}");
    assert!(
        !yaml_out.stdout.trim_start().starts_with(['{', '[']),
        "{yaml_out:?}"
    );
    for out in [&json_out, &yaml_out] {
        assert!(!out.stdout.contains(ACCOUNT_KEY) && !out.stderr.contains(ACCOUNT_KEY));
    }
    from_json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_output_is_the_json_value_and_the_agent_logs_json_lines() {
    let ks = start().await;
    let client = ks.client();
    let conns = json!({"blob_conn": {
        "namespace": "apps", "targetType": "storage-blob", "authType": "secret",
        "clientType": "python", "parameters": {"accountName": "clistore"},
        "secrets": {"accountKey": ACCOUNT_KEY},
    }});
    write_requests(&client, &conns, 1).await;
    let mut agent = Agent::start(&ks, "agent-json", &["--log-format", "json"]).await;
    agent.wait_ready().await;
    let hash = hash_of(&client, &conns, "blob_conn").await;
    wait_applied(&client, "blob_conn", &hash).await;
    wait_no_job(&client).await;

    let list = yaml_equals_json(&ks, &["list", "-n", NS]).await;
    assert_eq!(list[0]["name"], "blob_conn");
    let show = yaml_equals_json(&ks, &["show", "blob_conn", "-n", NS]).await;
    assert_eq!(show["status"]["appliedHash"], hash.as_str());
    let conf = yaml_equals_json(&ks, &["list-configuration", "blob_conn", "-n", NS]).await;
    assert!(
        conf["configurations"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{conf}"
    );
    let valid = yaml_equals_json(&ks, &["validate", "blob_conn", "-n", NS]).await;
    assert_eq!(valid["name"], "blob_conn");
    let snippet = yaml_equals_json(&ks, &["snippet", "blob_conn", "-n", NS]).await;
    assert_eq!(snippet["kind"], "Deployment");
    let wait = yaml_equals_json(
        &ks,
        &["wait", "-n", NS, "--revision", "1", "--timeout", "1m30s"],
    )
    .await;
    assert_eq!(wait["result"], "Ready");
    let reapply = yaml_equals_json(&ks, &["reapply", "blob_conn", "-n", NS]).await;
    assert_eq!(
        reapply,
        json!([{"name": "blob_conn", "result": "Requested"}])
    );

    assert_eq!(agent.terminate().await, Some(0), "{}", agent.log());
    let log = agent.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["target"].is_string(), "{line}");
        assert!(v["fields"].is_object(), "{line}");
        assert!(v["timestamp"].is_string(), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#""message":"starting""#) && l.contains(r#""level":"INFO""#)),
        "{log}"
    );
    assert!(!log.contains(ACCOUNT_KEY));
}
