//! Security checks of the chart and the binaries:
//!
//! - `rbac_grants_no_wildcard`: the chart rendered with several value sets grants no `*`, no
//!   RBAC-escalating verb, no watch of every Secret and no list of them but sc-job's where it
//!   writes (its ownership check), to nobody but its own ServiceAccounts.
//! - `least_privilege_and_pod_security`: a whole flow (install, upgrade, a failed upgrade and
//!   its fix, `helm test`, uninstall) with RBAC enforced. On any cluster: `kubectl auth can-i
//!   --as=system:serviceaccount:<release namespace>:<sa>` says yes to every rule the release
//!   grants the agent and sc-job and no to what they must never do (wildcards, watching
//!   Secrets, the agent listing them, RBAC writes, impersonation, tokens, exec, nodes, getting
//!   or watching Events); no service-account token Secret was created; every pod and Job pod
//!   template of the release (the agent, the hooks, the sc-job Job the agent creates) meets the
//!   restricted Pod Security profile, as admitted and seen live. On kubesim also: its request
//!   log (`GET /kubesim/audit`) shows that the agent and sc-job were never refused, that only
//!   the agent read core Events and only by listing them in the connections' namespace, and
//!   that every rule the chart grants them was used, or is justified in the chart by a comment
//!   `# rbac-unused-in-e2e: <serviceaccount> <verb> <resource>[.<group>]: <why>`.

