//! sc-job: the one-shot materializer of sc-extension. It reads a change set, applies or
//! deletes each connection's objects, records every result and deletes its own Job when
//! everything succeeded. See `sc-job --help` and the README.

mod api;
mod cli;
mod events;
mod failure;
mod inputs;
mod log;
mod materialize;
mod record;

use api::Kube;
use clap::Parser;
use cli::Args;
use failure::Failure;
use futures::StreamExt as _;
use inputs::{Action, ChangeSet};
use log::{Log, ObjRef};
use materialize::{ConnRun, Materializer, Phase};
use record::{METADATA_SELECTOR, Recorder};
use serde_json::Value;
use std::process::ExitCode;

/// Every connection applied or deleted.
const EXIT_OK: u8 = 0;
/// Some connections failed.
const EXIT_FAILED: u8 = 1;
/// The change set (or its inputs) is unusable.
const EXIT_UNUSABLE: u8 = 2;
/// Connections applied, deleted or recorded at the same time.
const IN_FLIGHT: usize = 16;

/// The namespace of the run: the flag, `$POD_NAMESPACE`, the kubeconfig's current context,
/// the pod's service account namespace, else `sc-system`.
fn job_namespace(flag: Option<String>) -> String {
    let non_empty = |s: String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    flag.and_then(non_empty)
        .or_else(|| std::env::var("POD_NAMESPACE").ok().and_then(non_empty))
        .or_else(|| {
            let kc = kube::config::Kubeconfig::read().ok()?;
            let current = kc.current_context.as_deref()?;
            kc.contexts
                .iter()
                .find(|c| c.name == current)?
                .context
                .as_ref()?
                .namespace
                .clone()
                .and_then(non_empty)
        })
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .and_then(non_empty)
        })
        .unwrap_or_else(|| "sc-system".to_string())
}

/// One `key` of a ConfigMap or Secret (Secret data decoded), or a failure naming it.
fn data_key(obj: &Value, r: &ObjRef, key: &str) -> Result<String, Failure> {
    if let Some(s) = obj["data"][key].as_str() {
        if r.kind == "Secret" {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| {
                    Failure::new(
                        "Unreadable",
                        format!("key {key} of {r} is not valid base64"),
                        "recreate the Secret with helm upgrade",
                    )
                })?;
            return String::from_utf8(bytes).map_err(|_| {
                Failure::new(
                    "Unreadable",
                    format!("key {key} of {r} is not UTF-8 text"),
                    "recreate the Secret with helm upgrade",
                )
            });
        }
        return Ok(s.to_string());
    }
    if let Some(s) = obj["stringData"][key].as_str() {
        return Ok(s.to_string());
    }
    Err(Failure::new(
        "Unreadable",
        format!("{r} has no key {key}"),
        "recreate it with helm upgrade (the chart renders it)",
    ))
}

fn parse_json(text: &str, r: &ObjRef, key: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| {
        // serde_json errors name a position, never the content.
        Failure::new(
            "Unreadable",
            format!("key {key} of {r} is not valid JSON: {e}"),
            "recreate it with helm upgrade (the chart renders it)",
        )
    })
}

