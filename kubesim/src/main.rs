//! `kubesim`: run the embedded Kubernetes API server until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// An embedded Kubernetes API server for the demo, the benchmark and tests. Everything lives in
/// memory; the kubeconfig is written once the server accepts connections.
#[derive(Parser, Debug)]
#[command(name = "kubesim", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port), e.g. 127.0.0.1:6443.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the kubeconfig (https server URL with the cluster CA as
    /// certificate-authority-data, admin bearer token, one context selected, namespace
    /// default). Written atomically once the server accepts requests; the CA is also written
    /// beside it as `<kubeconfig>.ca.crt`.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Directory of the binaries pods may run (the kubelet resolves container commands there).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Directory of OCI image archives (*.tar, as `make images` writes them): a pod whose
    /// image matches one (name and tag, or digest) runs from the image's unpacked root, with
    /// its entrypoint and user; other images keep --bin-dir and the host.
    #[arg(long)]
    image_dir: Option<PathBuf>,
    /// Where images are unpacked, once per manifest digest (default: .images in the pods'
    /// directory). May be shared by several kubesim processes.
    #[arg(long)]
    image_cache: Option<PathBuf>,
    /// Directory for the pods' working directories (one per pod, removed with the pod);
    /// default: a fresh temporary directory removed when kubesim stops.
    #[arg(long)]
    pod_dir: Option<PathBuf>,
    /// Seed of the fault injector's PRNG (the same seed replays the same mix of faults).
    #[arg(long, default_value_t = 0)]
    faults_seed: u64,
    /// Share (0-1) of pods' requests answered 500, 503 or 429 (503 and 429 with Retry-After).
    #[arg(long, default_value_t = 0.0)]
    faults_error_rate: f64,
    /// Share (0-1) of pods' optimistic-concurrency writes answered 409 Conflict.
    #[arg(long, default_value_t = 0.0)]
    faults_conflict_rate: f64,
    /// Latency added to pods' requests, MIN-MAX milliseconds (e.g. 5-50).
    #[arg(long)]
    faults_latency_ms: Option<kubesim::faults::Latency>,
    /// Share (0-1) of pods' watches cut mid-way, and of their watch resumes answered 410 Expired.
    #[arg(long, default_value_t = 0.0)]
    faults_watch_cut_rate: f64,
    /// Apply the faults to every client, the admin included (default: pods' ServiceAccounts).
    #[arg(long)]
    faults_all_clients: bool,
    /// The ServiceAccount token issuer, as `/.well-known/openid-configuration` names it
    /// (and the default audience of TokenRequests).
    #[arg(long, default_value = kubesim::cluster::DEFAULT_ISSUER)]
    service_account_issuer: String,
    /// Longest lifetime of ServiceAccount tokens, in seconds (TokenRequests and the tokens the
    /// kubelet gives pods and rotates; below kube-apiserver's 600 s minimum allowed), to see
    /// tokens expire and rotate quickly. Default: an hour, as kube-apiserver and the kubelet.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    token_lifetime: Option<u64>,
    /// Serve plain http instead of https, for debugging (no cluster CA; pods then find the
    /// API through a KUBECONFIG variable instead of the in-cluster files).
    #[arg(long)]
    insecure_http: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let faults = kubesim::faults::FaultConfig {
        seed: args.faults_seed,
        error_rate: args.faults_error_rate,
        conflict_rate: args.faults_conflict_rate,
        latency_ms: args.faults_latency_ms,
        watch_cut_rate: args.faults_watch_cut_rate,
        targets: if args.faults_all_clients {
            kubesim::faults::Targets::All
        } else {
            kubesim::faults::Targets::ServiceAccounts
        },
        ..Default::default()
    };
    faults.validate().map_err(anyhow::Error::msg)?;
    let mut ks = kubesim::Kubesim::start(kubesim::Options {
        listen: args.listen,
        kubeconfig: Some(args.kubeconfig),
        bin_dir: args.bin_dir,
        image_dir: args.image_dir,
        image_cache: args.image_cache,
        pod_dir: args.pod_dir,
        faults,
        service_account_issuer: Some(args.service_account_issuer),
        token_lifetime: args.token_lifetime.map(std::time::Duration::from_secs),
        insecure_http: args.insecure_http,
    })
    .await?;
    tracing::info!(url = %ks.url(), kubeconfig = %ks.kubeconfig_path().display(), "kubesim is serving");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    ks.shutdown();
    Ok(())
}
