//! The bad-input corpus (corpus/bad-input.json, described in tests/e2e/BAD-INPUT.md) through
//! the real chart, as values files and as Arc-style flat `--set-string` settings:
//!
//! - `schema`: every case the schema can tell is refused by `helm template` (helm 3 and helm 4)
//!   with an error naming the key; every other case passes the schema, renders the same
//!   requests in both forms, and `sc-agent plan` (no cluster) refuses it naming the key.
//! - `cluster`: the cases only sc-model can tell, batched into a few upgrades of one release on
//!   kubesim next to a healthy connection: each is `Failed` in its status and in `sc-agent
//!   show` and named in sc-job's log, at the same key path as `sc-agent plan`; no log holds a
//!   panic, the agent keeps running, and the healthy connection stays Ready with unchanged
//!   objects.

use sc_e2e::corpus::{self, Case, Stage};
use sc_e2e::{
    Cluster, Helm, Out, SETTLE, chart_dir, expected, merged, run_command, secret_value, tool,
    wait_for_state, write_private,
};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// How many threads run helm and sc-agent at once.
const PARALLEL: usize = 4;

/// The input files of one form of a case.
struct Form {
    label: &'static str,
    args: Vec<String>,
}

/// The values-file form and, when the case has one, the flat form of `case`, with its files
/// written under `dir`.
fn forms(case: &Case, dir: &Path) -> Vec<Form> {
    let mut out = Vec::new();
    let protected = case.protected().map(|p| {
        let path = dir.join(format!("{}-protected.json", case.id));
        write_private(&path, &p.to_string());
        vec!["-f".to_string(), path.display().to_string()]
    });
    if case.values.is_some() {
        let settings = dir.join(format!("{}-settings.json", case.id));
        write_private(&settings, &case.public().to_string());
        out.push(Form {
            label: "values files",
            args: [vec!["-f".to_string(), settings.display().to_string()]]
                .into_iter()
                .chain(protected.clone())
                .flatten()
                .collect(),
        });
    }
    if let Some(flat) = case.flat_settings() {
        let mut args = Vec::new();
        for s in flat {
            args.push("--set-string".to_string());
            args.push(s);
        }
        args.extend(protected.into_iter().flatten());
        out.push(Form {
            label: "flat settings",
            args,
        });
    }
    out
}

/// `helm template` of the chart with `args` (`only`: one template).
fn template(helm: Helm, home: &Path, args: &[String], only: Option<&str>) -> Out {
    let mut cmd = Command::new(tool(helm.tool()));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .args([
            "template",
            "sc-extension",
            &chart_dir().display().to_string(),
            "-n",
            "sc-system",
        ])
        .args(args);
    if let Some(t) = only {
        cmd.args(["--show-only", t]);
    }
    run_command(cmd, &format!("{} template", helm.tool()), None)
}

/// `sc-agent plan` of the values-file form.
fn plan(case: &Case, dir: &Path) -> Out {
    let mut cmd = Command::new(sc_e2e::binary("sc-agent"));
    cmd.arg("plan").args(&forms(case, dir)[0].args);
    run_command(cmd, &format!("sc-agent plan ({})", case.id), None)
}

/// Runs `check` on every case, `PARALLEL` at a time; returns the failures.
fn each_case(cases: &[Case], check: impl Fn(&Case) -> Result<(), String> + Sync) -> Vec<String> {
    let failures = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().expect("lock");
                        *n += 1;
                        *n - 1
                    };
                    let Some(case) = cases.get(i) else { break };
                    let result =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(case)))
                            .unwrap_or_else(|_| Err("the check panicked".to_string()));
                    if let Err(e) = result {
                        failures
                            .lock()
                            .expect("lock")
                            .push(format!("case {}: {e}", case.id));
                    }
                }
            });
        }
    });
    failures.into_inner().expect("lock")
}

/// Flattens the output for a message (control characters escaped, bounded).
fn shown(text: &str) -> String {
    let t: String = text.escape_debug().collect();
    t.chars().take(1500).collect()
}

