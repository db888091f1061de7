use serde_json::json;

use super::*;
use crate::store::EventType;

fn res(group: &str, resource: &str) -> ResKey {
    ResKey::new(group, resource)
}

fn opts() -> WriteOptions {
    WriteOptions::manager("test")
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
}

fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}})
}

fn pod(name: &str, node: Option<&str>) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

#[test]
fn builtin_namespaces_exist_with_their_default_service_account() {
    let c = Cluster::new();
    for ns in BUILTIN_NAMESPACES {
        let n = c.get(&res("", "namespaces"), "", ns).unwrap();
        assert_eq!(n["status"]["phase"], "Active");
        assert_eq!(n["spec"]["finalizers"], json!(["kubernetes"]));
        c.get(&res("", "serviceaccounts"), ns, "default").unwrap();
    }
}

#[test]
fn create_sets_metadata_and_generate_name() {
    let c = Cluster::new();
    let obj = json!({"metadata": {"generateName": "web-"}, "data": {}});
    let made = c
        .create(&res("", "configmaps"), "default", obj, &opts())
        .unwrap();
    let name = made["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    assert_eq!(made["apiVersion"], "v1");
    assert_eq!(made["kind"], "ConfigMap");
    assert!(made["metadata"]["uid"].is_string());
    assert!(
        made["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(made["metadata"]["managedFields"][0]["manager"], "test");
    let e = c
        .create(&res("", "configmaps"), "nowhere", cm("x"), &opts())
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "namespaces \"nowhere\" not found")
    );
}

#[test]
fn generation_follows_spec_changes_only() {
    let c = Cluster::new();
    let r = res("apps", "deployments");
    let d = c.create(&r, "default", deployment("web"), &opts()).unwrap();
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    let labelled = c
        .patch(
            &r,
            "default",
            "web",
            None,
            PatchType::Merge,
            &json!({"metadata": {"labels": {"x": "y"}}}),
            &opts(),
        )
        .unwrap();
    assert_eq!(labelled["metadata"]["generation"], 1);
    let scaled = c
        .patch(
            &r,
            "default",
            "web",
            None,
            PatchType::Merge,
            &json!({"spec": {"replicas": 3}}),
            &opts(),
        )
        .unwrap();
    assert_eq!(scaled["metadata"]["generation"], 2);
    let status = c
        .update_status(&r, "default", "web", "ctl", |d| {
            d["status"] = json!({"replicas": 3});
            d["spec"]["replicas"] = json!(9);
            Ok(())
        })
        .unwrap();
    assert_eq!(status["metadata"]["generation"], 2);
    assert_eq!(status["spec"]["replicas"], 3, "status writes keep the spec");
    assert_eq!(status["status"]["replicas"], 3);
    // Main-resource writes keep the status.
    let main = c
        .patch(
            &r,
            "default",
            "web",
            None,
            PatchType::Merge,
            &json!({"status": {"replicas": 0}}),
            &opts(),
        )
        .unwrap();
    assert_eq!(main["status"]["replicas"], 3);
    // A no-op write stores nothing.
    let rv = c.store().current_rv();
    c.patch(
        &r,
        "default",
        "web",
        None,
        PatchType::Merge,
        &json!({"spec": {"replicas": 3}}),
        &opts(),
    )
    .unwrap();
    assert_eq!(c.store().current_rv(), rv);
    let scale = c.get_scale(&r, "default", "web").unwrap();
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");
}

#[test]
fn finalizers_hold_deletion_until_removed() {
    let c = Cluster::new();
    let r = res("", "configmaps");
    for (policy, finalizer) in [
        (Propagation::Foreground, "foregroundDeletion"),
        (Propagation::Orphan, "orphan"),
    ] {
        let name = finalizer.to_lowercase();
        c.create(&r, "default", cm(&name), &opts()).unwrap();
        let d = DeleteOptions {
            propagation_policy: Some(policy),
            ..Default::default()
        };
        let Deleted::Pending(p) = c.delete(&r, "default", &name, &d).unwrap() else {
            panic!("pending")
        };
        assert!(p["metadata"]["deletionTimestamp"].is_string());
        assert_eq!(p["metadata"]["finalizers"], json!([finalizer]));
        // New finalizers are refused while deleting.
        let e = c
            .patch(
                &r,
                "default",
                &name,
                None,
                PatchType::Merge,
                &json!({"metadata": {"finalizers": [finalizer, "x/y"]}}),
                &opts(),
            )
            .unwrap_err();
        assert_eq!(e.code, 422, "{e:?}");
        let sub = c.store().subscribe(None).unwrap();
        c.mutate(&r, "default", &name, "gc", |o| {
            o["metadata"]["finalizers"] = json!([]);
            Ok(())
        })
        .unwrap();
        assert!(c.get(&r, "default", &name).unwrap_err().is_not_found());
        let mut live = sub.live;
        let kinds: Vec<EventType> = std::iter::from_fn(|| live.try_recv().ok())
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, [EventType::Modified, EventType::Deleted]);
    }
    c.create(&r, "default", cm("bg"), &opts()).unwrap();
    let gone = c
        .delete(&r, "default", "bg", &DeleteOptions::default())
        .unwrap();
    assert!(matches!(gone, Deleted::Gone(_)));
    // Jobs default to orphaning their pods (batch/v1 compatibility).
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}});
    c.create(&res("batch", "jobs"), "default", job, &opts())
        .unwrap();
    let Deleted::Pending(j) = c
        .delete(
            &res("batch", "jobs"),
            "default",
            "j",
            &DeleteOptions::default(),
        )
        .unwrap()
    else {
        panic!("pending")
    };
    assert_eq!(j["metadata"]["finalizers"], json!(["orphan"]));
}

