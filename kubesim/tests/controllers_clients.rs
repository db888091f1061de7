//! The controllers and the process kubelet seen by the real clients: the documentation's
//! Job, a failing Job, a Deployment rollout with each deletion propagation policy, and the
//! helm 3 / helm 4 release lifecycle with a hook Job and a test pod.

use std::time::Duration;

use kubesim::testing::{CmdOutput, kubectl, run, run_with_stdin, wait_until};
use kubesim::{Kubesim, Options};

const WAIT: Duration = Duration::from_secs(60);

async fn start() -> Kubesim {
    Kubesim::start(Options::default())
        .await
        .expect("kubesim starts")
}

async fn apply(ks: &Kubesim, manifest: &str) {
    run_with_stdin(ks, "kubectl", &["apply", "-f", "-"], Some(manifest))
        .await
        .ok("kubectl apply");
}

async fn ok(ks: &Kubesim, args: &[&str]) -> String {
    let out: CmdOutput = kubectl(ks, args).await;
    out.ok(&format!("kubectl {}", args.join(" "))).to_string()
}

const PRINTENV_JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: printenv
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: alpine
        command: ["printenv"]
        envFrom:
        - secretRef:
            name: app-credentials
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documentation_job_completes_with_logs_describe_and_columns() {
    let ks = start().await;
    ok(
        &ks,
        &[
            "create",
            "secret",
            "generic",
            "app-credentials",
            "--from-literal=DB_USER=admin",
            "--from-literal=DB_HOST=db.local",
        ],
    )
    .await;
    apply(&ks, PRINTENV_JOB).await;
    ok(
        &ks,
        &[
            "wait",
            "--for=condition=complete",
            "job/printenv",
            "--timeout=60s",
        ],
    )
    .await;
    let logs = ok(&ks, &["logs", "job/printenv"]).await;
    assert!(
        logs.contains("DB_USER=admin") && logs.contains("DB_HOST=db.local"),
        "{logs}"
    );
    let describe = ok(&ks, &["describe", "job/printenv"]).await;
    assert!(
        describe.contains("0 Active (0 Ready) / 1 Succeeded / 0 Failed"),
        "{describe}"
    );
    assert!(
        describe.contains("SuccessfulCreate") && describe.contains("Created pod: printenv-"),
        "{describe}"
    );
    assert!(
        describe.contains("Completed") && describe.contains("Job completed"),
        "{describe}"
    );
    let get = ok(&ks, &["get", "job", "printenv"]).await;
    let header = get.lines().next().unwrap_or_default();
    assert!(
        header.contains("COMPLETIONS") && header.contains("DURATION"),
        "{get}"
    );
    assert!(
        get.lines()
            .nth(1)
            .is_some_and(|row| row.contains("1/1") && row.contains("Complete")),
        "{get}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_job_reports_backoff_limit_exceeded() {
    let ks = start().await;
    apply(
        &ks,
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: fails
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: alpine
        command: ["sh", "-c", "echo about to fail; false"]
"#,
    )
    .await;
    ok(
        &ks,
        &[
            "wait",
            "--for=condition=failed",
            "job/fails",
            "--timeout=60s",
        ],
    )
    .await;
    let reason = ok(
        &ks,
        &[
            "get",
            "job",
            "fails",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Failed")].reason}"#,
        ],
    )
    .await;
    assert_eq!(reason, "BackoffLimitExceeded");
    let logs = ok(&ks, &["logs", "job/fails"]).await;
    assert_eq!(logs, "about to fail\n");
    let code = ok(
        &ks,
        &[
            "get",
            "pods",
            "-l",
            "job-name=fails",
            "-o",
            "jsonpath={.items[0].status.containerStatuses[0].state.terminated.exitCode}",
        ],
    )
    .await;
    assert_eq!(code, "1");
    let describe = ok(&ks, &["describe", "job/fails"]).await;
    assert!(describe.contains("BackoffLimitExceeded"), "{describe}");
}

fn deployment(name: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: busybox
        command: ["sleep", "3600"]
"#
    )
}