#[test]
fn corpus_is_large_and_well_formed() {
    let cases = corpus::load();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let mut names = std::collections::BTreeMap::new();
    for c in &cases {
        assert!(!c.key.is_empty(), "case {}: no key", c.id);
        if c.stage == Stage::Cluster {
            let name = c
                .name
                .as_deref()
                .expect("a cluster case is about a connection");
            let compact = sc_model::names::compact_name(name);
            if let Some(other) = names.insert(compact.clone(), c.id.clone()) {
                panic!(
                    "cases {other} and {} map to the same metadata ConfigMap",
                    c.id
                );
            }
            assert!(
                c.values.is_some(),
                "case {}: a cluster case needs values",
                c.id
            );
        }
    }
    let flat = cases.iter().filter(|c| c.flat_settings().is_some()).count();
    assert!(flat >= 100, "only {flat} cases are tried as flat settings");
}

#[test]
fn schema() {
    let cases = corpus::load();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("creating HOME");
    let failures = each_case(&cases, |case| {
        let mut rendered: Option<String> = None;
        for helm in [Helm::V3, Helm::V4] {
            for form in forms(case, dir.path()) {
                let what = format!("{} with {}", helm.tool(), form.label);
                match case.stage {
                    Stage::Helm | Stage::Schema | Stage::Template => {
                        let out = template(helm, &home, &form.args, None);
                        if out.success() {
                            return Err(format!("{what}: helm template accepted it"));
                        }
                        let text = out.all();
                        if case.stage == Stage::Schema
                            && !text.contains("don't meet the specifications of the schema")
                        {
                            return Err(format!("{what}: not a schema error: {}", shown(&text)));
                        }
                        if case.stage == Stage::Template
                            && !text.contains("execution error at (sc-extension/templates/")
                        {
                            return Err(format!(
                                "{what}: not refused by a template: {}",
                                shown(&text)
                            ));
                        }
                        if !corpus::names_key(&text, &case.key) {
                            return Err(format!(
                                "{what}: the error does not name {}: {}",
                                case.key_path(),
                                shown(&text)
                            ));
                        }
                        if text.contains("panic") {
                            return Err(format!("{what}: helm panicked: {}", shown(&text)));
                        }
                        for s in &case.secrets {
                            if text.contains(s.as_str()) {
                                return Err(format!("{what}: the error shows a secret value"));
                            }
                        }
                    }
                    Stage::Cluster => {
                        let out =
                            template(helm, &home, &form.args, Some("templates/requests.yaml"));
                        if !out.success() {
                            return Err(format!(
                                "{what}: the schema refused a case it should pass to the cluster: {}",
                                shown(&out.all())
                            ));
                        }
                        match &rendered {
                            None => rendered = Some(out.stdout.clone()),
                            Some(first) if *first != out.stdout => {
                                return Err(format!(
                                    "{what}: the requests differ from the values-file form:\n{}\nvs\n{}",
                                    shown(first),
                                    shown(&out.stdout)
                                ));
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
        }
        if case.stage == Stage::Cluster {
            let out = plan(case, dir.path());
            let text = out.all();
            if case.plan_accepts {
                if !out.success() {
                    return Err(format!("sc-agent plan refused it: {}", shown(&text)));
                }
            } else if out.code != 2 || !text.contains(&case.key_path()) {
                return Err(format!(
                    "sc-agent plan (exit {}) does not name {}: {}",
                    out.code,
                    case.key_path(),
                    shown(&text)
                ));
            }
            if text.contains("panicked") {
                return Err(format!("sc-agent plan panicked: {}", shown(&text)));
            }
        }
        Ok(())
    });
    let by_stage = |s: Stage| cases.iter().filter(|c| c.stage == s).count();
    eprintln!(
        "bad-input corpus: {} cases ({} by helm's flag parser, {} by the schema, {} by the templates, {} in the cluster); {} also as flat settings",
        cases.len(),
        by_stage(Stage::Helm),
        by_stage(Stage::Schema),
        by_stage(Stage::Template),
        by_stage(Stage::Cluster),
        cases.iter().filter(|c| c.flat_settings().is_some()).count()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The healthy connection installed next to every batch: Storage Blob with a key, and
/// configuration values that look like injections but are plain text (they must land in the
/// Secret unchanged, and nothing may run them).
fn healthy(apps: &str, key: &str, marker: &Path) -> (Value, Value) {
    (
        json!({"connections": {"healthy": {
            "namespace": apps,
            "targetType": "storage-blob",
            "authType": "secret",
            "clientType": "python",
            "parameters": {"accountName": "e2ehealthy"},
            "configurations": {
                "INJECTED_SHELL": format!("$(touch {})", marker.display()),
                "INJECTED_BACKTICKS": format!("`touch {}`", marker.display()),
                "INJECTED_TEMPLATE": "{{ .Release.Name }}",
                "INJECTED_POINTER": "~1/a~0b",
                "INJECTED_YAML": "a: [b, {c: d}]",
                "INJECTED_UNICODE": "Grüße ✓ \u{202e}",
            },
        }}}),
        json!({"connections": {"healthy": {"secrets": {"accountKey": key}}}}),
    )
}

/// The objects of the healthy connection in `apps`.
fn healthy_objects(c: &Cluster, apps: &str) -> Value {
    let mut snap = c.snapshot(apps);
    let map = snap.as_object_mut().expect("a snapshot is a map");
    map.retain(|k, _| k == "Secret/sc-healthy-secret");
    assert_eq!(
        map.len(),
        1,
        "the healthy connection's Secret is missing: {snap}"
    );
    snap
}

/// The text a connection's failure is told with: its status error, or why it is not (yet)
/// `Failed`.
fn failure_text(c: &Cluster, name: &str) -> Result<String, String> {
    let ns = c.release_ns();
    let cm_name = sc_model::names::metadata_config_map_name(name);
    let cm = c
        .try_get("configmap", &ns, &cm_name)
        .ok_or_else(|| format!("no metadata ConfigMap {cm_name}"))?;
    let status: Value = cm["data"]["status.json"]
        .as_str()
        .and_then(|t| serde_json::from_str(t).ok())
        .ok_or_else(|| format!("{cm_name} has no status.json yet: {}", cm["data"]))?;
    if status["phase"] != "Failed" {
        return Err(format!("status of {name}: {status}"));
    }
    Ok(format!(
        "{}\n{}",
        status["error"]["message"].as_str().unwrap_or_default(),
        status["error"]["remedy"].as_str().unwrap_or_default()
    ))
}

/// The pod of the agent Deployment: (name, restart count).
fn agent_pod(c: &Cluster) -> (String, i64) {
    let pods = c.get_json(&[
        "pods",
        "-n",
        &c.release_ns(),
        "-l",
        "app.kubernetes.io/component=agent",
    ]);
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "expected one agent pod: {pods}");
    let p = &items[0];
    (
        p["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(-1),
    )
}

/// Installs the cluster cases in batches next to the healthy connection and checks each one.
#[test]
fn cluster() {
    let cases: Vec<Case> = corpus::load()
        .into_iter()
        .filter(|c| c.stage == Stage::Cluster)
        .collect();
    let c = Cluster::start();
    let apps = c.create_namespace("apps");
    // The name-clash cases and their valid partners (a connection of the same target next to
    // the healthy one would rightly change its key names).
    c.create_namespace("coll");
    let rel = c.release_ns();
    let key = secret_value("healthy-key");
    c.remember_secret(&key);
    let marker = c.dir().join("injected-command-ran");
    let (settings, protected) = healthy(&apps, &key, &marker);
    let files = [
        c.write_values("healthy", &settings),
        c.write_values("healthy-protected", &protected),
    ];
    c.helm_upgrade(Helm::V3, &[&files[0], &files[1]], &[]).ok();
    c.wait_job_gone();
    c.assert_materialized(&expected(&merged(&[&settings, &protected])));
    let before = healthy_objects(&c, &apps);
    let agent_before = agent_pod(&c);

    // The namespace case retries (the namespace may appear); alone in the last batch, its Job's
    // log is read before a retry replaces it.
    let (late, early): (Vec<&Case>, Vec<&Case>) = cases.iter().partition(|k| k.plan_accepts);
    let mut batches: Vec<Vec<&Case>> = early
        .chunks(early.len().div_ceil(3))
        .map(<[_]>::to_vec)
        .collect();
    batches.push(late);
    let mut logs = String::new();
    let mut names: Vec<String> = vec!["healthy".into()];
    for (i, batch) in batches.iter().enumerate() {
        let mut docs = vec![settings.clone()];
        let mut secrets = vec![protected.clone()];
        for k in batch {
            docs.push(k.public());
            if let Some(p) = k.protected() {
                secrets.push(p);
            }
            for s in &k.secrets {
                c.remember_secret(s);
            }
            for n in k
                .values
                .as_ref()
                .and_then(|v| v["connections"].as_object())
                .into_iter()
                .flatten()
                .map(|(n, _)| n)
            {
                names.push(n.clone());
            }
        }
        let all = merged(&docs.iter().collect::<Vec<_>>());
        let all_protected = merged(&secrets.iter().collect::<Vec<_>>());
        let batch_files = [
            c.write_values(&format!("batch{i}"), &all),
            c.write_values(&format!("batch{i}-protected"), &all_protected),
        ];
        let out = c.helm_upgrade(Helm::V3, &[&batch_files[0], &batch_files[1]], &[]);
        assert!(
            !out.success(),
            "batch {i}: the upgrade succeeded with {} bad connections:\n{}",
            batch.len(),
            out.all()
        );
        let helm_text = out.all();
        let mut plan_cmd = Command::new(sc_e2e::binary("sc-agent"));
        plan_cmd
            .args(["plan", "-f"])
            .arg(&batch_files[0])
            .arg("-f")
            .arg(&batch_files[1]);
        let plan_text = run_command(plan_cmd, "sc-agent plan", None).all();
        let mut failures = Vec::new();
        for k in batch {
            let name = k.name.as_deref().expect("a connection case");
            let path = k.key_path();
            if k.ignored_by_agent {
                let note = format!("{name} is ignored");
                wait_for_state(SETTLE, &format!("a NameClash event naming {name}"), || {
                    let events = c
                        .kubectl(&[
                            "get",
                            "events,events.events.k8s.io",
                            "-n",
                            &rel,
                            "-o",
                            "json",
                        ])
                        .all();
                    if events.contains(&note) {
                        Ok(())
                    } else {
                        Err(format!("no event says {note:?}"))
                    }
                });
            } else {
                let text = wait_for_state(SETTLE, &format!("connection {name} to fail"), || {
                    failure_text(&c, name)
                });
                if !text.contains(&path) {
                    failures.push(format!("{}: its status does not name {path}: {text}", k.id));
                }
            }
            let show = c.sc_agent(&["show", name, "--namespace", &rel]).all();
            if !show.contains(&path) {
                failures.push(format!(
                    "{}: `sc-agent show {name}` does not name {path}:\n{show}",
                    k.id
                ));
            }
            if k.plan_accepts == plan_text.contains(&path) {
                failures.push(format!(
                    "{}: `sc-agent plan` and the cluster disagree on {path}:\n{plan_text}",
                    k.id
                ));
            }
            if !helm_text.contains(&path) {
                failures.push(format!("{}: helm's output does not name {path}", k.id));
            }
        }
        let job_log = c
            .kubectl(&["logs", &format!("job/{}", sc_e2e::JOB), "-n", &rel])
            .all();
        for k in batch.iter().filter(|k| !k.ignored_by_agent) {
            if !job_log.contains(&k.key_path()) {
                failures.push(format!(
                    "{}: sc-job's log does not name {}",
                    k.id,
                    k.key_path()
                ));
            }
        }
        logs.push_str(&job_log);
        assert!(failures.is_empty(), "batch {i}:\n{}", failures.join("\n"));
        assert_eq!(
            healthy_objects(&c, &apps),
            before,
            "batch {i} changed the healthy connection's objects"
        );
        let status = c.metadata_status("healthy");
        assert_eq!(
            status["phase"], "Ready",
            "status of healthy after batch {i}: {status}"
        );
        eprintln!(
            "batch {i}: {} bad connections refused in the cluster, each naming its key",
            batch.len()
        );
    }

    // Back to the healthy connection alone: the upgrade succeeds and nothing else changed.
    c.helm_upgrade(Helm::V3, &[&files[0], &files[1]], &[]).ok();
    c.wait_job_gone();
    c.assert_materialized(&expected(&merged(&[&settings, &protected])));
    assert_eq!(
        healthy_objects(&c, &apps),
        before,
        "the healthy connection's objects changed"
    );
    wait_for_state(
        SETTLE,
        "the failed connections' metadata to be removed",
        || {
            let left = c
                .kubectl(&[
                    "get",
                    "configmaps",
                    "-n",
                    &rel,
                    "-l",
                    "app.kubernetes.io/component=connection",
                    "-o",
                    "name",
                ])
                .ok()
                .trim()
                .to_string();
            if left == "configmap/sc-conn-healthy" {
                Ok(())
            } else {
                Err(left)
            }
        },
    );
    assert_eq!(
        agent_pod(&c),
        agent_before,
        "the agent pod was replaced or restarted"
    );
    assert!(
        !marker.exists(),
        "a value of the healthy connection was run as a command"
    );
    if !c.is_embedded() {
        sc_e2e::skipped(
            "bad_input",
            "not checked: that no value was run as a command (the marker file is written only where the pods \
             run as local processes)",
        );
    }
    logs.push_str(&c.kubectl(&["logs", "deploy/sc-agent", "-n", &rel]).all());
    for word in ["panicked", "RUST_BACKTRACE"] {
        assert!(
            !logs.contains(word),
            "a log shows a panic:\n{}",
            shown(&logs)
        );
    }
    let refs: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| *n == "healthy")
        .collect();
    c.leak_scan(&refs);
}

/// A Deployment `name` in `ns` that runs no pod.
fn idle_deployment(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
            },
        },
    })
}

/// The `connections.json` of a request object, parsed.
fn request_data(c: &Cluster, kind: &str, name: &str) -> serde_json::Map<String, Value> {
    use base64::Engine;
    let obj = c.get(kind, &c.release_ns(), name);
    let text = obj["data"]["connections.json"].as_str().unwrap_or("{}");
    let text = if kind == "secret" {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .expect("base64"),
        )
        .expect("UTF-8")
    } else {
        text.to_string()
    };
    serde_json::from_str::<Value>(&text)
        .expect("connections.json is JSON")
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// The guarded-namespace cases that bypass the chart: their connections are written into
/// `sc-protected` and `sc-requests` directly (as an operator editing them would), next to a
/// healthy connection. sc-agent and sc-job refuse each one: `Failed` with its `namespace` key
/// named in its status, `sc-agent show` and sc-job's log; no Secret, ServiceAccount or
/// SecretProviderClass is written in the guarded namespaces, and neither the listed
/// `kube-system/coredns` nor the agent's own Deployment is patched.
#[test]
fn guarded_namespaces_in_the_cluster() {
    let cases: Vec<Case> = corpus::load()
        .into_iter()
        .filter(|c| c.stage == Stage::Template && c.name.is_some())
        .collect();
    assert!(cases.len() >= 4, "only {} guarded cases", cases.len());
    let c = Cluster::start();
    let apps = c.create_namespace("apps");
    let rel = c.release_ns();
    c.apply(&idle_deployment("kube-system", "coredns"));
    let key = secret_value("healthy-key");
    c.remember_secret(&key);
    let marker = c.dir().join("injected-command-ran");
    let (settings, protected) = healthy(&apps, &key, &marker);
    let files = [
        c.write_values("healthy", &settings),
        c.write_values("healthy-protected", &protected),
    ];
    c.helm_upgrade(Helm::V3, &[&files[0], &files[1]], &[]).ok();
    c.wait_job_gone();
    c.assert_materialized(&expected(&merged(&[&settings, &protected])));
    let before = healthy_objects(&c, &apps);
    let coredns = c.get("deployment", "kube-system", "coredns")["spec"].clone();
    let agent_spec = c.get("deployment", &rel, "sc-agent")["spec"].clone();
    let guarded = [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        rel.as_str(),
    ];
    let snapshots: Vec<Value> = guarded.iter().map(|ns| c.snapshot(ns)).collect();

    // Bypass the chart: the protected settings first (ignored until requested), then the
    // requests.
    let mut public = request_data(&c, "configmap", "sc-requests");
    let mut secret = request_data(&c, "secret", "sc-protected");
    for k in &cases {
        for s in &k.secrets {
            c.remember_secret(s);
        }
        let mut values = k.values.clone().expect("values");
        for (name, conn) in values["connections"].as_object_mut().expect("connections") {
            if conn["namespace"] == "sc-system" {
                conn["namespace"] = json!(rel);
            }
            if let Some(s) = conn.as_object_mut().and_then(|m| m.remove("secrets")) {
                secret.insert(name.clone(), json!({ "secrets": s }));
            }
            public.insert(name.clone(), conn.clone());
        }
    }
    use base64::Engine;
    let patch = c.dir().join("protected-patch.json");
    write_private(
        &patch,
        &json!({"data": {"connections.json": base64::engine::general_purpose::STANDARD
            .encode(Value::Object(secret).to_string())}})
        .to_string(),
    );
    let patch_arg = patch.display().to_string();
    c.kubectl(&[
        "patch",
        "secret",
        "sc-protected",
        "-n",
        &rel,
        "--type",
        "merge",
        "--patch-file",
        &patch_arg,
    ])
    .ok();
    let patch = c.dir().join("requests-patch.json");
    write_private(
        &patch,
        &json!({"data": {"connections.json": Value::Object(public).to_string()}}).to_string(),
    );
    let patch_arg = patch.display().to_string();
    c.kubectl(&[
        "patch",
        "configmap",
        "sc-requests",
        "-n",
        &rel,
        "--type",
        "merge",
        "--patch-file",
        &patch_arg,
    ])
    .ok();

    let mut failures = Vec::new();
    for k in &cases {
        let name = k.name.as_deref().expect("a connection case");
        let path = k.key_path();
        let text = wait_for_state(SETTLE, &format!("connection {name} to fail"), || {
            let text = failure_text(&c, name)?;
            if text.contains(&path) {
                Ok(text)
            } else {
                Err(format!("its status does not name {path} yet: {text}"))
            }
        });
        if !text.contains("security.allowedNamespaces") {
            failures.push(format!(
                "{}: the status does not name the chart value: {text}",
                k.id
            ));
        }
        let status = c.metadata_status(name);
        if status["error"]["reason"] != "InvalidRequest" {
            failures.push(format!(
                "{}: not a permanent InvalidRequest: {status}",
                k.id
            ));
        }
        let show = c.sc_agent(&["show", name, "--namespace", &rel]).all();
        if !show.contains(&path) {
            failures.push(format!(
                "{}: `sc-agent show {name}` does not name {path}:\n{show}",
                k.id
            ));
        }
    }
    let job_log = c
        .kubectl(&["logs", &format!("job/{}", sc_e2e::JOB), "-n", &rel])
        .all();
    for k in &cases {
        if !job_log.contains(&format!("invalid: {}", k.key_path())) {
            failures.push(format!(
                "{}: sc-job's log does not name {}",
                k.id,
                k.key_path()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Nothing written.
    for (ns, snap) in guarded.iter().zip(&snapshots) {
        assert_eq!(&c.snapshot(ns), snap, "sc-extension wrote objects in {ns}");
    }
    assert_eq!(
        c.get("deployment", "kube-system", "coredns")["spec"],
        coredns,
        "kube-system/coredns was patched"
    );
    assert_eq!(
        c.get("deployment", &rel, "sc-agent")["spec"],
        agent_spec,
        "the agent's Deployment was patched"
    );
    assert_eq!(
        healthy_objects(&c, &apps),
        before,
        "the healthy connection changed"
    );
    assert_eq!(c.metadata_status("healthy")["phase"], "Ready");
    let logs = c.kubectl(&["logs", "deploy/sc-agent", "-n", &rel]).all() + &job_log;
    assert!(
        !logs.contains("panicked"),
        "a log shows a panic:\n{}",
        shown(&logs)
    );
    c.leak_scan(&["healthy"]);
}

/// A guarded namespace named by `security.allowedNamespaces` or `rbac.namespaces` renders,
/// with helm 3 and helm 4, as values and as flat settings.
#[test]
fn guarded_namespaces_named_explicitly_render() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("creating HOME");
    let conn = |ns: &str| {
        json!({"namespace": ns, "targetType": "storage-blob", "authType": "secret",
               "parameters": {"accountName": "e2estorage"}})
    };
    let values = json!({
        "security": {"allowedNamespaces": ["kube-system", "sc-system"]},
        "rbac": {"namespaces": ["kube-node-lease", "apps"]},
        "connections": {"sys": conn("kube-system"), "rel": conn("sc-system"),
                        "lease": conn("kube-node-lease"), "app": conn("apps")},
    });
    let file = dir.path().join("values.json");
    write_private(&file, &values.to_string());
    let flat: Vec<String> = [
        "security.allowedNamespaces[0]=kube-system",
        "connections.sys.namespace=kube-system",
        "connections.sys.targetType=storage-blob",
        "connections.sys.authType=secret",
        "connections.sys.parameters.accountName=e2estorage",
    ]
    .iter()
    .flat_map(|s| ["--set-string".to_string(), s.to_string()])
    .collect();
    for helm in [Helm::V3, Helm::V4] {
        for args in [
            vec!["-f".to_string(), file.display().to_string()],
            flat.clone(),
        ] {
            let out = template(helm, &home, &args, Some("templates/requests.yaml"));
            assert!(out.success(), "{}: {}", helm.tool(), out.all());
            let config = template(helm, &home, &args, Some("templates/agent-config.yaml"));
            assert!(
                config.ok().contains("\"kube-system\""),
                "{}: the agent's configuration lacks the allowed namespaces: {}",
                helm.tool(),
                config.all()
            );
        }
    }
}
