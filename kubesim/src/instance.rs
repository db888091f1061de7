//! A running kubesim: the API server (https with its own cluster CA, or plain http on
//! request) on a loopback port, its kubeconfig and a client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::controllers::{self, ControllerConfig, Controllers};
use crate::faults::{FaultConfig, Faults};
use crate::kubelet::{Kubelet, KubeletConfig};

/// How to start kubesim.
#[derive(Clone, Debug)]
pub struct Options {
    /// Listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where to write the kubeconfig; `None`: a file in a private temporary directory.
    pub kubeconfig: Option<PathBuf>,
    /// Directory of the binaries the kubelet may run for container images.
    pub bin_dir: Option<PathBuf>,
    /// Directory of OCI image archives (`*.tar`) the kubelet runs containers from; images
    /// without an archive fall back to `bin_dir` and the host (see [`crate::kubelet::oci`]).
    pub image_dir: Option<PathBuf>,
    /// Where the images are unpacked; `None`: `.images` in the pods' directory.
    pub image_cache: Option<PathBuf>,
    /// Where the kubelet puts the pods' working directories; `None`: a fresh temporary
    /// directory, removed on shutdown.
    pub pod_dir: Option<PathBuf>,
    /// Faults injected into the requests of pods (none by default; see [`crate::faults`]).
    pub faults: FaultConfig,
    /// The ServiceAccount token issuer (`issuer` of `/.well-known/openid-configuration`);
    /// `None`: [`crate::cluster::DEFAULT_ISSUER`].
    pub service_account_issuer: Option<String>,
    /// The longest lifetime of a ServiceAccount token (pods' rotated tokens, TokenRequests);
    /// shorter than kube-apiserver's 600 s minimum allowed. `None`: kube-apiserver's rules.
    pub token_lifetime: Option<std::time::Duration>,
    /// Serve plain http instead of https (for debugging: a packet capture, `curl` without
    /// `--cacert`). No cluster CA then: kubeconfigs carry none, pods get no `ca.crt` and so
    /// keep finding the API through `KUBECONFIG`.
    pub insecure_http: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig: None,
            bin_dir: None,
            image_dir: None,
            image_cache: None,
            pod_dir: None,
            faults: FaultConfig::default(),
            service_account_issuer: None,
            token_lifetime: None,
            insecure_http: false,
        }
    }
}

/// A running kubesim. Dropping it stops the server.
pub struct Kubesim {
    cluster: Arc<Cluster>,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    /// The cluster CA and serving certificate; `None` with `insecure_http`.
    tls: Option<crate::tls::ClusterTls>,
    options: Options,
    /// Holds the kubeconfig (when not given) and the private HOME of client tools.
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    /// Runs every pod as local processes; stopped (all processes killed) on shutdown.
    kubelet: Arc<Kubelet>,
    controllers: Option<Controllers>,
    faults: Arc<Faults>,
}

impl std::fmt::Debug for Kubesim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubesim")
            .field("addr", &self.addr)
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

