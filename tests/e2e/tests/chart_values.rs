//! The chart's values, rendered with the real helm 3 and helm 4 (`helm template`, no cluster):
//!
//! - `readme_lists_every_value`: `chart/README.md` has one row per value of `values.yaml` (a
//!   value is what `values.schema.json` does not break down further), with its default; the
//!   test names a value missing from the README, a row for a value that no longer exists and
//!   a default that drifted.
//! - one test per value the chart grew for production installs: PodDisruptionBudget,
//!   NetworkPolicy, topology spread, pod annotations and labels, extra env and args,
//!   ServiceAccount annotations, a tag or digest per image, overridable security contexts, the
//!   ServiceMonitor (only where its API is served), the Chart.yaml metadata.

use sc_e2e::{Helm, RELEASE, chart_dir, run_command, tool, workspace_root};
use sc_model::parse_yaml;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Command;

const HELMS: [Helm; 2] = [Helm::V3, Helm::V4];

/// `helm template` of the chart with `args`: the command's output.
fn template(helm: Helm, args: &[&str]) -> sc_e2e::Out {
    let home = tempfile::tempdir().expect("a temporary HOME");
    let mut cmd = Command::new(tool(helm.tool()));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .args([
            "template",
            RELEASE,
            &chart_dir().display().to_string(),
            "-n",
            "sc-system",
        ])
        .args(args);
    run_command(
        cmd,
        &format!("{} template {}", helm.tool(), args.join(" ")),
        None,
    )
}

