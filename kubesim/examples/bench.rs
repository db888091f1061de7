//! Loopback throughput of kubesim through kube-rs: server-side applies creating Secrets, creates,
//! gets, updates and lists requests per second, and watch fan-out (events delivered per second
//! to many watchers).
//!
//! ```text
//! cargo run --release -p kubesim --example bench [-- OBJECTS CONCURRENCY WATCHERS]
//!     [--kubeconfig FILE] [--write-path]
//! ```
//!
//! By default an instance is started in this process. With `--kubeconfig FILE` the requests go
//! to the server that kubeconfig names instead (e.g. the `kubesim` binary, to measure it on its
//! own or under a profiler). `--write-path` runs only the writes sc-job's pattern makes, with a
//! watch open on the ConfigMaps by label: server-side applies creating Secrets, creates of
//! ConfigMaps, then an update (PUT with the resourceVersion) of each ConfigMap.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kubesim::{Kubesim, Options};
use serde_json::json;

const LABEL: &str = "kubesim.io/bench=true";

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubesim.io/bench": "true"}},
        "data": {"k": "v".repeat(64)},
    }))
    .expect("valid")
}

fn report(what: &str, n: usize, took: Duration) {
    println!(
        "{what:<28} {n:>7} requests  {:>9.0} req/s",
        n as f64 / took.as_secs_f64()
    );
}

/// Server-side applies creating `n` Secrets (force, one field manager), as sc-bench measures
/// the server's own rate.
async fn apply_secrets(
    client: &kube::Client,
    ns: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams::apply("kubesim-bench").force();
    let start = Instant::now();
    stream::iter(0..n)
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
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    report("apply (Secret, creates)", n, start.elapsed());
    Ok(())
}

async fn create_configmaps(
    api: &Api<ConfigMap>,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let start = Instant::now();
    stream::iter(0..n)
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
    report("create (ConfigMap)", n, start.elapsed());
    Ok(())
}

/// A GET then a PUT carrying the read resourceVersion of every ConfigMap; reports the PUTs.
async fn update_configmaps(
    api: &Api<ConfigMap>,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let read: Vec<ConfigMap> = stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move { api.get(&format!("cm-{i}")).await }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let start = Instant::now();
    stream::iter(read)
        .map(|mut cm| {
            let api = api.clone();
            async move {
                let name = cm.metadata.name.clone().unwrap_or_default();
                cm.data
                    .get_or_insert_default()
                    .insert("status.json".into(), json!({"applied": name}).to_string());
                api.replace(&name, &PostParams::default(), &cm).await
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    report("update (ConfigMap, PUT)", n, start.elapsed());
    Ok(())
}

/// Opens a watch on the ConfigMaps carrying [`LABEL`]; the task ends after `events` events.
async fn watch_labelled(
    api: &Api<ConfigMap>,
    events: usize,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<usize>>> {
    let rv = api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = api
        .watch(&WatchParams::default().labels(LABEL).timeout(290), &rv)
        .await?
        .boxed();
    Ok(tokio::spawn(async move {
        let mut seen = 0usize;
        while seen < events
            && let Some(ev) = stream.try_next().await?
        {
            if matches!(ev, WatchEvent::Added(_) | WatchEvent::Modified(_)) {
                seen += 1;
            }
        }
        anyhow::Ok(seen)
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let kubeconfig = raw
        .iter()
        .position(|a| a == "--kubeconfig")
        .and_then(|i| raw.get(i + 1).cloned());
    let write_path = raw.iter().any(|a| a == "--write-path");
    let args: Vec<usize> = raw.iter().filter_map(|a| a.parse().ok()).collect();
    let objects = args.first().copied().unwrap_or(2000);
    let concurrency = args.get(1).copied().unwrap_or(16);
    let watchers = args.get(2).copied().unwrap_or(50);
    let (_instance, client) = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path)?;
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
            (None, kube::Client::try_from(config)?)
        }
        None => {
            let ks = Kubesim::start(Options::default()).await?;
            let client = ks.client();
            (Some(ks), client)
        }
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    if write_path {
        let watch = watch_labelled(&api, 2 * objects).await?;
        apply_secrets(&client, "default", objects, concurrency).await?;
        create_configmaps(&api, objects, concurrency).await?;
        update_configmaps(&api, objects, concurrency).await?;
        let seen = watch.await??;
        anyhow::ensure!(
            seen == 2 * objects,
            "the label watch saw {seen} of {} events",
            2 * objects
        );
        return Ok(());
    }

    apply_secrets(&client, "default", objects, concurrency).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let gets = objects * 2;
    let start = Instant::now();
    stream::iter(0..gets)
        .map(|i| {
            let api = secrets.clone();
            async move { api.get(&format!("rate-{}", i % objects)).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    report("get (Secret)", gets, start.elapsed());

    create_configmaps(&api, objects, concurrency).await?;

    let start = Instant::now();
    stream::iter(0..gets)
        .map(|i| {
            let api = api.clone();
            async move { api.get(&format!("cm-{}", i % objects)).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    report("get (ConfigMap)", gets, start.elapsed());

    update_configmaps(&api, objects, concurrency).await?;

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
        let patch = Patch::Merge(json!({"data": {"n": i.to_string()}}));
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
