//! One embedded cluster: a `kubesim` process running the built `sc-agent` and `sc-job`
//! binaries as pods, the chart installed with the pinned helm, and the clients the benchmarks
//! use against it.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// The release name and namespace the chart is installed with.
pub const RELEASE: &str = "sc-extension";
/// The release namespace.
pub const RELEASE_NS: &str = "sc-system";

/// Where the binaries and tools are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The release build output (`kubesim`, `sc-agent`, `sc-job`).
    pub bin_dir: PathBuf,
    /// The pinned tools (`kubectl-1.37`, `helm3`).
    pub tools_dir: PathBuf,
    /// The chart directory.
    pub chart: PathBuf,
}

/// A running cluster with the chart installed.
pub struct Cluster {
    dir: tempfile::TempDir,
    kubesim: Child,
    /// The kubeconfig of the admin.
    pub kubeconfig: PathBuf,
    /// The admin client.
    pub client: kube::Client,
    /// The agent's metrics port.
    pub agent_port: u16,
    paths: Paths,
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port failed")?;
    Ok(l.local_addr()?.port())
}

/// A GET of an API path with `client`; the body when the status is 200.
pub async fn api_get(client: &kube::Client, path: &str) -> Result<String> {
    let req = http::Request::get(path).body(Vec::new())?;
    client
        .request_text(req)
        .await
        .with_context(|| format!("GET {path} failed"))
}

/// A plain HTTP/1.0 GET of `path` on `host:port` (the agent's metrics and health); the body
/// when the status is 200.
pub async fn http_get(addr: &str, path: &str) -> Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr} failed"))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET {addr}{path}: no HTTP answer"))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        bail!("GET {addr}{path} answered {status}");
    }
    Ok(body.to_string())
}

impl Cluster {
    /// Starts kubesim, creates the application namespace `apps` and installs the chart with
    /// no connection (helm 3), then waits for the agent to be ready.
    pub async fn start(paths: &Paths) -> Result<Cluster> {
        Cluster::start_with(paths, &[]).await
    }

