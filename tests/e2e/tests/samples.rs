//! The sample Jobs of manifests/samples/ are valid Kubernetes objects, and the
//! workload-identity one carries its label where the webhook reads it: on the pod template.

use sc_e2e::{run_command, tools_dir, workspace_root};
use std::process::Command;

fn sample(name: &str) -> (std::path::PathBuf, serde_json::Value) {
    let path = workspace_root().join("manifests/samples").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {} failed: {e}", path.display()));
    let job = sc_model::parse_yaml(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    (path, job)
}

#[test]
fn samples_are_valid_jobs() {
    let validate = tools_dir().join("venv/bin/kubernetes-validate");
    assert!(
        validate.is_file(),
        "{} is missing: run `make tools`",
        validate.display()
    );
    for name in ["secret-envfrom-job.yaml", "workload-identity-job.yaml"] {
        let (path, job) = sample(name);
        let mut cmd = Command::new(&validate);
        cmd.args(["--strict", "--quiet", "-k", "1.33.0"]).arg(&path);
        run_command(cmd, &format!("kubernetes-validate {name}"), None).ok();
        assert_eq!(job["kind"], "Job", "{name}");
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["command"][0], "printenv", "{name}");
        assert!(
            container["envFrom"][0]["secretRef"]["name"]
                .as_str()
                .is_some_and(|s| s.starts_with("sc-") && s.ends_with("-secret")),
            "{name}: envFrom names no connection Secret"
        );
    }
}

#[test]
fn workload_identity_label_is_on_the_pod_template() {
    let (_, job) = sample("workload-identity-job.yaml");
    let label = "azure.workload.identity/use";
    assert_eq!(job["spec"]["template"]["metadata"]["labels"][label], "true");
    assert!(
        job["metadata"]["labels"][label].is_null(),
        "the label belongs on the pod template only"
    );
    let sa = job["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or_default();
    assert!(
        sa.starts_with("sc-account-"),
        "serviceAccountName {sa:?} is not a connection's ServiceAccount"
    );
}
