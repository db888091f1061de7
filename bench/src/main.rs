//! sc-bench: the benchmarks of sc-extension on the embedded cluster (kubesim) with the release
//! binaries and the pinned helm and kubectl. Prints a table of medians and writes it to
//! `bench/RESULTS.md`, with every raw run under `bench/out/`. See bench/README.md.

mod cluster;
mod firstreq;
mod procfs;
mod scenarios;
mod workload;

use anyhow::{Context, Result};
use clap::Parser;
use cluster::{Cluster, Paths};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// Benchmarks of sc-extension against `kubectl apply` on the embedded cluster.
#[derive(Debug, Parser)]
struct Args {
    /// Connection counts of the bulk runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000,10000")]
    sizes: Vec<usize>,
    /// Runs of each size up to 1,000 connections (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Runs of each size above 1,000 connections.
    #[arg(long, default_value_t = 1)]
    large_runs: usize,
    /// Also measure the bulk apply through `helm upgrade` (one fresh cluster per run).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    helm: bool,
    /// Largest size measured through helm.
    #[arg(long, default_value_t = 1000)]
    helm_max: usize,
    /// Connection counts of the drift measures (a deleted Secret back, the agent's footprint
    /// with the Secrets watched), comma-separated; `0`: none.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    drift_sizes: Vec<usize>,
    /// Secrets deleted (one after the other) at each drift size.
    #[arg(long, default_value_t = 5)]
    drift_deletions: usize,
    /// Seconds without change over which the agent's idle CPU is measured, from when the
    /// agent has run no reconcile step for 2 s; at least twice its periodic looks (30 s).
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// The release build output holding kubesim, sc-agent and sc-job.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// The pinned tools (`make tools`).
    #[arg(long, default_value = ".tools/bin")]
    tools_dir: PathBuf,
    /// The chart.
    #[arg(long, default_value = "chart")]
    chart: PathBuf,
    /// Where the raw runs are written.
    #[arg(long, default_value = "bench/out")]
    out_dir: PathBuf,
    /// Where the results table is written.
    #[arg(long, default_value = "bench/RESULTS.md")]
    results: PathBuf,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The machine: cores, CPU model, load average.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {model}")
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Raw results, appended as the runs go.
struct Raw {
    dir: PathBuf,
    runs: Vec<Value>,
}

impl Raw {
    fn push(&mut self, v: Value) -> Result<()> {
        eprintln!("sc-bench: {v}");
        self.runs.push(v);
        std::fs::write(
            self.dir.join("runs.json"),
            serde_json::to_string_pretty(&self.runs)?,
        )?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let paths = Paths {
        bin_dir: args.bin_dir.canonicalize().with_context(|| {
            format!(
                "{} is missing: run `cargo build --release --bins`",
                args.bin_dir.display()
            )
        })?,
        tools_dir: args.tools_dir.canonicalize().with_context(|| {
            format!("{} is missing: run `make tools`", args.tools_dir.display())
        })?,
        chart: args.chart.canonicalize()?,
    };
    std::fs::create_dir_all(&args.out_dir)?;
    let mut raw = Raw {
        dir: args.out_dir.clone(),
        runs: Vec::new(),
    };
    let load_start = load();
    let started = std::time::Instant::now();

    // Footprint of an idle agent with no connection, sc-job's start-up, the server's rate.
    let c = Cluster::start(&paths).await?;
    let idle0 = scenarios::agent_idle(&c, Duration::from_secs(args.idle_seconds)).await?;
    raw.push(json!({"scenario": "agent-idle", "connections": 0, "cpuPercent": idle0.cpu_percent, "rssKiB": idle0.rss_kib, "hwmKiB": idle0.hwm_kib, "steps": idle0.steps, "stepSec": idle0.step_secs, "settleSec": secs(idle0.settle)}))?;
    let mut first = Vec::new();
    for _ in 0..7 {
        let d = firstreq::start_to_first_request(&paths.bin_dir.join("sc-job"), c.dir()).await?;
        first.push(d.as_secs_f64() * 1000.0);
    }
    raw.push(json!({"scenario": "sc-job-first-request", "ms": first}))?;
    let (applies, gets) = scenarios::server_rate(&c, 2000).await?;
    raw.push(json!({"scenario": "server-rate", "applyPerSec": applies, "getPerSec": gets}))?;
    c.stop().await;

    let mut rows = Vec::new();
    let mut largest: Option<(usize, Vec<scenarios::Incremental>, scenarios::Idle, u64)> = None;
    // The largest size gets the incremental and footprint measures.
    let largest_fit = args.sizes.iter().copied().max();
    for &n in &args.sizes {
        let runs = if n > 1000 { args.large_runs } else { args.runs };
        let mut bulk = Vec::new();
        let mut helm = Vec::new();
        for run in 0..runs {
            let c = Cluster::start(&paths).await?;
            let (b, mut requests) = scenarios::bulk(&c, n).await?;
            raw.push(json!({
                "scenario": "bulk", "connections": n, "run": run,
                "toAppliedSec": secs(b.to_applied),
                "agentReadySec": secs(b.to_ready),
                "kubectlClientSideSec": secs(b.kubectl_client_side),
                "kubectlServerSideSec": secs(b.kubectl_server_side),
                "scJobPeakRssKiB": b.job.peak_rss_kib,
                "scJobPodFirstSeenSec": b.job.first_seen.map(secs),
                "scJobPodLastRunningSec": b.job.last_running.map(secs),
                "cpuSec": {"kubesim": b.cpu_kubesim, "agent": b.cpu_agent, "scJob": b.job.cpu_secs},
                "requests": b.requests,
                "requestsBy": b.requests_by,
            }))?;
            bulk.push(b);
            if run == runs - 1 && Some(n) == largest_fit {
                let mut incs = Vec::new();
                for new_revision in [true, false] {
                    let inc = scenarios::incremental(&c, &mut requests, new_revision).await?;
                    raw.push(json!({
                        "scenario": "incremental", "connections": n, "newRevision": new_revision,
                        "toSecretSec": secs(inc.to_secret), "writes": inc.writes,
                        "leaseWrites": inc.lease_writes, "reads": inc.reads,
                        "scJobPodFirstSeenSec": inc.job.first_seen.map(secs),
                        "scJobPodLastRunningSec": inc.job.last_running.map(secs),
                        "cpuSecToSecret": {"kubesim": inc.cpu_kubesim, "agent": inc.cpu_agent, "scJob": inc.job.cpu_secs},
                    }))?;
                    incs.push(inc);
                }
                let idle =
                    scenarios::agent_idle(&c, Duration::from_secs(args.idle_seconds)).await?;
                raw.push(json!({"scenario": "agent-idle", "connections": n, "cpuPercent": idle.cpu_percent, "rssKiB": idle.rss_kib, "hwmKiB": idle.hwm_kib, "steps": idle.steps, "stepSec": idle.step_secs, "settleSec": secs(idle.settle)}))?;
                let peak = bulk
                    .iter()
                    .filter_map(|b| b.job.peak_rss_kib)
                    .max()
                    .unwrap_or(0);
                largest = Some((n, incs, idle, peak));
            }
            c.stop().await;
            if args.helm && n <= args.helm_max {
                let c = Cluster::start(&paths).await?;
                let (h, ready) = scenarios::bulk_helm(&c, n).await?;
                raw.push(json!({"scenario": "bulk-helm", "connections": n, "run": run, "helmSec": secs(h), "toAppliedSec": secs(ready)}))?;
                helm.push((h, ready));
                c.stop().await;
            }
        }
        rows.push((n, bulk, helm));
    }

    // Drift: with the Secrets watched (agent.drift.watchSecrets), a deleted Secret back, and
    // the agent's footprint with that watch at the largest size.
    let mut returns = Vec::new();
    let mut watched_idle = None;
    let drift_largest = args.drift_sizes.iter().copied().max();
    for &n in args.drift_sizes.iter().filter(|n| **n > 0) {
        let c = Cluster::start_with(&paths, &["agent.drift.watchSecrets=true"]).await?;
        scenarios::bulk_only(&c, n).await?;
        let times = scenarios::secret_return(&c, n, args.drift_deletions).await?;
        raw.push(json!({
            "scenario": "secret-return", "connections": n, "watchSecrets": true,
            "sec": times.iter().map(|d| secs(*d)).collect::<Vec<_>>(),
        }))?;
        if Some(n) == drift_largest {
            let idle = scenarios::agent_idle(&c, Duration::from_secs(args.idle_seconds)).await?;
            raw.push(json!({"scenario": "agent-idle", "connections": n, "watchSecrets": true, "cpuPercent": idle.cpu_percent, "rssKiB": idle.rss_kib, "hwmKiB": idle.hwm_kib, "steps": idle.steps, "stepSec": idle.step_secs, "settleSec": secs(idle.settle)}))?;
            watched_idle = Some((n, idle));
        }
        returns.push((n, times));
        c.stop().await;
    }

    let sizes: Vec<(String, u64)> = ["sc-agent", "sc-job", "kubesim"]
        .iter()
        .map(|b| {
            let len = std::fs::metadata(paths.bin_dir.join(b)).map_or(0, |m| m.len());
            (b.to_string(), len)
        })
        .collect();

    // The table.
    let mut t = String::new();
    writeln!(t, "# sc-extension benchmark results\n")?;
    writeln!(
        t,
        "Machine: {}; load average {} at the start, {} at the end; {} min in all. \
         Medians of the runs shown in each row. Produced by `make bench`.\n",
        machine(),
        load_start,
        load(),
        started.elapsed().as_secs() / 60
    )?;
    writeln!(t, "## Bulk: N connections in one values change\n")?;
    writeln!(
        t,
        "`sc-extension` = from the write of `sc-protected` and `sc-requests` (as the chart renders them) until every metadata ConfigMap records the requested hash as applied (`status.appliedHash`), seen by a watch; `agent Ready` = until the agent's `sc_agent_connections{{phase=\"Ready\"}}` gauge reaches N. `helm upgrade` (fresh cluster) = until all applied / the whole command, its result hook included. kubectl 1.37 applies the same N Secrets rendered by sc-model to a fresh namespace of the same cluster, after sc-extension is done. Ratio = sc-extension / kubectl. Requests = API requests of the agent and sc-job in the run, counted by kubesim (HTTP requests: the `create` a server-side apply implies when it creates its object is not counted apart).\n"
    )?;
    writeln!(
        t,
        "| N | runs | sc-extension | agent Ready | kubectl apply (client-side) | kubectl apply --server-side | ratio to client-side | ratio to server-side | helm upgrade (all applied / whole command) | requests |"
    )?;
    writeln!(t, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for (n, bulk, helm) in &rows {
        let sc = median(bulk.iter().map(|b| secs(b.to_applied)).collect());
        let ready = median(bulk.iter().map(|b| secs(b.to_ready)).collect());
        let csa = median(bulk.iter().map(|b| secs(b.kubectl_client_side)).collect());
        let ssa = median(bulk.iter().map(|b| secs(b.kubectl_server_side)).collect());
        let req = median(bulk.iter().map(|b| b.requests as f64).collect());
        let h = if helm.is_empty() {
            "not measured".to_string()
        } else {
            format!(
                "{:.2} s / {:.2} s",
                median(helm.iter().map(|h| secs(h.1)).collect()),
                median(helm.iter().map(|h| secs(h.0)).collect())
            )
        };
        writeln!(
            t,
            "| {n} | {} | {sc:.2} s | {ready:.2} s | {csa:.2} s | {ssa:.2} s | {:.2} | {:.2} | {h} | {req:.0} |",
            bulk.len(),
            sc / csa,
            sc / ssa
        )?;
    }
    writeln!(
        t,
        "\nWhere the time goes (medians, seconds since the write of the request objects; CPU seconds used during the bulk run):\n"
    )?;
    writeln!(
        t,
        "| N | sc-job pod first seen | sc-job pod last seen running | CPU kubesim | CPU agent | CPU sc-job |"
    )?;
    writeln!(t, "|---:|---:|---:|---:|---:|---:|")?;
    for (n, bulk, _) in &rows {
        let m = |f: &dyn Fn(&scenarios::Bulk) -> Option<f64>| {
            median(bulk.iter().filter_map(f).collect())
        };
        writeln!(
            t,
            "| {n} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            m(&|b| b.job.first_seen.map(secs)),
            m(&|b| b.job.last_running.map(secs)),
            m(&|b| Some(b.cpu_kubesim)),
            m(&|b| Some(b.cpu_agent)),
            m(&|b| Some(b.job.cpu_secs)),
        )?;
    }
    if let Some((n, incs, idle, peak)) = &largest {
        writeln!(t, "\n## Incremental: one connection changed among {n}\n")?;
        writeln!(
            t,
            "| change | time to the Secret | API writes (agent + sc-job) | Lease renewals meanwhile | reads |"
        )?;
        writeln!(t, "|---|---:|---:|---:|---:|")?;
        let what = [
            "new revision of both request objects (as every helm upgrade)",
            "`sc-protected` alone, same revision",
        ];
        for (inc, what) in incs.iter().zip(what) {
            let writes: u64 = inc.writes.values().sum();
            writeln!(
                t,
                "| {what} | {:.3} s | {writes} | {} | {} |",
                secs(inc.to_secret),
                inc.lease_writes,
                inc.reads
            )?;
        }
        writeln!(
            t,
            "\nWhere the time goes (seconds since the write of the request objects; CPU seconds used until the Secret changed; sc-job's CPU is its whole run):\n"
        )?;
        writeln!(
            t,
            "| change | sc-job pod first seen | sc-job pod last seen running | CPU kubesim | CPU agent | CPU sc-job |"
        )?;
        writeln!(t, "|---|---:|---:|---:|---:|---:|")?;
        for (inc, what) in incs.iter().zip(what) {
            let at = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.3}", secs(d)));
            writeln!(
                t,
                "| {what} | {} | {} | {:.2} | {:.2} | {:.2} |",
                at(inc.job.first_seen),
                at(inc.job.last_running),
                inc.cpu_kubesim,
                inc.cpu_agent,
                inc.job.cpu_secs
            )?;
        }
        for (inc, what) in incs.iter().zip(what) {
            writeln!(t, "\nWrites by client, verb and resource, {what}:\n")?;
            for (k, v) in &inc.writes {
                writeln!(t, "- `{k}`: {v}")?;
            }
        }
        writeln!(t, "\n## Footprint\n")?;
        writeln!(t, "| measure | value |")?;
        writeln!(t, "|---|---:|")?;
        writeln!(
            t,
            "| agent idle CPU, 0 connections ({} s) | {:.2} % of a core |",
            args.idle_seconds, idle0.cpu_percent
        )?;
        writeln!(
            t,
            "| agent RSS, 0 connections | {:.1} MiB |",
            idle0.rss_kib as f64 / 1024.0
        )?;
        writeln!(
            t,
            "| agent idle CPU, {n} connections ({} s from 2 s without a reconcile step) | {:.2} % of a core |",
            args.idle_seconds, idle.cpu_percent
        )?;
        writeln!(
            t,
            "| agent reconcile steps in those {} s, {n} connections | {} ({:.2} s) |",
            args.idle_seconds, idle.steps, idle.step_secs
        )?;
        writeln!(
            t,
            "| agent RSS, {n} connections (peak) | {:.1} MiB ({:.1} MiB) |",
            idle.rss_kib as f64 / 1024.0,
            idle.hwm_kib as f64 / 1024.0
        )?;
        writeln!(
            t,
            "| sc-job peak RSS, {n} connections | {:.1} MiB |",
            *peak as f64 / 1024.0
        )?;
        writeln!(
            t,
            "| sc-job start to first API request (median of {}) | {:.1} ms |",
            first.len(),
            median(first.clone())
        )?;
        for (b, len) in &sizes {
            writeln!(
                t,
                "| release binary `{b}` | {:.1} MiB |",
                *len as f64 / 1048576.0
            )?;
        }
    }
    if !returns.is_empty() {
        writeln!(
            t,
            "\n## Drift: a deleted Secret back\n\nWith `agent.drift.watchSecrets=true` (the agent watches the Secrets it materialized, by label, metadata only): after a bulk apply of N connections, Secrets of N spread over them are deleted one after the other; each is timed from its deletion until it exists again (a new uid), polled every 10 ms. Without the watch (the default) the agent reads 64 Secrets by name per look every `agent.drift.intervalSeconds` (30 s), so a deletion is seen within ceil(N/64) looks: not measured here.\n"
        )?;
        writeln!(t, "| N | deletions | median | slowest |")?;
        writeln!(t, "|---:|---:|---:|---:|")?;
        for (n, times) in &returns {
            let v: Vec<f64> = times.iter().map(|d| secs(*d)).collect();
            let max = v.iter().copied().fold(0.0, f64::max);
            writeln!(
                t,
                "| {n} | {} | {:.2} s | {max:.2} s |",
                v.len(),
                median(v.clone())
            )?;
        }
        if let Some((n, idle)) = &watched_idle {
            writeln!(
                t,
                "\nThe agent with the Secrets watched, {n} connections, idle {} s (from 2 s without a reconcile step): {:.2} % of a core, {} reconcile steps ({:.2} s), RSS {:.1} MiB (peak {:.1} MiB).",
                args.idle_seconds,
                idle.cpu_percent,
                idle.steps,
                idle.step_secs,
                idle.rss_kib as f64 / 1024.0,
                idle.hwm_kib as f64 / 1024.0
            )?;
        }
    }
    writeln!(t, "\n## The embedded API server's own rate\n")?;
    writeln!(
        t,
        "One kube-rs client, 16 requests in flight, over loopback, against the same kubesim binary: server-side apply creating 2,000 Secrets {applies:.0} req/s; 4,000 gets {gets:.0} req/s."
    )?;
    print!("{t}");
    std::fs::write(&args.results, &t)
        .with_context(|| format!("writing {} failed", args.results.display()))?;
    Ok(())
}