/// The documents `helm template` renders with `args`.
fn render(helm: Helm, args: &[&str]) -> Vec<Value> {
    let out = template(helm, args);
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in out.ok().lines().chain(std::iter::once("---")) {
        if line == "---" {
            if !current.trim().is_empty() {
                let doc = parse_yaml(&current).unwrap_or_else(|e| {
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

/// The rendered objects of `kind`.
fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one rendered object of `kind` named `name`.
fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The agent Deployment's pod template.
fn agent_pod(docs: &[Value]) -> &Value {
    &object(docs, "Deployment", "sc-agent")["spec"]["template"]
}

/// The settings the agent gives the sc-job Job (`config.json` of `sc-agent-config`).
fn job_config(docs: &[Value]) -> Value {
    let text = object(docs, "ConfigMap", "sc-agent-config")["data"]["config.json"]
        .as_str()
        .expect("config.json")
        .to_string();
    serde_json::from_str::<Value>(&text).expect("config.json is JSON")["job"].clone()
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The values of `values.yaml` as the schema breaks them down: an object whose schema lists
/// `properties` is walked, anything else (a scalar, a list, a free-form map) is one value.
fn values(value: &Value, schema: &Value, path: &str, out: &mut BTreeMap<String, Value>) {
    match (value.as_object(), schema.get("properties")) {
        (Some(map), Some(props)) => {
            for (key, v) in map {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let s = props.get(key).unwrap_or_else(|| {
                    panic!("values.yaml has `{child}`, which values.schema.json does not describe")
                });
                values(v, s, &child, out);
            }
        }
        _ => {
            out.insert(path.to_string(), value.clone());
        }
    }
}

#[test]
fn readme_lists_every_value() {
    let chart = chart_dir();
    let defaults = parse_yaml(&read(&chart.join("values.yaml"))).expect("values.yaml");
    let schema: Value =
        serde_json::from_str(&read(&chart.join("values.schema.json"))).expect("schema");
    let mut expected = BTreeMap::new();
    values(&defaults, &schema, "", &mut expected);
    assert!(expected.len() > 40, "values.yaml walked to {expected:?}");

    // Rows `| `key` | `default as JSON` | meaning |`.
    let readme = read(&chart.join("README.md"));
    let mut rows = BTreeMap::new();
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        assert!(
            cells.len() >= 3,
            "chart/README.md: a row without three cells: {line}"
        );
        let key = cells[0]
            .trim_start_matches("| ")
            .trim_matches('`')
            .to_string();
        let default = cells[1].trim().trim_matches('`');
        let default: Value = serde_json::from_str(default).unwrap_or_else(|e| {
            panic!("chart/README.md: the default of `{key}` is not JSON ({e}): {default}")
        });
        assert!(
            rows.insert(key.clone(), default).is_none(),
            "chart/README.md lists `{key}` twice"
        );
    }

    let mut problems = Vec::new();
    for (key, default) in &expected {
        match rows.get(key) {
            None => problems.push(format!("value `{key}` is missing from chart/README.md")),
            Some(d) if d != default => problems.push(format!(
                "chart/README.md gives `{key}` the default {d}, values.yaml has {default}"
            )),
            Some(_) => {}
        }
    }
    for key in rows.keys().filter(|k| !expected.contains_key(*k)) {
        problems.push(format!(
            "chart/README.md documents `{key}`, which values.yaml no longer has"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn pod_disruption_budget_only_with_several_agents() {
    for helm in HELMS {
        let docs = render(helm, &[]);
        assert!(
            of_kind(&docs, "PodDisruptionBudget").is_empty(),
            "{helm:?}: one agent"
        );

        // Arc passes strings.
        let docs = render(helm, &["--set-string", "agent.replicas=2"]);
        let pdb = object(&docs, "PodDisruptionBudget", "sc-agent");
        assert_eq!(pdb["spec"]["minAvailable"], 1, "{helm:?}");
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            agent_pod(&docs)["metadata"]["labels"],
            "{helm:?}: the budget selects the agent pods"
        );

        let docs = render(
            helm,
            &[
                "--set",
                "agent.replicas=3",
                "--set-string",
                "agent.podDisruptionBudget.minAvailable=50%",
            ],
        );
        let pdb = object(&docs, "PodDisruptionBudget", "sc-agent");
        assert_eq!(pdb["spec"]["minAvailable"], "50%", "{helm:?}");
    }
}

#[test]
fn network_policy_allows_the_api_server_dns_and_metrics_only() {
    for helm in HELMS {
        assert!(
            of_kind(&render(helm, &[]), "NetworkPolicy").is_empty(),
            "{helm:?}: off by default"
        );
        let docs = render(helm, &["--set", "networkPolicy.enabled=true"]);
        let agent = object(&docs, "NetworkPolicy", "sc-agent");
        let job = object(&docs, "NetworkPolicy", "sc-job");
        let egress = json!([
            {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]},
            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
             "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                     "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]},
        ]);
        for np in [agent, job] {
            assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
            assert_eq!(np["spec"]["egress"], egress, "{helm:?}");
        }
        assert_eq!(
            agent["spec"]["ingress"],
            json!([{"ports": [{"port": 8080, "protocol": "TCP"}]}]),
            "{helm:?}: only the metrics port, from anywhere"
        );
        assert_eq!(
            agent["spec"]["podSelector"]["matchLabels"],
            json!({"app.kubernetes.io/name": "sc-extension", "app.kubernetes.io/instance": RELEASE})
        );
        assert_eq!(
            job["spec"]["ingress"],
            json!([]),
            "{helm:?}: nothing reaches sc-job"
        );
        // The labels the agent gives the sc-job pods (agent/src/contract.rs).
        assert_eq!(
            job["spec"]["podSelector"]["matchLabels"],
            json!({"app.kubernetes.io/managed-by": "sc-extension", "app.kubernetes.io/component": "job"})
        );

        let docs = render(
            helm,
            &[
                "--set-string",
                "networkPolicy.enabled=true,agent.port=9090",
                "--set",
                "networkPolicy.apiServer.ports={443},networkPolicy.apiServer.cidrs={10.0.0.1/32}",
                "--set-json",
                r#"networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"name":"monitoring"}}}]"#,
            ],
        );
        let agent = object(&docs, "NetworkPolicy", "sc-agent");
        assert_eq!(
            agent["spec"]["egress"][0],
            json!({"ports": [{"port": 443, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]}),
            "{helm:?}"
        );
        assert_eq!(
            agent["spec"]["ingress"],
            json!([{"ports": [{"port": 9090, "protocol": "TCP"}],
                    "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]}]),
            "{helm:?}"
        );
    }
}

#[test]
fn agent_pod_values() {
    for helm in HELMS {
        let default_pod = agent_pod(&render(helm, &[])).clone();
        assert!(default_pod["spec"]["topologySpreadConstraints"].is_null());
        let docs = render(
            helm,
            &[
                "--set",
                "agent.podAnnotations.example\\.com/team=payments,agent.podLabels.team=payments",
                "--set",
                "agent.podLabels.app\\.kubernetes\\.io/component=other",
                "--set",
                "agent.extraEnv[0].name=HTTPS_PROXY,agent.extraEnv[0].value=http://proxy:3128",
                "--set",
                "agent.extraArgs={--metrics-prefix=x}",
                "--set-json",
                r#"agent.topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"ScheduleAnyway"},{"maxSkew":2,"topologyKey":"kubernetes.io/hostname","whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchLabels":{"x":"y"}}}]"#,
            ],
        );
        let pod = agent_pod(&docs);
        assert_eq!(
            pod["metadata"]["annotations"]["example.com/team"],
            "payments"
        );
        assert!(pod["metadata"]["annotations"]["checksum/config"].is_string());
        assert_eq!(pod["metadata"]["labels"]["team"], "payments");
        assert_eq!(
            pod["metadata"]["labels"]["app.kubernetes.io/component"], "agent",
            "{helm:?}: podLabels cannot change the selector labels"
        );
        let container = &pod["spec"]["containers"][0];
        let env = container["env"].as_array().expect("env");
        assert_eq!(
            env.last().expect("env"),
            &json!({"name": "HTTPS_PROXY", "value": "http://proxy:3128"})
        );
        assert_eq!(
            env.len(),
            3,
            "{helm:?}: POD_NAME, POD_NAMESPACE and the extra one"
        );
        let args = container["args"].as_array().expect("args");
        assert_eq!(args[0], "run");
        assert_eq!(args.last().expect("args"), "--metrics-prefix=x");
        let tsc = &pod["spec"]["topologySpreadConstraints"];
        assert_eq!(
            tsc[0]["labelSelector"]["matchLabels"],
            object(&docs, "Deployment", "sc-agent")["spec"]["selector"]["matchLabels"],
            "{helm:?}: a constraint without labelSelector selects the agent pods"
        );
        assert_eq!(tsc[0]["topologyKey"], "topology.kubernetes.io/zone");
        assert_eq!(tsc[1]["labelSelector"], json!({"matchLabels": {"x": "y"}}));
    }
}

#[test]
fn agent_log_format() {
    for helm in HELMS {
        let args_of = |docs: &[Value]| -> Vec<String> {
            agent_pod(docs)["spec"]["containers"][0]["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().unwrap_or_default().to_string())
                .collect()
        };
        let default = args_of(&render(helm, &[]));
        assert!(
            default.contains(&"--log-format=text".to_string()),
            "{default:?}"
        );
        let json = args_of(&render(helm, &["--set", "agent.logFormat=json"]));
        assert!(json.contains(&"--log-format=json".to_string()), "{json:?}");
        let refused = template(helm, &["--set", "agent.logFormat=xml"]);
        assert!(!refused.success(), "{helm:?}: {refused:?}");
        assert!(refused.stderr.contains("logFormat"), "{refused:?}");
    }
}

#[test]
fn service_account_annotations() {
    let client_id = "00000000-0000-0000-0000-000000000000";
    for helm in HELMS {
        let docs = render(helm, &[]);
        for sa in ["sc-agent", "sc-job"] {
            assert!(object(&docs, "ServiceAccount", sa)["metadata"]["annotations"].is_null());
        }
        let docs = render(
            helm,
            &[
                "--set",
                "serviceAccount.agent.annotations.team=platform",
                "--set-string",
                &format!(
                    "serviceAccount.job.annotations.azure\\.workload\\.identity/client-id={client_id}"
                ),
            ],
        );
        assert_eq!(
            object(&docs, "ServiceAccount", "sc-agent")["metadata"]["annotations"],
            json!({"team": "platform"})
        );
        assert_eq!(
            object(&docs, "ServiceAccount", "sc-job")["metadata"]["annotations"],
            json!({"azure.workload.identity/client-id": client_id}),
            "{helm:?}"
        );
    }
}

/// The images of the agent Deployment, the wait hook, `helm test` and the sc-job Job.
fn images(docs: &[Value]) -> (Vec<String>, String) {
    let mut agent = Vec::new();
    for d in docs {
        let spec = match d["kind"].as_str() {
            Some("Deployment") | Some("Job") => &d["spec"]["template"]["spec"],
            Some("Pod") => &d["spec"],
            _ => continue,
        };
        for c in spec["containers"].as_array().into_iter().flatten() {
            agent.push(c["image"].as_str().expect("image").to_string());
        }
    }
    let job = job_config(docs)["image"]
        .as_str()
        .expect("job image")
        .to_string();
    (agent, job)
}

#[test]
fn a_tag_or_digest_per_image() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    for helm in HELMS {
        let (agent, job) = images(&render(helm, &[]));
        assert_eq!(
            agent.len(),
            3,
            "{helm:?}: the agent, the wait hook and the test pod"
        );
        assert!(
            agent
                .iter()
                .all(|i| i == "ghcr.io/sc-extension/sc-agent:0.1.0"),
            "{agent:?}"
        );
        assert_eq!(job, "ghcr.io/sc-extension/sc-job:0.1.0");

        let (agent, job) = images(&render(
            helm,
            &[
                "--set-string",
                "image.tag=1.2,image.job.tag=1.3,image.registry=registry.example:5000/sc/",
            ],
        ));
        assert!(
            agent
                .iter()
                .all(|i| i == "registry.example:5000/sc/sc-agent:1.2"),
            "{agent:?}"
        );
        assert_eq!(job, "registry.example:5000/sc/sc-job:1.3", "{helm:?}");

        let (agent, job) = images(&render(
            helm,
            &[
                "--set",
                &format!("image.agent.digest={digest},image.agent.tag=ignored"),
                "--set",
                "image.registry=,image.job.repository=mirror/sc-job",
            ],
        ));
        assert!(
            agent.iter().all(|i| *i == format!("sc-agent@{digest}")),
            "{agent:?}"
        );
        assert_eq!(job, "mirror/sc-job:0.1.0", "{helm:?}");

        // A malformed digest fails at install, naming the key.
        let out = template(helm, &["--set", "image.job.digest=latest"]);
        assert!(!out.success(), "{helm:?}: a bad digest was accepted");
        assert!(out.stderr.contains("digest"), "{helm:?}: {}", out.stderr);
    }
}

#[test]
fn security_contexts_are_restricted_and_overridable() {
    for helm in HELMS {
        let docs = render(helm, &[]);
        let pod = &agent_pod(&docs)["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], 65532);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let c = &pod["containers"][0]["securityContext"];
        assert_eq!(c["allowPrivilegeEscalation"], false);
        assert_eq!(c["readOnlyRootFilesystem"], true);
        assert_eq!(c["capabilities"]["drop"], json!(["ALL"]));

        let docs = render(
            helm,
            &[
                "--set",
                "podSecurityContext.runAsUser=1001,podSecurityContext.runAsGroup=1001,podSecurityContext.fsGroup=1001",
                "--set",
                "securityContext.seLinuxOptions.level=s0:c123\\,c456",
            ],
        );
        for d in docs
            .iter()
            .filter(|d| d["kind"] == "Deployment" || d["kind"] == "Job")
        {
            let spec = &d["spec"]["template"]["spec"];
            assert_eq!(
                spec["securityContext"]["runAsUser"], 1001,
                "{helm:?}: {}",
                d["metadata"]["name"]
            );
            assert_eq!(
                spec["securityContext"]["runAsNonRoot"], true,
                "the rest is kept"
            );
            let c = &spec["containers"][0]["securityContext"];
            assert_eq!(c["seLinuxOptions"]["level"], "s0:c123,c456");
            assert_eq!(c["allowPrivilegeEscalation"], false, "the rest is kept");
        }
    }
}

#[test]
fn job_security_contexts_reach_the_agent_configuration() {
    for helm in HELMS {
        // By default, the restricted profile the agent also falls back to.
        let job = job_config(&render(helm, &[]));
        assert_eq!(
            job["podSecurityContext"],
            json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                   "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}}),
            "{helm:?}"
        );
        assert_eq!(
            job["securityContext"],
            json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                   "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]},
                   "seccompProfile": {"type": "RuntimeDefault"}}),
            "{helm:?}"
        );

        // job.* reaches config.json, merged with the defaults; the agent's own values do not.
        let job = job_config(&render(
            helm,
            &[
                "--set",
                "job.podSecurityContext.runAsUser=1001,job.podSecurityContext.fsGroup=1001",
                "--set",
                "job.securityContext.seLinuxOptions.level=s0:c123\\,c456",
                "--set",
                "podSecurityContext.runAsUser=2002",
            ],
        ));
        let pod = &job["podSecurityContext"];
        assert_eq!(pod["runAsUser"], 1001, "{helm:?}: {job}");
        assert_eq!(pod["fsGroup"], 1001, "{helm:?}: {job}");
        assert_eq!(pod["runAsGroup"], 65532, "{helm:?}: the rest is kept");
        assert_eq!(pod["runAsNonRoot"], true, "{helm:?}: the rest is kept");
        let c = &job["securityContext"];
        assert_eq!(c["seLinuxOptions"]["level"], "s0:c123,c456", "{helm:?}");
        assert_eq!(
            c["allowPrivilegeEscalation"], false,
            "{helm:?}: the rest is kept"
        );

        // Not an object: refused by the schema.
        let out = template(helm, &["--set", "job.securityContext=restricted"]);
        assert!(
            !out.success(),
            "{helm:?}: a string securityContext was accepted"
        );
    }
}

#[test]
fn service_monitor_only_where_its_api_is_served() {
    for helm in HELMS {
        let on = ["--set", "metrics.serviceMonitor.enabled=true"];
        assert!(
            of_kind(&render(helm, &on), "ServiceMonitor").is_empty(),
            "{helm:?}: rendered without monitoring.coreos.com/v1"
        );
        let docs = render(
            helm,
            &[
                "--set-string",
                "metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.scrapeTimeout=10s",
                "--set-json",
                r#"metrics.serviceMonitor.relabelings=[{"targetLabel":"cluster","replacement":"prod"}]"#,
                "--set-json",
                r#"metrics.serviceMonitor.metricRelabelings=[{"action":"drop","regex":"go_.*","sourceLabels":["__name__"]}]"#,
                "--api-versions",
                "monitoring.coreos.com/v1",
            ],
        );
        let sm = object(&docs, "ServiceMonitor", "sc-agent");
        let endpoint = &sm["spec"]["endpoints"][0];
        assert_eq!(endpoint["interval"], "30s");
        assert_eq!(endpoint["scrapeTimeout"], "10s", "{helm:?}");
        assert_eq!(
            endpoint["relabelings"],
            json!([{"targetLabel": "cluster", "replacement": "prod"}])
        );
        assert_eq!(endpoint["metricRelabelings"][0]["action"], "drop");

        let docs = render(
            helm,
            &[
                "--set",
                "metrics.serviceMonitor.enabled=true",
                "--api-versions",
                "monitoring.coreos.com/v1",
            ],
        );
        let endpoint = &object(&docs, "ServiceMonitor", "sc-agent")["spec"]["endpoints"][0];
        assert!(endpoint["scrapeTimeout"].is_null() && endpoint["relabelings"].is_null());
    }
}

#[test]
fn chart_metadata_follows_the_workspace_version() {
    let chart = parse_yaml(&read(&chart_dir().join("Chart.yaml"))).expect("Chart.yaml");
    let cargo = read(&workspace_root().join("Cargo.toml"));
    let version = cargo
        .split("[workspace.package]")
        .nth(1)
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("version = ")))
        .expect("the workspace version")
        .trim_matches('"');
    assert_eq!(chart["version"], version, "Chart.yaml version");
    assert_eq!(chart["appVersion"], version, "Chart.yaml appVersion");
    let annotations = &chart["annotations"];
    for key in [
        "artifacthub.io/license",
        "artifacthub.io/links",
        "artifacthub.io/category",
    ] {
        assert!(
            annotations[key].is_string(),
            "Chart.yaml lacks annotation {key}"
        );
    }
    let images = parse_yaml(
        annotations["artifacthub.io/images"]
            .as_str()
            .expect("images"),
    )
    .expect("artifacthub.io/images is YAML");
    let images: Vec<&str> = images
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| i["image"].as_str().expect("image"))
        .collect();
    assert_eq!(
        images,
        [
            format!("ghcr.io/sc-extension/sc-agent:{version}"),
            format!("ghcr.io/sc-extension/sc-job:{version}")
        ]
    );
}

#[test]
fn the_wait_hook_tolerates_no_schedule_taints_unless_told_not_to() {
    let user = json!({"key": "CriticalAddonsOnly", "operator": "Exists"});
    let every = json!({"operator": "Exists", "effect": "NoSchedule"});
    for helm in [Helm::V3, Helm::V4] {
        let hook_tolerations = |args: &[&str]| {
            let docs = render(helm, args);
            object(&docs, "Job", "sc-wait")["spec"]["template"]["spec"]["tolerations"].clone()
        };
        assert_eq!(hook_tolerations(&[]), json!([every]));
        let set = [
            "--set",
            "tolerations[0].key=CriticalAddonsOnly,tolerations[0].operator=Exists",
            "--set",
            "nodeSelector.pool=system",
        ];
        assert_eq!(hook_tolerations(&set), json!([user, every]));
        // The agent gets the user's tolerations only.
        let docs = render(helm, &set);
        assert_eq!(agent_pod(&docs)["spec"]["tolerations"], json!([user]));
        let docs = render(helm, &set);
        let hook = &object(&docs, "Job", "sc-wait")["spec"]["template"]["spec"];
        assert_eq!(hook["nodeSelector"], json!({"pool": "system"}));
        let off = [
            &set[..],
            &["--set", "waitForResult.tolerateNoSchedule=false"],
        ]
        .concat();
        assert_eq!(hook_tolerations(&off), json!([user]));
        assert_eq!(
            hook_tolerations(&["--set", "waitForResult.tolerateNoSchedule=false"]),
            Value::Null
        );
    }
}

#[test]
fn watching_secrets_is_opt_in_and_grants_list_and_watch() {
    let secret_verbs = |docs: &[Value]| -> Vec<Value> {
        of_kind(docs, "ClusterRole")
            .into_iter()
            .filter(|r| {
                r["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("sc-agent-drift"))
            })
            .flat_map(|r| r["rules"].as_array().cloned().unwrap_or_default())
            .filter(|rule| rule["resources"] == json!(["secrets"]))
            .flat_map(|rule| rule["verbs"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let config = |docs: &[Value]| -> Value {
        let cm = object(docs, "ConfigMap", "sc-agent-config");
        serde_json::from_str(cm["data"]["config.json"].as_str().unwrap()).unwrap()
    };
    for helm in [Helm::V3, Helm::V4] {
        let docs = render(helm, &[]);
        assert_eq!(secret_verbs(&docs), vec![json!("get")]);
        assert_eq!(config(&docs)["watchSecrets"], false);
        let docs = render(helm, &["--set", "agent.drift.watchSecrets=true"]);
        assert_eq!(
            secret_verbs(&docs),
            vec![json!("get"), json!("list"), json!("watch")]
        );
        assert_eq!(config(&docs)["watchSecrets"], true);
    }
}
