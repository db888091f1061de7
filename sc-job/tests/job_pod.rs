//! sc-job running as the pod of Job `sc-job`, as sc-agent starts it: with the chart's RBAC,
//! its own ServiceAccount, the self-deletion after success and `kubectl logs` after a failure.

mod common;

use common::*;
use kubesim::testing::{kubectl, wait_until};
use serde_json::{Value, json};

const ACCOUNT_KEY: &str = "am9iLXBvZC1hY2NvdW50LWtleQ==";

/// What sc-job may write in the connections' namespaces.
fn writer_rules() -> Value {
    json!([
        {"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get", "list", "create", "patch", "delete"]},
        {"apiGroups": ["secrets-store.csi.x-k8s.io"], "resources": ["secretproviderclasses"], "verbs": ["get", "list", "create", "patch", "delete"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["get", "patch"]},
        {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["get", "patch"]},
    ])
}

/// The ServiceAccount and RBAC of sc-job as the chart renders them (cluster-wide variant).
fn install_rbac(c: &kubesim::cluster::Cluster) {
    install_release_rbac(c);
    let mut rules = writer_rules();
    rules
        .as_array_mut()
        .unwrap()
        .push(json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}));
    cluster_role(c, rules);
}

/// The chart's RBAC with `rbac.namespaces: [default]`: writes in `default` only.
fn install_namespaced_rbac(c: &kubesim::cluster::Cluster) {
    install_release_rbac(c);
    create(
        c,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "sc-job-writer", "namespace": "default"}, "rules": writer_rules()}),
    );
    create(
        c,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "sc-job-writer", "namespace": "default"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sc-job-writer"},
               "subjects": [{"kind": "ServiceAccount", "name": "sc-job", "namespace": NS}]}),
    );
    cluster_role(
        c,
        json!([{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["default"], "verbs": ["get"]}]),
    );
}

/// The cluster-wide part of sc-job's RBAC with `rules`.
fn cluster_role(c: &kubesim::cluster::Cluster, rules: Value) {
    create(
        c,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "sc-job-sc-system"}, "rules": rules}),
    );
    create(
        c,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "sc-job-sc-system"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sc-job-sc-system"},
               "subjects": [{"kind": "ServiceAccount", "name": "sc-job", "namespace": NS}]}),
    );
}

/// sc-job's ServiceAccount and its Role in the release namespace.
fn install_release_rbac(c: &kubesim::cluster::Cluster) {
    install_release_rbac_with(
        c,
        json!(["get", "list", "watch", "create", "update", "patch"]),
    );
}

/// [`install_release_rbac`] with `configmap_verbs` on the ConfigMaps of the release namespace.
fn install_release_rbac_with(c: &kubesim::cluster::Cluster, configmap_verbs: Value) {
    create(
        c,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sc-job", "namespace": NS}}),
    );
    create(
        c,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "sc-job", "namespace": NS},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": configmap_verbs},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["sc-protected"], "verbs": ["get"]},
            {"apiGroups": ["batch"], "resources": ["jobs"], "resourceNames": ["sc-job"], "verbs": ["get", "delete"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        ]}),
    );
    create(
        c,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "sc-job", "namespace": NS},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sc-job"},
               "subjects": [{"kind": "ServiceAccount", "name": "sc-job", "namespace": NS}]}),
    );
}

/// The Job sc-agent creates: no secret and no connection content in its spec.
fn sc_job() -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "sc-job", "namespace": NS,
                     "labels": {"app.kubernetes.io/managed-by": "sc-extension",
                                "app.kubernetes.io/part-of": "sc-extension"}},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "serviceAccountName": "sc-job",
                "restartPolicy": "Never",
                "containers": [{
                    "name": "sc-job",
                    "image": "ghcr.io/sc-extension/sc-job:0.1.0",
                    "args": ["--changeset", "sc-changeset"],
                    "env": [{"name": "POD_NAMESPACE",
                             "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                }],
            }},
        },
    })
}

fn blob(name_ns: &str) -> Value {
    json!({
        "namespace": name_ns, "targetType": "storage-blob", "authType": "secret",
        "parameters": {"accountName": "acct"}, "secrets": {"accountKey": ACCOUNT_KEY},
    })
}

