//! Loopback throughput of kubesim through kube-rs: create, get and list requests per second, and
//! watch fan-out (events delivered per second to many watchers).
//!
//! `cargo run --release -p kubesim --example bench [-- OBJECTS CONCURRENCY WATCHERS]`

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kubesim::{Kubesim, Options};
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v".repeat(64)}}))
        .expect("valid")
}

fn report(what: &str, n: usize, took: Duration) {
    println!(
        "{what:<28} {n:>7} requests  {:>9.0} req/s",
        n as f64 / took.as_secs_f64()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let objects = args.first().copied().unwrap_or(2000);
    let concurrency = args.get(1).copied().unwrap_or(16);
    let watchers = args.get(2).copied().unwrap_or(50);
    let ks = Kubesim::start(Options::default()).await?;
    let api: Api<ConfigMap> = Api::namespaced(ks.client(), "default");

    let start = Instant::now();
    stream::iter(0..objects)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &cm(&format!("cm-{i}")))
                    .await
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    report("create", objects, start.elapsed());

    let gets = objects * 2;
    let start = Instant::now();
    stream::iter(0..gets)
        .map(|i| {
            let api = api.clone();
            async move { api.get(&format!("cm-{}", i % objects)).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    report("get", gets, start.elapsed());

    let lists = 50;
    let start = Instant::now();
    stream::iter(0..lists)
        .map(|_| {
            let api = api.clone();
            async move { api.list(&ListParams::default()).await }
        })
        .buffer_unordered(concurrency.min(4))
        .try_collect::<Vec<_>>()
        .await?;
    report(&format!("list ({objects} items)"), lists, start.elapsed());

    // Watch fan-out: every watcher must see every write.
    let writes = 500;
    let rv = api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let api = api.clone();
        let rv = rv.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = 0usize;
            let mut events = api
                .watch(&WatchParams::default().timeout(290), &rv)
                .await?
                .boxed();
            while let Some(ev) = events.try_next().await? {
                if matches!(ev, WatchEvent::Modified(_)) {
                    seen += 1;
                    if seen == writes {
                        break;
                    }
                }
            }
            anyhow::Ok(seen)
        }));
    }
    let start = Instant::now();
    for i in 0..writes {
        let patch = kube::api::Patch::Merge(json!({"data": {"n": i.to_string()}}));
        api.patch(&format!("cm-{}", i % objects), &Default::default(), &patch)
            .await?;
    }
    for t in tasks {
        let seen = t.await??;
        anyhow::ensure!(seen == writes, "a watcher saw {seen} of {writes} events");
    }
    let took = start.elapsed();
    println!(
        "{:<28} {:>7} events    {:>9.0} events/s ({writes} writes to {watchers} watchers)",
        "watch fan-out",
        writes * watchers,
        (writes * watchers) as f64 / took.as_secs_f64()
    );
    Ok(())
}
