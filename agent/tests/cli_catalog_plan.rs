//! The real sc-agent binary: `catalog` and `plan`.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn sc_agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sc-agent"))
        .args(args)
        .output()
        .expect("run sc-agent")
}

fn example(name: &str) -> String {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "examples", name]
        .iter()
        .collect();
    p.to_string_lossy().into_owned()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn catalog_json_lists_every_key() {
    let out = sc_agent(&["catalog", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 1481);
    for k in arr {
        for field in [
            "target",
            "authType",
            "clientType",
            "name",
            "description",
            "value",
        ] {
            assert!(k[field].is_string(), "{field} in {k}");
        }
        assert!(k["secret"].is_boolean());
    }
    assert!(arr.iter().any(|k| k["target"] == "storage-blob"
        && k["authType"] == "secret"
        && k["clientType"] == "python"
        && k["name"] == "AZURE_STORAGEBLOB_CONNECTIONSTRING"
        && k["secret"] == true));
}

#[test]
fn catalog_filters_accept_aliases() {
    let out = sc_agent(&[
        "catalog",
        "--target",
        "storageBlob",
        "--auth",
        "connection-string",
        "--client",
        "python",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    let out = sc_agent(&[
        "catalog",
        "--target",
        "servicebus",
        "--auth",
        "servicePrincipal",
        "--client",
        "springboot",
    ]);
    let table = text(&out.stdout);
    assert!(table.starts_with("TARGET"), "{table}");
    assert!(
        table.contains("spring.cloud.azure.client-secret") && table.contains("${clientSecret}")
    );
}

#[test]
fn catalog_rejects_unknown_filters() {
    let out = sc_agent(&["catalog", "--target", "storage-blop"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--target") && err.contains("did you mean storage-blob?"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

const EXAMPLE_SECRETS: [&str; 3] = [
    "ZXhhbXBsZS1hY2NvdW50LWtleQ==",
    "example-password",
    "example-client-secret",
];

#[test]
fn plan_shows_objects_without_secret_values() {
    for (files, expected) in [
        (
            vec!["secret.yaml"],
            vec![
                "sc-blobconn-secret",
                "sc-pgconn-secret",
                "spring.datasource.url",
            ],
        ),
        (
            vec!["service-principal.yaml", "service-principal-protected.yaml"],
            vec!["VAULT_URL", "sc-bus-secret"],
        ),
        (
            vec!["workload-identity.yaml"],
            vec![
                "sc-account-0a1b2c3d-0000-4000-8000-000000000001",
                "AZURE_OPENAI_BASE",
            ],
        ),
        (
            vec!["keyvault-csi.yaml"],
            vec![
                "SecretProviderClass",
                "sc-kvcsi-spc",
                "userAssignedIdentityID",
            ],
        ),
    ] {
        let mut args = vec!["plan".to_string()];
        for f in &files {
            args.push("-f".into());
            args.push(example(f));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sc_agent(&args);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{files:?}: {}", text(&out.stderr));
        for e in &expected {
            assert!(stdout.contains(e), "{files:?}: {e} missing from\n{stdout}");
        }
        for s in EXAMPLE_SECRETS {
            assert!(!stdout.contains(s), "{files:?}: secret value in the plan");
        }
        // The output is YAML that parses back.
        let v: Value = serde_saphyr::from_str(&stdout).unwrap();
        assert!(v["connections"].is_array());
    }
}

#[test]
fn plan_json_redacts_credentials() {
    let sp = example("service-principal.yaml");
    let protected = example("service-principal-protected.yaml");
    let out = sc_agent(&["plan", "-f", &sp, "-f", &protected, "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vault = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["connection"] == "vault")
        .unwrap();
    let secret = &vault["objects"][0];
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(
        secret["stringData"]["AZURE_KEYVAULT_CLIENTSECRET"],
        "<redacted>"
    );
    assert_eq!(
        secret["stringData"]["VAULT_URL"],
        "https://my-vault.vault.azure.net/"
    );
}

#[test]
fn plan_reports_every_error_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        "connections:\n  blob:\n    targetType: storage-blob\n    authType: secret\n    parameters:\n      accountKey: topsecretvalue1\n  kv:\n    targetType: keyvault\n    authType: secret\n",
    )
    .unwrap();
    // Without the protected file the service principal has no client secret.
    let sp = example("service-principal.yaml");
    let out = sc_agent(&["plan", "-f", values.to_str().unwrap(), "-f", &sp]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 4, "{err}");
    for l in &lines {
        assert!(l.starts_with("connections."), "{l}");
    }
    assert!(lines.contains(&"connections.blob.parameters.accountKey: accountKey is a secret input: move it to connections.blob.secrets.accountKey (the protected settings)"), "{err}");
    assert!(err.contains("connections.kv.authType: "));
    assert!(err.contains("connections.vault.secrets.clientSecret: missing"));
    assert!(err.contains("connections.bus.secrets.clientSecret: missing"));
    assert!(!err.contains("topsecretvalue1"));
}

#[test]
fn plan_refuses_guarded_namespaces_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    let conns = "connections:\n  sys:\n    namespace: kube-system\n    targetType: storage-blob\n    authType: secret\n    parameters:\n      accountName: acct\n    secrets:\n      accountKey: guardedsecretvalue1\n  rel:\n    namespace: sc-system\n    targetType: storage-blob\n    authType: secret\n    parameters:\n      accountName: acct\n    secrets:\n      accountKey: guardedsecretvalue1\n";
    std::fs::write(&values, conns).unwrap();
    let path = values.to_str().unwrap();
    // Without the release namespace only kube-* is known to be guarded.
    let out = sc_agent(&["plan", "-f", path]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("connections.sys.namespace: namespace \"kube-system\" is guarded"),
        "{err}"
    );
    assert!(err.contains("security.allowedNamespaces"), "{err}");
    assert!(!err.contains("connections.rel"), "{err}");
    assert!(!err.contains("guardedsecretvalue1"), "{err}");
    assert!(out.stdout.is_empty());
    let out = sc_agent(&["plan", "-f", path, "--namespace", "sc-system"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("connections.rel.namespace: "),
        "{}",
        text(&out.stderr)
    );
    // Named by security.allowedNamespaces or rbac.namespaces, both are planned.
    let allowed = dir.path().join("allowed.yaml");
    std::fs::write(
        &allowed,
        "security:\n  allowedNamespaces: [kube-system]\nrbac:\n  namespaces: [sc-system]\n",
    )
    .unwrap();
    let out = sc_agent(&[
        "plan",
        "-f",
        path,
        "-f",
        allowed.to_str().unwrap(),
        "--namespace",
        "sc-system",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("kube-system"));
}

#[test]
fn plan_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "connections:\n  a: [\n    password: hunter2secret\n").unwrap();
    let out = sc_agent(&["plan", "-f", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("not valid YAML"), "{err}");
    assert!(!err.contains("hunter2secret"), "{err}");
    let missing = dir.path().join("missing.yaml");
    let out = sc_agent(&["plan", "-f", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read the values file"));
}

#[test]
fn sql_workload_identity_is_listed_and_planned() {
    // The SQL tutorial: SQL Database, workload identity, Python.
    let out = sc_agent(&[
        "catalog",
        "--target",
        "sql",
        "--auth",
        "workloadIdentity",
        "--client",
        "python",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<(&str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["secret"], false, "{k}");
            (k["name"].as_str().unwrap(), k["value"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("AZURE_SQL_SERVER", "${server}.database.windows.net"),
            ("AZURE_SQL_PORT", "1433"),
            ("AZURE_SQL_DATABASE", "${database}"),
            ("AZURE_SQL_USER", "${clientId}"),
            ("AZURE_SQL_AUTHENTICATION", "ActiveDirectoryMsi"),
        ]
    );
    let out = sc_agent(&[
        "catalog",
        "--target",
        "sql",
        "--auth",
        "workload-identity",
        "--client",
        "python",
    ]);
    let table = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for name in [
        "AZURE_SQL_SERVER",
        "AZURE_SQL_PORT",
        "AZURE_SQL_DATABASE",
        "AZURE_SQL_USER",
        "AZURE_SQL_AUTHENTICATION",
    ] {
        assert!(table.contains(name), "{name} missing from\n{table}");
    }

    // The example values of the tutorial's scenario plan the Secret and the ServiceAccount.
    let out = sc_agent(&[
        "plan",
        "-f",
        &example("sql-workload-identity.yaml"),
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let objects = v["connections"][0]["objects"].as_array().unwrap();
    let secret = objects.iter().find(|o| o["kind"] == "Secret").unwrap();
    assert_eq!(secret["metadata"]["name"], "sc-sqlconn-secret");
    let client_id = "7d3e9c1a-5b2f-4e8d-9a6c-0f1e2d3c4b5a";
    assert_eq!(
        secret["stringData"],
        serde_json::json!({
            "AZURE_SQL_SERVER": "contoso-sql-server.database.windows.net",
            "AZURE_SQL_PORT": "1433",
            "AZURE_SQL_DATABASE": "contoso-orders",
            "AZURE_SQL_USER": client_id,
            "AZURE_SQL_AUTHENTICATION": "ActiveDirectoryMsi",
        })
    );
    let sa = objects
        .iter()
        .find(|o| o["kind"] == "ServiceAccount")
        .unwrap();
    assert_eq!(
        sa["metadata"]["name"],
        format!("sc-account-{client_id}").as_str()
    );
    assert_eq!(
        sa["metadata"]["annotations"]["azure.workload.identity/client-id"],
        client_id
    );
    // The identity's name of the example fills the federated credential's command.
    let command = v["connections"][0]["federatedCredential"]["command"]
        .as_str()
        .unwrap();
    assert!(
        command.contains("--identity-name contoso-orders-identity --resource-group <identity-resource-group> --issuer <oidc-issuer-url>"),
        "{command}"
    );
}

/// `-o yaml` of `args` reads back as the value `-o json` prints.
fn yaml_equals_json(args: &[&str]) -> Value {
    let json_out = sc_agent(&[args, &["-o", "json"]].concat());
    assert!(json_out.status.success(), "{}", text(&json_out.stderr));
    let yaml_out = sc_agent(&[args, &["-o", "yaml"]].concat());
    assert!(yaml_out.status.success(), "{}", text(&yaml_out.stderr));
    let from_json: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    let from_yaml: Value = serde_saphyr::from_str(&text(&yaml_out.stdout)).unwrap();
    assert_eq!(from_yaml, from_json, "{args:?}");
    assert_ne!(json_out.stdout, yaml_out.stdout, "YAML is not JSON text");
    from_json
}

#[test]
fn catalog_and_plan_print_the_same_value_as_yaml_and_json() {
    let keys = yaml_equals_json(&["catalog", "--target", "storage-blob"]);
    assert!(keys.as_array().is_some_and(|a| !a.is_empty()), "{keys}");
    let wi = example("workload-identity.yaml");
    let sp = example("service-principal.yaml");
    let protected = example("service-principal-protected.yaml");
    let plan = yaml_equals_json(&["plan", "-f", &wi]);
    assert!(
        plan["connections"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    yaml_equals_json(&["plan", "-f", &sp, "-f", &protected]);
}

#[test]
fn completion_scripts_are_valid_and_name_the_commands() {
    let shells = [
        ("bash", vec!["-n"]),
        ("zsh", vec!["-n"]),
        ("fish", vec!["--no-execute"]),
    ];
    for (shell, check) in shells {
        let out = sc_agent(&["completion", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(!script.trim().is_empty(), "{shell}");
        for sub in [
            "catalog",
            "plan",
            "list",
            "show",
            "list-configuration",
            "validate",
            "reapply",
            "snippet",
            "wait",
            "run",
            "completion",
        ] {
            assert!(script.contains(sub), "{shell} lacks {sub}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("sc-agent.{shell}"));
        std::fs::write(&file, &script).unwrap();
        match Command::new(shell).args(&check).arg(&file).output() {
            Ok(o) => assert!(
                o.status.success(),
                "{shell} refuses the script: {}",
                text(&o.stderr)
            ),
            // zsh and fish may be missing; bash never is where the tests run.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && shell != "bash" => {
                eprintln!("{shell} is not installed: its syntax check is skipped");
            }
            Err(e) => panic!("running {shell}: {e}"),
        }
    }
    // bash completes `sc-agent li` to the two commands that start so.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sc-agent.bash");
    std::fs::write(&file, sc_agent(&["completion", "bash"]).stdout).unwrap();
    let completed = Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$1"
               f=$(complete -p sc-agent | sed -E 's/.*-F ([^ ]+).*/\1/')
               COMP_WORDS=(sc-agent li); COMP_CWORD=1; COMP_LINE="sc-agent li"; COMP_POINT=11
               "$f" sc-agent li sc-agent
               printf '%s\n' "${COMPREPLY[@]}""#,
        )
        .arg("bash")
        .arg(&file)
        .output()
        .unwrap();
    let mut words: Vec<String> = text(&completed.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    words.sort();
    assert_eq!(
        words,
        ["list", "list-configuration"],
        "{}",
        text(&completed.stderr)
    );

    let bad = sc_agent(&["completion", "tcsh"]);
    assert!(!bad.status.success());
}

#[test]
fn duration_flags_take_go_durations_and_name_the_flag() {
    let out = sc_agent(&["wait", "--revision", "1", "--timeout", "5d"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--timeout"), "{err}");
    assert!(err.contains("1m30s"), "{err}");
    let out = sc_agent(&["run", "--drift-window", "2h30", "--config", "/nonexistent"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("--drift-window") && err.contains("1m30s"),
        "{err}"
    );
    let out = sc_agent(&[
        "run",
        "--lease-duration",
        "1500ms",
        "--config",
        "/nonexistent",
    ]);
    let err = text(&out.stderr);
    assert!(
        err.contains("--lease-duration") && err.contains("whole number of seconds"),
        "{err}"
    );
    // Accepted forms get past parsing: the missing configuration file is what fails.
    let out = sc_agent(&[
        "run",
        "--lease-duration=1m",
        "--lease-grace=5",
        "--debounce=1.5s",
        "--retry-base=10s",
        "--retry-max=1h2m3s",
        "--drift-window=600",
        "--drift-interval=1m30s",
        "--config=/nonexistent/config.json",
    ]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("invalid value"), "{err}");
    assert!(err.contains("/nonexistent/config.json"), "{err}");
}

#[test]
fn a_closed_reader_ends_the_command_quietly() {
    // The reader is gone before sc-agent writes: its first print meets a closed pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_sc-agent"))
        .args(["plan", "-f", &example("secret.yaml")])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.status.success());
}
