//! Scenario 4: the Arc extension resource of examples/arc-extension.yaml, turned into
//! `--set-string` flags and a protected values file by scripts/arc-to-helm.py, materializes
//! the same objects as the same settings given as nested YAML.

use sc_e2e::{
    Cluster, Helm, MANAGED_SELECTOR, RELEASE, SETTLE, secret_value, tool, wait_until,
    with_both_helms, workspace_root,
};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// The flags of the Arc resource (with the account key replaced by `key`) and the path of its
/// protected values file.
fn arc_flags(c: &Cluster, key: &str) -> (Vec<String>, std::path::PathBuf) {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("examples/arc-extension.yaml"))
        .expect("reading examples/arc-extension.yaml");
    let original = "\"ZXhhbXBsZS1hY2NvdW50LWtleQ==\"";
    assert!(
        text.contains(original),
        "examples/arc-extension.yaml no longer holds the example account key"
    );
    let resource = c.dir().join("arc-extension.yaml");
    std::fs::write(&resource, text.replace(original, &format!("\"{key}\"")))
        .expect("writing the resource");
    let protected = c.dir().join("arc-protected.json");
    let mut cmd = Command::new(tool("python"));
    cmd.arg(root.join("scripts/arc-to-helm.py"))
        .arg("-0")
        .arg(format!("--protected-values={}", protected.display()))
        .arg(&resource);
    let out = sc_e2e::run_command(cmd, "arc-to-helm.py", None);
    let printed = out.ok().to_string();
    assert!(
        !printed.contains(key),
        "arc-to-helm.py put a protected value on the command line"
    );
    let mode = std::fs::metadata(&protected)
        .expect("the protected values file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode of the protected values file");
    let args: Vec<String> = printed
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    assert!(
        args.iter().any(|a| a == "--set-string"),
        "no --set-string flag: {args:?}"
    );
    // The protected settings are passed as the file, last.
    assert_eq!(
        args[args.len() - 2..],
        ["-f".to_string(), protected.display().to_string()]
    );
    (args[..args.len() - 2].to_vec(), protected)
}

/// The same connection as nested YAML values, with typed scalars.
fn nested(ns: &str, key: &str) -> (Value, Value) {
    (
        json!({"connections": {"storage_conn": {
            "namespace": ns,
            "targetType": "storage-blob",
            "authType": "secret",
            "clientType": "python",
            "parameters": {"accountName": "mystorageacct"},
            "configurations": {"AZURE_STORAGEBLOB_CONTAINER": "uploads,archive",
                               "APP_STORAGE_OPTIONS": "{\"tier\":\"hot\",\"retries\":3}"},
            "primary": true,
            "deletionPolicy": "Retain",
        }}}),
        json!({"connections": {"storage_conn": {"secrets": {"accountKey": key}}}}),
    )
}

fn arc(helm: Helm) {
    let c = Cluster::start();
    let ns = if c.is_external() {
        c.create_namespace("arc")
    } else {
        "default".to_string()
    };
    let rel = c.release_ns();
    let key = secret_value("account-key");
    c.remember_secret(&key);

    // Nested YAML.
    let (settings, protected) = nested(&ns, &key);
    let files = [
        c.write_values("settings", &settings),
        c.write_values("protected", &protected),
    ];
    c.helm_upgrade(helm, &[&files[0], &files[1]], &[]).ok();
    c.wait_job_gone();
    let nested_objects = c.snapshot(&ns);
    assert!(
        nested_objects.get("Secret/sc-storageconn-secret").is_some(),
        "no Secret: {nested_objects}"
    );
    let nested_status = c.metadata_status("storage_conn");
    // Each install keys its content hashes anew (the protected Secret's uid).
    let nested_key = c.hash_key();
    c.leak_scan(&["storage_conn"]);

    // Start over: no release, no materialized objects.
    c.helm(helm, &["uninstall", RELEASE, "-n", &rel, "--wait"])
        .ok();
    c.kubectl(&[
        "delete",
        "secrets,serviceaccounts",
        "-n",
        &ns,
        "-l",
        MANAGED_SELECTOR,
    ])
    .ok();
    wait_until(
        SETTLE,
        "the metadata of the first install to be removed",
        || {
            c.try_get("configmap", &rel, "sc-conn-storageconn")
                .is_none()
                .then_some(())
        },
    );

    // Arc-style flat strings.
    let (mut flags, protected_file) = arc_flags(&c, &key);
    if c.is_external() {
        flags.push("--set-string".into());
        flags.push(format!("connections.storage_conn.namespace={ns}"));
    }
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    c.helm_upgrade(helm, &[&protected_file], &refs).ok();
    c.wait_job_gone();
    let arc_objects = c.snapshot(&ns);
    assert_eq!(
        without_hash(&arc_objects),
        without_hash(&nested_objects),
        "Arc-style settings gave other objects than nested YAML"
    );
    // The same content: the hash of the nested request under each install's key.
    let want = sc_e2e::expected(&sc_e2e::merged(&[&settings, &protected]));
    let want = want.get("storage_conn").expect("storage_conn");
    assert_eq!(
        nested_status["appliedHash"],
        want.hash_with_key(&nested_key).as_str(),
        "content hash of the nested install"
    );
    let arc_status = c.metadata_status("storage_conn");
    assert_eq!(
        arc_status["appliedHash"],
        want.hash_with_key(&c.hash_key()).as_str(),
        "content hash of the Arc-style install"
    );
    c.assert_deployed(helm, 1);
    c.leak_scan(&["storage_conn"]);
}

with_both_helms!(arc);

/// A snapshot without the content-hash annotations (keyed per install).
fn without_hash(snapshot: &Value) -> Value {
    let mut out = snapshot.clone();
    for (_, o) in out.as_object_mut().into_iter().flatten() {
        if let Some(a) = o["annotations"].as_object_mut() {
            a.remove(sc_model::render::HASH_ANNOTATION);
        }
    }
    out
}
