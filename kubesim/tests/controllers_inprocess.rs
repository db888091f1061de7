//! Controllers and the process kubelet through the in-process API: Jobs, Deployments,
//! garbage collection, namespace deletion, pod lifecycle and process cleanup.

use std::time::Duration;

use futures::StreamExt;
use kubesim::cluster::{Cluster, DeleteOptions, Deleted, LogOptions, Propagation, WriteOptions};
use kubesim::store::ResKey;
use kubesim::testing::wait_until;
use kubesim::{Kubesim, Options};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn res(group: &str, resource: &str) -> ResKey {
    ResKey::new(group, resource)
}

fn create(c: &Cluster, group: &str, resource: &str, ns: &str, obj: Value) -> Value {
    c.create(&res(group, resource), ns, obj, &WriteOptions::default())
        .expect("create")
}

fn get(c: &Cluster, group: &str, resource: &str, ns: &str, name: &str) -> Option<Value> {
    c.get(&res(group, resource), ns, name).ok()
}

fn list(c: &Cluster, group: &str, resource: &str, ns: &str) -> Vec<Value> {
    c.list(&res(group, resource), Some(ns), &Default::default())
        .unwrap()
        .items
}

fn condition(obj: &Value, kind: &str) -> Option<Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
        .cloned()
}

fn owned_by<'a>(items: &'a [Value], owner: &Value) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|o| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["uid"] == owner["metadata"]["uid"])
        })
        .collect()
}

async fn log_text(c: &Cluster, ns: &str, pod: &str, container: &str) -> String {
    let opts = LogOptions {
        container: container.into(),
        ..Default::default()
    };
    let mut s = c.pod_logs(ns, pod, opts).expect("logs");
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

fn job(name: &str, command: Value, backoff: i64) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": backoff, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "alpine", "command": command}]}}}
    })
}

async fn start() -> Kubesim {
    Kubesim::start(Options::default())
        .await
        .expect("kubesim starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_with_env_from_secret_completes_and_keeps_its_log() {
    let ks = start().await;
    let c = ks.cluster();
    create(
        &c,
        "",
        "secrets",
        "default",
        json!({"metadata": {"name": "db"}, "stringData": {"DB_USER": "admin"}}),
    );
    let mut j = job("printenv", json!(["printenv"]), 0);
    j["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
        json!([{"secretRef": {"name": "db"}}]);
    create(&c, "batch", "jobs", "default", j);
    let done = wait_until(WAIT, "job printenv complete", || {
        let c = c.clone();
        async move {
            get(&c, "batch", "jobs", "default", "printenv")
                .filter(|j| condition(j, "Complete").is_some())
        }
    })
    .await;
    assert!(condition(&done, "SuccessCriteriaMet").is_some());
    assert_eq!(done["status"]["succeeded"], 1);
    assert!(done["status"]["completionTime"].is_string());
    assert!(done["status"]["startTime"].is_string());
    let pods = list(&c, "", "pods", "default");
    let pods = owned_by(&pods, &done);
    assert_eq!(pods.len(), 1);
    let pod = pods[0];
    assert!(
        pod["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("printenv-")
    );
    assert_eq!(pod["status"]["phase"], "Succeeded");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(
        pod["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
        true
    );
    let log = log_text(
        &c,
        "default",
        pod["metadata"]["name"].as_str().unwrap(),
        "main",
    )
    .await;
    assert!(log.contains("DB_USER=admin"), "{log}");
    let events = list(&c, "", "events", "default");
    let reasons: Vec<&str> = events
        .iter()
        .filter(|e| e["involvedObject"]["name"] == "printenv")
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"SuccessfulCreate") && reasons.contains(&"Completed"),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_job_ends_failed_with_backoff_limit_exceeded() {
    let ks = start().await;
    let c = ks.cluster();
    let mut j = job("fails", json!(["sh", "-c", "echo boom; exit 3"]), 0);
    j["spec"]["template"]["spec"]["containers"][0]["terminationMessagePolicy"] =
        json!("FallbackToLogsOnError");
    create(&c, "batch", "jobs", "default", j);
    let failed = wait_until(WAIT, "job fails failed", || {
        let c = c.clone();
        async move {
            get(&c, "batch", "jobs", "default", "fails")
                .filter(|j| condition(j, "Failed").is_some())
        }
    })
    .await;
    let cond = condition(&failed, "Failed").unwrap();
    assert_eq!(cond["reason"], "BackoffLimitExceeded");
    assert_eq!(
        cond["message"],
        "Job has reached the specified backoff limit"
    );
    assert!(condition(&failed, "FailureTarget").is_some());
    assert_eq!(failed["status"]["failed"], 1);
    let pods = list(&c, "", "pods", "default");
    let pod = owned_by(&pods, &failed)[0];
    let terminated = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 3);
    assert_eq!(terminated["reason"], "Error");
    assert_eq!(terminated["message"], "boom\n");
    let log = log_text(
        &c,
        "default",
        pod["metadata"]["name"].as_str().unwrap(),
        "main",
    )
    .await;
    assert_eq!(log, "boom\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_keeps_the_pod_waiting_until_it_exists() {
    let ks = start().await;
    let c = ks.cluster();
    create(
        &c,
        "",
        "pods",
        "default",
        json!({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "main", "image": "alpine", "command": ["printenv", "TOKEN"],
                        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "t"}}}]}]}}),
    );
    let waiting = wait_until(WAIT, "pod p CreateContainerConfigError", || {
        let c = c.clone();
        async move {
            get(&c, "", "pods", "default", "p").filter(|p| {
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                    == "CreateContainerConfigError"
            })
        }
    })
    .await;
    assert_eq!(waiting["status"]["phase"], "Pending");
    assert_eq!(
        waiting["status"]["containerStatuses"][0]["state"]["waiting"]["message"],
        "secret \"later\" not found"
    );
    create(
        &c,
        "",
        "secrets",
        "default",
        json!({"metadata": {"name": "later"}, "stringData": {"t": "xyz"}}),
    );
    wait_until(WAIT, "pod p Succeeded", || {
        let c = c.clone();
        async move {
            get(&c, "", "pods", "default", "p").filter(|p| p["status"]["phase"] == "Succeeded")
        }
    })
    .await;
    assert_eq!(log_text(&c, "default", "p", "main").await, "xyz\n");
}