impl Kubesim {
    /// Start the server and write the kubeconfig once it accepts connections.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        let cluster = Cluster::new();
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .with_context(|| {
                format!(
                    "binding {} failed; pick a free port or use port 0",
                    options.listen
                )
            })?;
        let addr = listener
            .local_addr()
            .context("reading the listen address failed")?;
        let dir = tempfile::Builder::new()
            .prefix("kubesim-")
            .tempdir()
            .context("creating a temporary directory failed")?;
        let kubeconfig = options
            .kubeconfig
            .clone()
            .unwrap_or_else(|| dir.path().join("kubeconfig"));
        let tls = if options.insecure_http {
            None
        } else {
            Some(crate::tls::ClusterTls::generate(addr)?)
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{addr}");
        cluster.set_root_ca(tls.as_ref().map(|t| t.ca_pem().to_string()));
        cluster.bootstrap_api_service(addr.port());
        cluster.set_token_lifetime(options.token_lifetime);
        cluster.set_issuer(crate::cluster::Issuer {
            url: options
                .service_account_issuer
                .clone()
                .unwrap_or_else(|| crate::cluster::DEFAULT_ISSUER.to_string()),
            jwks_uri: format!("{url}/openid/v1/jwks"),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let faults = Faults::new(options.faults.clone());
        let app = crate::faults::wrap(
            crate::server::router(cluster.clone()),
            faults.clone(),
            cluster.clone(),
        );
        let server = {
            let tls = tls.clone();
            tokio::spawn(async move {
                let shutdown = async {
                    let _ = stopped.await;
                };
                let served = match tls {
                    Some(tls) => {
                        axum::serve(tls.listen(listener), app)
                            .with_graceful_shutdown(shutdown)
                            .await
                    }
                    None => {
                        axum::serve(listener, app)
                            .with_graceful_shutdown(shutdown)
                            .await
                    }
                };
                if let Err(e) = served {
                    tracing::error!(error = %e, "the API server stopped");
                }
            })
        };
        let ca_pem = tls.as_ref().map(|t| t.ca_pem().to_string());
        if let Some(pem) = &ca_pem {
            // Beside the kubeconfig, for tools that take a CA file (`curl --cacert`).
            let ca_file = ca_path(&kubeconfig);
            write_atomic(&ca_file, pem, 0o644)?;
        }
        // The listener is bound and served: connections are accepted from here on.
        write_atomic(
            &kubeconfig,
            &kubeconfig_yaml(&url, cluster.admin_token(), ca_pem.as_deref()),
            // It holds the admin token.
            0o600,
        )?;
        std::fs::create_dir_all(dir.path().join("home"))
            .context("creating the tools home failed")?;
        let kubelet = Kubelet::start(
            cluster.clone(),
            KubeletConfig {
                bin_dir: options.bin_dir.clone(),
                image_dir: options.image_dir.clone(),
                image_cache: options.image_cache.clone(),
                root_dir: options.pod_dir.clone(),
                server_url: Some(url.clone()),
                ca_pem: ca_pem.clone(),
                ..Default::default()
            },
        )
        .context("starting the kubelet failed")?;
        let controllers = Some(controllers::start(
            cluster.clone(),
            ControllerConfig::default(),
        ));
        Ok(Self {
            cluster,
            addr,
            kubeconfig,
            tls,
            options,
            dir,
            stop: Some(stop),
            server,
            kubelet,
            controllers,
            faults,
        })
    }

    /// `https://127.0.0.1:PORT` (`http://` with `insecure_http`).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The cluster CA certificate (PEM); `None` with `insecure_http`.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca_pem())
    }

    /// The cluster CA as a file (`ca.crt` beside the kubeconfig); `None` with `insecure_http`.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|_| ca_path(&self.kubeconfig))
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The kubeconfig file (admin user, one context, namespace `default`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The options it was started with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// A private HOME for client tools (their discovery caches stay per instance).
    pub fn tools_home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The in-process API.
    pub fn cluster(&self) -> Arc<Cluster> {
        self.cluster.clone()
    }

    /// A `kube::Client` authenticated as the admin.
    pub fn client(&self) -> kube::Client {
        self.client_with_token(self.cluster.admin_token())
    }

    /// A `kube::Client` with another bearer token (e.g. a ServiceAccount's).
    pub fn client_with_token(&self, token: &str) -> kube::Client {
        let mut config = kube::Config::new(self.url().parse().expect("valid url"));
        config.default_namespace = "default".into();
        config.auth_info.token = Some(token.to_string().into());
        if let Some(tls) = &self.tls {
            config.root_cert = Some(vec![tls.ca_der().to_vec()]);
        }
        kube::Client::try_from(config).expect("a client for the loopback server")
    }

    /// Stop the server (also done on drop).
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.abort();
        self.controllers.take();
        self.kubelet.shutdown();
    }

    /// The fault injector (its configuration can change while running).
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// The kubelet (pod processes, logs).
    pub fn kubelet(&self) -> &Arc<Kubelet> {
        &self.kubelet
    }
}

impl Drop for Kubesim {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The kubeconfig text for the server at `url` (trusting `ca_pem` when given) with the admin
/// `token`.
pub fn kubeconfig_yaml(url: &str, token: &str, ca_pem: Option<&str>) -> String {
    let common = crate::kubelet::kubeconfig_yaml(url, ca_pem, "admin", token, "default");
    format!("{common}preferences: {{}}\n")
}

/// Where the cluster CA is written: `ca.crt` beside the kubeconfig `kubeconfig`.
fn ca_path(kubeconfig: &Path) -> PathBuf {
    let name = kubeconfig
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("kubeconfig");
    kubeconfig.with_file_name(format!("{name}.ca.crt"))
}

/// Write `text` to `path` atomically (a temporary file renamed into place) with `mode`.
fn write_atomic(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {} failed", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    std::fs::write(&tmp, text).with_context(|| format!("writing {} failed", tmp.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {} failed", tmp.display()))?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("moving {} into place failed", path.display()))?;
    Ok(())
}