#[test]
fn preconditions_and_dry_run() {
    let c = Cluster::new();
    let r = res("", "configmaps");
    let made = c.create(&r, "default", cm("x"), &opts()).unwrap();
    let d = DeleteOptions {
        precondition_uid: Some("other".into()),
        ..Default::default()
    };
    let e = c.delete(&r, "default", "x", &d).unwrap_err();
    assert_eq!(e.code, 409);
    assert!(
        e.message
            .contains("Precondition failed: UID in precondition: other"),
        "{}",
        e.message
    );
    let dry = DeleteOptions {
        dry_run: true,
        ..Default::default()
    };
    assert!(matches!(
        c.delete(&r, "default", "x", &dry).unwrap(),
        Deleted::Gone(_)
    ));
    c.get(&r, "default", "x").unwrap();
    let rv = c.store().current_rv();
    let dry_opts = WriteOptions {
        dry_run: true,
        ..opts()
    };
    c.create(&r, "default", cm("y"), &dry_opts).unwrap();
    let mut changed = made.clone();
    changed["data"]["a"] = json!("2");
    let would = c.update(&r, "default", "x", changed, &dry_opts).unwrap();
    assert_eq!(would["data"]["a"], "2");
    assert_eq!(c.store().current_rv(), rv);
    assert!(c.get(&r, "default", "y").is_err());
}

#[test]
fn pods_terminate_gracefully_only_when_scheduled() {
    let c = Cluster::new();
    let r = res("", "pods");
    let p = c
        .create(&r, "default", pod("unscheduled", None), &opts())
        .unwrap();
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
    assert!(matches!(
        c.delete(&r, "default", "unscheduled", &DeleteOptions::default())
            .unwrap(),
        Deleted::Gone(_)
    ));

    c.create(&r, "default", pod("running", Some("node-1")), &opts())
        .unwrap();
    let Deleted::Pending(p) = c
        .delete(&r, "default", "running", &DeleteOptions::default())
        .unwrap()
    else {
        panic!("graceful")
    };
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
    let now = DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    assert!(matches!(
        c.delete(&r, "default", "running", &now).unwrap(),
        Deleted::Gone(_)
    ));
}

#[test]
fn namespaces_terminate_until_their_finalizer_is_removed() {
    let c = Cluster::new();
    let r = res("", "namespaces");
    c.create(&r, "", json!({"metadata": {"name": "team"}}), &opts())
        .unwrap();
    let Deleted::Pending(n) = c.delete(&r, "", "team", &DeleteOptions::default()).unwrap() else {
        panic!("pending")
    };
    assert_eq!(n["status"]["phase"], "Terminating");
    let e = c
        .create(&res("", "configmaps"), "team", cm("late"), &opts())
        .unwrap_err();
    assert_eq!(e.code, 403);
    assert!(
        e.message.contains("because it is being terminated"),
        "{}",
        e.message
    );
    c.mutate(&r, "", "team", "namespace-controller", |n| {
        n["spec"]["finalizers"] = json!([]);
        Ok(())
    })
    .unwrap();
    assert!(c.get(&r, "", "team").unwrap_err().is_not_found());
}