async fn count(ks: &Kubesim, kind: &str, selector: &str) -> usize {
    ok(ks, &["get", kind, "-l", selector, "-o", "name"])
        .await
        .lines()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rollout_and_deletion_policies() {
    let ks = start().await;
    apply(&ks, &deployment("web")).await;
    ok(
        &ks,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    assert_eq!(count(&ks, "pods", "app=web").await, 2);

    // A template change rolls out a new ReplicaSet; the old one is scaled to zero.
    let patch = r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","command":["sleep","3601"]}]}}}}"#;
    ok(&ks, &["patch", "deployment", "web", "-p", patch]).await;
    ok(
        &ks,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    let replicas = ok(
        &ks,
        &[
            "get",
            "rs",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.replicas}",
        ],
    )
    .await;
    let mut replicas: Vec<&str> = replicas.split_whitespace().collect();
    replicas.sort();
    assert_eq!(replicas, ["0", "2"]);
    let revision = ok(
        &ks,
        &[
            "get",
            "deployment",
            "web",
            "-o",
            r#"jsonpath={.metadata.annotations.deployment\.kubernetes\.io/revision}"#,
        ],
    )
    .await;
    assert_eq!(revision, "2");

    // Scaling goes through the scale subresource.
    ok(&ks, &["scale", "deployment/web", "--replicas=3"]).await;
    ok(
        &ks,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    wait_until(WAIT, "three web pods", || {
        let ks = &ks;
        async move { (count(ks, "pods", "app=web").await == 3).then_some(()) }
    })
    .await;

    // Undo goes back to the first template: its ReplicaSet becomes revision 3.
    ok(&ks, &["rollout", "undo", "deployment/web"]).await;
    ok(
        &ks,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    let command = ok(
        &ks,
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].command}",
        ],
    )
    .await;
    assert_eq!(command, r#"["sleep","3600"]"#);
    let history = ok(&ks, &["rollout", "history", "deployment/web"]).await;
    assert!(
        history.contains('2')
            && history.contains('3')
            && !history.lines().any(|l| l.trim_start().starts_with("1 ")),
        "{history}"
    );

    // Orphan: ReplicaSets and pods stay, without ownerReferences.
    ok(&ks, &["delete", "deployment", "web", "--cascade=orphan"]).await;
    assert_eq!(count(&ks, "rs", "app=web").await, 2);
    let owners = ok(
        &ks,
        &[
            "get",
            "rs",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.ownerReferences}",
        ],
    )
    .await;
    assert_eq!(owners.trim(), "");

    // Foreground: the ReplicaSet goes after its pods.
    ok(
        &ks,
        &["delete", "rs", "-l", "app=web", "--cascade=foreground"],
    )
    .await;
    assert_eq!(count(&ks, "rs", "app=web").await, 0);
    assert_eq!(count(&ks, "pods", "app=web").await, 0);

    // Background (kubectl's default): ReplicaSet and pods are collected.
    apply(&ks, &deployment("api")).await;
    ok(
        &ks,
        &["rollout", "status", "deployment/api", "--timeout=60s"],
    )
    .await;
    ok(&ks, &["delete", "deployment", "api"]).await;
    wait_until(WAIT, "api ReplicaSet and pods collected", || {
        let ks = &ks;
        async move {
            (count(ks, "rs", "app=api").await + count(ks, "pods", "app=api").await == 0)
                .then_some(())
        }
    })
    .await;
}

const CHART_YAML: &str = "apiVersion: v2\nname: demo\nversion: 0.1.0\n";
const VALUES_YAML: &str = "message: one\n";
const DEPLOYMENT_TPL: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: 1
  selector:
    matchLabels: {app: {{ .Release.Name }}-web}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}-web}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: busybox
        command: ["sleep", "3600"]
        env:
        - name: MESSAGE
          value: {{ .Values.message | quote }}
"#;
const HOOK_TPL: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-hook
  annotations:
    helm.sh/hook: post-install,post-upgrade
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: alpine
        command: ["sh", "-c", "echo hook for {{ .Values.message }}"]
"#;
const TEST_TPL: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-test
  annotations:
    helm.sh/hook: test
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command:
    - sh
    - -c
    - 'test "$MESSAGE" = "{{ .Values.message }}" && echo test passed'
    env:
    - name: MESSAGE
      value: {{ .Values.message | quote }}
"#;

fn write_chart(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(dir.join("Chart.yaml"), CHART_YAML).unwrap();
    std::fs::write(dir.join("values.yaml"), VALUES_YAML).unwrap();
    std::fs::write(dir.join("templates/deployment.yaml"), DEPLOYMENT_TPL).unwrap();
    std::fs::write(dir.join("templates/hook.yaml"), HOOK_TPL).unwrap();
    std::fs::write(dir.join("templates/test.yaml"), TEST_TPL).unwrap();
}

async fn helm_ok(ks: &Kubesim, helm: &str, args: &[&str]) -> String {
    let out = run(ks, helm, args).await;
    out.ok(&format!("{helm} {}", args.join(" "))).to_string()
}