/// `connections.json` of request object `first` (`r`) and of its further shards
/// (`<name>-1`, ...), merged; all of them must carry the revision of the first.
async fn read_shards(kube: &Kube, first: Value, r: &ObjRef) -> Result<Value, Failure> {
    use sc_model::shards;
    let annotations = |o: &Value| -> std::collections::BTreeMap<String, String> {
        serde_json::from_value(o["metadata"]["annotations"].clone()).unwrap_or_default()
    };
    let first_annotations = annotations(&first);
    let count = shards::shard_count(&r.to_string(), Some(&first_annotations)).map_err(|e| {
        Failure::new(
            "InvalidRequests",
            e,
            "upgrade the release so the chart writes the requests again",
        )
    })?;
    let revision = shards::revision(Some(&first_annotations)).map(str::to_string);
    let mut merged = serde_json::Map::new();
    let mut obj = first;
    for i in 0..count {
        let name = shards::shard_name(&r.name, i);
        let shard_ref = ObjRef::new(&r.kind, &r.namespace, &name);
        if i > 0 {
            obj = kube
                .get(&r.kind, &r.namespace, &name)
                .await
                .map_err(|e| Failure::api("get", &shard_ref, &e))?
                .ok_or_else(|| {
                    Failure::new(
                        "RequestsIncomplete",
                        format!("{shard_ref} does not exist, while {r} names {count} shards"),
                        "an upgrade may still be writing them: sc-agent runs the change again once every shard is there; if it stays, upgrade the release again",
                    )
                })?;
            let got = annotations(&obj);
            let got = shards::revision(Some(&got));
            if got != revision.as_deref() {
                return Err(Failure::new(
                    "RequestsIncomplete",
                    format!(
                        "{shard_ref} is of revision {} while {r} is of revision {}",
                        got.unwrap_or("none"),
                        revision.as_deref().unwrap_or("none")
                    ),
                    "an upgrade may still be writing them: sc-agent runs the change again once every shard is there; if it stays, upgrade the release again",
                ));
            }
        }
        if obj["data"]["connections.json"].is_null()
            && obj["stringData"]["connections.json"].is_null()
        {
            continue;
        }
        let part = parse_json(
            &data_key(&obj, &shard_ref, "connections.json")?,
            &shard_ref,
            "connections.json",
        )?;
        shards::merge_into(&mut merged, part, &shard_ref.to_string()).map_err(|e| {
            Failure::new(
                "InvalidRequests",
                e,
                "upgrade the release so the chart writes the requests again",
            )
        })?;
    }
    Ok(Value::Object(merged))
}

/// Change sets of at most this many connections read their metadata ConfigMaps one by one
/// rather than in a list of every one.
const READ_ONE_BY_ONE: usize = 32;

/// Everything read before materializing.
struct Inputs {
    changeset: ChangeSet,
    requests: Value,
    requests_uid: Option<String>,
    merged: Value,
    /// The key of the content hashes: the protected Secret's uid, as sc-agent keys them.
    hash_key: String,
}