    /// [`Cluster::start`] with chart values of its own (`--set` arguments).
    pub async fn start_with(paths: &Paths, sets: &[&str]) -> Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("sc-bench-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("home"))?;
        let kubeconfig = dir.path().join("kubeconfig");
        let log = std::fs::File::create(dir.path().join("kubesim.log"))?;
        let kubesim_bin = paths.bin_dir.join("kubesim");
        let kubesim = Command::new(&kubesim_bin)
            .arg("--listen=127.0.0.1:0")
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--bin-dir={}", paths.bin_dir.display()))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} failed", kubesim_bin.display()))?;
        let end = Instant::now() + Duration::from_secs(30);
        while !kubeconfig.is_file() {
            if Instant::now() > end {
                bail!("kubesim wrote no kubeconfig within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        let client = kube::Client::try_from(config)?;
        let c = Cluster {
            dir,
            kubesim,
            kubeconfig,
            client,
            agent_port: free_port()?,
            paths: paths.clone(),
        };
        c.create_namespace("apps").await?;
        let port = format!("agent.port={}", c.agent_port);
        let chart = c.chart();
        let mut args = vec![
            "install",
            RELEASE,
            &chart,
            "-n",
            RELEASE_NS,
            "--create-namespace",
            "--set",
            &port,
            "--timeout",
            "5m",
        ];
        for s in sets {
            args.extend(["--set", s]);
        }
        c.helm(&args).await?;
        c.wait_agent_ready().await?;
        Ok(c)
    }

    fn chart(&self) -> String {
        self.paths.chart.display().to_string()
    }

    /// The `host:port` of the agent's metrics.
    pub fn agent_addr(&self) -> String {
        format!("127.0.0.1:{}", self.agent_port)
    }

    /// A scratch directory of this cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a namespace.
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        use k8s_openapi::api::core::v1::Namespace;
        let api: kube::Api<Namespace> = kube::Api::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        }))?;
        api.create(&Default::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name} failed"))?;
        Ok(())
    }

    /// A command for a pinned tool against this cluster, with a private HOME.
    pub fn tool(&self, name: &str) -> Command {
        let home = self.dir.path().join("home");
        let mut cmd = Command::new(self.paths.tools_dir.join(name));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", home.join(".cache/helm"))
            .env("HELM_CONFIG_HOME", home.join(".config/helm"))
            .env("HELM_DATA_HOME", home.join(".local/share/helm"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a pinned tool; its wall time, or an error with its output.
    pub async fn run_tool(&self, name: &str, args: &[&str]) -> Result<Duration> {
        let start = Instant::now();
        let out = self
            .tool(name)
            .args(args)
            .output()
            .await
            .with_context(|| format!("starting {name} failed (run `make tools`)"))?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "`{name} {}` failed: {}\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(took)
    }

    /// helm 3 with `args`.
    pub async fn helm(&self, args: &[&str]) -> Result<Duration> {
        self.run_tool("helm3", args).await
    }

    /// `helm upgrade` of the release with a values file; its wall time (the chart's hook
    /// waits until every connection is applied).
    pub async fn helm_upgrade(&self, values: &Path) -> Result<Duration> {
        let port = format!("agent.port={}", self.agent_port);
        self.helm(&[
            "upgrade",
            RELEASE,
            &self.chart(),
            "-n",
            RELEASE_NS,
            "--set",
            &port,
            "--set",
            "waitForResult.timeoutSeconds=1800",
            "--timeout",
            "30m",
            "-f",
            &values.display().to_string(),
        ])
        .await
    }

    /// Waits until the agent answers `/readyz`.
    pub async fn wait_agent_ready(&self) -> Result<()> {
        let end = Instant::now() + Duration::from_secs(120);
        loop {
            if http_get(&self.agent_addr(), "/readyz").await.is_ok() {
                return Ok(());
            }
            if Instant::now() > end {
                bail!("the agent did not become ready within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The agent's metrics as `name{labels} -> value`.
    pub async fn agent_metrics(&self) -> Result<Vec<(String, f64)>> {
        let text = http_get(&self.agent_addr(), "/metrics").await?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect())
    }

    /// One agent metric (0 when absent).
    pub async fn agent_metric(&self, key: &str) -> Result<f64> {
        Ok(self
            .agent_metrics()
            .await?
            .into_iter()
            .find(|(k, _)| k == key)
            .map_or(0.0, |(_, v)| v))
    }

    /// Connections the agent reports Ready.
    pub async fn ready_connections(&self) -> Result<u64> {
        Ok(self
            .agent_metric("sc_agent_connections{phase=\"Ready\"}")
            .await? as u64)
    }

    /// kubesim's record of the requests of non-admin users (the agent and sc-job).
    pub async fn audit(&self) -> Result<Vec<Value>> {
        let body = self.api_get("/kubesim/audit").await?;
        let v: Value = serde_json::from_str(&body)?;
        Ok(v["items"].as_array().cloned().unwrap_or_default())
    }

    /// A GET of an API path as the admin, parsed.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let body = self.api_get(path).await?;
        Ok(serde_json::from_str(&body)?)
    }

    /// A GET of an API path as the admin (https with the cluster CA, on the client's
    /// kept-alive connections); the body.
    pub async fn api_get(&self, path: &str) -> Result<String> {
        api_get(&self.client, path).await
    }

    /// The admin client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The pid of the running container of the first pod matching `selector` in the release
    /// namespace (kubesim's container IDs are `process://PID`).
    pub async fn pod_pid(&self, selector: &str) -> Result<Option<u32>> {
        let pods = self
            .get_json(&format!(
                "/api/v1/namespaces/{RELEASE_NS}/pods?labelSelector={selector}"
            ))
            .await?;
        Ok(pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|p| {
                let st = &p["status"]["containerStatuses"][0];
                st["state"]["running"].as_object()?;
                st["containerID"]
                    .as_str()?
                    .strip_prefix("process://")?
                    .parse()
                    .ok()
            }))
    }

    /// The process id of kubesim.
    pub fn kubesim_pid(&self) -> Option<u32> {
        self.kubesim.id()
    }

    /// Stops kubesim (and with it every pod process).
    pub async fn stop(mut self) {
        if let Some(pid) = self.kubesim.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
            let _ = tokio::time::timeout(Duration::from_secs(20), self.kubesim.wait()).await;
        }
        let _ = self.kubesim.kill().await;
    }
}
