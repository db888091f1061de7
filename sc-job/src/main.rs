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
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use log::Log;
use materialize::{ConnRun, Materializer};
use record::ResultRecorder;
use sc_contract::shards::{self, Shards};
use sc_contract::{
    Action, CHANGESET_KEY, ChangeEntry, ChangeSet, METADATA_SELECTOR, Metadata, ObjectKey, Reason,
    Requests, RunError, RunPhase,
};
use sc_model::DeletionPolicy;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

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

/// `kind` `name` in `ns`, typed; `None` when it does not exist. An object that does not parse
/// is a failure naming it, never quoting it (a Secret's content is secret).
async fn read<K: DeserializeOwned>(
    kube: &Kube,
    kind: &str,
    ns: &str,
    name: &str,
) -> Result<Option<K>, RunError> {
    let r = ObjectKey::new(kind, ns, name);
    let Some(obj) = kube
        .get(kind, ns, name)
        .await
        .map_err(|e| failure::api_error("get", &r, &e))?
    else {
        return Ok(None);
    };
    serde_json::from_value(obj)
        .map(Some)
        .map_err(|_| RunError::of(Reason::Unreadable, format!("{r} is not a valid {kind}")))
}

/// Request object `first` (a `kind` in `ns`) and its further shards (`<name>-1`, ...), all of
/// the first one's revision.
async fn read_shards<K>(
    kube: &Kube,
    ns: &str,
    first: K,
    kind: &str,
) -> Result<Vec<Arc<K>>, RunError>
where
    K: k8s_openapi::Metadata<Ty = ObjectMeta> + DeserializeOwned,
{
    let fetch = |name: String| async move {
        read::<K>(kube, kind, ns, &name)
            .await
            .map_err(|e| e.message)
    };
    match shards::gather(Arc::new(first), kind, fetch).await {
        Shards::Complete(all) => Ok(all),
        Shards::Incomplete(why) => Err(RunError::of(Reason::RequestsIncomplete, why)),
        Shards::Invalid(why) => Err(RunError::of(Reason::InvalidRequests, why)),
    }
}

/// Change sets of at most this many connections read their metadata ConfigMaps one by one
/// rather than in a list of every one.
const READ_ONE_BY_ONE: usize = 32;

/// Everything read before materializing.
struct Inputs {
    changeset: ChangeSet,
    /// The requests with their protected settings merged in.
    requests: Requests,
    requests_uid: Option<String>,
}

async fn read_inputs(kube: &Kube, args: &Args, ns: &str, log: &Log) -> Result<Inputs, RunError> {
    let cs_ref = ObjectKey::new("ConfigMap", ns, &args.changeset);
    let cs_obj: ConfigMap = read(kube, "ConfigMap", ns, &args.changeset)
        .await?
        .ok_or_else(|| {
            RunError::of(
                Reason::ChangeSetNotFound,
                format!("{cs_ref} does not exist"),
            )
        })?;
    let text = cs_obj
        .data
        .as_ref()
        .and_then(|d| d.get(CHANGESET_KEY))
        .ok_or_else(|| {
            RunError::of(
                Reason::Unreadable,
                format!("{cs_ref} has no key {CHANGESET_KEY}"),
            )
        })?;
    let changeset = ChangeSet::parse(text).map_err(|e| {
        RunError::of(
            Reason::InvalidChangeSet,
            format!("{CHANGESET_KEY} of {cs_ref} {e}"),
        )
    })?;

    let rq_ref = ObjectKey::new("ConfigMap", ns, &args.requests);
    let rq_obj: ConfigMap = read(kube, "ConfigMap", ns, &args.requests)
        .await?
        .ok_or_else(|| {
            RunError::of(Reason::RequestsNotFound, format!("{rq_ref} does not exist"))
        })?;
    let requests_uid = rq_obj.metadata.uid.clone();
    let public = read_shards(kube, ns, rq_obj, "ConfigMap").await?;

    let protected: Option<Secret> = read(kube, "Secret", ns, &args.protected).await?;
    let hash_key = sc_contract::hash_key(protected.as_ref());
    let protected = match protected {
        Some(s) => read_shards(kube, ns, s, "Secret").await?,
        None => {
            let pr_ref = ObjectKey::new("Secret", ns, &args.protected);
            log.job(&format!("{pr_ref} does not exist: no protected settings"));
            Vec::new()
        }
    };
    let requests = Requests::from_objects(&public, &protected, &hash_key)
        .map_err(|e| RunError::of(Reason::InvalidRequests, e))?;
    Ok(Inputs {
        changeset,
        requests,
        requests_uid,
    })
}