#[test]
fn secrets_and_configmaps_admission() {
    let c = Cluster::new();
    let s = json!({"metadata": {"name": "s"}, "data": {"a": "YQ=="}, "stringData": {"b": "bee"}});
    let made = c
        .create(&res("", "secrets"), "default", s, &opts())
        .unwrap();
    assert_eq!(made["data"], json!({"a": "YQ==", "b": "YmVl"}));
    assert_eq!(made["type"], "Opaque");
    assert!(made.get("stringData").is_none());
    let bad = json!({"metadata": {"name": "t"}, "data": {"a": "not base64!"}});
    assert_eq!(
        c.create(&res("", "secrets"), "default", bad, &opts())
            .unwrap_err()
            .code,
        400
    );

    let mut frozen = cm("frozen");
    frozen["immutable"] = json!(true);
    c.create(&res("", "configmaps"), "default", frozen, &opts())
        .unwrap();
    let e = c
        .patch(
            &res("", "configmaps"),
            "default",
            "frozen",
            None,
            PatchType::Merge,
            &json!({"data": {"a": "2"}}),
            &opts(),
        )
        .unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "ConfigMap \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
}

#[test]
fn services_get_cluster_ips_and_jobs_their_selector() {
    let c = Cluster::new();
    let svc = json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}});
    let s = c
        .create(&res("", "services"), "default", svc, &opts())
        .unwrap();
    assert!(
        s["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("10.96.")
    );
    assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
    let job = json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Always",
        "containers": [{"name": "c", "image": "i"}]}}}});
    let e = c
        .create(&res("batch", "jobs"), "default", job.clone(), &opts())
        .unwrap_err();
    assert_eq!(
        e.message,
        "Job.batch \"j\" is invalid: spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
    );
    let mut ok = job;
    ok["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    let j = c
        .create(&res("batch", "jobs"), "default", ok, &opts())
        .unwrap();
    let uid = j["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "j");
    assert_eq!(j["metadata"]["labels"]["batch.kubernetes.io/job-name"], "j");
    assert_eq!(j["spec"]["backoffLimit"], 6);
    let e = c
        .patch(
            &res("batch", "jobs"),
            "default",
            "j",
            None,
            PatchType::Merge,
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "other"}]}}}}),
            &opts(),
        )
        .unwrap_err();
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("spec.template: Invalid value"),
        "{}",
        e.message
    );
}

#[test]
fn pod_logs_without_a_source_wait_to_start() {
    let c = Cluster::new();
    let mut two = pod("two", None);
    two["spec"]["containers"] = json!([{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]);
    c.create(&res("", "pods"), "default", two, &opts()).unwrap();
    let e = c
        .pod_logs("default", "two", LogOptions::default())
        .err()
        .unwrap();
    assert_eq!(
        e.message,
        "a container name must be specified for pod two, choose one of: [a b]"
    );
    let e = c
        .pod_logs(
            "default",
            "two",
            LogOptions {
                container: "a".into(),
                ..Default::default()
            },
        )
        .err()
        .unwrap();
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            400,
            "container \"a\" in pod \"two\" is waiting to start: ContainerCreating"
        )
    );
}