use sc_e2e::{
    Cluster, Helm, RELEASE, SETTLE, chart_dir, expected, merged, run_command, secret_value, tool,
    wait_until,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Whether `role` is sc-job's role where connections write (`sc-job-writer` in each of
/// `rbac.namespaces`, else the ClusterRole `sc-job-<release namespace>`).
fn is_job_writer(role: &Value) -> bool {
    let name = role["metadata"]["name"].as_str().unwrap_or_default();
    match role["kind"].as_str() {
        Some("Role") => name == "sc-job-writer",
        Some("ClusterRole") => name == "sc-job-sc-system",
        _ => false,
    }
}

/// The documents of `helm template` of the chart with `args`.
fn render(helm: Helm, home: &Path, args: &[&str]) -> Vec<Value> {
    let mut cmd = Command::new(tool(helm.tool()));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .args([
            "template",
            RELEASE,
            &chart_dir().display().to_string(),
            "-n",
            "sc-system",
        ])
        .args(args);
    let out = run_command(
        cmd,
        &format!("{} template {}", helm.tool(), args.join(" ")),
        None,
    );
    documents(out.ok())
}

/// The YAML documents of a multi-document text.
fn documents(text: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line == "---" {
            if !current.trim().is_empty() {
                let doc = sc_model::parse_yaml(&current).unwrap_or_else(|e| {
                    panic!("a rendered document is not YAML ({e}):\n{current}")
                });
                if !doc.is_null() {
                    docs.push(doc);
                }
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

/// Strings of a rule field (`verbs`, `resources`, ...).
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The value sets the RBAC check renders the chart with.
const VALUE_SETS: &[&[&str]] = &[
    &[],
    &[
        "--set-string",
        "rbac.namespaces[0]=apps,rbac.namespaces[1]=web",
    ],
    &[
        "--set",
        "agent.replicas=3,waitForResult.enabled=false,metrics.serviceMonitor.enabled=true,metrics.service.enabled=false",
    ],
    &[
        "--set-string",
        "connections.blob.targetType=storage-blob,connections.blob.authType=workloadIdentity,connections.blob.parameters.accountName=a,connections.blob.parameters.clientId=0a1b2c3d-0000-4000-8000-000000000001,connections.blob.workloads[0].kind=Deployment,connections.blob.workloads[0].name=web",
    ],
];

#[test]
fn rbac_grants_no_wildcard() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut roles = 0;
    for helm in [Helm::V3, Helm::V4] {
        for args in VALUE_SETS {
            for doc in render(helm, dir.path(), args) {
                let kind = doc["kind"].as_str().unwrap_or_default();
                let name = format!(
                    "{kind} {}",
                    doc["metadata"]["name"].as_str().unwrap_or_default()
                );
                let what = format!("{name} (values {})", args.join(" "));
                match kind {
                    "Role" | "ClusterRole" => {
                        roles += 1;
                        assert!(
                            doc["aggregationRule"].is_null(),
                            "{what} aggregates other roles"
                        );
                        let rules = doc["rules"].as_array().cloned().unwrap_or_default();
                        assert!(!rules.is_empty(), "{what} has no rules");
                        for rule in rules {
                            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                                assert!(
                                    !strings(&rule[field]).iter().any(|s| s.contains('*')),
                                    "{what} grants a wildcard in {field}: {rule}"
                                );
                            }
                            assert!(
                                rule["nonResourceURLs"].is_null(),
                                "{what} grants non-resource URLs: {rule}"
                            );
                            let verbs = strings(&rule["verbs"]);
                            for v in ["escalate", "bind", "impersonate", "deletecollection"] {
                                assert!(!verbs.iter().any(|x| x == v), "{what} grants {v}: {rule}");
                            }
                            let resources = strings(&rule["resources"]);
                            for r in [
                                "roles",
                                "rolebindings",
                                "clusterroles",
                                "clusterrolebindings",
                                "serviceaccounts/token",
                                "pods/exec",
                                "nodes",
                            ] {
                                assert!(
                                    !resources.iter().any(|x| x == r),
                                    "{what} grants access to {r}: {rule}"
                                );
                            }
                            if resources.iter().any(|r| r == "secrets")
                                && strings(&rule["resourceNames"]).is_empty()
                            {
                                // sc-job's writer role lists where it writes (the ownership
                                // check in one metadata-only list; it already gets every
                                // Secret name there); nothing watches every Secret and no
                                // other role lists them.
                                assert!(
                                    !verbs.iter().any(|v| v == "watch"),
                                    "{what} lets its holder watch every Secret: {rule}"
                                );
                                assert!(
                                    !verbs.iter().any(|v| v == "list") || is_job_writer(&doc),
                                    "{what} lets its holder list every Secret: {rule}"
                                );
                            }
                        }
                    }
                    "RoleBinding" | "ClusterRoleBinding" => {
                        for s in doc["subjects"].as_array().cloned().unwrap_or_default() {
                            assert_eq!(s["kind"], "ServiceAccount", "{what} binds {s}");
                            assert_eq!(s["namespace"], "sc-system", "{what} binds {s}");
                            let sa = s["name"].as_str().unwrap_or_default();
                            assert!(sa == "sc-agent" || sa == "sc-job", "{what} binds {s}");
                        }
                        assert!(
                            !matches!(
                                doc["roleRef"]["name"].as_str(),
                                Some("cluster-admin" | "admin" | "edit")
                            ),
                            "{what} binds a built-in role"
                        );
                    }
                    "Secret" => assert_ne!(
                        doc["type"], "kubernetes.io/service-account-token",
                        "{what} is a long-lived token"
                    ),
                    "ServiceAccount" => {
                        assert_ne!(doc["automountServiceAccountToken"], json!(true), "{what}")
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(
        roles >= 2 * VALUE_SETS.len() * 3,
        "only {roles} roles rendered"
    );
}

/// A background `kubectl get <args> --watch -o json`, recording every object it sees.
struct Watch {
    child: Child,
    path: std::path::PathBuf,
}

impl Watch {
    fn start(c: &Cluster, file: &str, args: &[&str]) -> Watch {
        let path = c.dir().join(file);
        let out = std::fs::File::create(&path).expect("creating a watch file");
        let mut cmd = c.tool_command("kubectl-1.37");
        cmd.arg("get")
            .args(args)
            .args(["--watch", "-o", "json"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("starting kubectl --watch");
        Watch { child, path }
    }

    /// Every object seen so far.
    fn seen(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .map_while(Result::ok)
            .flat_map(|v| match v["items"].as_array() {
                Some(items) if v["kind"] == "List" => items.clone(),
                _ => vec![v],
            })
            .collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What keeps `pod` (a pod spec) from the restricted Pod Security profile.
fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for f in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[f] == json!(true) {
            out.push(format!("{f} is true"));
        }
    }
    let allowed = [
        "name",
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for v in pod["volumes"].as_array().cloned().unwrap_or_default() {
        for k in v
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if !allowed.contains(&k.as_str()) {
                out.push(format!("volume {} is of type {k}", v["name"]));
            }
        }
    }
    let psc = &pod["securityContext"];
    if psc["runAsUser"] == json!(0) {
        out.push("the pod runs as user 0".into());
    }
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod[k].as_array().cloned().unwrap_or_default());
    for ctr in containers {
        let name = ctr["name"].as_str().unwrap_or_default().to_string();
        let sc = &ctr["securityContext"];
        if sc["privileged"] == json!(true) {
            out.push(format!("container {name} is privileged"));
        }
        if sc["allowPrivilegeEscalation"] != json!(false) {
            out.push(format!(
                "container {name} does not set allowPrivilegeEscalation: false"
            ));
        }
        if !strings(&sc["capabilities"]["drop"])
            .iter()
            .any(|c| c == "ALL")
        {
            out.push(format!("container {name} does not drop ALL capabilities"));
        }
        if strings(&sc["capabilities"]["add"])
            .iter()
            .any(|c| c != "NET_BIND_SERVICE")
        {
            out.push(format!("container {name} adds capabilities"));
        }
        let non_root = match sc["runAsNonRoot"].as_bool() {
            Some(b) => b,
            None => psc["runAsNonRoot"] == json!(true),
        };
        if !non_root {
            out.push(format!("container {name} may run as root (runAsNonRoot)"));
        }
        if sc["runAsUser"] == json!(0) {
            out.push(format!("container {name} runs as user 0"));
        }
        let seccomp = sc["seccompProfile"]["type"]
            .as_str()
            .or(psc["seccompProfile"]["type"].as_str())
            .unwrap_or_default();
        if seccomp != "RuntimeDefault" && seccomp != "Localhost" {
            out.push(format!("container {name} has seccomp profile {seccomp:?}"));
        }
        for p in ctr["ports"].as_array().cloned().unwrap_or_default() {
            if p["hostPort"].as_i64().unwrap_or(0) != 0 {
                out.push(format!("container {name} uses host port {}", p["hostPort"]));
            }
        }
    }
    out
}

/// A granted permission: (serviceaccount, verb, group, resource, resourceName or "").
type Grant = (String, String, String, String, String);

/// The permissions the rendered chart grants the ServiceAccounts `sc-agent` and `sc-job`.
fn grants(docs: &[Value]) -> BTreeSet<Grant> {
    let mut bound: Vec<(String, String)> = Vec::new(); // (role kind/name, sa)
    for d in docs {
        if matches!(
            d["kind"].as_str(),
            Some("RoleBinding" | "ClusterRoleBinding")
        ) {
            for s in d["subjects"].as_array().cloned().unwrap_or_default() {
                bound.push((
                    format!(
                        "{}/{}",
                        d["roleRef"]["kind"].as_str().unwrap_or_default(),
                        d["roleRef"]["name"].as_str().unwrap_or_default()
                    ),
                    s["name"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    let mut out = BTreeSet::new();
    for d in docs {
        let kind = d["kind"].as_str().unwrap_or_default();
        if kind != "Role" && kind != "ClusterRole" {
            continue;
        }
        let id = format!(
            "{kind}/{}",
            d["metadata"]["name"].as_str().unwrap_or_default()
        );
        for (_, sa) in bound.iter().filter(|(r, _)| *r == id) {
            for rule in d["rules"].as_array().cloned().unwrap_or_default() {
                let names = strings(&rule["resourceNames"]);
                let names = if names.is_empty() {
                    vec![String::new()]
                } else {
                    names
                };
                for g in strings(&rule["apiGroups"]) {
                    for r in strings(&rule["resources"]) {
                        for v in strings(&rule["verbs"]) {
                            for n in &names {
                                out.insert((
                                    sa.clone(),
                                    v.clone(),
                                    g.clone(),
                                    r.clone(),
                                    n.clone(),
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// A granted permission where it applies: (serviceaccount, verb, group, resource,
/// resourceName or "", namespace of the RoleBinding or `None` for a ClusterRoleBinding).
type ScopedGrant = (String, String, String, String, String, Option<String>);

/// The permissions the release (`docs`, as installed in namespace `rel`) grants the
/// ServiceAccounts of `rel`, with where each applies.
fn scoped_grants(docs: &[Value], rel: &str) -> BTreeSet<ScopedGrant> {
    let mut out = BTreeSet::new();
    for b in docs.iter().filter(|d| {
        matches!(
            d["kind"].as_str(),
            Some("RoleBinding" | "ClusterRoleBinding")
        )
    }) {
        let scope = (b["kind"] == "RoleBinding").then(|| {
            b["metadata"]["namespace"]
                .as_str()
                .unwrap_or(rel)
                .to_string()
        });
        let role = docs
            .iter()
            .find(|d| {
                d["kind"] == b["roleRef"]["kind"]
                    && d["metadata"]["name"] == b["roleRef"]["name"]
                    && (d["kind"] == "ClusterRole"
                        || d["metadata"]["namespace"].as_str().unwrap_or(rel)
                            == scope.as_deref().unwrap_or_default())
            })
            .unwrap_or_else(|| panic!("the release does not hold the role {}", b["roleRef"]));
        for subject in b["subjects"].as_array().cloned().unwrap_or_default() {
            assert_eq!(
                subject["namespace"], rel,
                "a subject of {}",
                b["metadata"]["name"]
            );
            let sa = subject["name"].as_str().unwrap_or_default();
            for rule in role["rules"].as_array().cloned().unwrap_or_default() {
                let names = strings(&rule["resourceNames"]);
                let names = if names.is_empty() {
                    vec![String::new()]
                } else {
                    names
                };
                for g in strings(&rule["apiGroups"]) {
                    for r in strings(&rule["resources"]) {
                        for v in strings(&rule["verbs"]) {
                            for n in &names {
                                out.insert((
                                    sa.to_string(),
                                    v.clone(),
                                    g.clone(),
                                    r.clone(),
                                    n.clone(),
                                    scope.clone(),
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// `kubectl auth can-i VERB RESOURCE[.GROUP][/NAME] --as=system:serviceaccount:<rel>:<sa>`
/// in `namespace` (`None`: all namespaces); `resource` may name a subresource (`pods/log`).
fn can_i(
    c: &Cluster,
    sa: &str,
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
    namespace: Option<&str>,
) -> bool {
    let (resource, sub) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (resource, None),
    };
    let mut target = if group.is_empty() || resource == "*" {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    if !name.is_empty() {
        target = format!("{target}/{name}");
    }
    let mut args = vec![
        "auth".to_string(),
        "can-i".to_string(),
        verb.to_string(),
        target,
        format!("--as=system:serviceaccount:{}:{sa}", c.release_ns()),
    ];
    if let Some(s) = sub {
        args.push(format!("--subresource={s}"));
    }
    match namespace {
        Some(ns) => args.extend(["-n".to_string(), ns.to_string()]),
        None => args.push("--all-namespaces".to_string()),
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = c.kubectl(&refs);
    match (out.code, out.stdout.trim()) {
        (0, a) if a.starts_with("yes") => true,
        (1, a) if a.starts_with("no") => false,
        _ => panic!(
            "`{}` answered neither yes nor no (exit code {}):\n{}",
            out.what,
            out.code,
            out.all()
        ),
    }
}

/// What neither the agent nor sc-job may ever do, anywhere: (verb, group, resource).
/// sc-job may list Secrets where it writes (see [`NEVER_AGENT`]).
const NEVER: &[(&str, &str, &str)] = &[
    ("*", "*", "*"),
    ("watch", "", "secrets"),
    ("deletecollection", "", "secrets"),
    ("create", "rbac.authorization.k8s.io", "rolebindings"),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
    ("escalate", "rbac.authorization.k8s.io", "clusterroles"),
    ("bind", "rbac.authorization.k8s.io", "clusterroles"),
    ("impersonate", "", "users"),
    ("impersonate", "", "serviceaccounts"),
    ("create", "", "serviceaccounts/token"),
    ("create", "", "pods/exec"),
    ("create", "", "pods"),
    ("delete", "", "namespaces"),
    ("get", "", "nodes"),
    // The agent lists the few Events of its listed workloads by field selector; it never
    // follows every Event of a namespace.
    ("watch", "", "events"),
    ("get", "", "events"),
];

/// What the agent may never do besides [`NEVER`]: list Secrets (sc-job lists where it writes,
/// for its ownership check).
const NEVER_AGENT: &[(&str, &str, &str)] = &[("list", "", "secrets")];

/// The RBAC of the release in effect, through `kubectl auth can-i --as` (portable to any
/// cluster): every rule the release grants the agent and sc-job is allowed where it applies,
/// and nothing of [`NEVER`] is allowed anywhere. Returns how many questions were asked.
fn check_rbac_with_can_i(c: &Cluster, rendered: &[Value]) -> usize {
    let rel = c.release_ns();
    let granted = scoped_grants(rendered, &rel);
    assert!(
        granted.iter().any(|g| g.0 == "sc-agent") && granted.iter().any(|g| g.0 == "sc-job"),
        "the release grants nothing to sc-agent or sc-job: {granted:?}"
    );
    let mut denied = Vec::new();
    for (sa, verb, group, resource, name, ns) in &granted {
        if !can_i(c, sa, verb, group, resource, name, ns.as_deref()) {
            denied.push(format!("{sa} {verb} {resource}.{group} {name} in {ns:?}"));
        }
    }
    assert!(
        denied.is_empty(),
        "granted by the release but refused by the cluster:\n{}",
        denied.join("\n")
    );
    let mut allowed = Vec::new();
    let mut never_asked = 0;
    for sa in ["sc-agent", "sc-job"] {
        let extra: &[(&str, &str, &str)] = if sa == "sc-agent" { NEVER_AGENT } else { &[] };
        for (verb, group, resource) in NEVER.iter().chain(extra) {
            never_asked += 1;
            if can_i(c, sa, verb, group, resource, "", None) {
                allowed.push(format!("{sa} may {verb} {resource}.{group}"));
            }
        }
    }
    assert!(
        allowed.is_empty(),
        "the cluster lets the extension's ServiceAccounts do more than they need:\n{}",
        allowed.join("\n")
    );
    granted.len() + never_asked
}

/// The ServiceAccount of an audit user of the release namespace.
fn service_account(user: &str) -> Option<String> {
    user.strip_prefix("system:serviceaccount:sc-system:")
        .map(str::to_string)
}

/// Whether audit entry `e` is allowed by grant `g`.
fn covers(g: &Grant, e: &Value) -> bool {
    let resource = match e["subresource"].as_str() {
        Some(s) if !s.is_empty() => format!("{}/{s}", e["resource"].as_str().unwrap_or_default()),
        _ => e["resource"].as_str().unwrap_or_default().to_string(),
    };
    service_account(e["user"].as_str().unwrap_or_default()).as_deref() == Some(g.0.as_str())
        && e["verb"] == g.1.as_str()
        && e["apiGroup"] == g.2.as_str()
        && resource == g.3
        && (g.4.is_empty() || e["name"] == g.4.as_str())
}

/// kubesim's request log, for the agent's and sc-job's ServiceAccounts.
fn audit_entries(c: &Cluster) -> Vec<Value> {
    let audit: Value = serde_json::from_str(c.kubectl(&["get", "--raw", "/kubesim/audit"]).ok())
        .expect("the audit log is JSON");
    audit["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            service_account(e["user"].as_str().unwrap_or_default())
                .is_some_and(|sa| sa == "sc-agent" || sa == "sc-job")
        })
        .collect()
}

/// The refused requests among `entries`, as text.
fn refused(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e["code"] == 403)
        .map(|e| {
            let mut e = e.clone();
            e.as_object_mut().map(|m| m.remove("count"));
            e.to_string()
        })
        .collect()
}

/// The grants the chart justifies as not used by this flow (`# rbac-unused-in-e2e: ...`).
fn justified() -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    let dir = chart_dir().join("templates");
    for entry in std::fs::read_dir(&dir).expect("reading the chart's templates") {
        let path = entry.expect("a template").path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("# rbac-unused-in-e2e:") else {
                continue;
            };
            let (what, why) = rest.split_once(':').unwrap_or((rest, ""));
            assert!(
                !why.trim().is_empty(),
                "{}: a justification without a reason: {line}",
                path.display()
            );
            let parts: Vec<&str> = what.split_whitespace().collect();
            assert_eq!(
                parts.len(),
                3,
                "{}: expected `<serviceaccount> <verb> <resource>[.<group>]`: {line}",
                path.display()
            );
            out.insert((
                parts[0].to_string(),
                parts[1].to_string(),
                parts[2].to_string(),
            ));
        }
    }
    out
}

/// The workloads the flow's connections patch, one of each kind sc-job may patch; none of them
/// runs a pod.
fn create_workloads(c: &Cluster, ns: &str) {
    let template = |app: &str| {
        json!({
            "metadata": {"labels": {"app": app}},
            "spec": {
                "nodeSelector": {"sc-e2e/no-such-node": "true"},
                "containers": [{"name": "main", "image": "alpine", "command": ["sleep", "3600"]}],
            },
        })
    };
    let selector = |app: &str| json!({"matchLabels": {"app": app}});
    for item in json!([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
         "spec": {"replicas": 0, "selector": selector("web"), "template": template("web")}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": ns},
         "spec": {"replicas": 0, "serviceName": "db", "selector": selector("db"), "template": template("db")}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-agent", "namespace": ns},
         "spec": {"selector": selector("node-agent"), "template": template("node-agent")}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": ns},
         "spec": {"schedule": "0 3 * * *", "suspend": true, "jobTemplate": {"spec": {"template": {
             "spec": {"restartPolicy": "Never", "nodeSelector": {"sc-e2e/no-such-node": "true"},
                      "containers": [{"name": "main", "image": "alpine", "command": ["true"]}]}}}}}},
    ]).as_array().expect("a list") {
        c.apply(item);
    }
}

/// The flow's connections: blob (secret, Delete) injected into the Deployment and the
/// CronJob, bus (workload identity, Delete) into the StatefulSet, vault (CSI with workload
/// identity, Delete) into the DaemonSet.
fn connections(apps: &str, key: &str, client_id: &str) -> (Value, Value) {
    (
        json!({"connections": {
            "blob": {
                "namespace": apps, "targetType": "storage-blob", "authType": "secret",
                "clientType": "python", "parameters": {"accountName": "e2estorage"},
                "deletionPolicy": "Delete",
                "workloads": [{"kind": "Deployment", "name": "web"}, {"kind": "CronJob", "name": "nightly"}],
            },
            "bus": {
                "namespace": apps, "targetType": "servicebus", "authType": "workloadIdentity",
                "clientType": "dotnet",
                "parameters": {"namespaceName": "e2ebus", "clientId": client_id},
                "deletionPolicy": "Delete",
                "workloads": [{"kind": "StatefulSet", "name": "db"}],
            },
            "vault": {
                "namespace": apps, "targetType": "keyvault", "authType": "keyvaultCsi",
                "parameters": {
                    "keyvaultName": "e2e-vault", "tenantId": "66666666-7777-8888-9999-000000000000",
                    "clientId": "22222222-3333-4444-5555-666666666666", "useWorkloadIdentity": "true",
                    "objects": "secret/db-password",
                },
                "deletionPolicy": "Delete",
                "workloads": [{"kind": "DaemonSet", "name": "node-agent"}],
            },
        }}),
        json!({"connections": {"blob": {"secrets": {"accountKey": key}}}}),
    )
}

#[test]
fn least_privilege_and_pod_security() {
    let helm = Helm::V3;
    let c = Cluster::start();
    let rel = c.release_ns();
    let pods = Watch::start(&c, "pods.json", &["pods", "-A"]);
    let jobs = Watch::start(&c, "jobs.json", &["jobs", "-A"]);
    let secrets = Watch::start(&c, "secrets.json", &["secrets", "-A"]);
    let apps = c.create_namespace("apps");
    c.ensure_spc_crd();
    create_workloads(&c, &apps);

    // Install.
    let key = secret_value("account-key");
    c.remember_secret(&key);
    let (settings, protected) = connections(&apps, &key, "0a1b2c3d-0000-4000-8000-000000000001");
    let files = [
        c.write_values("settings", &settings),
        c.write_values("protected", &protected),
    ];
    c.helm_upgrade(helm, &[&files[0], &files[1]], &[]).ok();
    c.wait_job_gone();
    c.assert_materialized(&expected(&merged(&[&settings, &protected])));

    // Upgrade: a new account name; a new identity for bus (its StatefulSet moves to the new
    // ServiceAccount, the old one goes); vault removed (its SecretProviderClass and
    // ServiceAccount go).
    let (mut settings2, _) = connections(&apps, &key, "0a1b2c3d-0000-4000-8000-000000000002");
    settings2["connections"]["blob"]["parameters"]["accountName"] = json!("e2estorage2");
    settings2["connections"]
        .as_object_mut()
        .expect("a map")
        .remove("vault");
    let files2 = [c.write_values("settings2", &settings2), files[1].clone()];
    c.helm_upgrade(helm, &[&files2[0], &files2[1]], &[]).ok();
    c.wait_job_gone();
    c.assert_materialized(&expected(&merged(&[&settings2, &protected])));
    let db = c.get("statefulset", &apps, "db");
    assert_eq!(
        db["spec"]["template"]["spec"]["serviceAccountName"],
        "sc-account-0a1b2c3d-0000-4000-8000-000000000002",
        "the StatefulSet of bus did not move to its new identity"
    );
    assert!(
        c.try_get(
            "serviceaccount",
            &apps,
            "sc-account-0a1b2c3d-0000-4000-8000-000000000001"
        )
        .is_none(),
        "bus's former ServiceAccount stayed (deletionPolicy Delete)"
    );
    assert!(
        c.try_get("secretproviderclass", &apps, "sc-vault-spc")
            .is_none(),
        "vault's SecretProviderClass stayed"
    );

    // A failed upgrade (the Secret name is taken), then its fix.
    let foreign = secret_value("foreign");
    c.remember_secret(&foreign);
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "sc-cache-secret",
        "-n",
        &apps,
        &format!("--from-literal=password={foreign}"),
    ])
    .ok();
    let cache_key = secret_value("cache-key");
    c.remember_secret(&cache_key);
    let cache = json!({"connections": {"cache": {
        "namespace": apps, "targetType": "redis", "authType": "secret", "clientType": "python",
        "parameters": {"server": "e2e-cache"},
    }}});
    let cache_protected = json!({"connections": {"cache": {"secrets": {"accessKey": cache_key}}}});
    let settings3 = merged(&[&settings2, &cache]);
    let protected3 = merged(&[&protected, &cache_protected]);
    let files3 = [
        c.write_values("settings3", &settings3),
        c.write_values("protected3", &protected3),
    ];
    let out = c.helm_upgrade(helm, &[&files3[0], &files3[1]], &[]);
    assert!(
        !out.success(),
        "the upgrade succeeded despite the foreign Secret:\n{}",
        out.all()
    );
    c.kubectl(&["delete", "secret", "sc-cache-secret", "-n", &apps])
        .ok();
    c.helm_upgrade(helm, &[&files3[0], &files3[1]], &[]).ok();
    c.wait_job_gone();
    c.assert_materialized(&expected(&merged(&[&settings3, &protected3])));

    // blob removed (deletionPolicy Delete): its Secret goes.
    let mut settings4 = settings3.clone();
    settings4["connections"]
        .as_object_mut()
        .expect("a map")
        .remove("blob");
    let files4 = [
        c.write_values("settings4", &settings4),
        c.write_values("protected4", &cache_protected),
    ];
    c.helm_upgrade(helm, &[&files4[0], &files4[1]], &[]).ok();
    // The wait hook waits only for requested connections: the removal may still be running.
    wait_until(SETTLE, "blob's Secret to be deleted", || {
        c.try_get("secret", &apps, "sc-blob-secret")
            .is_none()
            .then_some(())
    });
    c.wait_job_gone();

    // helm test, then uninstall.
    c.helm(helm, &["test", RELEASE, "-n", &rel, "--timeout", "3m"])
        .ok();
    c.leak_scan(&["bus", "cache"]);
    let rendered = {
        let mut cmd = c.tool_command(helm.tool());
        cmd.args(["get", "manifest", RELEASE, "-n", &rel]);
        documents(run_command(cmd, "helm get manifest", None).ok())
    };
    // The RBAC in effect, as any cluster answers it.
    let asked = check_rbac_with_can_i(&c, &rendered);
    eprintln!("kubectl auth can-i: {asked} questions answered as expected");
    // Until the release is uninstalled, the chart's RBAC refuses nothing the binaries ask.
    let refused_before = if c.is_embedded() {
        refused(&audit_entries(&c))
    } else {
        Vec::new()
    };
    assert!(
        refused_before.is_empty(),
        "requests the chart's RBAC refused (the binaries need more than it grants):\n{}",
        refused_before.join("\n")
    );
    c.helm(
        helm,
        &[
            "uninstall",
            RELEASE,
            "-n",
            &rel,
            "--wait",
            "--timeout",
            "3m",
        ],
    )
    .ok();
    wait_until(SETTLE, "the release's objects to be gone", || {
        let left = c
            .kubectl(&["get", "jobs,pods", "-n", &rel, "-o", "name"])
            .ok()
            .to_string()
            + c.kubectl(&[
                "get",
                "configmaps",
                "-n",
                &rel,
                "-l",
                sc_e2e::MANAGED_SELECTOR,
                "-o",
                "name",
            ])
            .ok();
        left.trim().is_empty().then_some(())
    });
    // The agent's Lease is owned by the requests ConfigMap, so it goes with the release.
    wait_until(SETTLE, "the agent's Lease to be removed", || {
        let left = c.kubectl(&["get", "leases", "-n", &rel, "-o", "name"]);
        left.ok().trim().is_empty().then_some(())
    });

    // Nobody but the admin ever created a service-account token Secret.
    // On a shared cluster, only the scenario's namespaces are the scenario's doing.
    let ours = [rel.clone(), apps.clone()];
    let seen_secrets: Vec<Value> = secrets
        .seen()
        .into_iter()
        .filter(|s| {
            c.is_embedded()
                || ours
                    .iter()
                    .any(|n| s["metadata"]["namespace"] == n.as_str())
        })
        .collect();
    assert!(!seen_secrets.is_empty(), "the Secret watch saw nothing");
    for s in &seen_secrets {
        assert_ne!(
            s["type"], "kubernetes.io/service-account-token",
            "a long-lived token Secret was created: {}/{}",
            s["metadata"]["namespace"], s["metadata"]["name"]
        );
    }

    // Every pod and Job of the release, as seen live.
    let mut checked = BTreeSet::new();
    let mut violations = Vec::new();
    for p in pods
        .seen()
        .iter()
        .filter(|p| p["metadata"]["namespace"] == rel.as_str())
    {
        let name = p["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for v in restricted_violations(&p["spec"]) {
            violations.push(format!("pod {name}: {v}"));
        }
        checked.insert(format!(
            "pod/{}",
            name.rsplit_once('-').map_or(name.as_str(), |(a, _)| a)
        ));
    }
    for j in jobs
        .seen()
        .iter()
        .filter(|j| j["metadata"]["namespace"] == rel.as_str())
    {
        let name = j["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for v in restricted_violations(&j["spec"]["template"]["spec"]) {
            violations.push(format!("Job {name}: {v}"));
        }
        checked.insert(format!("job/{name}"));
    }
    for d in rendered.iter().filter(|d| d["kind"] == "Deployment") {
        for v in restricted_violations(&d["spec"]["template"]["spec"]) {
            violations.push(format!("Deployment {}: {v}", d["metadata"]["name"]));
        }
    }
    eprintln!("restricted Pod Security profile checked on: {checked:?}");
    assert!(
        violations.is_empty(),
        "restricted profile violations:\n{}",
        violations.join("\n")
    );
    for must in ["job/sc-job", "job/sc-wait"] {
        assert!(
            checked.contains(must),
            "the watch never saw {must}: {checked:?}"
        );
    }
    assert!(
        checked.iter().any(|k| k.starts_with("pod/sc-agent"))
            && checked.iter().any(|k| k.starts_with("pod/sc-job")),
        "the watch saw neither the agent's nor sc-job's pods: {checked:?}"
    );

    // Least privilege, from kubesim's request log.
    if !c.is_embedded() {
        sc_e2e::skipped(
            "security",
            "not checked: that the agent and sc-job were never refused and used every rule granted \
             (kubesim's request log, /kubesim/audit); RBAC and Pod Security were checked",
        );
        return;
    }
    let entries = audit_entries(&c);
    assert!(
        !entries.is_empty(),
        "kubesim recorded no request of the agent or sc-job"
    );
    // While helm uninstalls, the agent's RoleBinding may go before the agent has released its
    // Lease; nothing else may be refused.
    let late: Vec<String> = refused(&entries)
        .into_iter()
        .filter(|e| !refused_before.contains(e) && !e.contains("\"resource\":\"leases\""))
        .collect();
    assert!(
        late.is_empty(),
        "requests refused during the uninstall:\n{}",
        late.join("\n")
    );
    // The agent reads core Events only where the connections are (for WorkloadBroken), and
    // only by listing; sc-job reads none.
    let stray: Vec<String> = entries
        .iter()
        .filter(|e| e["apiGroup"] == "" && e["resource"] == "events" && e["verb"] != "create")
        .filter(|e| {
            service_account(e["user"].as_str().unwrap_or_default()).as_deref() != Some("sc-agent")
                || e["verb"] != "list"
                || e["namespace"] != apps.as_str()
        })
        .map(Value::to_string)
        .collect();
    assert!(
        stray.is_empty(),
        "Event reads outside the connections' namespace {apps}:\n{}",
        stray.join("\n")
    );
    let granted = grants(&rendered);
    let excused = justified();
    let mut unused = Vec::new();
    for g in &granted {
        if entries.iter().any(|e| covers(g, e)) {
            continue;
        }
        let resource = if g.2.is_empty() {
            g.3.clone()
        } else {
            format!("{}.{}", g.3, g.2)
        };
        if excused.contains(&(g.0.clone(), g.1.clone(), resource.clone())) {
            continue;
        }
        unused.push(format!(
            "{} {} {resource}{}",
            g.0,
            g.1,
            if g.4.is_empty() {
                String::new()
            } else {
                format!(" (name {})", g.4)
            }
        ));
    }
    let mut used: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{} {} {}{} {}",
                service_account(e["user"].as_str().unwrap_or_default()).unwrap_or_default(),
                e["verb"].as_str().unwrap_or_default(),
                e["resource"].as_str().unwrap_or_default(),
                if e["apiGroup"].as_str().unwrap_or_default().is_empty() {
                    String::new()
                } else {
                    format!(".{}", e["apiGroup"].as_str().unwrap_or_default())
                },
                e["code"]
            )
        })
        .collect();
    used.sort();
    used.dedup();
    eprintln!("requests of the agent and sc-job:\n{}", used.join("\n"));
    assert!(
        unused.is_empty(),
        "granted but never used by the flow, and not justified in the chart (`# rbac-unused-in-e2e: <serviceaccount> <verb> <resource>[.<group>]: <why>`):\n{}",
        unused.join("\n")
    );
}
