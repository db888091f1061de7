//! scripts/arc-to-helm.py on examples/arc-extension.yaml, without a cluster: the protected
//! settings reach only a 0600 values file, and the flat `--set-string` flags render (helm 3
//! and helm 4) requests that sc-model resolves to exactly the objects of the same settings as
//! nested YAML.

use base64::Engine as _;
use sc_e2e::{Helm, chart_dir, expected, merged, run_command, tool, workspace_root};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// The documents `helm template` renders from templates/requests.yaml with `args`, as the
/// values the chart received: `{"connections": {...}}` with the protected `secrets` merged in.
fn rendered_values(helm: Helm, args: &[String]) -> Value {
    let mut cmd = Command::new(tool(helm.tool()));
    cmd.args([
        "template",
        "sc",
        &chart_dir().display().to_string(),
        "-n",
        "sc-system",
    ])
    .args(["--show-only", "templates/requests.yaml"])
    .args(args);
    let out = run_command(cmd, &format!("{} template", helm.tool()), None);
    let mut public = Value::Null;
    let mut protected = Value::Null;
    for doc in out.ok().split("\n---") {
        let v = sc_model::parse_yaml(doc).expect("helm rendered YAML");
        let data = |key: &str| v[key]["connections.json"].as_str().map(str::to_string);
        match v["kind"].as_str() {
            Some("ConfigMap") => {
                public = serde_json::from_str(&data("data").expect("connections.json")).unwrap()
            }
            Some("Secret") => {
                let b = base64::engine::general_purpose::STANDARD
                    .decode(data("data").expect("connections.json"))
                    .expect("base64");
                protected = serde_json::from_slice(&b).unwrap();
            }
            _ => {}
        }
    }
    merged(&[
        &json!({"connections": public}),
        &json!({"connections": protected}),
    ])
}

#[test]
fn arc_settings_render_the_objects_of_nested_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let protected = dir.path().join("protected.json");
    let mut cmd = Command::new(tool("python"));
    cmd.arg(workspace_root().join("scripts/arc-to-helm.py"))
        .arg("-0")
        .arg(format!("--protected-values={}", protected.display()))
        .arg(workspace_root().join("examples/arc-extension.yaml"));
    let out = run_command(cmd, "arc-to-helm.py", None);
    let args: Vec<String> = out
        .ok()
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();

    let key = "ZXhhbXBsZS1hY2NvdW50LWtleQ==";
    assert!(
        args.iter().all(|a| !a.contains(key)),
        "a protected value is on the command line: {args:?}"
    );
    let mode = std::fs::metadata(&protected).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode of the protected values file");
    // A comma in a value is escaped so --set-string keeps it.
    assert!(
        args.contains(&"connections.storage_conn.configurations.AZURE_STORAGEBLOB_CONTAINER=uploads\\,archive".to_string()),
        "{args:?}"
    );
    // A value starting with a brace is escaped, not read as a list.
    assert!(
        args.contains(&r#"connections.storage_conn.configurations.APP_STORAGE_OPTIONS=\{"tier":"hot"\,"retries":3}"#.to_string()),
        "{args:?}"
    );

    let nested = json!({"connections": {"storage_conn": {
        "namespace": "default",
        "targetType": "storage-blob",
        "authType": "secret",
        "clientType": "python",
        "parameters": {"accountName": "mystorageacct"},
        "configurations": {"AZURE_STORAGEBLOB_CONTAINER": "uploads,archive",
                               "APP_STORAGE_OPTIONS": "{\"tier\":\"hot\",\"retries\":3}"},
        "primary": true,
        "deletionPolicy": "Retain",
        "secrets": {"accountKey": key},
    }}});
    let want = expected(&nested);
    for helm in [Helm::V3, Helm::V4] {
        let got = expected(&rendered_values(helm, &args));
        let (w, g) = (&want.connections()[0], &got.connections()[0]);
        assert_eq!(g.hash, w.hash, "{helm:?}: content hash of the Arc settings");
        assert_eq!(
            g.desired().secret,
            w.desired().secret,
            "{helm:?}: the Secret"
        );
    }
}