fn job_condition(job: &Value, kind: &str) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// Creates Job sc-job, waits until it fails and returns it with its logs
/// (`kubectl logs job/sc-job`).
async fn run_to_failure(ks: &kubesim::Kubesim) -> (Value, String) {
    let c = ks.cluster();
    create(&c, sc_job());
    let job = wait_until(WAIT, "the Job sc-job to fail", || {
        let job = get(&c, "Job", NS, "sc-job").filter(|j| job_condition(j, "Failed"));
        async move { job }
    })
    .await;
    let logs = kubectl(ks, &["logs", "job/sc-job", "-n", NS]).await;
    (job, logs.ok("kubectl logs job/sc-job").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_deletes_itself_after_success() {
    let ks = start().await;
    let c = ks.cluster();
    install_rbac(&c);
    let conns = json!({"web_blob": blob("default")});
    request_all(&c, "cs-job-1", 1, &conns);
    create(&c, sc_job());
    wait_until(WAIT, "the Job sc-job to be deleted after success", || {
        let gone = get(&c, "Job", NS, "sc-job").is_none();
        async move { gone.then_some(()) }
    })
    .await;
    let secret = get(&c, "Secret", "default", "sc-webblob-secret")
        .expect("the Secret was created by the Job");
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "sc-extension"
    );
    let status = metadata(&c, "web_blob", "status.json");
    assert_eq!(status["phase"], "Ready");
    let journal = metadata(&c, "web_blob", "journal.json");
    assert_eq!(journal[0]["job"], "sc-system/sc-job");
    let steps = journal[0]["steps"].to_string();
    assert!(
        steps.contains("[web_blob] secret default/sc-webblob-secret: created (1 key)"),
        "{steps}"
    );
    assert_no_secret("a ConfigMap", &all_config_maps(&c), &[ACCOUNT_KEY]);
}

/// No object a removal must delete without a record naming it: a connection with
/// `deletionPolicy: Delete` that no run has recorded yet gets its metadata ConfigMap before
/// any of its objects is written, so when that ConfigMap cannot be created (here sc-job may
/// not create ConfigMaps) nothing of the connection is written, and a run killed between the
/// apply and the record could not leave objects behind either. A `Retain` connection (its
/// removal keeps its objects, recorded or not) is applied first and recorded with its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_object_is_written_before_its_connection_is_recorded() {
    let ks = start().await;
    let c = ks.cluster();
    install_release_rbac_with(&c, json!(["get", "list", "watch", "update", "patch"]));
    let mut rules = writer_rules();
    rules
        .as_array_mut()
        .unwrap()
        .push(json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}));
    cluster_role(&c, rules);
    let mut deleted = blob("default");
    deleted["deletionPolicy"] = json!("Delete");
    request_all(
        &c,
        "cs-job-unrecorded",
        1,
        &json!({"unrecorded": deleted, "retained": blob("default")}),
    );
    let (_, text) = run_to_failure(&ks).await;
    assert!(
        text.contains("sc-job: 0 applied, 2 failed, 0 deleted"),
        "{text}"
    );
    assert!(
        get(&c, "Secret", "default", "sc-unrecorded-secret").is_none(),
        "the Secret was written without a record naming its connection: {text}"
    );
    assert!(
        get(&c, "Secret", "default", "sc-retained-secret").is_some(),
        "the Secret of the Retain connection was not written: {text}"
    );
    // Its result could not be recorded: a failure of the run, told by a Warning event too.
    let events = list(&c, "Event", Some(NS));
    assert!(
        events.iter().any(|e| e["type"] == "Warning"
            && e["message"]
                .as_str()
                .is_some_and(|m| { m.starts_with("[retained] recording the result failed") })),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_kept_and_its_logs_explain_the_failure() {
    let ks = start().await;
    let c = ks.cluster();
    install_rbac(&c);
    create(
        &c,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "sc-taken-secret", "namespace": "default"},
               "stringData": {"token": "not-ours"}}),
    );
    let conns = json!({"taken": blob("default"), "fine": blob("default")});
    request_all(&c, "cs-job-2", 1, &conns);
    let (job, text) = run_to_failure(&ks).await;
    assert!(!job_condition(&job, "Complete"));
    assert!(
        text.contains(
            "[taken] failed: secret default/sc-taken-secret exists and is not managed by sc-extension; delete it or rename the connection"
        ),
        "{text}"
    );
    assert!(
        text.contains("[fine] secret default/sc-fine-secret: created (1 key)"),
        "{text}"
    );
    assert!(
        text.contains("sc-job: 1 applied, 1 failed, 0 deleted"),
        "{text}"
    );
    assert_no_secret("kubectl logs", &text, &[ACCOUNT_KEY]);

    // The Job stays for `kubectl describe` and `kubectl logs`; nothing secret in it.
    assert!(get(&c, "Job", NS, "sc-job").is_some());
    let spec = kubectl(&ks, &["get", "job/sc-job", "-n", NS, "-o", "json"]).await;
    assert_no_secret("the Job", spec.ok("kubectl get job"), &[ACCOUNT_KEY]);
    assert_no_secret("a ConfigMap", &all_config_maps(&c), &[ACCOUNT_KEY]);
    // `kubectl describe` shows a Warning Event naming the object, the reason and the remedy.
    let described = kubectl(&ks, &["describe", "job/sc-job", "-n", NS]).await;
    let described = described.ok("kubectl describe job/sc-job");
    assert!(
        described.contains("NotManaged")
            && described.contains("sc-taken-secret")
            && described.contains("rename the connection"),
        "{described}"
    );
    assert_no_secret("kubectl describe", described, &[ACCOUNT_KEY]);
    assert_eq!(
        metadata(&c, "taken", "status.json")["error"]["reason"],
        "NotManaged"
    );
    assert_eq!(metadata(&c, "fine", "status.json")["phase"], "Ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_leaves_a_successful_job_in_place() {
    let ks = start().await;
    let c = ks.cluster();
    install_rbac(&c);
    request_all(&c, "cs-job-3", 1, &json!({"kept": blob("default")}));
    let mut job = sc_job();
    job["spec"]["template"]["spec"]["containers"][0]["args"] =
        json!(["--changeset", "sc-changeset", "--keep"]);
    create(&c, job);
    wait_until(WAIT, "the Job sc-job to complete", || {
        let done = get(&c, "Job", NS, "sc-job").filter(|j| job_condition(j, "Complete"));
        async move { done }
    })
    .await;
    let logs = kubectl(&ks, &["logs", "job/sc-job", "-n", NS]).await;
    let text = logs.ok("kubectl logs job/sc-job");
    assert!(
        text.contains("sc-job: 1 applied, 0 failed, 0 deleted"),
        "{text}"
    );
    assert!(
        text.contains("sc-job: keeping job sc-system/sc-job (--keep)"),
        "{text}"
    );
    assert!(get(&c, "Job", NS, "sc-job").is_some());
}

