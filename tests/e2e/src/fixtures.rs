//! Fixtures of the objects one version of sc-extension wrote and read, for upgrade tests: the
//! capture ([`capture_set`], [`normalize`]) and the loader ([`load_upgrade_fixtures`]).
//!
//! A fixture set is a directory of JSON files, each a `v1` `List` of one group of objects as
//! the API server returned them, with the fields the server assigns removed (see
//! [`normalize`]), plus `set.json` (what was captured, and the uids the loader cannot keep),
//! `list.json` and `show.json` (what `sc-agent list` and `show` printed at capture). The format
//! is described in `tests/e2e/fixtures/upgrade-0.1/README.md`.

use crate::Cluster;
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The fixtures of version 0.1.0.
pub fn upgrade_0_1_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/upgrade-0.1")
}

/// The fixtures of the formats after 0.1.0 (drift, workload records, ...), captured before
/// the next release: `upgrade-0.2`.
pub fn upgrade_0_2_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/upgrade-0.2")
}

/// The finalizer a capture puts on a metadata ConfigMap to hold it after the agent deletes it
/// (so the `Deleted` state can be captured); [`normalize`] removes it.
pub const CAPTURE_HOLD: &str = "e2e.sc-extension.io/capture-hold";

/// The ServiceAccount the Job of the change set in flight runs as in the fixtures: nothing
/// creates it, so no pod of that Job can be created (FailedCreate) until a test creates it
/// (with sc-job's permissions, to let the Job run) or deletes the Job.
pub const HELD_SERVICE_ACCOUNT: &str = "sc-job-held";

/// The files of a set holding objects, in the order the loader creates them.
pub const OBJECT_FILES: [&str; 8] = [
    "requests.json",
    "foreign.json",
    "materialized.json",
    "workloads.json",
    "metadata.json",
    "changeset.json",
    "jobs.json",
    "helm-release.json",
];

/// The file of a set holding Events (created last, once their objects have their new uids).
pub const EVENTS_FILE: &str = "events.json";

/// Labels holding the uid of a Job, on the Job and its pod template.
const JOB_UID_LABELS: [&str; 2] = ["controller-uid", "batch.kubernetes.io/controller-uid"];

/// Removes what the API server assigns and a new server assigns again: `managedFields`,
/// `resourceVersion`, `uid`, `creationTimestamp`, `generation`, `selfLink`, a deletion in
/// progress (with the finalizer [`CAPTURE_HOLD`]), the uids of owner references, a Job's
/// generated selector and uid labels, and the uid and version of an Event's object. Status and
/// every time written by sc-extension stay as captured.
pub fn normalize(obj: &mut Value) {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    if let Some(m) = obj["metadata"].as_object_mut() {
        for k in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            m.remove(k);
        }
        if let Some(Value::Array(f)) = m.get_mut("finalizers") {
            f.retain(|v| v != CAPTURE_HOLD);
            if f.is_empty() {
                m.remove("finalizers");
            }
        }
        if let Some(Value::Array(refs)) = m.get_mut("ownerReferences") {
            for r in refs {
                if let Some(r) = r.as_object_mut() {
                    r.remove("uid");
                }
            }
        }
        if let Some(Value::Object(labels)) = m.get_mut("labels") {
            for l in JOB_UID_LABELS {
                if kind == "Job" {
                    labels.remove(l);
                }
            }
        }
    }
    if kind == "Job" {
        if let Some(spec) = obj["spec"].as_object_mut() {
            spec.remove("selector");
        }
        if let Some(labels) = obj["spec"]["template"]["metadata"]["labels"].as_object_mut() {
            for l in JOB_UID_LABELS {
                labels.remove(l);
            }
        }
    }
    if kind == "Event"
        && let Some(o) = obj["involvedObject"].as_object_mut()
    {
        o.remove("uid");
        o.remove("resourceVersion");
    }
}

/// The key an object is sorted by in a fixture file.
fn sort_key(o: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&o["kind"]),
        s(&o["metadata"]["namespace"]),
        s(&o["metadata"]["name"]),
    )
}

