//! kubectl 1.37 and 1.33 against kubesim: get columns, describe, client-side and server-side
//! apply, create secret/configmap (protobuf bodies), patches, label/annotate, deletion with
//! each propagation policy, `get -w`, and `explain`'s refusal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubesim::testing::{CmdOutput, command, run, run_with_stdin, wait_until};
use kubesim::{Kubesim, Options};
use tokio::io::AsyncBufReadExt;

async fn start() -> Kubesim {
    Kubesim::start(Options::default())
        .await
        .expect("kubesim starts")
}

async fn k(ks: &Kubesim, tool: &str, args: &[&str]) -> CmdOutput {
    run(ks, tool, args).await
}

async fn k_ok(ks: &Kubesim, tool: &str, args: &[&str]) -> String {
    k(ks, tool, args)
        .await
        .ok(&format!("{tool} {}", args.join(" ")))
        .to_string()
}

async fn apply(ks: &Kubesim, tool: &str, extra: &[&str], manifest: &str) -> String {
    let mut args = vec!["apply", "-f", "-"];
    args.extend_from_slice(extra);
    run_with_stdin(ks, tool, &args, Some(manifest))
        .await
        .ok(&format!("{tool} apply {extra:?}"))
        .to_string()
}

const JOB: &str = "
apiVersion: batch/v1
kind: Job
metadata:
  name: report
spec:
  suspend: true
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:1.36
        env:
        - name: MODE
          value: fast
";

async fn get_columns_and_describe(tool: &str) {
    let ks = start().await;
    apply(&ks, tool, &[], JOB).await;
    let jobs = k_ok(&ks, tool, &["get", "jobs"]).await;
    let header: Vec<&str> = jobs.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "{jobs}"
    );
    assert!(jobs.lines().nth(1).unwrap().starts_with("report"), "{jobs}");

    k_ok(
        &ks,
        tool,
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=a=1",
            "--from-literal=b=2",
        ],
    )
    .await;
    let cms = k_ok(&ks, tool, &["get", "cm", "settings"]).await;
    let header: Vec<&str> = cms.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"], "{cms}");
    assert!(cms.contains("settings   2"), "{cms}");
    let ns = k_ok(&ks, tool, &["get", "ns"]).await;
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            ns.lines().any(|l| l.starts_with(n) && l.contains("Active")),
            "{ns}"
        );
    }

    let described = k_ok(&ks, tool, &["describe", "job", "report"]).await;
    for want in [
        "Name:",
        "report",
        "Selector:",
        "batch.kubernetes.io/controller-uid=",
        "Parallelism:",
        "Backoff Limit:",
        "MODE:",
    ] {
        assert!(
            described.contains(want),
            "describe lacks {want:?}:\n{described}"
        );
    }
    let described = k_ok(&ks, tool, &["describe", "configmap", "settings"]).await;
    assert!(
        described.contains("Data") && described.contains("a:"),
        "{described}"
    );
}

#[tokio::test]
async fn get_columns_and_describe_1_37() {
    get_columns_and_describe("kubectl-1.37").await;
}

#[tokio::test]
async fn get_columns_and_describe_1_33() {
    get_columns_and_describe("kubectl-1.33").await;
}

const CM: &str = "
apiVersion: v1
kind: ConfigMap
metadata:
  name: applied
  labels:
    app: demo
    tier: web
data:
  keep: kept
  drop: dropped
";