#[test]
fn pod_specs_only_change_where_the_api_server_allows() {
    let c = Cluster::new();
    let r = res("", "pods");
    c.create(&r, "default", pod("p", Some("node-1")), &opts())
        .unwrap();
    let image = json!({"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}});
    let p = c
        .patch(
            &r,
            "default",
            "p",
            None,
            PatchType::Strategic,
            &image,
            &opts(),
        )
        .unwrap();
    assert_eq!(p["spec"]["containers"][0]["image"], "busybox:1.37");
    let label = json!({"metadata": {"labels": {"a": "b"}}});
    c.patch(&r, "default", "p", None, PatchType::Merge, &label, &opts())
        .unwrap();
    let restart = json!({"spec": {"restartPolicy": "Never"}});
    let e = c
        .patch(
            &r,
            "default",
            "p",
            None,
            PatchType::Merge,
            &restart,
            &opts(),
        )
        .unwrap_err();
    assert_eq!(e.code, 422);
    assert!(
        e.message.starts_with("Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"),
        "{}",
        e.message
    );
}

#[test]
fn configmaps_and_secrets_hold_at_most_one_mebibyte() {
    let c = Cluster::new();
    let big = "x".repeat(1024 * 1024 + 1);
    let cm = json!({"metadata": {"name": "big"}, "data": {"a": big}});
    let e = c
        .create(&res("", "configmaps"), "default", cm, &opts())
        .unwrap_err();
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("Too long: may not be more than 1048576 bytes"),
        "{}",
        e.message
    );
    let fits = json!({"metadata": {"name": "fits"}, "data": {"a": "x".repeat(1024 * 1000)}});
    c.create(&res("", "configmaps"), "default", fits, &opts())
        .unwrap();
}

#[test]
fn label_keys_and_values_are_validated() {
    let c = Cluster::new();
    let mut bad = cm("labelled");
    bad["metadata"]["labels"] =
        json!({"ok/fine": "yes", "bad key": "v", "k": "no spaces", "long": "x".repeat(64)});
    let e = c
        .create(&res("", "configmaps"), "default", bad, &opts())
        .unwrap_err();
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("metadata.labels: Invalid value: \"bad key\": name part must consist of"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains(
            "metadata.labels: Invalid value: \"no spaces\": a valid label must be an empty string"
        ),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("must be no more than 63 characters"),
        "{}",
        e.message
    );
    let mut good = cm("labelled");
    good["metadata"]["labels"] =
        json!({"app.kubernetes.io/name": "demo", "empty": "", "v": "1.2_3-a"});
    good["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
    c.create(&res("", "configmaps"), "default", good, &opts())
        .unwrap();
}

#[test]
fn pods_need_their_service_account() {
    let c = Cluster::new();
    let mut p = json!({"metadata": {"generateName": "job-"},
        "spec": {"serviceAccountName": "runner", "containers": [{"name": "c", "image": "i"}]}});
    let e = c
        .create(&res("", "pods"), "default", p.clone(), &opts())
        .unwrap_err();
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "pods \"job-\" is forbidden: error looking up service account default/runner: serviceaccount \"runner\" not found"
    );
    let sa = json!({"metadata": {"name": "runner"}});
    c.create(&res("", "serviceaccounts"), "default", sa, &opts())
        .unwrap();
    p["metadata"]["generateName"] = json!("job-");
    c.create(&res("", "pods"), "default", p, &opts()).unwrap();
}

/// kube-apiserver's generic registry (registry/generic/registry/store.go, `Update`): an apply
/// to a missing object takes the create path, where the resourceVersion of the applied object
/// is not compared and storage clears it; the stored object gets a fresh one. A client applies
/// with the resourceVersion of an earlier list to create an object only while it is still
/// absent (kubernetes/kubernetes#106745).
#[test]
fn apply_with_a_resource_version_creates_a_missing_object() {
    let c = Cluster::new();
    let r = res("", "secrets");
    let listed = c.store().current_rv();
    let body = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "namespace": "default", "resourceVersion": listed.to_string()},
        "data": {"k": "dg=="}});
    let made = c
        .patch(
            &r,
            "default",
            "s",
            None,
            PatchType::Apply { force: true },
            &body,
            &WriteOptions::manager("sc-job"),
        )
        .unwrap();
    let rv: u64 = made["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rv > listed,
        "a fresh resourceVersion, not the applied one: {rv}"
    );
    assert_eq!(made["data"]["k"], "dg==");
    assert_eq!(made["metadata"]["managedFields"][0]["manager"], "sc-job");
    assert_eq!(made["metadata"]["managedFields"][0]["operation"], "Apply");
    assert_eq!(
        c.get(&r, "default", "s").unwrap()["metadata"]["resourceVersion"],
        rv.to_string()
    );
}

/// kube-apiserver's generic registry (registry/generic/registry/store.go, `Update`): an apply
/// to an existing object with a resourceVersion other than the stored one answers 409 Conflict
/// and writes nothing. An object created after a list has a larger resourceVersion than the
/// list's, so an apply carrying the list's resourceVersion never overwrites it.
#[test]
fn apply_with_another_resource_version_to_an_existing_object_conflicts() {
    let c = Cluster::new();
    let r = res("", "secrets");
    let listed = c.store().current_rv();
    let foreign = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "labels": {"app": "mine"}}, "data": {"k": "Zm9yZWlnbg=="}});
    let stored = c
        .create(&r, "default", foreign, &WriteOptions::manager("intruder"))
        .unwrap();
    let ours = |rv: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "namespace": "default", "resourceVersion": rv},
        "data": {"k": "dg=="}})
    };
    for rv in [listed.to_string(), "1".to_string()] {
        let e = c
            .patch(
                &r,
                "default",
                "s",
                None,
                PatchType::Apply { force: true },
                &ours(&rv),
                &WriteOptions::manager("sc-job"),
            )
            .unwrap_err();
        assert_eq!(
            (e.code, e.reason.as_str()),
            (409, "Conflict"),
            "{}",
            e.message
        );
    }
    assert_eq!(
        c.get(&r, "default", "s").unwrap(),
        stored,
        "nothing written"
    );
    // With the stored resourceVersion the apply goes through.
    let rv = stored["metadata"]["resourceVersion"].as_str().unwrap();
    let applied = c
        .patch(
            &r,
            "default",
            "s",
            None,
            PatchType::Apply { force: true },
            &ours(rv),
            &WriteOptions::manager("sc-job"),
        )
        .unwrap();
    assert_eq!(applied["data"]["k"], "dg==");
    assert_ne!(applied["metadata"]["resourceVersion"], rv);
}