/// A `v1` `List` of `items`, normalized and sorted by kind, namespace and name.
pub fn fixture_list(mut items: Vec<Value>) -> Value {
    for i in &mut items {
        normalize(i);
    }
    items.sort_by_key(sort_key);
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// Writes `value` as pretty JSON to `dir/name`.
pub fn write_json(dir: &Path, name: &str, value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("serializing a fixture") + "\n";
    std::fs::write(dir.join(name), text)
        .unwrap_or_else(|e| panic!("writing {} failed: {e}", dir.join(name).display()));
}

/// Reads the JSON file `dir/name` (`Null` when it does not exist).
pub fn read_json(dir: &Path, name: &str) -> Value {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Null,
        Err(e) => panic!("reading {} failed: {e}", path.display()),
    }
}

/// The items of a `List`.
pub fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

/// `text` parsed as JSON; panics naming `what` when it is not.
pub fn parsed(text: &str, what: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {text}"))
}

/// The journal entries of `connection` (empty when its metadata or journal is gone).
pub fn journal(c: &Cluster, connection: &str) -> Vec<Value> {
    let cm = c.try_get(
        "configmap",
        &c.release_ns(),
        &sc_model::names::metadata_config_map_name(connection),
    );
    match cm
        .as_ref()
        .and_then(|cm| cm["data"]["journal.json"].as_str())
    {
        Some(t) => parsed(t, "journal.json")
            .as_array()
            .cloned()
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// `sc-agent list -o json`, by connection name.
pub fn listed(c: &Cluster) -> BTreeMap<String, Value> {
    let out = c.sc_agent(&["list", "-n", &c.release_ns(), "-o", "json"]);
    parsed(out.ok(), "sc-agent list")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e["name"].as_str().unwrap_or_default().to_string(), e))
        .collect()
}

/// The objects of fixture file `file` of the set in `dir` as the cluster holds them now, by
/// kind/namespace/name: their uid and resourceVersion (objects gone are left out).
pub fn live_versions(c: &Cluster, dir: &Path, file: &str) -> BTreeMap<String, (Value, Value)> {
    items(&read_json(dir, file))
        .iter()
        .filter_map(|o| {
            let kind = o["kind"].as_str()?;
            let ns = o["metadata"]["namespace"].as_str()?;
            let name = o["metadata"]["name"].as_str()?;
            let live = c.try_get(kind, ns, name)?;
            Some((
                format!("{kind}/{ns}/{name}"),
                (
                    live["metadata"]["uid"].clone(),
                    live["metadata"]["resourceVersion"].clone(),
                ),
            ))
        })
        .collect()
}

/// The objects of `kind` in `namespace` (all of them, or those matching `selector`).
fn list_of(c: &Cluster, kind: &str, namespace: &str, selector: Option<&str>) -> Vec<Value> {
    let mut args = vec![kind, "-n", namespace];
    if let Some(s) = selector {
        args.extend(["-l", s]);
    }
    let list = c.get_json(&args);
    // `kubectl get` of a List leaves out each item's kind: put it back.
    let kind_of = list["kind"]
        .as_str()
        .and_then(|k| k.strip_suffix("List"))
        .map(str::to_string);
    items(&list)
        .into_iter()
        .map(|mut o| {
            if o["kind"].is_null()
                && let Some(k) = &kind_of
            {
                o["kind"] = json!(k);
            }
            o
        })
        .collect()
}