fn without_drop(m: &str) -> String {
    m.lines()
        .filter(|l| !l.contains("drop") && !l.contains("tier"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn data_and_labels(ks: &Kubesim, tool: &str, name: &str) -> (String, String) {
    let data = k_ok(ks, tool, &["get", "cm", name, "-o", "jsonpath={.data}"]).await;
    let labels = k_ok(
        ks,
        tool,
        &["get", "cm", name, "-o", "jsonpath={.metadata.labels}"],
    )
    .await;
    (data, labels)
}

async fn apply_client_and_server_side(tool: &str) {
    let ks = start().await;
    // Client-side apply: create, unchanged, then a field removed disappears.
    assert!(apply(&ks, tool, &[], CM).await.contains("created"));
    assert!(apply(&ks, tool, &[], CM).await.contains("unchanged"));
    apply(&ks, tool, &[], &without_drop(CM)).await;
    let (data, labels) = data_and_labels(&ks, tool, "applied").await;
    assert_eq!(data, r#"{"keep":"kept"}"#);
    assert_eq!(labels, r#"{"app":"demo"}"#);

    // Server-side apply twice, then with fields removed.
    let ssa = CM.replace("name: applied", "name: ssa");
    for _ in 0..2 {
        assert!(
            apply(&ks, tool, &["--server-side"], &ssa)
                .await
                .contains("serverside-applied")
        );
    }
    let (data, _) = data_and_labels(&ks, tool, "ssa").await;
    assert_eq!(data, r#"{"drop":"dropped","keep":"kept"}"#);
    apply(&ks, tool, &["--server-side"], &without_drop(&ssa)).await;
    let (data, labels) = data_and_labels(&ks, tool, "ssa").await;
    assert_eq!(data, r#"{"keep":"kept"}"#);
    assert_eq!(labels, r#"{"app":"demo"}"#);
    let managers = k_ok(
        &ks,
        tool,
        &[
            "get",
            "cm",
            "ssa",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ],
    )
    .await;
    assert!(
        managers.split_whitespace().any(|m| m == "kubectl"),
        "{managers}"
    );

    // A client-side-applied object moves to server-side apply.
    apply(&ks, tool, &["--server-side"], CM).await;
    let (data, _) = data_and_labels(&ks, tool, "applied").await;
    assert_eq!(data, r#"{"drop":"dropped","keep":"kept"}"#);

    // Server-side dry run persists nothing.
    let dry = CM.replace("name: applied", "name: dry");
    apply(&ks, tool, &["--server-side", "--dry-run=server"], &dry).await;
    let missing = k(&ks, tool, &["get", "cm", "dry"]).await;
    assert!(
        !missing.success() && missing.stderr.contains("configmaps \"dry\" not found"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn apply_client_and_server_side_1_37() {
    apply_client_and_server_side("kubectl-1.37").await;
}

#[tokio::test]
async fn apply_client_and_server_side_1_33() {
    apply_client_and_server_side("kubectl-1.33").await;
}

async fn create_patch_label_annotate(tool: &str) {
    let ks = start().await;
    // Typed create commands send protobuf bodies.
    k_ok(
        &ks,
        tool,
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=user=admin",
            "--from-literal=pass=s3cret",
        ],
    )
    .await;
    let pass = k_ok(
        &ks,
        tool,
        &["get", "secret", "creds", "-o", "jsonpath={.data.pass}"],
    )
    .await;
    assert_eq!(pass, "czNjcmV0");
    let secret_type = k_ok(
        &ks,
        tool,
        &["get", "secret", "creds", "-o", "jsonpath={.type}"],
    )
    .await;
    assert_eq!(secret_type, "Opaque");
    k_ok(
        &ks,
        tool,
        &["create", "configmap", "cfg", "--from-literal=a=1"],
    )
    .await;
    let dup = k(
        &ks,
        tool,
        &["create", "configmap", "cfg", "--from-literal=a=1"],
    )
    .await;
    assert!(
        dup.stderr.contains("configmaps \"cfg\" already exists"),
        "{dup:?}"
    );

    k_ok(
        &ks,
        tool,
        &[
            "patch",
            "cm",
            "cfg",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/data/json","value":"j"}]"#,
        ],
    )
    .await;
    k_ok(
        &ks,
        tool,
        &[
            "patch",
            "cm",
            "cfg",
            "--type=merge",
            "-p",
            r#"{"data":{"merge":"m","a":null}}"#,
        ],
    )
    .await;
    k_ok(
        &ks,
        tool,
        &[
            "patch",
            "cm",
            "cfg",
            "--type=strategic",
            "-p",
            r#"{"data":{"strategic":"s"}}"#,
        ],
    )
    .await;
    let data = k_ok(&ks, tool, &["get", "cm", "cfg", "-o", "jsonpath={.data}"]).await;
    assert_eq!(data, r#"{"json":"j","merge":"m","strategic":"s"}"#);

    // Strategic merge on a list with a merge key keeps the other containers.
    let deploy = "
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 0
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - {name: app, image: 'nginx:1.27'}
      - {name: sidecar, image: 'busybox:1.36'}
";
    apply(&ks, tool, &[], deploy).await;
    k_ok(&ks, tool, &["patch", "deployment", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:1.28"}]}}}}"#]).await;
    let images = k_ok(
        &ks,
        tool,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].image}",
        ],
    )
    .await;
    assert_eq!(images, "nginx:1.28 busybox:1.36");
    let bad = k(
        &ks,
        tool,
        &[
            "patch",
            "cm",
            "cfg",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/data/json","value":"other"}]"#,
        ],
    )
    .await;
    assert!(!bad.success(), "{bad:?}");

    k_ok(&ks, tool, &["label", "cm", "cfg", "team=blue"]).await;
    k_ok(&ks, tool, &["annotate", "cm", "cfg", "note=hello"]).await;
    let labelled = k_ok(&ks, tool, &["get", "cm", "-l", "team=blue", "-o", "name"]).await;
    assert_eq!(labelled.trim(), "configmap/cfg");
    let note = k_ok(
        &ks,
        tool,
        &[
            "get",
            "cm",
            "cfg",
            "-o",
            "jsonpath={.metadata.annotations.note}",
        ],
    )
    .await;
    assert_eq!(note, "hello");
    k_ok(&ks, tool, &["label", "cm", "cfg", "team-"]).await;
    let none = k_ok(&ks, tool, &["get", "cm", "-l", "team=blue", "-o", "name"]).await;
    assert_eq!(none.trim(), "");
    let overwrite = k(&ks, tool, &["annotate", "cm", "cfg", "note=again"]).await;
    assert!(
        !overwrite.success() && overwrite.stderr.contains("--overwrite is false"),
        "{overwrite:?}"
    );
}

#[tokio::test]
async fn create_patch_label_annotate_1_37() {
    create_patch_label_annotate("kubectl-1.37").await;
}

#[tokio::test]
async fn create_patch_label_annotate_1_33() {
    create_patch_label_annotate("kubectl-1.33").await;
}

/// The API side of each propagation policy: Background removes at once; Foreground and Orphan
/// set deletionTimestamp with their finalizer while another finalizer holds the object, and
/// the object goes once that finalizer is removed.
async fn delete_with_each_propagation_policy(tool: &str) {
    let ks = start().await;
    k_ok(
        &ks,
        tool,
        &["create", "configmap", "plain", "--from-literal=a=1"],
    )
    .await;
    let out = k_ok(
        &ks,
        tool,
        &["delete", "cm", "plain", "--cascade=background"],
    )
    .await;
    assert!(out.contains("configmap \"plain\" deleted"), "{out}");
    assert!(!k(&ks, tool, &["get", "cm", "plain"]).await.success());

    for cascade in ["foreground", "orphan"] {
        let name = format!("held-{cascade}");
        let manifest = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  finalizers: [example.com/hold]\ndata:\n  a: '1'\n"
        );
        apply(&ks, tool, &[], &manifest).await;
        k_ok(
            &ks,
            tool,
            &[
                "delete",
                "cm",
                &name,
                &format!("--cascade={cascade}"),
                "--wait=false",
            ],
        )
        .await;
        let pending = k_ok(
            &ks,
            tool,
            &[
                "get",
                "cm",
                &name,
                "-o",
                "jsonpath={.metadata.deletionTimestamp} {.metadata.finalizers}",
            ],
        )
        .await;
        assert!(!pending.starts_with(' '), "no deletionTimestamp: {pending}");
        assert!(pending.contains("example.com/hold"), "{pending}");
        // The garbage collector handles its own finalizer; ours still holds the object.
        k_ok(
            &ks,
            tool,
            &[
                "patch",
                "cm",
                &name,
                "--type=json",
                "-p",
                r#"[{"op":"remove","path":"/metadata/finalizers/0"}]"#,
            ],
        )
        .await;
        let what = format!("{name} to disappear");
        wait_until(Duration::from_secs(30), &what, || async {
            let r = k(
                &ks,
                tool,
                &["get", "cm", &name, "--ignore-not-found", "-o", "name"],
            )
            .await;
            (r.success() && r.stdout.trim().is_empty()).then_some(())
        })
        .await;
    }
    // A namespace turns Terminating, then goes once the namespace controller has emptied it.
    k_ok(&ks, tool, &["create", "namespace", "doomed"]).await;
    k_ok(
        &ks,
        tool,
        &[
            "-n",
            "doomed",
            "create",
            "configmap",
            "inside",
            "--from-literal=a=1",
        ],
    )
    .await;
    k_ok(
        &ks,
        tool,
        &["delete", "namespace", "doomed", "--timeout=60s"],
    )
    .await;
    assert!(!k(&ks, tool, &["get", "ns", "doomed"]).await.success());
}

#[tokio::test]
async fn delete_with_each_propagation_policy_1_37() {
    delete_with_each_propagation_policy("kubectl-1.37").await;
}

#[tokio::test]
async fn delete_with_each_propagation_policy_1_33() {
    delete_with_each_propagation_policy("kubectl-1.33").await;
}

async fn get_watch_prints_changes(tool: &str) {
    let ks = start().await;
    k_ok(
        &ks,
        tool,
        &["create", "configmap", "before", "--from-literal=a=1"],
    )
    .await;
    let mut child = command(
        &ks,
        tool,
        &["get", "configmaps", "--watch", "--request-timeout=60s"],
    )
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let sink = seen.clone();
    let reader = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let mut s = sink.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    });
    let has = |needle: &'static str| {
        let seen = seen.clone();
        move || {
            let found = seen.lock().unwrap().contains(needle);
            async move { found.then_some(()) }
        }
    };
    wait_until(
        Duration::from_secs(30),
        "the initial listing",
        has("before"),
    )
    .await;
    // The watch resumes from the listing's resourceVersion: later changes are not missed.
    k_ok(
        &ks,
        tool,
        &["create", "configmap", "after", "--from-literal=a=1"],
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "the watch to print the new ConfigMap",
        has("after"),
    )
    .await;
    k_ok(&ks, tool, &["delete", "configmap", "before"]).await;
    wait_until(
        Duration::from_secs(30),
        "the watch to print the deletion",
        || {
            let seen = seen.clone();
            async move { (seen.lock().unwrap().matches("before").count() >= 2).then_some(()) }
        },
    )
    .await;
    child.kill().await.unwrap();
    reader.abort();
}

#[tokio::test]
async fn get_watch_prints_changes_1_37() {
    get_watch_prints_changes("kubectl-1.37").await;
}

#[tokio::test]
async fn get_watch_prints_changes_1_33() {
    get_watch_prints_changes("kubectl-1.33").await;
}

/// `kubectl wait` uses a watch-list (sendInitialEvents) in 1.37 and list+watch in 1.33.
async fn wait_for_a_change(tool: &str) {
    let ks = start().await;
    k_ok(
        &ks,
        tool,
        &["create", "configmap", "flag", "--from-literal=state=off"],
    )
    .await;
    let mut waiter = command(
        &ks,
        tool,
        &[
            "wait",
            "--for=jsonpath={.data.state}=on",
            "configmap/flag",
            "--timeout=60s",
        ],
    )
    .spawn()
    .unwrap();
    k_ok(
        &ks,
        tool,
        &[
            "patch",
            "configmap",
            "flag",
            "--type=merge",
            "-p",
            r#"{"data":{"state":"on"}}"#,
        ],
    )
    .await;
    let status = tokio::time::timeout(Duration::from_secs(90), waiter.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "kubectl wait failed: {status:?}");
    // Already true: returns at once, from the initial events.
    k_ok(
        &ks,
        tool,
        &[
            "wait",
            "--for=jsonpath={.data.state}=on",
            "configmap/flag",
            "--timeout=30s",
        ],
    )
    .await;
}

#[tokio::test]
async fn wait_for_a_change_1_37() {
    wait_for_a_change("kubectl-1.37").await;
}

#[tokio::test]
async fn wait_for_a_change_1_33() {
    wait_for_a_change("kubectl-1.33").await;
}

#[tokio::test]
async fn strict_field_validation_rejects_unknown_fields() {
    let ks = start().await;
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: odd\nspec:\n  foo: 1\ndata:\n  a: '1'\n";
    let out = run_with_stdin(&ks, "kubectl", &["apply", "-f", "-"], Some(manifest)).await;
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains(r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "spec""#),
        "{out:?}"
    );
    let out = run_with_stdin(
        &ks,
        "kubectl",
        &["apply", "--server-side", "-f", "-"],
        Some(manifest),
    )
    .await;
    assert!(
        !out.success() && out.stderr.contains(".spec: field not declared in schema"),
        "{out:?}"
    );
    // --validate=false asks the server to ignore them.
    run_with_stdin(
        &ks,
        "kubectl",
        &["apply", "--validate=false", "-f", "-"],
        Some(manifest),
    )
    .await
    .ok("apply --validate=false");
    // --validate=warn: the server warns about what it drops.
    let warned = manifest.replace("name: odd", "name: warned");
    let out = run_with_stdin(
        &ks,
        "kubectl",
        &["apply", "--validate=warn", "-f", "-"],
        Some(&warned),
    )
    .await;
    out.ok("apply --validate=warn");
    assert!(
        out.stderr.contains(r#"Warning: unknown field "spec""#),
        "{out:?}"
    );
    // ... which drops them, as decoding into the API types does.
    let stored = run(&ks, "kubectl", &["get", "cm", "odd", "-o", "json"]).await;
    let stored: serde_json::Value = serde_json::from_str(stored.ok("get odd")).unwrap();
    assert!(stored.get("spec").is_none(), "{stored}");
    assert_eq!(stored["data"]["a"], "1");
}

/// `kubectl explain` reads the kinds' schemas from `/openapi/v3`, and names a field that is
/// not there.
#[tokio::test]
async fn explain_answers_from_the_schemas() {
    let ks = start().await;
    for tool in ["kubectl-1.37", "kubectl-1.33"] {
        let out = k(&ks, tool, &["explain", "pods"]).await;
        assert!(out.success(), "{tool}: {out:?}");
        assert!(out.stdout.contains("KIND:       Pod"), "{tool}: {out:?}");
        let out = k(&ks, tool, &["explain", "pods.spec.bogus"]).await;
        assert!(!out.success(), "{out:?}");
        assert!(
            out.stderr.contains("bogus") && out.stderr.contains("does not exist"),
            "{tool}: {out:?}"
        );
    }
}

/// An Event posted through either Event API is served by both, as by kube-apiserver: kubectl
/// describe (core/v1) shows what kube-rs' recorder posts (events.k8s.io/v1).
#[tokio::test]
async fn events_of_either_api_show_in_both() {
    let tool = "kubectl-1.37";
    let ks = start().await;
    k_ok(
        &ks,
        tool,
        &["create", "configmap", "settings", "--from-literal=a=1"],
    )
    .await;
    let uid = k_ok(
        &ks,
        tool,
        &[
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
    )
    .await;
    let event = format!(
        r#"{{"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {{"name": "settings.1", "namespace": "default"}},
            "regarding": {{"apiVersion": "v1", "kind": "ConfigMap", "name": "settings",
                          "namespace": "default", "uid": "{uid}"}},
            "reason": "JobCreated", "note": "change set 42 applied", "type": "Normal",
            "action": "RunJob", "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "sc-agent", "reportingInstance": "sc-agent-0"}}"#
    );
    run_with_stdin(&ks, tool, &["create", "-f", "-"], Some(&event))
        .await
        .ok("create an events.k8s.io/v1 Event");
    let described = wait_until(Duration::from_secs(20), "the event in describe", || async {
        let d = k_ok(&ks, tool, &["describe", "configmap", "settings"]).await;
        d.contains("change set 42 applied").then_some(d)
    })
    .await;
    assert!(described.contains("JobCreated"), "{described}");

    // core/v1 to events.k8s.io/v1.
    let core = r#"{"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "job.2", "namespace": "default"},
        "involvedObject": {"kind": "Job", "name": "sc-job", "namespace": "default"},
        "reason": "ConnectionFailed", "message": "blob failed", "type": "Warning",
        "source": {"component": "sc-job"}, "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z", "count": 1}"#;
    run_with_stdin(&ks, tool, &["create", "-f", "-"], Some(core))
        .await
        .ok("create a core/v1 Event");
    let mirrored = wait_until(
        Duration::from_secs(20),
        "the core event mirrored",
        || async {
            let out = k(
                &ks,
                tool,
                &["get", "events.v1.events.k8s.io", "job.2", "-o", "json"],
            )
            .await;
            out.success().then(|| out.stdout.clone())
        },
    )
    .await;
    assert!(mirrored.contains("\"note\": \"blob failed\""), "{mirrored}");
    assert!(
        mirrored.contains("\"reportingController\": \"sc-job\""),
        "{mirrored}"
    );

    // Deleting the origin deletes its mirror.
    k_ok(
        &ks,
        tool,
        &["delete", "events.v1.events.k8s.io", "settings.1"],
    )
    .await;
    wait_until(Duration::from_secs(20), "the mirror to go", || async {
        let out = k(
            &ks,
            tool,
            &[
                "get",
                "--raw",
                "/api/v1/namespaces/default/events/settings.1",
            ],
        )
        .await;
        (!out.success()).then_some(())
    })
    .await;
}

/// A JSON patch whose undo would move a value inside itself (a `move` to the root, then a
/// failing operation) is refused with 422 and leaves the object as it was; it once panicked
/// the request (found by the property tests; tests/e2e/BAD-INPUT.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_patch_moving_to_the_root_then_failing_is_refused() {
    let ks = start().await;
    k_ok(
        &ks,
        "kubectl",
        &["create", "configmap", "probe", "--from-literal=a=1"],
    )
    .await;
    let out = k(
        &ks,
        "kubectl",
        &[
            "patch",
            "configmap",
            "probe",
            "--type=json",
            "-p",
            r#"[{"op":"move","from":"/metadata","path":""},{"op":"add","path":"/metadata/metadata","value":null}]"#,
        ],
    )
    .await;
    assert!(!out.success(), "the patch was accepted: {}", out.stdout);
    assert!(
        out.stderr.contains("JSON patch failed") && !out.stderr.contains("EOF"),
        "{}",
        out.stderr
    );
    let data = k_ok(
        &ks,
        "kubectl",
        &["get", "configmap", "probe", "-o", "jsonpath={.data.a}"],
    )
    .await;
    assert_eq!(data, "1");
}
