//! The measurements: bulk apply (through the request objects, through helm, and with
//! `kubectl apply` of the same Secrets), one incremental change, the agent's footprint and the
//! API server's own request rate.

use crate::cluster::{Cluster, RELEASE_NS};
use crate::procfs;
use crate::workload::{self, APP_NS};
use anyhow::{Context, Result, bail};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long one bulk apply may take before the benchmark gives up.
const BULK_DEADLINE: Duration = Duration::from_secs(1800);

/// The outcome of one bulk run through the request objects.
#[derive(Debug, Clone, Default)]
pub struct Bulk {
    /// From the write of the request objects until every metadata ConfigMap records the
    /// requested hash as applied.
    pub to_applied: Duration,
    /// From the write of the request objects until the agent reports every connection Ready.
    pub to_ready: Duration,
    /// `kubectl apply -f` (client-side) of the same Secrets.
    pub kubectl_client_side: Duration,
    /// `kubectl apply --server-side -f` of the same Secrets.
    pub kubectl_server_side: Duration,
    /// The sc-job pod: peak memory, when it was seen.
    pub job: JobSamples,
    /// API requests of the agent and sc-job during the run.
    pub requests: u64,
    /// The same, by `client verb resource`.
    pub requests_by: BTreeMap<String, u64>,
    /// CPU seconds used during the run by kubesim (the API server, its controllers and
    /// kubelet) and by the agent.
    pub cpu_kubesim: f64,
    /// See `cpu_kubesim`.
    pub cpu_agent: f64,
}

/// The connections of a run and the revision the request objects carry.
pub struct Requests {
    /// The requests without secrets.
    pub public: Map<String, Value>,
    /// The protected settings.
    pub protected: Map<String, Value>,
    /// The revision written last.
    pub revision: u64,
}

/// Writes `sc-protected` then `sc-requests` as the chart renders them, each split into
/// shards past the chart's default size (the further shards first, so the first object,
/// which announces them, comes last).
async fn write_requests(c: &Cluster, r: &Requests) -> Result<()> {
    let pp = PatchParams::apply("helm").force();
    let protected = workload::shards(&r.protected);
    if protected.len() > 1 {
        bail!(
            "the protected settings need {} Secrets; the chart installed without connections grants the agent only sc-protected",
            protected.len()
        );
    }
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), RELEASE_NS);
    let obj = workload::shard_object(
        "Secret",
        "sc-protected",
        0,
        1,
        r.revision,
        workload::protected_data(&protected[0]),
    );
    secrets
        .patch("sc-protected", &pp, &Patch::Apply(&obj))
        .await
        .context("writing Secret sc-protected failed")?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), RELEASE_NS);
    let public = workload::shards(&r.public);
    for (i, shard) in public.iter().enumerate().rev() {
        let name = workload::shard_name("sc-requests", i);
        let obj = workload::shard_object(
            "ConfigMap",
            "sc-requests",
            i,
            public.len(),
            r.revision,
            workload::requests_data(shard),
        );
        cms.patch(&name, &pp, &Patch::Apply(&obj))
            .await
            .with_context(|| format!("writing ConfigMap {name} failed"))?;
    }
    Ok(())
}

/// What sampling the sc-job pod saw: its peak resident memory (KiB) and when it was first
/// and last seen (since the start of the run).
#[derive(Debug, Clone, Default)]
pub struct JobSamples {
    /// The highest `VmHWM` read.
    pub peak_rss_kib: Option<u64>,
    /// The first time a pod of Job sc-job was seen.
    pub first_seen: Option<Duration>,
    /// The last time a pod of Job sc-job was seen with a running container.
    pub last_running: Option<Duration>,
    /// The CPU time of the sc-job process at the last sample, in seconds.
    pub cpu_secs: f64,
}

/// The CPU time of kubesim and of the agent from a start.
struct CpuMeter {
    agent: u32,
    kubesim0: u64,
    agent0: u64,
}