async fn run(args: Args) -> u8 {
    let log = Log::new(args.log_format);
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            log.job_failed(&RunError::new(
                Reason::NoClient,
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
    // Every requested connection, valid or not, for the materializer.
    let requests = std::mem::take(&mut inputs.requests.connections);
    let validated = inputs::validate_isolating(
        &requests,
        &inputs.requests.hash_key,
        &sc_model::NamespaceGuard::new(Some(&ns), args.allowed_namespaces.iter().cloned()),
    );
    if !validated.general.is_empty() {
        let msg: Vec<String> = validated.general.iter().map(ToString::to_string).collect();
        let f = RunError::new(
            Reason::InvalidRequests,
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
    // connection it applies needs it; left unknown after an error, so each connection
    // reports it.
    let spc_served = if cs
        .connections
        .iter()
        .filter(|e| e.action == Action::Apply)
        .filter_map(|e| validated.set.get(&e.name))
        .any(|c| c.secret_provider_class_name().is_some())
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
        .map(|e| sc_contract::metadata_name(&e.name))
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
                    .filter_map(|cm| serde_json::from_value::<ConfigMap>(cm).ok())
                    .filter_map(|cm| Some((cm.metadata.name.clone()?, cm)))
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
    let requested = requested_specs(cs, &validated, &requests, inputs.requests.revision);
    let recorder = ResultRecorder {
        listed,
        requested,
        created: Default::default(),
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

    let requests_ref = ObjectKey::new("ConfigMap", &ns, &args.requests);
    // Connections are independent: up to IN_FLIGHT are applied at once, each one's steps in
    // order, and the results keep the change set's order.
    let namespaces = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let workload_locks = materialize::WorkloadLocks::default();
    // The ownership check in bulk: the objects this run writes, counted per namespace and
    // kind, decide between one metadata-only list of each collection and lookups one by one.
    let lookups = materialize::Lookups::new(
        cs.connections
            .iter()
            .filter(|e| e.action == Action::Apply)
            .filter_map(|e| validated.set.get(&e.name))
            .flat_map(materialize::objects_to_write),
    );
    let runs: Vec<ConnRun> = futures::stream::iter(&cs.connections)
        .map(|entry| {
            let mut mat = Materializer {
                kube: &kube,
                log,
                set: &validated.set,
                requests: &requests,
                spc_served,
                namespaces: &namespaces,
                workload_locks: &workload_locks,
                lookups: &lookups,
            };
            let (validated, recorder, requests_ref) = (&validated, &recorder, &requests_ref);
            async move { run_entry(entry, validated, &mut mat, recorder, requests_ref).await }
        })
        .buffered(IN_FLIGHT)
        .collect()
        .await;

    let recorder = &recorder;
    // A result that could not be recorded fails its connection (the agent would apply it
    // again): counted and reported as failed whatever the run did.
    let unrecorded: BTreeMap<&str, RunError> = futures::stream::iter(&runs)
        .map(|run| async move {
            let f = recorder.record(run).await.err()?;
            let error = RunError::new(
                f.reason.clone(),
                format!("recording the result failed: {}", f.message),
                f.remedy.clone(),
            );
            log.failed(&run.name, &error);
            Some((run.name.as_str(), error))
        })
        .buffer_unordered(IN_FLIGHT)
        .filter_map(std::future::ready)
        .collect()
        .await;
    let count = |p: RunPhase| {
        runs.iter()
            .filter(|r| r.phase == p && !unrecorded.contains_key(r.name.as_str()))
            .count()
    };
    let failed = runs
        .iter()
        .filter(|r| r.phase == RunPhase::Failed || unrecorded.contains_key(r.name.as_str()))
        .count();
    log.summary(count(RunPhase::Ready), failed, count(RunPhase::Deleted));
    if failed > 0 {
        let failures: Vec<(Option<&str>, &RunError)> = runs
            .iter()
            .filter_map(|r| {
                let name = r.name.as_str();
                let e = r.error.as_ref().or_else(|| unrecorded.get(name))?;
                Some((Some(name), e))
            })
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
    let job = ObjectKey::new("Job", &ns, &args.job_name);
    match kube.delete("Job", &ns, &args.job_name, None).await {
        Ok(true) => log.job(&format!("{job}: deleted")),
        Ok(false) => log.job(&format!("{job}: not found, nothing to delete")),
        Err(e) => log.job(&format!("deleting {job} failed: {e}; delete it by hand")),
    }
    EXIT_OK
}

/// What is requested of each connection `cs` applies that the requests still name, to record
/// with its result: a valid connection with its content hash in the requests read (of
/// `revision`), an invalid one with the hash the change set carries (the agent's, computed
/// over every connection) and the change set's revision.
fn requested_specs(
    cs: &sc_contract::ChangeSet,
    validated: &inputs::Validated,
    requests: &serde_json::Value,
    revision: i64,
) -> std::collections::BTreeMap<String, record::RequestedSpec> {
    let mut out = std::collections::BTreeMap::new();
    let mut invalid = serde_json::Map::new();
    let mut carried = std::collections::BTreeMap::new();
    for entry in cs.connections.iter().filter(|e| e.action == Action::Apply) {
        if let Some(conn) = validated.set.get(&entry.name) {
            let spec = sc_contract::spec_text(conn);
            let hash = conn.hash.clone();
            let spec = record::RequestedSpec {
                spec,
                hash,
                revision,
            };
            out.insert(entry.name.clone(), spec);
        } else if validated.invalid.contains_key(&entry.name)
            && let Some(raw) = requests.get(&entry.name)
        {
            invalid.insert(entry.name.clone(), raw.clone());
            carried.insert(entry.name.as_str(), entry.hash.as_str());
        }
    }
    if !invalid.is_empty() {
        // The spec of an invalid connection does not depend on the others (its hash may).
        for check in sc_model::check_connections(&serde_json::Value::Object(invalid)) {
            let Some(hash) = carried.get(check.name.as_str()).map(|h| h.to_string()) else {
                continue;
            };
            let spec = record::RequestedSpec {
                spec: sc_contract::checked_spec_text(&check),
                hash,
                revision: cs.revision,
            };
            out.insert(check.name, spec);
        }
    }
    out
}

/// Applies or deletes one connection of the change set.
async fn run_entry(
    entry: &ChangeEntry,
    validated: &inputs::Validated,
    mat: &mut Materializer<'_>,
    recorder: &ResultRecorder<'_>,
    requests: &ObjectKey,
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
                    RunError::new(
                        Reason::InvalidRequest,
                        format!("the request is invalid: {}", msg.join("; ")),
                        "fix the connection's values and upgrade the release",
                    ),
                );
            } else if let Some(conn) = validated.set.get(&entry.name) {
                if !entry.hash.is_empty() && entry.hash != conn.hash {
                    run.steps.push(mat.log.note(&entry.name, "the request changed since the change set was written; applying the current request"));
                }
                let applied = async {
                    let mut metadata = recorder.metadata(&entry.name).await?;
                    if metadata.is_none() && conn.spec.deletion_policy == DeletionPolicy::Delete {
                        // Recorded before anything of it is written (see write_ahead): its
                        // removal deletes what it wrote, so it must be known even if this
                        // run is killed before its record.
                        recorder.write_ahead(&entry.name).await?;
                        metadata = recorder.metadata(&entry.name).await?;
                    }
                    let metadata = metadata.as_ref().map(Metadata::from_configmap);
                    let previous = metadata.as_ref().and_then(|m| m.status.as_deref());
                    mat.apply(conn, previous, &mut run).await?;
                    mat.prune(conn, previous, &mut run).await
                };
                match applied.await {
                    Ok(()) => {
                        run.phase = RunPhase::Ready;
                        run.applied_hash = Some(conn.hash.clone());
                        run.deletion_policy = Some(conn.spec.deletion_policy);
                        let short = &conn.hash[..conn.hash.len().min(12)];
                        run.steps
                            .push(mat.log.note(&entry.name, &format!("ready (hash {short})")));
                    }
                    Err(f) => run.fail(&mat.log, f),
                }
            } else {
                run.fail(&mat.log, RunError::new(
                Reason::NotRequested,
                    format!("connection {} is not in {requests}", entry.name),
                    "nothing to do if it was removed: sc-agent schedules its removal in the next change set",
                ));
            }
        }
        Action::Delete => {
            let result = match recorder.metadata(&entry.name).await {
                Ok(cm) => {
                    let metadata = cm.as_ref().map(Metadata::from_configmap);
                    mat.delete(entry, metadata.as_ref(), &mut run).await
                }
                Err(f) => Err(f),
            };
            match result {
                Ok(()) => {
                    run.phase = RunPhase::Deleted;
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
