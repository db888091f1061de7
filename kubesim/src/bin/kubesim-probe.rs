//! `kubesim-probe`: a pod workload for tests. It connects with kube-rs `Config::infer()` (so,
//! in a kubesim pod, through the in-cluster configuration: `KUBERNETES_SERVICE_HOST` /
//! `_PORT` and the ServiceAccount files), prints `server: <url>` and `namespace: <ns>`, then
//! lists each resource named on the command line in its namespace and prints one line per
//! resource: `<resource>: ok <count>` or `<resource>: denied <code> <reason>`.
//!
//! With `PROBE_REPEAT_SECONDS=N` it repeats the lists every `PROBE_INTERVAL_SECONDS` (default
//! 2) for N seconds with the same client, each line prefixed with the seconds elapsed (a
//! long-running client, e.g. across ServiceAccount token rotations).

use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let config = kube::Config::infer().await?;
    let namespace = config.default_namespace.clone();
    println!("server: {}", config.cluster_url);
    let client = kube::Client::try_from(config)?;
    println!("namespace: {namespace}");
    let seconds = |var: &str, default: u64| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let repeat = std::time::Duration::from_secs(seconds("PROBE_REPEAT_SECONDS", 0));
    let interval = std::time::Duration::from_secs(seconds("PROBE_INTERVAL_SECONDS", 2));
    let start = std::time::Instant::now();
    loop {
        let prefix = if repeat.is_zero() {
            String::new()
        } else {
            format!("{} ", start.elapsed().as_secs())
        };
        for resource in std::env::args().skip(1) {
            let line = list(&client, &namespace, &resource).await;
            println!("{prefix}{resource}: {line}");
        }
        if start.elapsed() >= repeat {
            break;
        }
        tokio::time::sleep(interval).await;
    }
    Ok(())
}

/// `ok <count>`, `denied <code> <reason>` or `error <message>`.
async fn list(client: &kube::Client, namespace: &str, resource: &str) -> String {
    let (group, plural) = resource
        .split_once('.')
        .map_or(("", resource), |(p, g)| (g, p));
    let ar = ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: if group.is_empty() {
            "v1".into()
        } else {
            format!("{group}/v1")
        },
        kind: String::new(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
    match api.list(&ListParams::default()).await {
        Ok(list) => format!("ok {}", list.items.len()),
        Err(kube::Error::Api(s)) => format!("denied {} {}", s.code, s.reason),
        Err(e) => format!("error {e}"),
    }
}