async fn helm_lifecycle(helm: &str) {
    let ks = start().await;
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("demo");
    write_chart(&chart);
    let chart = chart.to_str().unwrap();
    helm_ok(
        &ks,
        helm,
        &["install", "demo", chart, "--wait", "--timeout", "90s"],
    )
    .await;
    let available = ok(
        &ks,
        &[
            "get",
            "deployment",
            "demo-web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
    )
    .await;
    assert_eq!(available, "1");
    // hook-succeeded: the hook Job is gone once it completed.
    wait_until(WAIT, "hook job deleted", || {
        let ks = &ks;
        async move { (!kubectl(ks, &["get", "job", "demo-hook"]).await.success()).then_some(()) }
    })
    .await;

    helm_ok(
        &ks,
        helm,
        &[
            "upgrade",
            "demo",
            chart,
            "--set",
            "message=two",
            "--wait",
            "--timeout",
            "90s",
        ],
    )
    .await;
    let message = ok(
        &ks,
        &[
            "get",
            "deployment",
            "demo-web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env[0].value}",
        ],
    )
    .await;
    assert_eq!(message, "two");
    ok(
        &ks,
        &["rollout", "status", "deployment/demo-web", "--timeout=60s"],
    )
    .await;
    let test = helm_ok(&ks, helm, &["test", "demo", "--timeout", "90s"]).await;
    assert!(test.contains("Succeeded"), "{test}");

    helm_ok(
        &ks,
        helm,
        &["rollback", "demo", "1", "--wait", "--timeout", "90s"],
    )
    .await;
    let message = ok(
        &ks,
        &[
            "get",
            "deployment",
            "demo-web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env[0].value}",
        ],
    )
    .await;
    assert_eq!(message, "one");
    let test = helm_ok(&ks, helm, &["test", "demo", "--timeout", "90s"]).await;
    assert!(test.contains("Succeeded"), "{test}");

    helm_ok(
        &ks,
        helm,
        &["uninstall", "demo", "--wait", "--timeout", "90s"],
    )
    .await;
    wait_until(WAIT, "release objects and pods gone", || {
        let ks = &ks;
        async move {
            let rs = count(ks, "rs", "app=demo-web").await;
            let pods = count(ks, "pods", "app=demo-web").await;
            (rs + pods == 0).then_some(())
        }
    })
    .await;
    wait_until(WAIT, "no pod process left", || {
        let ks = &ks;
        async move { ks.kubelet().pids().is_empty().then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm3_release_lifecycle_with_hook_and_test() {
    helm_lifecycle("helm3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm4_release_lifecycle_with_hook_and_test() {
    helm_lifecycle("helm4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_until_exit_with_timestamps_and_tail() {
    let ks = start().await;
    ok(
        &ks,
        &["create", "configmap", "gate", "--from-literal=v=wait"],
    )
    .await;
    apply(
        &ks,
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: ticker
spec:
  template:
    spec:
      restartPolicy: Never
      volumes:
      - name: gate
        configMap: {name: gate}
      containers:
      - name: main
        image: alpine
        volumeMounts:
        - {name: gate, mountPath: /etc/gate}
        command:
        - sh
        - -c
        - "while ! grep -q go /etc/gate/v; do sleep 0.1; done; for i in 1 2 3; do echo tick $i; sleep 0.3; done"
"#,
    )
    .await;
    // The container runs (waiting on the gate) before the log is followed, and only then
    // starts printing: the follow sees every line and returns once the process has exited.
    ok(
        &ks,
        &[
            "wait",
            "--for=condition=ready",
            "pod",
            "-l",
            "job-name=ticker",
            "--timeout=60s",
        ],
    )
    .await;
    let follow = kubesim::testing::command(
        &ks,
        "kubectl",
        &["logs", "-f", "job/ticker", "--timestamps"],
    )
    .spawn()
    .expect("kubectl logs -f starts");
    ok(
        &ks,
        &["patch", "configmap", "gate", "-p", r#"{"data":{"v":"go"}}"#],
    )
    .await;
    let out = tokio::time::timeout(WAIT, follow.wait_with_output())
        .await
        .expect("logs -f returns")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let followed = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = followed.lines().collect();
    assert_eq!(lines.len(), 3, "{followed}");
    for (i, line) in lines.iter().enumerate() {
        let (ts, text) = line.split_once(' ').unwrap();
        assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{line}");
        assert_eq!(text, format!("tick {}", i + 1));
    }
    ok(
        &ks,
        &[
            "wait",
            "--for=condition=complete",
            "job/ticker",
            "--timeout=60s",
        ],
    )
    .await;
    assert_eq!(
        ok(&ks, &["logs", "job/ticker", "--tail=1"]).await,
        "tick 3\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documentation_job_with_kubectl_1_33() {
    let ks = start().await;
    let k = |args: &'static [&'static str]| {
        let ks = &ks;
        async move {
            let out = run(ks, "kubectl-1.33", args).await;
            out.ok(&format!("kubectl-1.33 {}", args.join(" ")))
                .to_string()
        }
    };
    k(&[
        "create",
        "secret",
        "generic",
        "app-credentials",
        "--from-literal=DB_USER=admin",
    ])
    .await;
    run_with_stdin(
        &ks,
        "kubectl-1.33",
        &["apply", "-f", "-"],
        Some(PRINTENV_JOB),
    )
    .await
    .ok("kubectl-1.33 apply");
    k(&[
        "wait",
        "--for=condition=complete",
        "job/printenv",
        "--timeout=60s",
    ])
    .await;
    let logs = k(&["logs", "job/printenv"]).await;
    assert!(logs.contains("DB_USER=admin"), "{logs}");
    let describe = k(&["describe", "job/printenv"]).await;
    assert!(describe.contains("1 Succeeded"), "{describe}");
}