async fn read_inputs(kube: &Kube, args: &Args, ns: &str, log: &Log) -> Result<Inputs, Failure> {
    let cs_ref = ObjRef::new("ConfigMap", ns, &args.changeset);
    let cs_obj = kube
        .get("ConfigMap", ns, &args.changeset)
        .await
        .map_err(|e| Failure::api("get", &cs_ref, &e))?
        .ok_or_else(|| {
            Failure::new(
                "ChangeSetNotFound",
                format!("{cs_ref} does not exist"),
                "sc-agent writes it before it creates the job: let sc-agent run the job, or pass --changeset and --namespace",
            )
        })?;
    let text = data_key(&cs_obj, &cs_ref, "changeset.json")?;
    let changeset = inputs::parse_changeset(&text).map_err(|e| {
        Failure::new(
            "InvalidChangeSet",
            format!("changeset.json of {cs_ref} {e}"),
            "delete the job and the change set: sc-agent writes a new one",
        )
    })?;

    let rq_ref = ObjRef::new("ConfigMap", ns, &args.requests);
    let rq_obj = kube
        .get("ConfigMap", ns, &args.requests)
        .await
        .map_err(|e| Failure::api("get", &rq_ref, &e))?
        .ok_or_else(|| {
            Failure::new(
                "RequestsNotFound",
                format!("{rq_ref} does not exist"),
                "install or upgrade the sc-extension release (its chart renders the requests), or pass --requests",
            )
        })?;
    let requests_uid = rq_obj["metadata"]["uid"].as_str().map(str::to_string);
    let requests = read_shards(kube, rq_obj, &rq_ref).await?;

    let pr_ref = ObjRef::new("Secret", ns, &args.protected);
    let mut hash_key = String::new();
    let protected = match kube
        .get("Secret", ns, &args.protected)
        .await
        .map_err(|e| Failure::api("get", &pr_ref, &e))?
    {
        Some(s) => {
            hash_key = s["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            read_shards(kube, s, &pr_ref).await?
        }
        None => {
            log.job(&format!("{pr_ref} does not exist: no protected settings"));
            Value::Null
        }
    };
    let merged = inputs::merge_secrets(&requests, &protected).map_err(|e| {
        Failure::new(
            "InvalidRequests",
            e,
            "fix the chart values and upgrade the release",
        )
    })?;
    Ok(Inputs {
        changeset,
        requests,
        requests_uid,
        merged,
        hash_key,
    })
}

async fn run(args: Args) -> u8 {
    let log = Log::new(args.log_format);
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            log.job_failed(&Failure::new(
                "NoClient",
                format!("no Kubernetes client configuration: {e}"),
                "run sc-job in a pod with a service account token, or set KUBECONFIG",
            ));
            return EXIT_UNUSABLE;
        }
    };
    let kube = Kube::new(client);
    let ns = job_namespace(args.namespace.clone());
    let mut inputs = match read_inputs(&kube, &args, &ns, &log).await {
        Ok(i) => i,
        Err(f) => {
            log.job_failed(&f);
            if let Err(e) = events::post_failures(&kube, &ns, &args.job_name, &[(None, &f)]).await {
                log.job(&format!("events: {e}"));
            }
            return EXIT_UNUSABLE;
        }
    };
    let cs = &inputs.changeset;
    let validated =
        inputs::validate_isolating(std::mem::take(&mut inputs.merged), &inputs.hash_key);
    if !validated.general.is_empty() {
        let msg: Vec<String> = validated.general.iter().map(ToString::to_string).collect();
        let f = Failure::new(
            "InvalidRequests",
            msg.join("; "),
            "fix the chart values and upgrade the release",
        );
        log.job_failed(&f);
        if let Err(e) = events::post_failures(&kube, &ns, &args.job_name, &[(None, &f)]).await {
            log.job(&format!("events: {e}"));
        }
        return EXIT_UNUSABLE;
    }
    log.job(&format!(
        "change set {} (revision {}): {} connection(s) in {ns}",
        cs.id,
        cs.revision,
        cs.connections.len()
    ));

    // Whether the SecretProviderClass API is served, asked once for the whole run when a
    // connection needs it; left unknown after an error, so each connection reports it.
    let spc_served = if validated
        .set
        .connections()
        .iter()
        .any(|c| c.desired().secret_provider_class.is_some())
    {
        kube.serves("secrets-store.csi.x-k8s.io/v1", "secretproviderclasses")
            .await
            .ok()
    } else {
        None
    };
    // The metadata ConfigMaps of the change set's connections in a few paged lists, rather
    // than one read per connection.
    let wanted: std::collections::BTreeSet<String> = cs
        .connections
        .iter()
        .map(|e| sc_model::names::metadata_config_map_name(&e.name))
        .collect();
    // A small change set reads its few ConfigMaps one by one instead (the list reads them
    // all).
    let listed = if wanted.len() <= READ_ONE_BY_ONE {
        None
    } else {
        match kube
            .list_kept("ConfigMap", &ns, METADATA_SELECTOR, 500, |name| {
                wanted.contains(name)
            })
            .await
        {
            Ok(items) => Some(
                items
                    .into_iter()
                    .filter_map(|cm| Some((cm["metadata"]["name"].as_str()?.to_string(), cm)))
                    .collect(),
            ),
            Err(e) => {
                log.job(&format!(
                    "listing the metadata ConfigMaps in {ns} failed ({e}); reading them one by one"
                ));
                None
            }
        }
    };
    let recorder = Recorder {
        listed,
        kube: &kube,
        namespace: ns.clone(),
        job: format!("{ns}/{}", args.job_name),
        changeset: cs.id.clone(),
        revision: cs.revision,
        owner: inputs
            .requests_uid
            .clone()
            .map(|uid| (args.requests.clone(), uid)),
    };

    let requests_ref = ObjRef::new("ConfigMap", &ns, &args.requests);
    // Connections are independent: up to IN_FLIGHT are applied at once, each one's steps in
    // order, and the results keep the change set's order.
    let namespaces = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let workload_locks = materialize::WorkloadLocks::default();
    let runs: Vec<ConnRun> = futures::stream::iter(&cs.connections)
        .map(|entry| {
            let mut mat = Materializer {
                kube: &kube,
                log,
                set: &validated.set,
                requests: &inputs.requests,
                spc_served,
                namespaces: &namespaces,
                workload_locks: &workload_locks,
            };
            let (validated, recorder, requests_ref) = (&validated, &recorder, &requests_ref);
            async move { run_entry(entry, validated, &mut mat, recorder, requests_ref).await }
        })
        .buffered(IN_FLIGHT)
        .collect()
        .await;

    let recorder = &recorder;
    let unrecorded: usize = futures::stream::iter(&runs)
        .map(|run| async move {
            match recorder.record(run).await {
                Ok(()) => 0,
                Err(f) => {
                    log.failed(
                        &run.name,
                        &Failure::new(
                            &f.reason,
                            format!("recording the result failed: {}", f.message),
                            f.remedy.clone(),
                        ),
                    );
                    1
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .fold(0, |sum, n| async move { sum + n })
        .await;
    let count = |p: Phase| runs.iter().filter(|r| r.phase == p).count();
    let failed = count(Phase::Failed);
    log.summary(count(Phase::Ready), failed, count(Phase::Deleted));
    if failed > 0 || unrecorded > 0 {
        let failures: Vec<(Option<&str>, &Failure)> = runs
            .iter()
            .filter_map(|r| r.error.as_ref().map(|e| (Some(r.name.as_str()), e)))
            .collect();
        if let Err(e) = events::post_failures(&kube, &ns, &args.job_name, &failures).await {
            log.job(&format!("events: {e}"));
        }
        return EXIT_FAILED;
    }
    if args.keep {
        log.job(&format!("keeping job {ns}/{} (--keep)", args.job_name));
        return EXIT_OK;
    }
    let job = ObjRef::new("Job", &ns, &args.job_name);
    match kube.delete("Job", &ns, &args.job_name, None).await {
        Ok(true) => log.job(&format!("{job}: deleted")),
        Ok(false) => log.job(&format!("{job}: not found, nothing to delete")),
        Err(e) => log.job(&format!("deleting {job} failed: {e}; delete it by hand")),
    }
    EXIT_OK
}

/// Applies or deletes one connection of the change set.
async fn run_entry(
    entry: &inputs::Entry,
    validated: &inputs::Validated,
    mat: &mut Materializer<'_>,
    recorder: &Recorder<'_>,
    requests: &ObjRef,
) -> ConnRun {
    let mut run = ConnRun::new(entry);
    match entry.action {
        Action::Apply => {
            if let Some(errors) = validated.invalid.get(&entry.name) {
                for e in errors {
                    run.steps
                        .push(mat.log.note(&entry.name, &format!("invalid: {e}")));
                }
                let msg: Vec<String> = errors.iter().map(ToString::to_string).collect();
                run.fail(
                    &mat.log,
                    Failure::new(
                        "InvalidRequest",
                        format!("the request is invalid: {}", msg.join("; ")),
                        "fix the connection's values and upgrade the release",
                    ),
                );
            } else if let Some(conn) = validated.set.get(&entry.name) {
                if !entry.hash.is_empty() && entry.hash != conn.hash {
                    run.steps.push(mat.log.note(&entry.name, "the request changed since the change set was written; applying the current request"));
                }
                let applied = async {
                    let previous = recorder
                        .metadata(&entry.name)
                        .await?
                        .and_then(|cm| {
                            cm["data"]["status.json"]
                                .as_str()
                                .and_then(|t| serde_json::from_str::<Value>(t).ok())
                        })
                        .unwrap_or(Value::Null);
                    mat.apply(conn, &previous, &mut run).await?;
                    mat.prune(conn, &previous, &mut run).await
                };
                match applied.await {
                    Ok(()) => {
                        run.phase = Phase::Ready;
                        run.applied_hash = Some(conn.hash.clone());
                        run.deletion_policy = Some(conn.spec.deletion_policy);
                        let short = &conn.hash[..conn.hash.len().min(12)];
                        run.steps
                            .push(mat.log.note(&entry.name, &format!("ready (hash {short})")));
                    }
                    Err(f) => run.fail(&mat.log, f),
                }
            } else {
                run.fail(&mat.log, Failure::new(
                    "NotRequested",
                    format!("connection {} is not in {requests}", entry.name),
                    "nothing to do if it was removed: sc-agent schedules its removal in the next change set",
                ));
            }
        }
        Action::Delete => {
            let result = match recorder.metadata(&entry.name).await {
                Ok(meta) => mat.delete(entry, meta.as_ref(), &mut run).await,
                Err(f) => Err(f),
            };
            match result {
                Ok(()) => {
                    run.phase = Phase::Deleted;
                    run.steps.push(mat.log.note(&entry.name, "deleted"));
                }
                Err(f) => run.fail(&mat.log, f),
            }
        }
    }
    run
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sc-job: starting the runtime failed: {e}");
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    ExitCode::from(runtime.block_on(run(args)))
}