/// Captures the objects of the release in `c` (agent stopped) into `dir`: one set. `apps` are
/// the application namespaces, `foreign` the objects (kind, namespace, name) the scenario put
/// in sc-extension's way, `connections` the connections `sc-agent show` is captured for, and
/// `about` a sentence saying which states the set shows.
pub fn capture_set(
    c: &Cluster,
    dir: &Path,
    apps: &[&str],
    foreign: &[(&str, &str, &str)],
    connections: &[&str],
    about: &str,
) {
    std::fs::create_dir_all(dir)
        .unwrap_or_else(|e| panic!("creating {} failed: {e}", dir.display()));
    let ns = c.release_ns();
    let requests_selector = "app.kubernetes.io/component=requests";
    let mut requests = list_of(c, "configmaps", &ns, Some(requests_selector));
    requests.extend(list_of(c, "secrets", &ns, Some(requests_selector)));
    let protected = c.get("secret", &ns, "sc-protected");
    let requests_cm = c.get("configmap", &ns, "sc-requests");
    let uid = |o: &Value| {
        o["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    let metadata = list_of(
        c,
        "configmaps",
        &ns,
        Some("app.kubernetes.io/component=connection"),
    );
    let changeset: Vec<Value> = c
        .try_get("configmap", &ns, "sc-changeset")
        .into_iter()
        .collect();
    let job = c.try_get("job", &ns, crate::JOB);
    let mut owners = vec![uid(&requests_cm)];
    owners.extend(job.iter().map(uid));
    let events: Vec<Value> = list_of(c, "events", &ns, None)
        .into_iter()
        .filter(|e| {
            owners
                .iter()
                .any(|u| e["involvedObject"]["uid"].as_str() == Some(u))
        })
        .collect();
    let mut materialized = Vec::new();
    let mut kinds = vec!["secrets", "serviceaccounts"];
    if c.kubectl(&[
        "get",
        "crd",
        "secretproviderclasses.secrets-store.csi.x-k8s.io",
    ])
    .success()
    {
        kinds.push("secretproviderclasses");
    }
    for a in apps {
        for k in &kinds {
            materialized.extend(list_of(c, k, a, Some(crate::MANAGED_SELECTOR)));
        }
    }
    let foreign: Vec<Value> = foreign
        .iter()
        .map(|(kind, namespace, name)| c.get(kind, namespace, name))
        .collect();
    let releases = list_of(c, "secrets", &ns, Some("owner=helm"));
    // The workloads connections list (with sc-job's records and roll-out annotations), as
    // they are: their pods and ReplicaSets are not captured.
    let mut workloads = Vec::new();
    for a in apps {
        for k in ["deployments", "statefulsets", "daemonsets", "cronjobs"] {
            workloads.extend(list_of(c, k, a, None).into_iter().map(|mut w| {
                if let Some(m) = w.as_object_mut() {
                    m.remove("status");
                }
                w
            }));
        }
    }

    if let Some(j) = &job
        && job_finished(j, "Failed")
    {
        let log = c.kubectl(&["logs", "job/sc-job", "-n", &ns]);
        std::fs::write(dir.join("sc-job.log"), log.ok())
            .unwrap_or_else(|e| panic!("writing sc-job.log failed: {e}"));
    }
    let list = c.sc_agent(&["list", "-n", &ns, "-o", "json"]);
    let list: Value = serde_json::from_str(list.ok()).expect("sc-agent list printed no JSON");
    let mut show = serde_json::Map::new();
    for name in connections {
        let out = c.sc_agent(&["show", name, "-n", &ns, "-o", "json"]);
        let v: Value = serde_json::from_str(out.ok()).expect("sc-agent show printed no JSON");
        show.insert(name.to_string(), v);
    }

    let mut namespaces: Vec<&str> = apps.to_vec();
    namespaces.push(&ns);
    write_json(
        dir,
        "set.json",
        &json!({
            "version": env!("CARGO_PKG_VERSION"),
            "about": about,
            "namespaces": namespaces,
            "original": {
                "hashKey": uid(&protected),
                "requestsUid": uid(&requests_cm),
                "jobUid": job.as_ref().map(uid),
            },
        }),
    );
    write_json(dir, "requests.json", &fixture_list(requests));
    write_json(dir, "foreign.json", &fixture_list(foreign));
    write_json(dir, "materialized.json", &fixture_list(materialized));
    if !workloads.is_empty() {
        write_json(dir, "workloads.json", &fixture_list(workloads));
    }
    write_json(dir, "metadata.json", &fixture_list(metadata));
    write_json(dir, "changeset.json", &fixture_list(changeset));
    write_json(dir, "jobs.json", &fixture_list(job.into_iter().collect()));
    write_json(dir, "helm-release.json", &fixture_list(releases));
    // Events in the order they happened.
    let mut events = fixture_list(events);
    if let Some(a) = events["items"].as_array_mut() {
        a.sort_by_key(|e| {
            let t = ["lastTimestamp", "eventTime", "firstTimestamp"]
                .iter()
                .find_map(|k| e[*k].as_str())
                .unwrap_or_default()
                .to_string();
            (
                t,
                e["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        });
    }
    write_json(dir, EVENTS_FILE, &events);
    write_json(dir, "list.json", &list);
    write_json(dir, "show.json", &Value::Object(show));
}

/// How the loader treats the content hashes recorded in the fixtures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashes {
    /// As captured: keyed by the uid of the captured `sc-protected`, which the new one does not
    /// have, so an agent computes other hashes and applies every connection again.
    AsCaptured,
    /// Each hash of a connection of the captured requests, keyed by the captured uid, is
    /// replaced by the hash of the same request keyed by the new `sc-protected`'s uid, as if the
    /// release had been upgraded in place (where that Secret keeps its uid). Hashes of earlier
    /// requests (a `status.json` of a changed connection) cannot be recomputed and stay.
    Rekeyed,
}

/// What [`load_upgrade_fixtures`] did.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// `set.json` of the set.
    pub set: Value,
    /// The uid of the new `sc-protected` (the key of the hashes the cluster's clients compute).
    pub hash_key: String,
    /// The captured hash -> the hash recorded now, for each requested connection.
    pub rekeyed: BTreeMap<String, String>,
}

/// The requests (with the protected settings merged in, as sc-agent reads them) of the request
/// objects in `requests` (a fixture `List`).
pub fn fixture_requests(requests: &Value) -> Value {
    let mut objs = items(requests);
    objs.sort_by_key(sort_key);
    let mut connections = serde_json::Map::new();
    let mut secrets = serde_json::Map::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    for o in objs {
        match o["kind"].as_str() {
            Some("ConfigMap") => {
                if let Some(t) = o["data"]["connections.json"].as_str()
                    && let Ok(Value::Object(m)) = serde_json::from_str::<Value>(t)
                {
                    connections.extend(m);
                }
            }
            Some("Secret") => {
                if let Some(t) = o["data"]["connections.json"].as_str()
                    && let Ok(bytes) = b64.decode(t)
                    && let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&bytes)
                {
                    secrets.extend(m);
                }
            }
            _ => {}
        }
    }
    for (name, mut p) in secrets {
        if let (Some(Value::Object(c)), Some(s)) = (
            connections.get_mut(&name),
            p.as_object_mut().and_then(|p| p.remove("secrets")),
        ) {
            c.insert("secrets".into(), s);
        }
    }
    Value::Object(connections)
}

/// The hash of each connection of `connections` keyed by `old_key` -> keyed by `new_key`.
pub fn rekey_map(connections: &Value, old_key: &str, new_key: &str) -> BTreeMap<String, String> {
    let old = sc_model::check_connections_keyed(connections, old_key);
    let new = sc_model::check_connections_keyed(connections, new_key);
    old.into_iter()
        .zip(new)
        .filter(|(o, n)| !o.hash.is_empty() && o.name == n.name)
        .map(|(o, n)| (o.hash, n.hash))
        .collect()
}

/// `kubectl create -f -` of the items of a list (nothing when it has none).
fn create_all(c: &Cluster, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    // A stream of documents (JSON is YAML), each validated against its own kind.
    let stream: Vec<String> = items.iter().map(Value::to_string).collect();
    c.kubectl_stdin(&["create", "-f", "-"], &stream.join("\n---\n"))
        .ok();
}

/// Loads the fixture set in `dir` into `c`, a fresh private kubesim with nothing of
/// sc-extension installed and no agent running: the namespaces, the requests, the objects in
/// the way, the materialized objects, the metadata ConfigMaps, the change set, the Job (with
/// its captured status when it had finished, so a failed Job is failed and no pod runs for it;
/// an unfinished one is created as captured and the Job controller makes its pod, if it can),
/// Helm's release records, then the Events. Owner references point at the new `sc-requests`,
/// Events at the new objects. See [`Hashes`] for the content hashes.
pub fn load_upgrade_fixtures(c: &Cluster, dir: &Path, hashes: Hashes) -> Loaded {
    assert!(
        !c.is_external(),
        "the fixtures name their namespaces (sc-system, apps): load them into a private kubesim"
    );
    let set = read_json(dir, "set.json");
    assert!(
        set.is_object(),
        "{} holds no fixture set (no set.json)",
        dir.display()
    );
    let ns = c.release_ns();
    for n in set["namespaces"].as_array().into_iter().flatten() {
        let n = n.as_str().expect("a namespace name");
        if c.try_get("namespace", "", n).is_none() {
            c.kubectl(&["create", "namespace", n]).ok();
        }
    }
    let requests = read_json(dir, "requests.json");
    let materialized = read_json(dir, "materialized.json");
    if items(&materialized)
        .iter()
        .any(|o| o["kind"] == "SecretProviderClass")
    {
        c.ensure_spc_crd();
    }
    create_all(c, items(&requests));
    let uid_of = |kind: &str, name: &str| -> String {
        c.get(kind, &ns, name)["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let requests_uid = uid_of("configmap", "sc-requests");
    let hash_key = uid_of("secret", "sc-protected");
    let rekeyed = match hashes {
        Hashes::AsCaptured => BTreeMap::new(),
        Hashes::Rekeyed => rekey_map(
            &fixture_requests(&requests),
            set["original"]["hashKey"].as_str().unwrap_or_default(),
            &hash_key,
        ),
    };
    let rewrite = |mut o: Value| -> Value {
        if !rekeyed.is_empty() {
            let mut text = o.to_string();
            for (old, new) in &rekeyed {
                text = text.replace(old.as_str(), new);
            }
            o = serde_json::from_str(&text).expect("a rekeyed object is JSON");
        }
        for r in o["metadata"]["ownerReferences"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if r["kind"] == "ConfigMap" && r["name"] == "sc-requests" {
                r["uid"] = json!(requests_uid);
            }
        }
        o
    };
    for file in &OBJECT_FILES[1..] {
        let objs: Vec<Value> = items(&read_json(dir, file))
            .into_iter()
            .map(rewrite)
            .collect();
        if *file == "jobs.json" {
            objs.into_iter().for_each(|j| create_job(c, j));
        } else {
            create_all(c, objs);
        }
    }
    let events: Vec<Value> = items(&read_json(dir, EVENTS_FILE))
        .into_iter()
        .map(|mut e| {
            let io = &e["involvedObject"];
            let kind = match io["kind"].as_str() {
                Some("ConfigMap") => "configmap",
                Some("Job") => "job",
                _ => "",
            };
            if let (false, Some(name)) = (kind.is_empty(), io["name"].as_str())
                && let Some(o) = c.try_get(kind, &ns, name)
            {
                e["involvedObject"]["uid"] = o["metadata"]["uid"].clone();
            }
            e
        })
        .collect();
    create_all(c, events);
    Loaded {
        set,
        hash_key,
        rekeyed,
    }
}

/// Whether `job` has the condition `kind` (`Failed`, `Complete`) true.
pub fn job_finished(job: &Value, kind: &str) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// Creates a Job as captured. A finished one is created suspended (so no pod starts), given its
/// captured status, then resumed (a finished Job stays as it is).
fn create_job(c: &Cluster, mut job: Value) {
    let status = job["status"].take();
    let outcome = json!({"status": status});
    let finished = job_finished(&outcome, "Failed") || job_finished(&outcome, "Complete");
    let ns = job["metadata"]["namespace"]
        .as_str()
        .expect("a Job's namespace")
        .to_string();
    let name = job["metadata"]["name"]
        .as_str()
        .expect("a Job's name")
        .to_string();
    if finished {
        job["spec"]["suspend"] = json!(true);
    }
    create_all(c, vec![job]);
    if !finished {
        return;
    }
    c.kubectl(&[
        "patch",
        "job",
        &name,
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({"status": status}).to_string(),
    ])
    .ok();
    c.kubectl(&[
        "patch",
        "job",
        &name,
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ])
    .ok();
    crate::wait_for_state(
        Duration::from_secs(30),
        "the loaded Job to keep its captured outcome",
        || {
            let j = c.get("job", &ns, &name);
            let same =
                j["status"]["conditions"] == status["conditions"] && j["spec"]["suspend"] == false;
            if same {
                Ok(())
            } else {
                Err(j["status"].to_string())
            }
        },
    );
}