/// One kind of request in kubesim's request log: verb, resource, namespace, name, count.
type Logged = (String, String, String, String, u64);

/// sc-job's requests in kubesim's request log.
async fn job_requests(ks: &kubesim::Kubesim) -> Vec<Logged> {
    let text = ks
        .client()
        .request_text(
            http::Request::get("/kubesim/audit")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .expect("the request log");
    let audit: Value = serde_json::from_str(&text).expect("JSON");
    let s = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_string();
    audit["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["user"] == "system:serviceaccount:sc-system:sc-job")
        .map(|e| {
            (
                s(e, "verb"),
                s(e, "resource"),
                s(e, "namespace"),
                s(e, "name"),
                e["count"].as_u64().unwrap_or(1),
            )
        })
        .collect()
}

/// The ownership check in bulk: a run writing 40 Secrets in one namespace lists them once
/// (metadata only) and gets none; each is written by one apply. A connection no run has
/// recorded costs one metadata write (its creation with the result), unless its
/// `deletionPolicy` is `Delete`: then its metadata is created before its Secret and updated
/// with the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_lists_each_namespace_and_kind_once_and_gets_no_object() {
    let ks = start().await;
    let c = ks.cluster();
    install_rbac(&c);
    const N: usize = 40;
    let mut conns = serde_json::Map::new();
    for i in 0..N {
        conns.insert(format!("b{i:02}"), blob("default"));
    }
    let mut deleted = blob("default");
    deleted["deletionPolicy"] = json!("Delete");
    conns.insert("d00".into(), deleted);
    request_all(&c, "cs-job-6", 1, &Value::Object(conns));
    create(&c, sc_job());
    wait_until(WAIT, "the Job sc-job to be deleted after success", || {
        let gone = get(&c, "Job", NS, "sc-job").is_none();
        async move { gone.then_some(()) }
    })
    .await;
    let requests = job_requests(&ks).await;
    let sum = |f: &dyn Fn(&Logged) -> bool| -> u64 {
        requests.iter().filter(|r| f(r)).map(|r| r.4).sum()
    };
    let in_default =
        |verb: &'static str| move |r: &Logged| r.0 == verb && r.1 == "secrets" && r.2 == "default";
    assert_eq!(sum(&in_default("list")), 1, "{requests:?}");
    assert_eq!(sum(&in_default("get")), 0, "{requests:?}");
    for i in 0..N {
        let name = format!("sc-b{i:02}-secret");
        assert_eq!(
            sum(&|r| in_default("patch")(r) && r.3 == name),
            1,
            "{name}: {requests:?}"
        );
        assert_eq!(
            metadata(&c, &format!("b{i:02}"), "status.json")["phase"],
            "Ready"
        );
    }
    let metadata_writes = |name: &str, verb: &str| {
        let cm = sc_contract::metadata_name(name);
        sum(&|r| r.0 == verb && r.1 == "configmaps" && r.2 == NS && r.3 == cm)
    };
    // A create names no object (a POST to the collection): one per connection in all.
    let creates = sum(&|r| r.0 == "create" && r.1 == "configmaps" && r.2 == NS);
    assert_eq!(creates, N as u64 + 1, "{requests:?}");
    for i in 0..N {
        let name = format!("b{i:02}");
        assert_eq!(metadata_writes(&name, "update"), 0, "{name}: {requests:?}");
    }
    assert_eq!(metadata_writes("d00", "update"), 1, "{requests:?}");
    assert_eq!(metadata(&c, "d00", "status.json")["phase"], "Ready");
    assert_eq!(
        metadata(&c, "d00", "status.json")["deletionPolicy"],
        "Delete"
    );
    // By verb and resource, for the record (an apply that creates is logged as patch and
    // create, the two verbs kube-apiserver authorizes for it: one request).
    let mut by_kind = std::collections::BTreeMap::<(String, String), u64>::new();
    for r in &requests {
        *by_kind.entry((r.0.clone(), r.1.clone())).or_default() += r.4;
    }
    eprintln!("sc-job's requests for {N} connections in one namespace: {by_kind:?}");
}

/// The RBAC of a chart before sc-job listed where it writes: no `list`. The ownership check
/// falls back to a get of each object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_list_each_object_is_checked_with_a_get() {
    let ks = start().await;
    let c = ks.cluster();
    install_release_rbac(&c);
    let mut rules = writer_rules();
    for rule in rules.as_array_mut().unwrap() {
        if let Some(verbs) = rule["verbs"].as_array_mut() {
            verbs.retain(|v| v != "list");
        }
    }
    rules
        .as_array_mut()
        .unwrap()
        .push(json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}));
    cluster_role(&c, rules);
    // More connections than are looked up one by one: sc-job tries one list of the Secrets.
    let mut conns = serde_json::Map::new();
    for i in 0..17 {
        conns.insert(format!("b{i:02}"), blob("default"));
    }
    request_all(&c, "cs-job-5", 1, &Value::Object(conns));
    create(&c, sc_job());
    wait_until(WAIT, "the Job sc-job to be deleted after success", || {
        let gone = get(&c, "Job", NS, "sc-job").is_none();
        async move { gone.then_some(()) }
    })
    .await;
    for i in 0..17 {
        let name = format!("b{i:02}");
        assert_eq!(
            metadata(&c, &name, "status.json")["phase"],
            "Ready",
            "{name}"
        );
        let secret = get(&c, "Secret", "default", &format!("sc-{name}-secret"))
            .expect("the Secret was created by the Job");
        assert_eq!(
            secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "sc-extension"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_outside_its_rbac_is_forbidden_with_a_remedy() {
    let ks = start().await;
    let c = ks.cluster();
    create_namespace(&c, "other");
    install_namespaced_rbac(&c);
    request_all(
        &c,
        "cs-job-4",
        1,
        &json!({"inside": blob("default"), "outside": blob("other")}),
    );
    let (_, text) = run_to_failure(&ks).await;
    assert!(
        text.contains("[outside] failed: get namespace other was forbidden"),
        "{text}"
    );
    assert!(text.contains("rbac.namespaces"), "{text}");
    assert!(
        text.contains("[inside] secret default/sc-inside-secret: created (1 key)"),
        "{text}"
    );
    assert!(get(&c, "Secret", "other", "sc-outside-secret").is_none());
    assert_eq!(
        metadata(&c, "outside", "status.json")["error"]["reason"],
        "Forbidden"
    );
}