fn cpu_ticks(pid: Option<u32>) -> u64 {
    pid.and_then(|p| procfs::cpu_ticks(p).ok()).unwrap_or(0)
}

impl CpuMeter {
    async fn start(c: &Cluster) -> Result<CpuMeter> {
        let agent = c
            .pod_pid("app.kubernetes.io%2Fcomponent%3Dagent")
            .await?
            .context("the agent pod has no running container")?;
        Ok(CpuMeter {
            agent,
            kubesim0: cpu_ticks(c.kubesim_pid()),
            agent0: cpu_ticks(Some(agent)),
        })
    }

    /// CPU seconds of kubesim and of the agent since the start.
    fn used(&self, c: &Cluster) -> (f64, f64) {
        let hz = procfs::clock_ticks();
        let since = |now: u64, then: u64| now.saturating_sub(then) as f64 / hz;
        (
            since(cpu_ticks(c.kubesim_pid()), self.kubesim0),
            since(cpu_ticks(Some(self.agent)), self.agent0),
        )
    }
}

/// Samples the sc-job pod every 50 ms until `stop` is set.
fn sample_job(
    c: &Cluster,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<JobSamples> {
    let client = c.client().clone();
    tokio::spawn(async move {
        let mut out = JobSamples::default();
        while !stop.load(Ordering::Relaxed) {
            let path =
                format!("/api/v1/namespaces/{RELEASE_NS}/pods?labelSelector=job-name%3Dsc-job");
            if let Ok(body) = crate::cluster::api_get(&client, &path).await
                && let Ok(pods) = serde_json::from_str::<Value>(&body)
            {
                for p in pods["items"].as_array().into_iter().flatten() {
                    out.first_seen.get_or_insert(start.elapsed());
                    let st = &p["status"]["containerStatuses"][0];
                    if st["state"]["running"].is_object() {
                        out.last_running = Some(start.elapsed());
                    }
                    let pid = st["containerID"]
                        .as_str()
                        .and_then(|s| s.strip_prefix("process://"))
                        .and_then(|s| s.parse::<u32>().ok());
                    if let Some(pid) = pid
                        && let Ok(kib) = procfs::status_kib(pid, "VmHWM")
                    {
                        out.peak_rss_kib = Some(out.peak_rss_kib.unwrap_or(0).max(kib));
                        if let Ok(t) = procfs::cpu_ticks(pid) {
                            out.cpu_secs = t as f64 / procfs::clock_ticks();
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        out
    })
}

/// The content hash of every connection of `r`, as sc-model computes it with the key the
/// agent uses (the uid of the protected Secret the chart installed).
async fn expected_hashes(c: &Cluster, r: &Requests) -> Result<BTreeMap<String, String>> {
    let protected = c
        .get_json(&format!(
            "/api/v1/namespaces/{RELEASE_NS}/secrets/sc-protected"
        ))
        .await?;
    let key = protected["metadata"]["uid"].as_str().unwrap_or_default();
    let merged = workload::values(&r.public, &r.protected);
    Ok(
        sc_model::check_connections_keyed(&merged["connections"], key)
            .into_iter()
            .map(|c| (c.name, c.hash))
            .collect(),
    )
}

/// Watches the metadata ConfigMaps until every connection of `expected` has
/// `status.appliedHash` equal to its hash; the time since `start`.
fn watch_applied(
    c: &Cluster,
    expected: BTreeMap<String, String>,
    start: Instant,
) -> tokio::task::JoinHandle<Result<Duration>> {
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), RELEASE_NS);
    tokio::spawn(async move {
        use kube::runtime::watcher;
        let config = watcher::Config::default().labels("app.kubernetes.io/component=connection");
        let mut stream = std::pin::pin!(watcher(api, config));
        let mut applied: BTreeMap<String, bool> = BTreeMap::new();
        let mut done = 0usize;
        while let Some(ev) = tokio::time::timeout(BULK_DEADLINE, stream.next())
            .await
            .context("no metadata change within the deadline")?
        {
            let objs = match ev.context("watching the metadata ConfigMaps failed")? {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => vec![o],
                _ => continue,
            };
            for o in objs {
                let name = o
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("sc-extension.io/connection-name").cloned())
                    .unwrap_or_default();
                let Some(want) = expected.get(&name) else {
                    continue;
                };
                let status: Value = o
                    .data
                    .as_ref()
                    .and_then(|d| d.get("status.json"))
                    .and_then(|t| serde_json::from_str(t).ok())
                    .unwrap_or(Value::Null);
                let ok = status["appliedHash"].as_str() == Some(want.as_str());
                let was = applied.insert(name, ok).unwrap_or(false);
                match (was, ok) {
                    (false, true) => done += 1,
                    (true, false) => done -= 1,
                    _ => {}
                }
            }
            if done == expected.len() {
                return Ok(start.elapsed());
            }
        }
        bail!("the watch of the metadata ConfigMaps ended")
    })
}

/// Waits until the agent reports `n` connections Ready; the time since `start`.
async fn wait_ready(c: &Cluster, n: usize, start: Instant) -> Result<Duration> {
    loop {
        if c.ready_connections().await.unwrap_or(0) as usize == n {
            return Ok(start.elapsed());
        }
        if start.elapsed() > BULK_DEADLINE {
            bail!("the agent did not report {n} connections Ready within {BULK_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until Job sc-job is gone (it deletes itself after a successful run).
async fn wait_job_gone(c: &Cluster) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(120);
    let path = format!("/apis/batch/v1/namespaces/{RELEASE_NS}/jobs/sc-job");
    while c.get_json(&path).await.is_ok() {
        if Instant::now() > end {
            bail!("Job sc-job was still there 120 s after every connection was Ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The number of Secrets in `namespace` carrying sc-extension's labels.
async fn managed_secrets(c: &Cluster, namespace: &str) -> Result<usize> {
    let list = c
        .get_json(&format!(
            "/api/v1/namespaces/{namespace}/secrets?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dsc-extension"
        ))
        .await?;
    Ok(list["items"].as_array().map_or(0, Vec::len))
}

/// Request counts of the agent and sc-job, by `user verb resource`: HTTP requests only (the
/// `create` a server-side apply implies when it creates its object is marked `implied` in
/// kubesim's record and is no request of its own).
pub async fn audit_counts(c: &Cluster) -> Result<BTreeMap<String, u64>> {
    let mut m = BTreeMap::new();
    for e in c.audit().await? {
        if e["implied"].as_bool() == Some(true) {
            continue;
        }
        let user = e["user"].as_str().unwrap_or_default();
        let user = user.rsplit(':').next().unwrap_or(user).to_string();
        let key = format!(
            "{user} {} {}",
            e["verb"].as_str().unwrap_or_default(),
            e["resource"].as_str().unwrap_or_default()
        );
        *m.entry(key).or_default() += e["count"].as_u64().unwrap_or(0);
    }
    Ok(m)
}

fn total(m: &BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

/// Bulk apply of `n` connections by writing the request objects, then `kubectl apply` of the
/// same Secrets (client-side, then server-side) in fresh namespaces of the same cluster.
pub async fn bulk(c: &Cluster, n: usize) -> Result<(Bulk, Requests)> {
    bulk_and_kubectl(c, n, true).await
}

/// The bulk apply of `n` connections, without the `kubectl apply` comparison (its times are
/// zero): the set-up of the drift measures.
pub async fn bulk_only(c: &Cluster, n: usize) -> Result<(Bulk, Requests)> {
    bulk_and_kubectl(c, n, false).await
}

async fn bulk_and_kubectl(c: &Cluster, n: usize, kubectl: bool) -> Result<(Bulk, Requests)> {
    let (public, protected) = workload::connections(n);
    let r = Requests {
        public,
        protected,
        revision: 2,
    };
    let before = audit_counts(c).await?;
    let cpu = CpuMeter::start(c).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let sampler = sample_job(c, start, stop.clone());
    let watch = watch_applied(c, expected_hashes(c, &r).await?, start);
    write_requests(c, &r).await?;
    let to_ready = wait_ready(c, n, start).await?;
    let to_applied = watch.await??;
    wait_job_gone(c).await?;
    stop.store(true, Ordering::Relaxed);
    let job = sampler.await.unwrap_or_default();
    let (cpu_kubesim, cpu_agent) = cpu.used(c);
    let mut requests_by = audit_counts(c).await?;
    for (k, v) in requests_by.iter_mut() {
        *v -= before.get(k).copied().unwrap_or(0);
    }
    requests_by.retain(|_, v| *v > 0);
    let requests = total(&requests_by);
    let made = managed_secrets(c, APP_NS).await?;
    if made != n {
        bail!("the agent reports {n} connections Ready but namespace {APP_NS} has {made} Secrets");
    }

    let mut times = vec![Duration::ZERO; 2];
    let comparisons = if kubectl {
        times.clear();
        vec![
            ("kubectl-csa", None),
            ("kubectl-ssa", Some("--server-side")),
        ]
    } else {
        Vec::new()
    };
    for (ns, extra) in comparisons {
        c.create_namespace(ns).await?;
        let list = workload::rendered_secrets(&r.public, &r.protected, ns)?;
        // One document per Secret (JSON is YAML), as a directory of rendered manifests is.
        let docs: Vec<String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| format!("---\n{s}\n"))
            .collect();
        let file = c.dir().join(format!("{ns}-{n}.yaml"));
        std::fs::write(&file, docs.concat())?;
        let f = file.display().to_string();
        let mut args = vec!["apply", "-f", &f];
        args.extend(extra);
        times.push(c.run_tool("kubectl-1.37", &args).await?);
        let made = managed_secrets(c, ns).await?;
        if made != n {
            bail!("kubectl apply left {made} Secrets in {ns}, not {n}");
        }
    }
    Ok((
        Bulk {
            to_applied,
            to_ready,
            kubectl_client_side: times[0],
            kubectl_server_side: times[1],
            job,
            requests,
            requests_by,
            cpu_kubesim,
            cpu_agent,
        },
        r,
    ))
}

/// Bulk apply of `n` connections with `helm upgrade -f values`: the wall time of helm (its
/// hook waits for the result) and the time until every metadata ConfigMap records the
/// requested hash as applied.
pub async fn bulk_helm(c: &Cluster, n: usize) -> Result<(Duration, Duration)> {
    let (public, protected) = workload::connections(n);
    let r = Requests {
        public,
        protected,
        revision: 2,
    };
    let values = c.dir().join(format!("values-{n}.yaml"));
    std::fs::write(
        &values,
        workload::values(&r.public, &r.protected).to_string(),
    )?;
    let start = Instant::now();
    let watch = watch_applied(c, expected_hashes(c, &r).await?, start);
    let helm = c.helm_upgrade(&values).await?;
    let applied = watch.await??;
    Ok((helm, applied))
}

/// The outcome of one changed connection.
#[derive(Debug, Clone, Default)]
pub struct Incremental {
    /// From the write of the request objects until the Secret holds the new value.
    pub to_secret: Duration,
    /// Writes (create, update, patch, delete) of the agent and sc-job, Lease renewals
    /// excluded, by `user verb resource`.
    pub writes: BTreeMap<String, u64>,
    /// Lease renewals in the same period (periodic, not caused by the change).
    pub lease_writes: u64,
    /// Reads (get, list, watch) in the same period.
    pub reads: u64,
    /// The sc-job pod as sampled until the Secret changed (first seen, CPU).
    pub job: JobSamples,
    /// CPU seconds of kubesim and of the agent until the Secret changed.
    pub cpu_kubesim: f64,
    pub cpu_agent: f64,
}

/// Changes the account key of one connection of `r` and measures what it causes. With
/// `new_revision` both request objects carry a new revision, as every helm upgrade does;
/// without it only `sc-protected` changes.
pub async fn incremental(c: &Cluster, r: &mut Requests, new_revision: bool) -> Result<Incremental> {
    let i = r.public.len() / 2;
    let name = workload::name(i);
    let secret = sc_model::names::secret_name(&name);
    let path = format!("/api/v1/namespaces/{APP_NS}/secrets/{secret}");
    let old = c.get_json(&path).await?["data"].clone();
    let succeeded = "sc_agent_jobs_succeeded_total";
    let jobs_before = c.agent_metric(succeeded).await?;
    let before = audit_counts(c).await?;
    let generation = if new_revision { 1 } else { 2 };
    r.protected.insert(
        name.clone(),
        json!({"secrets": {"accountKey": workload::account_key(i, generation)}}),
    );
    if new_revision {
        r.revision += 1;
    }
    let cpu = CpuMeter::start(c).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let sampler = sample_job(c, start, stop.clone());
    write_requests(c, r).await?;
    let to_secret = loop {
        if let Ok(s) = c.get_json(&path).await
            && s["data"] != old
        {
            break start.elapsed();
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("Secret {APP_NS}/{secret} did not change within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (cpu_kubesim, cpu_agent) = cpu.used(c);
    // Settled: the run succeeded, the Job is gone, and no write for 2 s.
    let end = Instant::now() + Duration::from_secs(120);
    while c.agent_metric(succeeded).await? <= jobs_before {
        if Instant::now() > end {
            bail!("the agent reported no successful run within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_job_gone(c).await?;
    stop.store(true, Ordering::Relaxed);
    let job = sampler.await.unwrap_or_default();
    let is_write = |k: &str| {
        let verb = k.split(' ').nth(1).unwrap_or_default();
        matches!(verb, "create" | "update" | "patch" | "delete")
    };
    let writes_now = |m: &BTreeMap<String, u64>| -> u64 {
        m.iter()
            .filter(|(k, _)| is_write(k) && !k.ends_with(" leases"))
            .map(|(_, v)| v)
            .sum()
    };
    let mut last = audit_counts(c).await?;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = audit_counts(c).await?;
        if writes_now(&now) != writes_now(&last) {
            quiet_since = Instant::now();
        }
        last = now;
    }
    let mut inc = Incremental {
        to_secret,
        job,
        cpu_kubesim,
        cpu_agent,
        ..Default::default()
    };
    for (k, v) in &last {
        let d = v - before.get(k).copied().unwrap_or(0);
        if d == 0 {
            continue;
        }
        if !is_write(k) {
            inc.reads += d;
        } else if k.ends_with(" leases") {
            inc.lease_writes += d;
        } else {
            inc.writes.insert(k.clone(), d);
        }
    }
    Ok(inc)
}

/// CPU and memory of one process over a quiet period.
#[derive(Debug, Clone, Default)]
pub struct Idle {
    /// CPU used, in percent of one core.
    pub cpu_percent: f64,
    /// Resident memory at the end, in KiB.
    pub rss_kib: u64,
    /// Resident memory high-water mark, in KiB.
    pub hwm_kib: u64,
    /// Reconcile steps the agent ran during the period.
    pub steps: u64,
    /// Their summed duration, in seconds.
    pub step_secs: f64,
    /// How long the agent took to become quiet before the period started (60 s: it did not).
    pub settle: Duration,
}

/// The agent's count of reconcile steps and their summed duration.
async fn steps(c: &Cluster) -> Result<(u64, f64)> {
    let m = c.agent_metrics().await?;
    let get = |k: &str| m.iter().find(|(n, _)| n == k).map_or(0.0, |(_, v)| *v);
    Ok((
        get("sc_agent_reconcile_duration_seconds_count") as u64,
        get("sc_agent_reconcile_duration_seconds_sum"),
    ))
}

/// How long the agent must run no reconcile step before it is taken to be at rest.
const QUIET: Duration = Duration::from_secs(2);

/// The agent's CPU and memory over `period` with no change, from when it has been quiet
/// (no reconcile step for [`QUIET`]): the tail of the last run's work is not counted, the
/// agent's own periodic work (looks at Secrets, preflight checks) is, so `period` should
/// span the longest of their intervals (30 s) more than once.
pub async fn agent_idle(c: &Cluster, period: Duration) -> Result<Idle> {
    let pid = c
        .pod_pid("app.kubernetes.io%2Fcomponent%3Dagent")
        .await?
        .context("the agent pod has no running container")?;
    let start = Instant::now();
    let mut last = steps(c).await?.0;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < QUIET {
        if start.elapsed() > Duration::from_secs(60) {
            // Never at rest: measured as it is (the settle time says so).
            eprintln!(
                "sc-bench: the agent ran reconcile steps for 60 s without a pause of {QUIET:?}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = steps(c).await?.0;
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    let settle = start.elapsed();
    let (s0, d0) = steps(c).await?;
    let t0 = procfs::cpu_ticks(pid)?;
    tokio::time::sleep(period).await;
    let t1 = procfs::cpu_ticks(pid)?;
    let (s1, d1) = steps(c).await?;
    Ok(Idle {
        cpu_percent: (t1 - t0) as f64 / procfs::clock_ticks() / period.as_secs_f64() * 100.0,
        rss_kib: procfs::status_kib(pid, "VmRSS")?,
        hwm_kib: procfs::status_kib(pid, "VmHWM")?,
        steps: s1.saturating_sub(s0),
        step_secs: d1 - d0,
        settle,
    })
}

/// Drift repair: `deletions` Secrets of the bulk's connections (spread over them) deleted one
/// after the other, each timed from its deletion until the Secret is back (a new uid), seen by
/// polling its name every 10 ms.
pub async fn secret_return(c: &Cluster, n: usize, deletions: usize) -> Result<Vec<Duration>> {
    let api: Api<Secret> = Api::namespaced(c.client.clone(), APP_NS);
    let names: Vec<String> = api
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=sc-extension"))
        .await?
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    if names.len() != n {
        bail!("{} Secrets in {APP_NS}, not {n}", names.len());
    }
    let step = (n / deletions.max(1)).max(1);
    let mut out = Vec::new();
    for name in names.iter().step_by(step).take(deletions) {
        let uid = api.get(name).await?.metadata.uid;
        api.delete(name, &Default::default()).await?;
        let start = Instant::now();
        loop {
            if start.elapsed() > BULK_DEADLINE {
                bail!("Secret {APP_NS}/{name} was not back within {BULK_DEADLINE:?}");
            }
            if let Some(s) = api.get_opt(name).await?
                && s.metadata.uid != uid
            {
                out.push(start.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(out)
}

/// The API server's own rate over loopback from one client with 16 requests in flight:
/// server-side applies creating `n` Secrets, then `2n` gets; requests per second of each.
pub async fn server_rate(c: &Cluster, n: usize) -> Result<(f64, f64)> {
    let ns = "bench-rate";
    c.create_namespace(ns).await?;
    let api: Api<Secret> = Api::namespaced(c.client.clone(), ns);
    let pp = PatchParams::apply("sc-bench").force();
    let start = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let pp = pp.clone();
            async move {
                let name = format!("rate-{i}");
                let obj = json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": name, "labels": {"app": "rate"}},
                    "data": {"KEY": "dmFsdWU="},
                });
                api.patch(&name, &pp, &Patch::Apply(&obj)).await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let applies = n as f64 / start.elapsed().as_secs_f64();
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        bail!("server-side apply of a Secret failed: {e}");
    }
    let start = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..2 * n)
        .map(|i| {
            let api = api.clone();
            async move { api.get(&format!("rate-{}", i % n)).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let gets = (2 * n) as f64 / start.elapsed().as_secs_f64();
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        bail!("get of a Secret failed: {e}");
    }
    Ok((applies, gets))
}
