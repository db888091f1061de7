use super::*;

/// 2026-01-01T00:00:00Z
const NOW: i64 = 1_767_225_600;

fn ago(seconds: i64) -> String {
    jiff::Timestamp::from_second(NOW - seconds)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn table(group: &str, resource: &str, obj: Value) -> Value {
    to_table(
        group,
        resource,
        &[&obj],
        json!({"resourceVersion": "7"}),
        NOW,
        "Metadata",
    )
}

fn header(t: &Value) -> Vec<String> {
    t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn cells(t: &Value) -> Vec<Value> {
    t["rows"][0]["cells"].as_array().unwrap().clone()
}

#[test]
fn accept_header() {
    assert!(wants_table(
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    ));
    assert!(wants_table(
        "application/json; as=Table; g=meta.k8s.io; v=v1"
    ));
    assert!(!wants_table("application/json"));
    assert!(!wants_table(
        "application/vnd.kubernetes.protobuf,application/json"
    ));
    assert!(!wants_table(
        "application/json;as=Table;v=v1beta1;g=meta.k8s.io"
    ));
    assert!(!wants_table(
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    ));
}

#[test]
fn durations() {
    for (secs, want) in [
        (-5, "<invalid>"),
        (-1, "0s"),
        (5, "5s"),
        (119, "119s"),
        (182, "3m2s"),
        (300, "5m"),
        (45 * 60, "45m"),
        (3 * 3600 + 20 * 60, "3h20m"),
        (5 * 3600, "5h"),
        (30 * 3600, "30h"),
        (51 * 3600, "2d3h"),
        (3 * 86400, "3d"),
        (100 * 86400, "100d"),
        (800 * 86400, "2y70d"),
        (3650 * 86400, "10y"),
    ] {
        assert_eq!(human_duration(secs), want, "{secs}");
    }
}

#[test]
fn table_shape_and_partial_metadata() {
    let obj = json!({"metadata": {"name": "c", "namespace": "ns", "uid": "u", "creationTimestamp": ago(5)}, "data": {"a": "1"}});
    let t = table("", "configmaps", obj.clone());
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"], json!({"resourceVersion": "7"}));
    assert_eq!(
        t["columnDefinitions"][0],
        json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESC, "priority": 0})
    );
    assert_eq!(header(&t), ["Name", "Data", "Age"]);
    assert_eq!(cells(&t), vec![json!("c"), json!(1), json!("5s")]);
    assert_eq!(
        t["rows"][0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
    );
    let whole = to_table("", "configmaps", &[&obj], json!({}), NOW, "Object");
    assert_eq!(whole["rows"][0]["object"], obj);
    let none = to_table("", "configmaps", &[&obj], json!({}), NOW, "None");
    assert!(none["rows"][0].get("object").is_none());
}

fn pod(status: Value) -> Value {
    json!({"metadata": {"name": "p", "creationTimestamp": ago(65)},
        "spec": {"containers": [{"name": "main", "image": "busybox"}], "nodeName": "local"},
        "status": status})
}

#[test]
fn pod_columns_and_statuses() {
    let t = table("", "pods", pod(json!({"phase": "Pending"})));
    assert_eq!(
        header(&t),
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    assert_eq!(
        cells(&t),
        vec![
            json!("p"),
            json!("0/1"),
            json!("Pending"),
            json!("0"),
            json!("65s"),
            json!("<none>"),
            json!("local"),
            json!("<none>"),
            json!("<none>")
        ]
    );
    let creating = pod(
        json!({"phase": "Pending", "containerStatuses": [{"name": "main", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
    );
    assert_eq!(cells(&table("", "pods", creating))[2], "ContainerCreating");
    let running = pod(
        json!({"phase": "Running", "podIPs": [{"ip": "127.0.0.1"}], "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": ago(60)}}}]}),
    );
    let c = cells(&table("", "pods", running));
    assert_eq!(
        (c[1].clone(), c[2].clone(), c[5].clone()),
        (json!("1/1"), json!("Running"), json!("127.0.0.1"))
    );
    let done = pod(
        json!({"phase": "Succeeded", "containerStatuses": [{"name": "main", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
    );
    let t = table("", "pods", done);
    assert_eq!(cells(&t)[1..3], [json!("0/1"), json!("Completed")]);
    assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");
    let failed = pod(
        json!({"phase": "Failed", "containerStatuses": [{"name": "main", "ready": false, "restartCount": 2,
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}},
        "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
    );
    let c = cells(&table("", "pods", failed));
    assert_eq!(
        (c[2].clone(), c[3].clone()),
        (json!("Error"), json!("2 (30s ago)"))
    );
    let no_reason = pod(
        json!({"phase": "Failed", "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 137}}}]}),
    );
    assert_eq!(cells(&table("", "pods", no_reason))[2], "ExitCode:137");
    let mut deleting = pod(json!({"phase": "Running"}));
    deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(cells(&table("", "pods", deleting))[2], "Terminating");
}

#[test]
fn pod_init_containers() {
    let mut p = pod(
        json!({"phase": "Pending", "initContainerStatuses": [{"name": "init", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}),
    );
    p["spec"]["initContainers"] = json!([{"name": "init", "image": "x"}]);
    assert_eq!(cells(&table("", "pods", p.clone()))[2], "Init:0/1");
    p["status"]["initContainerStatuses"][0]["state"] =
        json!({"terminated": {"exitCode": 2, "reason": "Error"}});
    assert_eq!(cells(&table("", "pods", p))[2], "Init:Error");
}

fn job(status: Value) -> Value {
    json!({"metadata": {"name": "sc-job", "creationTimestamp": ago(5)},
        "spec": {"completions": 1, "parallelism": 1,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
            "template": {"spec": {"containers": [{"name": "main", "image": "sc-job:1"}]}}},
        "status": status})
}

#[test]
fn job_columns() {
    let t = table(
        "batch",
        "jobs",
        job(
            json!({"succeeded": 1, "startTime": ago(5), "completionTime": ago(4),
        "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
        ),
    );
    assert_eq!(
        header(&t),
        [
            "Name",
            "Status",
            "Completions",
            "Duration",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    assert_eq!(t["columnDefinitions"][5]["priority"], 1);
    assert_eq!(
        cells(&t),
        vec![
            json!("sc-job"),
            json!("Complete"),
            json!("1/1"),
            json!("1s"),
            json!("5s"),
            json!("main"),
            json!("sc-job:1"),
            json!("batch.kubernetes.io/controller-uid=u1")
        ]
    );
    let running = cells(&table("batch", "jobs", job(json!({"startTime": ago(3)}))));
    assert_eq!(running[1..4], [json!("Running"), json!("0/1"), json!("3s")]);
    let failed = cells(&table(
        "batch",
        "jobs",
        job(
            json!({"conditions": [{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]}),
        ),
    ));
    assert_eq!(failed[1..4], [json!("Failed"), json!("0/1"), json!("")]);
    let target = cells(&table(
        "batch",
        "jobs",
        job(json!({"conditions": [{"type": "FailureTarget", "status": "True"}]})),
    ));
    assert_eq!(target[1], "FailureTarget");
    let mut no_completions = job(json!({}));
    no_completions["spec"] = json!({"parallelism": 3});
    assert_eq!(
        cells(&table("batch", "jobs", no_completions))[2],
        "0/1 of 3"
    );
}

#[test]
fn cronjob_columns() {
    let cj = json!({"metadata": {"name": "c", "creationTimestamp": ago(600)}, "spec": {"schedule": "*/5 * * * *",
        "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "i"}]}}}}},
        "status": {"active": [{"name": "j"}], "lastScheduleTime": ago(60)}});
    let t = table("batch", "cronjobs", cj);
    assert_eq!(
        header(&t)[..7],
        [
            "Name",
            "Schedule",
            "Timezone",
            "Suspend",
            "Active",
            "Last Schedule",
            "Age"
        ]
    );
    assert_eq!(
        cells(&t),
        vec![
            json!("c"),
            json!("*/5 * * * *"),
            json!("<none>"),
            json!("<unset>"),
            json!(1),
            json!("60s"),
            json!("10m"),
            json!("a"),
            json!("i"),
            json!("<none>")
        ]
    );
}

#[test]
fn workload_columns() {
    let d = json!({"metadata": {"name": "d", "creationTimestamp": ago(7200)}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}},
        "template": {"spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "j"}]}}},
        "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}});
    let t = table("apps", "deployments", d.clone());
    assert_eq!(
        header(&t)[..5],
        ["Name", "Ready", "Up-to-date", "Available", "Age"]
    );
    assert_eq!(
        cells(&t),
        vec![
            json!("d"),
            json!("1/2"),
            json!(2),
            json!(1),
            json!("120m"),
            json!("a,b"),
            json!("i,j"),
            json!("app=d")
        ]
    );
    let t = table("apps", "replicasets", d.clone());
    assert_eq!(
        header(&t)[..5],
        ["Name", "Desired", "Current", "Ready", "Age"]
    );
    assert_eq!(cells(&t)[..4], [json!("d"), json!(2), json!(0), json!(1)]);
    let t = table("apps", "statefulsets", d.clone());
    assert_eq!(header(&t), ["Name", "Ready", "Age", "Containers", "Images"]);
    assert_eq!(cells(&t)[1], "1/2");
    let t = table("apps", "daemonsets", d);
    assert_eq!(
        header(&t)[..8],
        [
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Up-to-date",
            "Available",
            "Node Selector",
            "Age"
        ]
    );
    assert_eq!(cells(&t)[6], "<none>");
}

#[test]
fn core_kinds() {
    let s = json!({"metadata": {"name": "s", "creationTimestamp": ago(3 * 86400)}, "type": "Opaque", "data": {"a": "eA=="}, "stringData": {"b": "y"}});
    let t = table("", "secrets", s);
    assert_eq!(header(&t), ["Name", "Type", "Data", "Age"]);
    assert_eq!(
        cells(&t),
        vec![json!("s"), json!("Opaque"), json!(2), json!("3d")]
    );
    let sa = json!({"metadata": {"name": "default", "creationTimestamp": ago(10)}});
    let t = table("", "serviceaccounts", sa);
    assert_eq!(header(&t), ["Name", "Secrets", "Age"]);
    assert_eq!(cells(&t), vec![json!("default"), json!(0), json!("10s")]);
    let ns = json!({"metadata": {"name": "sc-system", "creationTimestamp": ago(10)}, "status": {"phase": "Active"}});
    let t = table("", "namespaces", ns);
    assert_eq!(header(&t), ["Name", "Status", "Age"]);
    assert_eq!(
        cells(&t),
        vec![json!("sc-system"), json!("Active"), json!("10s")]
    );
    let svc = json!({"metadata": {"name": "web", "creationTimestamp": ago(10)}, "spec": {"type": "NodePort", "clusterIPs": ["10.0.0.1"],
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "web"}}});
    let t = table("", "services", svc);
    assert_eq!(
        header(&t),
        [
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age",
            "Selector"
        ]
    );
    assert_eq!(
        cells(&t),
        vec![
            json!("web"),
            json!("NodePort"),
            json!("10.0.0.1"),
            json!("<none>"),
            json!("80:30080/TCP,53/UDP"),
            json!("10s"),
            json!("app=web")
        ]
    );
    let lease = json!({"metadata": {"name": "sc-leader", "creationTimestamp": ago(10)}, "spec": {"holderIdentity": "pod-a"}});
    let t = table("coordination.k8s.io", "leases", lease);
    assert_eq!(header(&t), ["Name", "Holder", "Age"]);
    assert_eq!(cells(&t)[1], "pod-a");
}

#[test]
fn events() {
    let ev = json!({"metadata": {"name": "sc-job.1"}, "involvedObject": {"kind": "Job", "name": "sc-job"},
        "reason": "Completed", "message": "Job completed ", "type": "Normal", "source": {"component": "job-controller"},
        "firstTimestamp": ago(20), "lastTimestamp": ago(10), "count": 2});
    let t = table("", "events", ev);
    assert_eq!(header(&t)[..4], ["Last Seen", "Type", "Reason", "Object"]);
    assert_eq!(
        cells(&t),
        vec![
            json!("10s"),
            json!("Normal"),
            json!("Completed"),
            json!("job/sc-job"),
            json!(""),
            json!("job-controller"),
            json!("Job completed"),
            json!("20s"),
            json!(2),
            json!("sc-job.1")
        ]
    );
    let new_api = json!({"metadata": {"name": "e"}, "regarding": {"kind": "Pod", "name": "p"}, "note": "hi",
        "reportingController": "kubelet", "reportingInstance": "local", "eventTime": ago(4), "type": "Warning", "reason": "BackOff"});
    let c = cells(&table("events.k8s.io", "events", new_api));
    assert_eq!(
        c[..9],
        [
            json!("4s"),
            json!("Warning"),
            json!("BackOff"),
            json!("pod/p"),
            json!(""),
            json!("kubelet, local"),
            json!("hi"),
            json!("4s"),
            json!(1)
        ]
    );
}

#[test]
fn rbac_and_default_kinds() {
    let rb = json!({"metadata": {"name": "b", "creationTimestamp": ago(10)}, "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}, {"kind": "Group", "name": "g"}]});
    let t = table("rbac.authorization.k8s.io", "rolebindings", rb);
    assert_eq!(
        header(&t),
        ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]
    );
    assert_eq!(
        cells(&t),
        vec![
            json!("b"),
            json!("ClusterRole/view"),
            json!("10s"),
            json!("alice"),
            json!("g"),
            json!("ns/sa")
        ]
    );
    let role = json!({"metadata": {"name": "r", "creationTimestamp": "2025-03-04T05:06:07Z"}});
    for (g, r) in [
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("example.com", "widgets"),
    ] {
        let t = table(g, r, role.clone());
        assert_eq!(header(&t), ["Name", "Created At"], "{r}");
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(cells(&t), vec![json!("r"), json!("2025-03-04T05:06:07Z")]);
    }
}