fn deployment(name: &str, replicas: i64, arg: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", arg]}]}}}
    })
}

async fn wait_available(
    c: &std::sync::Arc<Cluster>,
    name: &str,
    generation: i64,
    replicas: i64,
) -> Value {
    wait_until(WAIT, "deployment rolled out", || {
        let c = c.clone();
        let name = name.to_string();
        async move {
            get(&c, "apps", "deployments", "default", &name).filter(|d| {
                let s = &d["status"];
                s["observedGeneration"] == generation
                    && s["updatedReplicas"] == replicas
                    && s["availableReplicas"] == replicas
                    && s["replicas"] == replicas
                    && condition(d, "Available").is_some()
                    && condition(d, "Progressing")
                        .is_some_and(|p| p["reason"] == "NewReplicaSetAvailable")
            })
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_and_deletes_with_each_propagation_policy() {
    let ks = start().await;
    let c = ks.cluster();
    create(
        &c,
        "apps",
        "deployments",
        "default",
        deployment("web", 2, "3600"),
    );
    let d = wait_available(&c, "web", 1, 2).await;
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let rss = list(&c, "apps", "replicasets", "default");
    let first = owned_by(&rss, &d)[0].clone();
    let hash = first["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(first["metadata"]["name"], format!("web-{hash}"));

    // A template change rolls out a second ReplicaSet.
    c.mutate(&res("apps", "deployments"), "default", "web", "test", |d| {
        d["spec"]["template"]["spec"]["containers"][0]["command"] = json!(["sleep", "3601"]);
        Ok(())
    })
    .unwrap();
    let d = wait_available(&c, "web", 2, 2).await;
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let old = get(
        &c,
        "apps",
        "replicasets",
        "default",
        first["metadata"]["name"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(old["spec"]["replicas"], 0);
    wait_until(WAIT, "old pods gone", || {
        let c = c.clone();
        let old = old.clone();
        async move {
            let pods = list(&c, "", "pods", "default");
            owned_by(&pods, &old).is_empty().then_some(())
        }
    })
    .await;

    // Orphan: the ReplicaSets stay, without ownerReferences.
    let r = c.delete(
        &res("apps", "deployments"),
        "default",
        "web",
        &DeleteOptions {
            propagation_policy: Some(Propagation::Orphan),
            ..Default::default()
        },
    );
    assert!(matches!(r, Ok(Deleted::Pending(_))));
    wait_until(WAIT, "deployment gone", || {
        let c = c.clone();
        async move {
            get(&c, "apps", "deployments", "default", "web")
                .is_none()
                .then_some(())
        }
    })
    .await;
    let rss = list(&c, "apps", "replicasets", "default");
    assert_eq!(rss.len(), 2);
    assert!(
        rss.iter()
            .all(|rs| rs["metadata"]["ownerReferences"].is_null())
    );

    // Foreground: the owner disappears only after its pods.
    let rs_name = rss.iter().find(|rs| rs["spec"]["replicas"] == 2).unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    c.delete(
        &res("apps", "replicasets"),
        "default",
        &rs_name,
        &DeleteOptions {
            propagation_policy: Some(Propagation::Foreground),
            ..Default::default()
        },
    )
    .unwrap();
    wait_until(WAIT, "replicaset and pods gone", || {
        let c = c.clone();
        let rs_name = rs_name.clone();
        async move {
            let gone = get(&c, "apps", "replicasets", "default", &rs_name).is_none();
            (gone && list(&c, "", "pods", "default").is_empty()).then_some(())
        }
    })
    .await;

    // Background: a new deployment, deleted; its ReplicaSet and pods follow.
    create(
        &c,
        "apps",
        "deployments",
        "default",
        deployment("api", 1, "3600"),
    );
    wait_available(&c, "api", 1, 1).await;
    c.delete(
        &res("apps", "deployments"),
        "default",
        "api",
        &DeleteOptions {
            propagation_policy: Some(Propagation::Background),
            ..Default::default()
        },
    )
    .unwrap();
    wait_until(WAIT, "api replicaset and pods gone", || {
        let c = c.clone();
        async move {
            let rs = list(&c, "apps", "replicasets", "default");
            let left = rs
                .iter()
                .filter(|r| r["metadata"]["labels"]["app"] == "api")
                .count();
            (left == 0 && list(&c, "", "pods", "default").is_empty()).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_removes_its_content() {
    let ks = start().await;
    let c = ks.cluster();
    create(
        &c,
        "",
        "namespaces",
        "",
        json!({"metadata": {"name": "scratch"}}),
    );
    wait_until(WAIT, "default service account", || {
        let c = c.clone();
        async move { get(&c, "", "serviceaccounts", "scratch", "default") }
    })
    .await;
    create(
        &c,
        "",
        "configmaps",
        "scratch",
        json!({"metadata": {"name": "cm"}}),
    );
    create(
        &c,
        "",
        "pods",
        "scratch",
        json!({"metadata": {"name": "sleeper"},
        "spec": {"terminationGracePeriodSeconds": 5,
                 "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}),
    );
    wait_until(WAIT, "sleeper running", || {
        let c = c.clone();
        async move {
            get(&c, "", "pods", "scratch", "sleeper").filter(|p| p["status"]["phase"] == "Running")
        }
    })
    .await;
    c.delete(
        &res("", "namespaces"),
        "",
        "scratch",
        &DeleteOptions::default(),
    )
    .unwrap();
    wait_until(WAIT, "namespace scratch gone", || {
        let c = c.clone();
        async move {
            get(&c, "", "namespaces", "", "scratch")
                .is_none()
                .then_some(())
        }
    })
    .await;
    assert!(ks.kubelet().pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_deletion_terminates_the_process_group_and_removes_the_pod() {
    let ks = start().await;
    let c = ks.cluster();
    // The shell ignores SIGTERM: it is killed when the grace period ends.
    create(
        &c,
        "",
        "pods",
        "default",
        json!({"metadata": {"name": "stubborn"},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": "busybox",
                                 "command": ["sh", "-c", "trap '' TERM; echo started; sleep 3600 & wait"]}]}}),
    );
    let running = wait_until(WAIT, "stubborn running", || {
        let c = c.clone();
        async move {
            get(&c, "", "pods", "default", "stubborn").filter(|p| p["status"]["phase"] == "Running")
        }
    })
    .await;
    let pid: i32 = running["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("process://")
        .parse()
        .unwrap();
    assert_eq!(running["spec"]["nodeName"], "kubesim");
    let r = c
        .delete(
            &res("", "pods"),
            "default",
            "stubborn",
            &DeleteOptions::default(),
        )
        .unwrap();
    assert!(matches!(r, Deleted::Pending(_)));
    wait_until(WAIT, "stubborn removed", || {
        let c = c.clone();
        async move {
            get(&c, "", "pods", "default", "stubborn")
                .is_none()
                .then_some(())
        }
    })
    .await;
    assert!(!alive(pid), "pid {pid} survived pod deletion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_every_pod_process() {
    let ks = start().await;
    let c = ks.cluster();
    create(
        &c,
        "",
        "pods",
        "default",
        json!({"metadata": {"name": "long"},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}),
    );
    let pids = wait_until(WAIT, "long running", || {
        let ks = &ks;
        async move { Some(ks.kubelet().pids()).filter(|p| !p.is_empty()) }
    })
    .await;
    let root = ks.kubelet().root_dir().to_path_buf();
    assert!(root.is_dir());
    drop(ks);
    wait_until(WAIT, "pod processes gone", || {
        let pids = pids.clone();
        async move { pids.iter().all(|p| !alive(*p)).then_some(()) }
    })
    .await;
    assert!(!root.exists(), "{} left behind", root.display());
}

/// Running and not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

async fn wait_job(c: &std::sync::Arc<Cluster>, name: &str, cond: &str) -> Value {
    wait_until(WAIT, "job condition", || {
        let c = c.clone();
        let (name, cond) = (name.to_string(), cond.to_string());
        async move {
            get(&c, "batch", "jobs", "default", &name).filter(|j| condition(j, &cond).is_some())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_restarts_the_container_in_the_same_pod() {
    let ks = start().await;
    let c = ks.cluster();
    let script = "if [ -f marker ]; then echo second; else touch marker; echo first; exit 1; fi";
    let mut j = job("retry", json!(["sh", "-c", script]), 2);
    j["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
    create(&c, "batch", "jobs", "default", j);
    let done = wait_job(&c, "retry", "Complete").await;
    let pods = list(&c, "", "pods", "default");
    let pods = owned_by(&pods, &done);
    assert_eq!(pods.len(), 1, "one pod, restarted in place");
    let status = &pods[0]["status"]["containerStatuses"][0];
    assert_eq!(status["restartCount"], 1);
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 1);
    let name = pods[0]["metadata"]["name"].as_str().unwrap();
    assert_eq!(log_text(&c, "default", name, "main").await, "second\n");
    let opts = LogOptions {
        container: "main".into(),
        previous: true,
        ..Default::default()
    };
    let mut prev = c.pod_logs("default", name, opts).unwrap();
    assert_eq!(prev.next().await.unwrap().unwrap(), "first\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_fails_the_job_and_stops_its_pod() {
    let ks = start().await;
    let c = ks.cluster();
    let mut j = job("slow", json!(["sleep", "3600"]), 0);
    j["spec"]["activeDeadlineSeconds"] = json!(1);
    j["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(1);
    create(&c, "batch", "jobs", "default", j);
    let failed = wait_job(&c, "slow", "Failed").await;
    assert_eq!(
        condition(&failed, "Failed").unwrap()["reason"],
        "DeadlineExceeded"
    );
    assert!(failed["status"]["active"].is_null());
    assert!(ks.kubelet().pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_after_finished_deletes_the_job_and_its_pods() {
    let ks = start().await;
    let c = ks.cluster();
    let mut j = job("short", json!(["true"]), 0);
    j["spec"]["ttlSecondsAfterFinished"] = json!(0);
    create(&c, "batch", "jobs", "default", j);
    wait_until(WAIT, "job and pods deleted", || {
        let c = c.clone();
        async move {
            let gone = get(&c, "batch", "jobs", "default", "short").is_none();
            (gone && list(&c, "", "pods", "default").is_empty()).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_deleted_as_their_process_ends_are_removed() {
    // A deletion that reaches the kubelet while a pod's process is ending (its Job deleted by
    // the pod itself, as sc-job does) must still end with the pod object removed, never a
    // terminal pod left with its deletionTimestamp.
    let ks = start().await;
    let c = ks.cluster();
    let mut sub = c.store().subscribe(None).expect("subscribe");
    const PODS: usize = 40;
    for i in 0..PODS {
        create(
            &c,
            "",
            "pods",
            "default",
            json!({"metadata": {"name": format!("quick-{i}")}, "spec": {"restartPolicy": "Never",
                "containers": [{"name": "main", "image": "alpine", "command": ["true"]}]}}),
        );
    }
    // Delete each pod the moment it is reported running: its process ends about then.
    let mut deleted = std::collections::BTreeSet::new();
    while deleted.len() < PODS {
        let ev = tokio::time::timeout(WAIT, sub.live.recv())
            .await
            .expect("a pod event within the wait")
            .expect("the event stream");
        let phase = ev.object["status"]["phase"].as_str().unwrap_or("");
        if ev.key.res == res("", "pods")
            && matches!(phase, "Running" | "Succeeded")
            && deleted.insert(ev.key.name.clone())
        {
            c.delete(
                &ev.key.res,
                "default",
                &ev.key.name,
                &DeleteOptions::default(),
            )
            .expect("delete");
        }
    }
    wait_until(WAIT, "every deleted pod removed", || {
        let c = c.clone();
        async move { list(&c, "", "pods", "default").is_empty().then_some(()) }
    })
    .await;
    assert!(ks.kubelet().pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_appear_at_translated_mount_paths_and_follow_updates() {
    let ks = start().await;
    let c = ks.cluster();
    create(
        &c,
        "",
        "configmaps",
        "default",
        json!({"metadata": {"name": "cfg"}, "data": {"v": "one"}}),
    );
    create(
        &c,
        "",
        "secrets",
        "default",
        json!({"metadata": {"name": "creds"}, "stringData": {"pw": "s3"}}),
    );
    let script = "cat /etc/app/v; cat $SECRET_FILE; echo; \
                  while ! grep -q two /etc/app/v; do sleep 0.1; done; echo updated; ls /scratch";
    create(
        &c,
        "",
        "pods",
        "default",
        json!({"metadata": {"name": "vol"}, "spec": {"restartPolicy": "Never",
        "volumes": [{"name": "config", "configMap": {"name": "cfg"}},
                    {"name": "secret", "secret": {"secretName": "creds"}},
                    {"name": "scratch", "emptyDir": {}}],
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script],
                        "env": [{"name": "SECRET_FILE", "value": "/var/secret/pw"}],
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/app"},
                                         {"name": "secret", "mountPath": "/var/secret", "readOnly": true},
                                         {"name": "scratch", "mountPath": "/scratch"}]}]}}),
    );
    wait_until(WAIT, "vol running", || {
        let c = c.clone();
        async move {
            get(&c, "", "pods", "default", "vol").filter(|p| p["status"]["phase"] == "Running")
        }
    })
    .await;
    c.mutate(&res("", "configmaps"), "default", "cfg", "test", |cm| {
        cm["data"]["v"] = json!("two");
        Ok(())
    })
    .unwrap();
    let pod = wait_until(WAIT, "vol finished", || {
        let c = c.clone();
        async move {
            get(&c, "", "pods", "default", "vol").filter(|p| {
                matches!(
                    p["status"]["phase"].as_str(),
                    Some("Succeeded") | Some("Failed")
                )
            })
        }
    })
    .await;
    let log = log_text(&c, "default", "vol", "main").await;
    assert_eq!(pod["status"]["phase"], "Succeeded", "{log}");
    assert_eq!(log, "ones3\nupdated\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_liveness_probes_drive_ready_and_restarts() {
    let ks = start().await;
    let c = ks.cluster();
    let port = kubesim::testing::free_port();
    create(
        &c,
        "",
        "configmaps",
        "default",
        json!({"metadata": {"name": "gate"}, "data": {"v": "wait"}}),
    );
    let serve = format!(
        "while ! grep -q go /etc/gate/v; do sleep 0.1; done; exec python3 -m http.server {port} --bind 127.0.0.1"
    );
    create(
        &c,
        "",
        "pods",
        "default",
        json!({"metadata": {"name": "web"}, "spec": {
        "volumes": [{"name": "gate", "configMap": {"name": "gate"}}],
        "containers": [{"name": "main", "image": "python", "command": ["sh", "-c", serve],
                        "ports": [{"name": "http", "containerPort": port}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                        "volumeMounts": [{"name": "gate", "mountPath": "/etc/gate"}]}]}}),
    );
    let running = wait_until(WAIT, "web running", || {
        let c = c.clone();
        async move {
            get(&c, "", "pods", "default", "web").filter(|p| p["status"]["phase"] == "Running")
        }
    })
    .await;
    assert_eq!(running["status"]["containerStatuses"][0]["ready"], false);
    assert!(condition(&running, "Ready").is_none());
    c.mutate(&res("", "configmaps"), "default", "gate", "test", |cm| {
        cm["data"]["v"] = json!("go");
        Ok(())
    })
    .unwrap();
    wait_until(WAIT, "web ready", || {
        let c = c.clone();
        async move { get(&c, "", "pods", "default", "web").filter(|p| condition(p, "Ready").is_some()) }
    })
    .await;

    let dead_port = kubesim::testing::free_port();
    create(
        &c,
        "",
        "pods",
        "default",
        json!({"metadata": {"name": "sick"}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"],
                        "livenessProbe": {"tcpSocket": {"port": dead_port}, "periodSeconds": 1, "failureThreshold": 1}}]}}),
    );
    let restarted = wait_until(WAIT, "sick restarted", || {
        let c = c.clone();
        async move {
            get(&c, "", "pods", "default", "sick").filter(|p| {
                p["status"]["containerStatuses"][0]["restartCount"]
                    .as_u64()
                    .unwrap_or(0)
                    >= 1
            })
        }
    })
    .await;
    assert_eq!(
        restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        143
    );
    let events = list(&c, "", "events", "default");
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "Unhealthy" && e["involvedObject"]["name"] == "sick")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_first_in_order() {
    let ks = start().await;
    let c = ks.cluster();
    create(
        &c,
        "",
        "pods",
        "default",
        json!({"metadata": {"name": "staged"}, "spec": {"restartPolicy": "Never",
        "initContainers": [{"name": "one", "image": "busybox", "command": ["sh", "-c", "echo one > stage"]},
                           {"name": "two", "image": "busybox", "command": ["sh", "-c", "echo two >> stage"]}],
        "containers": [{"name": "main", "image": "busybox", "command": ["cat", "stage"]}]}}),
    );
    let pod = wait_until(WAIT, "staged finished", || {
        let c = c.clone();
        async move {
            get(&c, "", "pods", "default", "staged").filter(|p| {
                matches!(
                    p["status"]["phase"].as_str(),
                    Some("Succeeded") | Some("Failed")
                )
            })
        }
    })
    .await;
    assert_eq!(pod["status"]["phase"], "Succeeded");
    let init = pod["status"]["initContainerStatuses"].as_array().unwrap();
    assert_eq!(init.len(), 2);
    assert!(
        init.iter()
            .all(|s| s["state"]["terminated"]["exitCode"] == 0)
    );
    assert!(condition(&pod, "Initialized").is_some());
    assert_eq!(
        log_text(&c, "default", "staged", "main").await,
        "one\ntwo\n"
    );
    assert_eq!(log_text(&c, "default", "staged", "one").await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_job_reaches_its_completions() {
    let ks = start().await;
    let c = ks.cluster();
    let mut j = job("batch", json!(["true"]), 0);
    j["spec"]["completions"] = json!(3);
    j["spec"]["parallelism"] = json!(2);
    create(&c, "batch", "jobs", "default", j);
    let done = wait_job(&c, "batch", "Complete").await;
    assert_eq!(done["status"]["succeeded"], 3);
    let pods = list(&c, "", "pods", "default");
    assert_eq!(owned_by(&pods, &done).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_job_runs_once_resumed() {
    let ks = start().await;
    let c = ks.cluster();
    let mut j = job("later", json!(["true"]), 0);
    j["spec"]["suspend"] = json!(true);
    create(&c, "batch", "jobs", "default", j);
    let suspended = wait_job(&c, "later", "Suspended").await;
    assert!(list(&c, "", "pods", "default").is_empty());
    assert!(suspended["status"]["startTime"].is_null());
    c.mutate(&res("batch", "jobs"), "default", "later", "test", |j| {
        j["spec"]["suspend"] = json!(false);
        Ok(())
    })
    .unwrap();
    let done = wait_job(&c, "later", "Complete").await;
    assert!(condition(&done, "Suspended").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_strategy_replaces_all_pods() {
    let ks = start().await;
    let c = ks.cluster();
    let mut d = deployment("batchy", 2, "3600");
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(1);
    create(&c, "apps", "deployments", "default", d);
    let first = wait_available(&c, "batchy", 1, 2).await;
    c.mutate(
        &res("apps", "deployments"),
        "default",
        "batchy",
        "test",
        |d| {
            d["spec"]["template"]["spec"]["containers"][0]["command"] = json!(["sleep", "3602"]);
            Ok(())
        },
    )
    .unwrap();
    let second = wait_available(&c, "batchy", 2, 2).await;
    let rss = list(&c, "apps", "replicasets", "default");
    let rss = owned_by(&rss, &second);
    assert_eq!(rss.len(), 2);
    let mut replicas: Vec<i64> = rss
        .iter()
        .map(|rs| rs["spec"]["replicas"].as_i64().unwrap())
        .collect();
    replicas.sort();
    assert_eq!(replicas, [0, 2]);
    assert_eq!(first["metadata"]["uid"], second["metadata"]["uid"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_deployment_adopts_its_orphaned_replicaset() {
    let ks = start().await;
    let c = ks.cluster();
    create(
        &c,
        "apps",
        "deployments",
        "default",
        deployment("again", 1, "3600"),
    );
    let first = wait_available(&c, "again", 1, 1).await;
    let orphan = DeleteOptions {
        propagation_policy: Some(Propagation::Orphan),
        ..Default::default()
    };
    c.delete(&res("apps", "deployments"), "default", "again", &orphan)
        .unwrap();
    wait_until(WAIT, "deployment gone", || {
        let c = c.clone();
        async move {
            get(&c, "apps", "deployments", "default", "again")
                .is_none()
                .then_some(())
        }
    })
    .await;
    let pods_before: Vec<String> = list(&c, "", "pods", "default")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pods_before.len(), 1);
    create(
        &c,
        "apps",
        "deployments",
        "default",
        deployment("again", 1, "3600"),
    );
    let second = wait_available(&c, "again", 1, 1).await;
    assert_ne!(first["metadata"]["uid"], second["metadata"]["uid"]);
    let rss = list(&c, "apps", "replicasets", "default");
    assert_eq!(rss.len(), 1);
    assert_eq!(
        rss[0]["metadata"]["ownerReferences"][0]["uid"],
        second["metadata"]["uid"]
    );
    let pods_after: Vec<String> = list(&c, "", "pods", "default")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pods_after, pods_before, "the running pod is kept");
}

fn has_tracking(p: &Value) -> bool {
    p["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|l| l.iter().any(|f| f == "batch.kubernetes.io/job-tracking"))
}

async fn running_pod_of(c: &std::sync::Arc<Cluster>, job: &Value) -> Value {
    let job = job.clone();
    wait_until(WAIT, "a running pod of the job", || {
        let c = c.clone();
        let job = job.clone();
        async move {
            let pods = list(&c, "", "pods", "default");
            owned_by(&pods, &job)
                .into_iter()
                .find(|p| p["status"]["phase"] == "Running")
                .cloned()
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_pods_are_tracked_with_a_finalizer_until_counted() {
    let ks = start().await;
    let c = ks.cluster();
    let mut j = job("tracked", json!(["sleep", "3600"]), 1);
    j["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(1);
    let j = create(&c, "batch", "jobs", "default", j);
    let first = running_pod_of(&c, &j).await;
    assert!(has_tracking(&first));
    // A deleted pod is killed, counted as failed, released, removed, and replaced.
    let name = first["metadata"]["name"].as_str().unwrap().to_string();
    c.delete(
        &res("", "pods"),
        "default",
        &name,
        &DeleteOptions::default(),
    )
    .unwrap();
    wait_until(WAIT, "deleted pod counted and gone", || {
        let c = c.clone();
        let name = name.clone();
        async move {
            let job = get(&c, "batch", "jobs", "default", "tracked")?;
            let gone = get(&c, "", "pods", "default", &name).is_none();
            (gone && job["status"]["failed"] == 1).then_some(())
        }
    })
    .await;
    let second = running_pod_of(&c, &j).await;
    assert_ne!(second["metadata"]["name"], first["metadata"]["name"]);

    // Deleting the Job in the background takes its pods along, finalizers notwithstanding.
    let background = DeleteOptions {
        propagation_policy: Some(Propagation::Background),
        ..Default::default()
    };
    c.delete(&res("batch", "jobs"), "default", "tracked", &background)
        .unwrap();
    wait_until(WAIT, "pods of the deleted job gone", || {
        let c = c.clone();
        async move { list(&c, "", "pods", "default").is_empty().then_some(()) }
    })
    .await;

    // Orphaned pods are released too.
    let j = create(
        &c,
        "batch",
        "jobs",
        "default",
        job("left", json!(["sleep", "3600"]), 0),
    );
    let pod = running_pod_of(&c, &j).await;
    let orphan = DeleteOptions {
        propagation_policy: Some(Propagation::Orphan),
        ..Default::default()
    };
    c.delete(&res("batch", "jobs"), "default", "left", &orphan)
        .unwrap();
    let released = wait_until(WAIT, "orphaned pod released", || {
        let c = c.clone();
        let name = pod["metadata"]["name"].as_str().unwrap().to_string();
        async move {
            get(&c, "", "pods", "default", &name)
                .filter(|p| !has_tracking(p) && p["metadata"]["ownerReferences"].is_null())
        }
    })
    .await;
    assert_eq!(released["status"]["phase"], "Running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_rollout_exceeds_its_progress_deadline() {
    let ks = start().await;
    let c = ks.cluster();
    let mut d = deployment("crashy", 1, "3600");
    d["spec"]["progressDeadlineSeconds"] = json!(1);
    d["spec"]["template"]["spec"]["containers"][0]["command"] = json!(["false"]);
    create(&c, "apps", "deployments", "default", d);
    // The deployment controller sees the deadline pass on a later pass over the Deployment:
    // on a loaded machine (the whole suite at once) that took more than WAIT; a bound, not a
    // timing claim.
    let stuck = wait_until(WAIT * 3, "progress deadline exceeded", || {
        let c = c.clone();
        async move {
            get(&c, "apps", "deployments", "default", "crashy").filter(|d| {
                d["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Progressing" && c["status"] == "False")
            })
        }
    })
    .await;
    let progressing = stuck["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap();
    assert_eq!(progressing["reason"], "ProgressDeadlineExceeded");
    assert!(
        progressing["message"]
            .as_str()
            .unwrap()
            .ends_with("has timed out progressing.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_of_a_running_job() {
    let ks = start().await;
    let c = ks.cluster();
    let mut j = job("fg", json!(["sleep", "3600"]), 0);
    j["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(1);
    let j = create(&c, "batch", "jobs", "default", j);
    running_pod_of(&c, &j).await;
    let foreground = DeleteOptions {
        propagation_policy: Some(Propagation::Foreground),
        ..Default::default()
    };
    c.delete(&res("batch", "jobs"), "default", "fg", &foreground)
        .unwrap();
    wait_until(WAIT, "job and pods gone", || {
        let c = c.clone();
        async move {
            let gone = get(&c, "batch", "jobs", "default", "fg").is_none();
            (gone && list(&c, "", "pods", "default").is_empty()).then_some(())
        }
    })
    .await;
    assert!(ks.kubelet().pids().is_empty());
}
