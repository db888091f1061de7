//! The harness of the end-to-end scenarios of sc-extension.
//!
//! Each scenario gets a [`Cluster`]: its own `kubesim` binary (the embedded API server with
//! its controllers and process kubelet, running the `sc-agent` and `sc-job` images from the
//! build output), or, when `SC_E2E_KUBECONFIG` names a kubeconfig, that cluster with
//! namespaces unique to the scenario. The chart is installed with the real `helm3` / `helm4`
//! and checked with the real `kubectl` 1.37 from the pinned tools (`make tools`).
//!
//! Every check compares the cluster with what `sc-model` renders for the same values, and
//! every scenario ends with [`Cluster::leak_scan`].
//!
//! What only a cluster the harness starts itself can give (kubesim's fault injection, pod
//! kills and request log, pods run as local processes from the image archives, fixtures in
//! fixed namespaces) is decided in one place: [`embedded`]. A scenario that needs it calls
//! [`require_embedded!`] (it is skipped, saying why, on the cluster of `SC_E2E_KUBECONFIG`),
//! or checks the portable part and notes the rest with [`skipped`].

pub mod chaos;
pub mod corpus;
pub mod fixtures;

use base64::Engine as _;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Helm release name every scenario installs.
pub const RELEASE: &str = "sc-extension";
/// The name of the materializing Job.
pub const JOB: &str = "sc-job";
/// The label every object sc-extension materializes carries.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=sc-extension";
/// How long a helm install or upgrade may take (its hooks included).
const HELM_TIMEOUT: &str = "4m";
/// How long any one client command may run before the scenario fails.
const COMMAND_DEADLINE: Duration = Duration::from_secs(300);
/// How long a scenario waits for an asynchronous outcome (a Job deleting itself, a pod log).
pub const SETTLE: Duration = Duration::from_secs(120);

/// The workspace root (where `chart/`, `scripts/` and `examples/` are).
pub fn workspace_root() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// The chart the scenarios install: `$SC_E2E_CHART` (a chart directory or packaged `.tgz`,
/// e.g. a released version), else the workspace's `chart/`.
pub fn chart_dir() -> PathBuf {
    match std::env::var_os("SC_E2E_CHART") {
        Some(c) if !c.is_empty() => PathBuf::from(c),
        _ => workspace_root().join("chart"),
    }
}

/// The directory of the built binaries (`target/debug`), found from the test executable
/// (`target/debug/deps/<test>-<hash>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the test executable is unknown");
    let deps = exe.parent().expect("the test executable has no directory");
    let dir = deps
        .parent()
        .expect("the test executable is not under target/<profile>/deps");
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

/// A built binary of the workspace (`kubesim`, `sc-agent`, `sc-job`); panics with what to do
/// when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(p.is_file(), "{} is missing: run `make build`", p.display());
    p
}

/// The pinned tools: `$SC_TOOLS_DIR`, else `<workspace>/.tools`.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("SC_TOOLS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_root().join(".tools"),
    }
}

/// A pinned tool (`kubectl-1.37`, `helm3`, `helm4`, `venv/bin/python`); panics with what to do
/// when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let p = if name == "python" {
        tools_dir().join("venv/bin/python")
    } else {
        tools_dir().join("bin").join(name)
    };
    assert!(p.is_file(), "{} is missing: run `make tools`", p.display());
    p
}

/// Whether the scenarios run on clusters this harness starts itself (a private kubesim each),
/// not on the cluster of `SC_E2E_KUBECONFIG` (`make e2e`), whatever that cluster is.
pub fn embedded() -> bool {
    std::env::var_os("SC_E2E_KUBECONFIG").is_none_or(|v| v.is_empty())
}

/// Records that test binary `test` skipped a check, or all of itself, because the cluster is
/// not one the harness started: printed (with the test's name), and appended to the file
/// `$SC_E2E_SKIP_LOG` when set (`make e2e` lists it at the end).
pub fn skipped(test: &str, reason: &str) {
    let test = match std::thread::current().name() {
        Some(name) if name != "main" => format!("{test} {name}"),
        _ => test.to_string(),
    };
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os("SC_E2E_SKIP_LOG").filter(|p| !p.is_empty()) {
        let line = format!("{test}: {reason}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "recording the skip in {} failed: {e}",
                PathBuf::from(path).display()
            );
        }
    }
}

/// Returns from the calling test, printing `$reason` (see [`skipped`]), unless the cluster is
/// one the harness starts itself ([`embedded`]).
#[macro_export]
macro_rules! require_embedded {
    ($reason:expr) => {
        if !$crate::embedded() {
            $crate::skipped(
                env!("CARGO_CRATE_NAME"),
                &format!(
                    "skipped, it needs a cluster the tests start themselves: {}",
                    $reason
                ),
            );
            return;
        }
    };
}

/// The directory of the image archives `make images` writes (`dist/images`).
pub fn images_dir() -> PathBuf {
    workspace_root().join("dist/images")
}

/// The archive of image `name` (`sc-agent`, `sc-job`) in [`images_dir`]; panics with what to
/// do when it is missing.
pub fn image_archive(name: &str) -> PathBuf {
    let p = images_dir().join(format!("{name}.tar"));
    assert!(
        p.is_file(),
        "{} is missing: run `make images` first (`make test` does)",
        p.display()
    );
    p
}

/// The manifest digest (`sha256:...`) of the single image of archive `name` (its
/// `index.json`, read with tar).
pub fn image_digest(name: &str) -> String {
    let archive = image_archive(name);
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(&archive)
        .arg("index.json")
        .output()
        .expect("running tar");
    assert!(
        out.status.success(),
        "tar -xOf {} index.json failed",
        archive.display()
    );
    let index: Value = serde_json::from_slice(&out.stdout).expect("index.json is JSON");
    index["manifests"][0]["digest"]
        .as_str()
        .expect("a manifest digest")
        .to_string()
}

/// The Helm major version a scenario runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helm {
    /// helm 3.18.
    V3,
    /// helm 4.1.
    V4,
}

impl Helm {
    /// The pinned binary's name.
    pub fn tool(self) -> &'static str {
        match self {
            Helm::V3 => "helm3",
            Helm::V4 => "helm4",
        }
    }
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Out {
    /// The command line, for messages.
    pub what: String,
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Standard output, or a panic with both streams when it did not exit 0.
    pub fn ok(&self) -> &str {
        assert!(
            self.success(),
            "`{}` failed with exit code {}:\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.code,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Standard output then standard error.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to completion (feeding `stdin` when given), failing the scenario after
/// [`COMMAND_DEADLINE`].
pub fn run_command(mut cmd: Command, what: &str, stdin: Option<&str>) -> Out {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting `{what}` failed: {e}"));
    if let Some(input) = stdin {
        let mut w = child.stdin.take().expect("piped stdin");
        w.write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("writing the input of `{what}` failed: {e}"));
    }
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let err = reader(Box::new(child.stderr.take().expect("piped stderr")));
    let end = Instant::now() + COMMAND_DEADLINE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{what}` did not finish within {COMMAND_DEADLINE:?}");
            }
            Err(e) => panic!("waiting for `{what}` failed: {e}"),
        }
    };
    Out {
        what: what.to_string(),
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Polls `condition` until it returns `Some` or `deadline` passes, then fails naming `what`.
pub fn wait_until<T>(
    deadline: Duration,
    what: &str,
    mut condition: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = condition() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `state` until it returns `Ok` or `deadline` passes, then fails naming `what` and the
/// last state seen (the `Err` text).
pub fn wait_for_state<T>(
    deadline: Duration,
    what: &str,
    mut state: impl FnMut() -> Result<T, String>,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        match state() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= end => {
                panic!("timed out after {deadline:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// A random string usable as a secret value in a scenario (long enough that finding it
/// anywhere is never a coincidence).
pub fn secret_value(label: &str) -> String {
    format!("{label}-{}", uuid::Uuid::new_v4().simple())
}

/// The cluster of one scenario.
pub struct Cluster {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    kubesim: Option<Child>,
    /// Suffix of every namespace on a shared cluster; `None` on a private kubesim.
    suffix: Option<String>,
    /// The agent's port on a private kubesim, where every pod shares the host's network.
    agent_port: Option<u16>,
    /// Where a private kubesim started by [`Cluster::start_from_images`] unpacks the images.
    /// Removed after kubesim stops (fields drop after [`Drop::drop`]).
    image_cache: Option<tempfile::TempDir>,
    namespaces: RefCell<Vec<String>>,
    secrets: RefCell<Vec<String>>,
    /// Every helm and `sc-agent` output so far: (the command and its first argument, text).
    outputs: RefCell<Vec<(String, String)>>,
}

/// Where [`Cluster::leak_scan`] looks for secret values: a name and how to read the surface
/// (each text with where it comes from). A new surface is one line here.
type LeakSurface = (&'static str, fn(&Cluster) -> Vec<(String, String)>);

/// Every surface of the leak scan.
const LEAK_SURFACES: &[LeakSurface] = &[
    ("objects", Cluster::leak_objects),
    ("drift events", Cluster::leak_drift_events),
    ("logs", Cluster::leak_logs),
    ("commands", Cluster::leak_commands),
    ("notes", Cluster::leak_notes),
    ("federated credentials", Cluster::leak_federated),
    ("images", Cluster::leak_images),
    ("completion", Cluster::leak_completion),
];

/// A TCP port free on every address right now, for the agent of a kubesim cluster (its pods
/// share the host's ports). Taken below Linux's ephemeral range (32768-60999): a port the
/// kernel hands out for `bind(0)` is also what it gives the next outgoing connection, and
/// with kubesim's many client connections one took the agent's port before it listened.
/// Tests run in several processes at once, so the start is drawn from the clock and the
/// process id, and a port is given only if it can be bound now.
fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let mut x = nanos ^ std::process::id().rotate_left(16);
    for _ in 0..SPAN {
        // A step coprime with SPAN visits every port of the span once.
        x = x.wrapping_add(7_919);
        let port = (LOW + x % SPAN) as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}-{}", LOW + SPAN - 1)
}

impl Cluster {
    /// A private kubesim, or the cluster of `SC_E2E_KUBECONFIG`.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// [`Cluster::start`], with the release's pods run from the shipped image archives
    /// ([`images_dir`], as `make images` writes them) on a private kubesim (`--image-dir`),
    /// unpacked into the scenario's directory ([`Cluster::image_root`]). Panics with what to do
    /// when an archive is missing. The cluster of `SC_E2E_KUBECONFIG` pulls its images itself.
    pub fn start_from_images() -> Cluster {
        if !embedded() {
            return Cluster::start();
        }
        for name in ["sc-agent", "sc-job"] {
            image_archive(name);
        }
        let cache = tempfile::Builder::new()
            .prefix("sc-e2e-images-")
            .tempdir()
            .expect("creating the image cache failed");
        let mut c = Cluster::start_with(&[
            format!("--image-dir={}", images_dir().display()),
            format!("--image-cache={}", cache.path().display()),
        ]);
        c.image_cache = Some(cache);
        c
    }

    /// Where a private kubesim of [`Cluster::start_from_images`] unpacked the image with
    /// manifest `digest` (it exists once a pod ran from it); `None` on other clusters.
    pub fn image_root(&self, digest: &str) -> Option<PathBuf> {
        self.image_cache.as_ref().map(|cache| {
            cache
                .path()
                .join("sha256")
                .join(digest.trim_start_matches("sha256:"))
        })
    }

    /// Asserts the process `pid` of a pod on a private kubesim has what a pod on a real cluster
    /// has to reach the API: `KUBERNETES_SERVICE_HOST` and `_PORT`, no `KUBECONFIG`, and the
    /// ServiceAccount's `token`, `ca.crt` and `namespace` at
    /// `/var/run/secrets/kubernetes.io/serviceaccount` as the process sees it (its own mount
    /// namespace, read through `/proc/PID/root`), not on the host. kubesim mounts them only as
    /// root; otherwise the process must have `KUBECONFIG` instead.
    pub fn assert_in_cluster_configuration(&self, pid: i32, name: &str) {
        let environ = std::fs::read(format!("/proc/{pid}/environ"))
            .unwrap_or_else(|e| panic!("the environment of process {pid} ({name}): {e}"));
        let vars: Vec<String> = environ
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let has = |prefix: &str| vars.iter().any(|v| v.starts_with(prefix));
        assert!(
            has("KUBERNETES_SERVICE_HOST=") && has("KUBERNETES_SERVICE_PORT="),
            "{name} has no KUBERNETES_SERVICE_HOST/_PORT"
        );
        let root = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
        if !root {
            assert!(
                has("KUBECONFIG="),
                "{name}: no in-cluster files and no KUBECONFIG"
            );
            return;
        }
        assert!(!has("KUBECONFIG="), "{name} has a KUBECONFIG");
        // `/var/run` is often a symlink to `/run`, which would resolve in this process's
        // namespace: resolve it first (the process runs on the host's file system).
        let run = std::fs::canonicalize("/var/run").unwrap_or_else(|_| "/var/run".into());
        let dir = format!(
            "/proc/{pid}/root{}/secrets/kubernetes.io/serviceaccount",
            run.display()
        );
        for file in ["token", "ca.crt", "namespace"] {
            let text = std::fs::read_to_string(format!("{dir}/{file}"))
                .unwrap_or_else(|e| panic!("{name} has no {file} in {dir}: {e}"));
            assert!(!text.is_empty(), "{name}: {file} is empty");
            assert!(
                std::fs::read_to_string(format!(
                    "{}/secrets/kubernetes.io/serviceaccount/{file}",
                    run.display()
                ))
                .map_or(true, |host| host != text),
                "{name}'s {file} is visible on the host"
            );
        }
    }

    /// On a cluster of [`Cluster::start_from_images`], asserts the first container of `pod` (its
    /// JSON) runs image `name` from its archive: its `imageID` names the archive's manifest
    /// digest and, while it runs, its process executable is `/usr/local/bin/<name>` of the
    /// unpacked image. Returns the process id when the container runs.
    pub fn assert_runs_from_image(&self, pod: &Value, name: &str) -> Option<i32> {
        let digest = image_digest(name);
        let root = self
            .image_root(&digest)
            .expect("the cluster was not started from the images");
        let status = &pod["status"]["containerStatuses"][0];
        assert!(
            status["imageID"]
                .as_str()
                .is_some_and(|id| id.ends_with(&digest)),
            "the container of pod {} does not run {name} {digest}: {status}",
            pod["metadata"]["name"]
        );
        assert!(
            root.join("usr/local/bin").join(name).is_file(),
            "the {name} image is not unpacked in {}",
            root.display()
        );
        let pid: i32 = status["containerID"]
            .as_str()?
            .strip_prefix("process://")?
            .parse()
            .ok()?;
        status["state"]["running"].as_object()?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .unwrap_or_else(|e| panic!("the executable of process {pid} ({name}): {e}"));
        assert_eq!(
            exe,
            root.join("usr/local/bin").join(name),
            "the executable of {name}"
        );
        Some(pid)
    }

    /// [`Cluster::start`], with `kubesim_args` added to a private kubesim's command line
    /// (ignored on the cluster of `SC_E2E_KUBECONFIG`).
    pub fn start_with(kubesim_args: &[String]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("sc-e2e-")
            .tempdir()
            .expect("creating a temporary directory failed");
        std::fs::create_dir_all(dir.path().join("home")).expect("creating the tools' HOME failed");
        match std::env::var_os("SC_E2E_KUBECONFIG").filter(|v| !v.is_empty()) {
            Some(kc) => {
                let kubeconfig = PathBuf::from(kc);
                assert!(
                    kubeconfig.is_file(),
                    "SC_E2E_KUBECONFIG names {}, which is not a file",
                    kubeconfig.display()
                );
                let suffix = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
                Cluster::new(dir, kubeconfig, None, Some(suffix))
            }
            None => {
                let kubesim = binary("kubesim");
                for b in ["sc-agent", "sc-job"] {
                    binary(b);
                }
                let kubeconfig = dir.path().join("kubeconfig");
                let log = std::fs::File::create(dir.path().join("kubesim.log"))
                    .expect("creating the kubesim log failed");
                let child = Command::new(&kubesim)
                    .arg("--listen=127.0.0.1:0")
                    .arg(format!("--kubeconfig={}", kubeconfig.display()))
                    .arg(format!("--bin-dir={}", bin_dir().display()))
                    .args(kubesim_args)
                    .env("RUST_LOG", "warn")
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("duplicating the log file failed"))
                    .stderr(log)
                    .spawn()
                    .unwrap_or_else(|e| panic!("starting {} failed: {e}", kubesim.display()));
                let mut c = Cluster::new(dir, kubeconfig.clone(), Some(child), None);
                wait_until(
                    Duration::from_secs(30),
                    "kubesim to write its kubeconfig",
                    || {
                        if let Some(child) = c.kubesim.as_mut()
                            && let Ok(Some(status)) = child.try_wait()
                        {
                            panic!("kubesim exited with {status}:\n{}", c.kubesim_log());
                        }
                        kubeconfig.is_file().then_some(())
                    },
                );
                c
            }
        }
    }

    fn new(
        dir: tempfile::TempDir,
        kubeconfig: PathBuf,
        kubesim: Option<Child>,
        suffix: Option<String>,
    ) -> Cluster {
        Cluster {
            dir,
            kubeconfig,
            agent_port: kubesim.is_some().then(free_port),
            kubesim,
            suffix,
            image_cache: None,
            namespaces: RefCell::new(Vec::new()),
            secrets: RefCell::new(Vec::new()),
            outputs: RefCell::new(Vec::new()),
        }
    }

    /// Whether this is a shared cluster from `SC_E2E_KUBECONFIG`.
    pub fn is_external(&self) -> bool {
        self.suffix.is_some()
    }

    /// Whether this is a private kubesim the harness started (see [`embedded`]).
    pub fn is_embedded(&self) -> bool {
        self.kubesim.is_some()
    }

    /// The kubeconfig of the cluster.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A scratch directory of this scenario.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn kubesim_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kubesim.log")).unwrap_or_default()
    }

    /// The namespace a scenario calls `logical`: itself on a private kubesim, made unique on
    /// a shared cluster.
    pub fn ns(&self, logical: &str) -> String {
        match &self.suffix {
            Some(s) => format!("{logical}-{s}"),
            None => logical.to_string(),
        }
    }

    /// The release namespace (`sc-system` on a private kubesim).
    pub fn release_ns(&self) -> String {
        self.ns("sc-system")
    }

    /// Creates the namespace `logical` (see [`Cluster::ns`]); returns its real name.
    pub fn create_namespace(&self, logical: &str) -> String {
        let ns = self.ns(logical);
        self.kubectl(&["create", "namespace", &ns]).ok();
        self.namespaces.borrow_mut().push(ns.clone());
        ns
    }

    /// Remembers a secret value the leak scan looks for.
    pub fn remember_secret(&self, value: &str) {
        self.secrets.borrow_mut().push(value.to_string());
    }

    /// A command for a pinned tool against this cluster, with a private HOME and helm caches.
    pub fn tool_command(&self, name: &str) -> Command {
        let program = if name == "sc-agent" {
            binary("sc-agent")
        } else {
            tool(name)
        };
        let home = self.dir.path().join("home");
        let mut cmd = Command::new(program);
        if !self.is_external() {
            // Nothing of the machine's own configuration reaches a private cluster's clients.
            cmd.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", &home);
        }
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", home.join(".cache/helm"))
            .env("HELM_CONFIG_HOME", home.join(".config/helm"))
            .env("HELM_DATA_HOME", home.join(".local/share/helm"));
        cmd
    }

    /// Runs a pinned tool with `args`.
    pub fn run(&self, name: &str, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = self.tool_command(name);
        cmd.args(args);
        run_command(cmd, &format!("{name} {}", args.join(" ")), stdin)
    }

    /// `kubectl` 1.37 with `args`.
    pub fn kubectl(&self, args: &[&str]) -> Out {
        self.run("kubectl-1.37", args, None)
    }

    /// `kubectl` 1.37 with `args`, feeding `stdin` (for `-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Out {
        self.run("kubectl-1.37", args, Some(stdin))
    }

    /// `kubectl apply -f -` of a JSON object (or list).
    pub fn apply(&self, object: &Value) {
        self.kubectl_stdin(&["apply", "-f", "-"], &object.to_string())
            .ok();
    }

    /// `kubectl get <args> -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&a);
        serde_json::from_str(out.ok())
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}):\n{}", out.what, out.stdout))
    }

    /// The notes of the events with `reason` in `ns` (an event without a note gives an empty
    /// one), as listed.
    pub fn event_notes(&self, ns: &str, reason: &str) -> Vec<String> {
        let events = self.get_json(&["events", "-n", ns]);
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["reason"] == reason)
            .map(|e| {
                e["message"]
                    .as_str()
                    .or(e["note"].as_str())
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    /// Taints every node `CriticalAddonsOnly=true:NoSchedule` (the common AKS error), or with
    /// `false` removes that taint: no pod without a toleration is scheduled meanwhile.
    pub fn taint_all_nodes(&self, tainted: bool) {
        let taint = if tainted {
            "CriticalAddonsOnly=true:NoSchedule"
        } else {
            "CriticalAddonsOnly-"
        };
        self.kubectl(&["taint", "nodes", "--all", taint]).ok();
    }

    /// One object, or `None` when it does not exist.
    pub fn try_get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let out = self.kubectl(&[
            "get",
            kind,
            name,
            "-n",
            namespace,
            "-o",
            "json",
            "--ignore-not-found",
        ]);
        let text = out.ok().trim();
        (!text.is_empty()).then(|| {
            serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}):\n{text}", out.what))
        })
    }

    /// One object that must exist.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Value {
        self.try_get(kind, namespace, name)
            .unwrap_or_else(|| panic!("{kind} {namespace}/{name} does not exist"))
    }

    /// `helm` with `args`; its output joins the leak scan (a failed hook's log is printed there).
    pub fn helm(&self, helm: Helm, args: &[&str]) -> Out {
        let out = self.run(helm.tool(), args, None);
        self.record_output(helm.tool(), args, &out);
        out
    }

    /// Keeps the output of `tool args` for the leak scan, named by the tool and its first
    /// argument only (later arguments may hold anything).
    fn record_output(&self, tool: &str, args: &[&str], out: &Out) {
        let what = format!("{tool} {}", args.first().copied().unwrap_or_default());
        self.outputs.borrow_mut().push((what, out.all()));
    }

    /// `sc-agent` (the built binary) with `args`; its output joins the leak scan.
    pub fn sc_agent(&self, args: &[&str]) -> Out {
        let out = self.run("sc-agent", args, None);
        self.record_output("sc-agent", args, &out);
        out
    }

    /// Chart settings of this cluster: on kubesim, a free agent port (pods share the host's
    /// network) and the default images (their names map to the built binaries); on a real
    /// cluster, `SC_E2E_IMAGE_REGISTRY` / `SC_E2E_IMAGE_TAG` when set.
    fn chart_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(port) = self.agent_port {
            // Pods of a process kubelet share the host's ports: one agent port per cluster.
            args.push(format!("--set=agent.port={port}"));
        }
        for (var, key) in [
            ("SC_E2E_IMAGE_REGISTRY", "image.registry"),
            ("SC_E2E_IMAGE_TAG", "image.tag"),
        ] {
            if let Ok(v) = std::env::var(var)
                && !v.is_empty()
            {
                args.push(format!("--set-string={key}={v}"));
            }
        }
        args
    }

    /// `helm upgrade --install sc-extension chart -n <release ns> --create-namespace` with the
    /// values `files` and `extra` arguments.
    pub fn helm_upgrade(&self, helm: Helm, files: &[&Path], extra: &[&str]) -> Out {
        let chart = chart_dir();
        let ns = self.release_ns();
        let mut args: Vec<String> = [
            "upgrade",
            "--install",
            RELEASE,
            &chart.display().to_string(),
            "-n",
            &ns,
            "--create-namespace",
            "--timeout",
            HELM_TIMEOUT,
            "--set",
            "waitForResult.timeoutSeconds=150",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.chart_args());
        for f in files {
            args.push("-f".into());
            args.push(f.display().to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.helm(helm, &refs)
    }

    /// Writes `values` (JSON, which helm reads as YAML) to a file readable only by its owner.
    pub fn write_values(&self, name: &str, values: &Value) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.json"));
        write_private(
            &path,
            &serde_json::to_string_pretty(values).expect("serializing values"),
        );
        path
    }

    /// Creates the SecretProviderClass CRD unless the cluster has it (a cluster with the
    /// Secrets Store CSI driver already does).
    pub fn ensure_spc_crd(&self) {
        let crd = "secretproviderclasses.secrets-store.csi.x-k8s.io";
        let present = self.kubectl(&["get", "crd", crd, "--ignore-not-found", "-o", "name"]);
        if !present.ok().trim().is_empty() {
            return;
        }
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("manifests/secretproviderclass-crd.yaml");
        let applied = self.kubectl(&["apply", "-f", &manifest.display().to_string()]);
        // Scenarios sharing a cluster may race to create it: another one's success is fine.
        if !applied.success() && !self.kubectl(&["get", "crd", crd]).success() {
            applied.ok();
        }
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{crd}"),
            "--timeout=60s",
        ])
        .ok();
        wait_until(
            Duration::from_secs(30),
            "the SecretProviderClass resource to be served",
            || {
                self.kubectl(&["get", "secretproviderclasses", "-A"])
                    .success()
                    .then_some(())
            },
        );
    }

    /// Waits until Job `sc-job` no longer exists in the release namespace.
    pub fn wait_job_gone(&self) {
        let ns = self.release_ns();
        wait_until(SETTLE, "Job sc-job to delete itself", || {
            self.try_get("job", &ns, JOB).is_none().then_some(())
        });
        let listed = self.kubectl(&["get", "job", "-n", &ns]).all();
        assert!(
            !listed.contains(JOB),
            "`kubectl get job -n {ns}` still lists sc-job:\n{listed}"
        );
    }

    /// Waits until the metadata ConfigMaps of the removed `connections` are gone (the agent
    /// deletes them once the removal is applied).
    pub fn wait_metadata_gone(&self, connections: &[&str]) {
        let ns = self.release_ns();
        wait_for_state(
            SETTLE,
            "the metadata of removed connections to be deleted",
            || {
                let left: Vec<String> = connections
                    .iter()
                    .map(|c| sc_model::names::metadata_config_map_name(c))
                    .filter(|name| self.try_get("configmap", &ns, name).is_some())
                    .collect();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(left.join(", "))
                }
            },
        );
    }

    /// Asserts `helm list -n <release ns>` shows the release deployed at `revision`.
    pub fn assert_deployed(&self, helm: Helm, revision: u32) {
        let ns = self.release_ns();
        let table = self.helm(helm, &["list", "-n", &ns]);
        let line = table
            .ok()
            .lines()
            .find(|l| l.split_whitespace().next() == Some(RELEASE))
            .unwrap_or_else(|| {
                panic!(
                    "`helm list -n {ns}` does not list {RELEASE}:\n{}",
                    table.stdout
                )
            })
            .to_string();
        assert!(
            line.contains("deployed"),
            "the release is not deployed: {line}"
        );
        let list: Value =
            serde_json::from_str(self.helm(helm, &["list", "-n", &ns, "-o", "json"]).ok())
                .expect("helm list -o json printed no JSON");
        let rel = list
            .as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == RELEASE))
            .expect("helm list -o json does not list the release");
        assert_eq!(rel["status"], "deployed", "release status: {rel}");
        assert_eq!(
            rel["revision"],
            revision.to_string(),
            "release revision: {rel}"
        );
    }

    /// Checks every connection of `set` is materialized exactly as sc-model renders it, and
    /// its metadata ConfigMap records it Ready with the same hash.
    pub fn assert_materialized(&self, set: &sc_model::RequestSet) {
        // The hashes the cluster records are keyed by the protected Secret's uid.
        let key = self.hash_key();
        let keyed: std::collections::BTreeMap<&str, String> = set
            .connections()
            .iter()
            .map(|c| (c.name(), c.hash_with_key(&key)))
            .collect();
        for d in set.desired() {
            if let Some(want) = &d.secret {
                let name = want["metadata"]["name"].as_str().expect("secret name");
                let got = self.get("secret", &d.namespace, name);
                assert_eq!(
                    got["data"], want["data"],
                    "Secret {}/{name} of connection {} does not hold exactly the catalog's keys and values",
                    d.namespace, d.connection
                );
                assert_eq!(
                    got["type"], "Opaque",
                    "type of Secret {}/{name}",
                    d.namespace
                );
                assert_subset(
                    &want["metadata"]["labels"],
                    &got["metadata"]["labels"],
                    name,
                );
                assert_subset(
                    &rekeyed(
                        &want["metadata"]["annotations"],
                        keyed.get(d.connection.as_str()),
                    ),
                    &got["metadata"]["annotations"],
                    name,
                );
            }
            if let Some(want) = &d.service_account {
                let name = want["metadata"]["name"]
                    .as_str()
                    .expect("service account name");
                let got = self.get("serviceaccount", &d.namespace, name);
                assert_subset(
                    &want["metadata"]["labels"],
                    &got["metadata"]["labels"],
                    name,
                );
                assert_subset(
                    &rekeyed(
                        &want["metadata"]["annotations"],
                        keyed.get(d.connection.as_str()),
                    ),
                    &got["metadata"]["annotations"],
                    name,
                );
            }
            if let Some(want) = &d.secret_provider_class {
                let name = want["metadata"]["name"].as_str().expect("spc name");
                let got = self.get("secretproviderclass", &d.namespace, name);
                assert_eq!(
                    got["spec"], want["spec"],
                    "spec of SecretProviderClass {}/{name}",
                    d.namespace
                );
                assert_subset(
                    &want["metadata"]["labels"],
                    &got["metadata"]["labels"],
                    name,
                );
            }
        }
        for c in set.connections() {
            let status = self.metadata_status(c.name());
            assert_eq!(
                status["phase"],
                "Ready",
                "status of connection {}: {status}",
                c.name()
            );
            assert_eq!(
                status["appliedHash"],
                keyed[c.name()].as_str(),
                "applied hash of connection {}",
                c.name()
            );
        }
    }

    /// The key of the content hashes the agent and sc-job record: the uid of the protected
    /// Secret of the release.
    pub fn hash_key(&self) -> String {
        self.get("secret", &self.release_ns(), "sc-protected")["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The metadata ConfigMap of `connection`.
    pub fn metadata(&self, connection: &str) -> Value {
        self.get(
            "configmap",
            &self.release_ns(),
            &sc_model::names::metadata_config_map_name(connection),
        )
    }

    /// The parsed `status.json` of a connection's metadata.
    pub fn metadata_status(&self, connection: &str) -> Value {
        let cm = self.metadata(connection);
        let text = cm["data"]["status.json"].as_str().unwrap_or_else(|| {
            panic!("metadata of connection {connection} has no status.json: {cm}")
        });
        serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("status.json of {connection} is not JSON ({e})"))
    }

    /// The objects sc-extension materialized in `namespace` (Secrets, ServiceAccounts and, with
    /// the CRD, SecretProviderClasses), without server-assigned fields, by kind and name.
    pub fn snapshot(&self, namespace: &str) -> Value {
        let mut kinds = vec!["secrets", "serviceaccounts"];
        if self
            .kubectl(&[
                "get",
                "crd",
                "secretproviderclasses.secrets-store.csi.x-k8s.io",
            ])
            .success()
        {
            kinds.push("secretproviderclasses");
        }
        let mut out = serde_json::Map::new();
        for kind in kinds {
            let list = self.get_json(&[kind, "-n", namespace, "-l", MANAGED_SELECTOR]);
            for item in list["items"].as_array().cloned().unwrap_or_default() {
                let key = format!(
                    "{}/{}",
                    item["kind"].as_str().unwrap_or(kind),
                    item["metadata"]["name"].as_str().unwrap_or("")
                );
                let m = &item["metadata"];
                out.insert(
                    key,
                    json!({
                        "labels": m["labels"],
                        "annotations": m["annotations"],
                        "type": item["type"],
                        "data": item["data"],
                        "spec": item["spec"],
                    }),
                );
            }
        }
        Value::Object(out)
    }

    /// Asserts that no remembered secret value (nor its base64 form) appears on any surface of
    /// [`LEAK_SURFACES`]: ConfigMaps, Events (both APIs, the agent's `Drifted` ones included),
    /// Jobs and Pods, the release namespace's logs, every helm and `sc-agent` output of the
    /// scenario (`reapply`, `wait`, `plan`, `show` among them), helm's NOTES, the federated
    /// credentials `sc-agent plan`, `show` and `wait` print, the image archives' configs and
    /// the completion scripts. Runs `sc-agent list`, `show` and `list-configuration` for
    /// `connections` first. Reads only: the cluster is left as it was.
    pub fn leak_scan(&self, connections: &[&str]) {
        let ns = self.release_ns();
        self.sc_agent(&["list", "--namespace", &ns]).ok();
        self.sc_agent(&["list", "--namespace", &ns, "-o", "json"])
            .ok();
        for c in connections {
            self.sc_agent(&["show", c, "--namespace", &ns]).ok();
            self.sc_agent(&["show", c, "--namespace", &ns, "-o", "json"])
                .ok();
            self.sc_agent(&["list-configuration", c, "--namespace", &ns])
                .ok();
            self.sc_agent(&["list-configuration", c, "--namespace", &ns, "-o", "json"])
                .ok();
        }
        self.scan_cluster();
    }

    /// What every surface of the leak scan reads now: (`surface: place`, text).
    pub fn leak_surfaces(&self) -> Vec<(String, String)> {
        let mut places: Vec<(String, String)> = Vec::new();
        for (surface, read) in LEAK_SURFACES {
            for (place, text) in read(self) {
                places.push((format!("{surface}: {place}"), text));
            }
        }
        places
    }

    /// The surfaces of [`Cluster::leak_scan`] without running the per-connection commands.
    pub fn scan_cluster(&self) {
        let places = self.leak_surfaces();
        let b64 = base64::engine::general_purpose::STANDARD;
        let secrets = self.secrets.borrow();
        assert!(
            !secrets.is_empty(),
            "the scenario remembered no secret value to scan for"
        );
        for secret in secrets.iter() {
            for needle in [secret.clone(), b64.encode(secret)] {
                for (place, text) in &places {
                    assert!(
                        !text.contains(&needle),
                        "a secret value of the scenario appears in {place}"
                    );
                }
            }
        }
    }

    /// Leak surface: ConfigMaps, Events of both APIs, Jobs and Pods of every namespace.
    fn leak_objects(&self) -> Vec<(String, String)> {
        [
            "configmaps",
            "events",
            "events.events.k8s.io",
            "jobs",
            "pods",
        ]
        .iter()
        .map(|kind| {
            let out = self.kubectl(&["get", kind, "-A", "-o", "json"]);
            (format!("kubectl get {kind} -A"), out.ok().to_string())
        })
        .collect()
    }

    /// Leak surface: the Events the agent posts about drift (reason `Drifted`), also read
    /// alone so a scan names them.
    fn leak_drift_events(&self) -> Vec<(String, String)> {
        let out = self.kubectl(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            "reason=Drifted",
            "-o",
            "json",
        ]);
        vec![("Events with reason Drifted".to_string(), out.all())]
    }

    /// Leak surface: the log of every container of every pod of the release namespace (the
    /// agent, sc-job, the hooks).
    fn leak_logs(&self) -> Vec<(String, String)> {
        let ns = self.release_ns();
        let mut out = Vec::new();
        let pods = self.get_json(&["pods", "-n", &ns]);
        for pod in pods["items"].as_array().cloned().unwrap_or_default() {
            let name = pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            for c in pod["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let cname = c["name"].as_str().unwrap_or_default();
                let log = self.kubectl(&["logs", &name, "-n", &ns, "-c", cname]);
                out.push((
                    format!("the log of pod {ns}/{name} container {cname}"),
                    log.all(),
                ));
            }
        }
        out
    }

    /// Leak surface: every helm and `sc-agent` output of the scenario so far (`sc-agent
    /// reapply`, `wait`, `plan`, `show`, `validate`, failed hooks' logs printed by helm, ...).
    fn leak_commands(&self) -> Vec<(String, String)> {
        self.outputs
            .borrow()
            .iter()
            .enumerate()
            .map(|(i, (what, text))| (format!("output #{i} ({what})"), text.clone()))
            .collect()
    }

    /// Leak surface: helm's NOTES of the release (they carry the federated credentials).
    fn leak_notes(&self) -> Vec<(String, String)> {
        let ns = self.release_ns();
        let out = self.run(Helm::V3.tool(), &["get", "notes", RELEASE, "-n", &ns], None);
        vec![("helm get notes".to_string(), out.all())]
    }

    /// Leak surface: the federated credentials and everything else `sc-agent plan` prints for
    /// the release's own values (secrets included, read with `helm get values` into a private
    /// file), and `sc-agent wait` for the release's current revision.
    fn leak_federated(&self) -> Vec<(String, String)> {
        let ns = self.release_ns();
        let mut out = Vec::new();
        let values = self.run(
            Helm::V3.tool(),
            &["get", "values", RELEASE, "-n", &ns, "-a", "-o", "json"],
            None,
        );
        if values.success() {
            let file = self.dir().join("leak-scan-release-values.json");
            write_private(&file, &values.stdout);
            let file = file.display().to_string();
            let plan = self.run(
                "sc-agent",
                &[
                    "plan",
                    "-f",
                    &file,
                    "--namespace",
                    &ns,
                    "--oidc-issuer-url",
                    "https://issuer.example/leak-scan",
                ],
                None,
            );
            out.push((
                "sc-agent plan of the release's values".to_string(),
                plan.all(),
            ));
            let _ = std::fs::remove_file(&file);
        }
        if let Some(revision) = self
            .try_get("configmap", &ns, "sc-requests")
            .and_then(|cm| {
                cm["metadata"]["annotations"]["sc-extension.io/revision"]
                    .as_str()
                    .map(str::to_string)
            })
        {
            let wait = self.run(
                "sc-agent",
                &[
                    "wait",
                    "--namespace",
                    &ns,
                    &format!("--revision={revision}"),
                    "--timeout=5s",
                ],
                None,
            );
            out.push((format!("sc-agent wait --revision={revision}"), wait.all()));
        }
        out
    }

    /// Leak surface: the configs, manifests and index of the image archives in `dist/images`
    /// (when `make images` built them): every entry of an archive but its layers.
    fn leak_images(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let dir = workspace_root().join("dist/images");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return out;
        };
        for archive in entries.flatten().map(|e| e.path()) {
            if archive.extension().is_none_or(|e| e != "tar") {
                continue;
            }
            let list = Command::new("tar")
                .arg("-tvf")
                .arg(&archive)
                .output()
                .expect("running tar");
            for line in String::from_utf8_lossy(&list.stdout).lines() {
                // `-rw-r--r-- 0/0 1234 1970-01-01 00:00 blobs/sha256/...`
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (Some(size), Some(name)) = (fields.get(2), fields.last()) else {
                    continue;
                };
                if size.parse::<u64>().map_or(true, |s| s > 1 << 20) || name.ends_with('/') {
                    continue;
                }
                let entry = Command::new("tar")
                    .arg("-xOf")
                    .arg(&archive)
                    .arg(name)
                    .output()
                    .expect("running tar");
                out.push((
                    format!("{} entry {name}", archive.display()),
                    String::from_utf8_lossy(&entry.stdout).into_owned(),
                ));
            }
        }
        out
    }

    /// Leak surface: the shell completion scripts of `sc-agent`, when it has the
    /// `completion` command (it prints them without a cluster).
    fn leak_completion(&self) -> Vec<(String, String)> {
        if !self
            .run("sc-agent", &["completion", "--help"], None)
            .success()
        {
            return Vec::new();
        }
        ["bash", "zsh", "fish", "powershell", "elvish"]
            .iter()
            .map(|shell| {
                let out = self.run("sc-agent", &["completion", shell], None);
                (format!("sc-agent completion {shell}"), out.all())
            })
            .collect()
    }

    /// Prints what helps to understand a failed scenario: the release namespace's objects
    /// (and of each pod, whether it is being deleted and what holds it), events, and the logs
    /// of the agent and sc-job.
    fn dump(&self) {
        let ns = self.release_ns();
        eprintln!("---- state of {ns} after the failure ----");
        for args in [
            vec!["get", "all,configmaps", "-n", &ns],
            vec![
                "get",
                "pods",
                "-n",
                &ns,
                "-o",
                "custom-columns=NAME:.metadata.name,PHASE:.status.phase,\
                 DELETING:.metadata.deletionTimestamp,FINALIZERS:.metadata.finalizers,\
                 OWNER:.metadata.ownerReferences[*].uid",
            ],
            vec!["get", "events", "-A"],
            vec!["logs", "deploy/sc-agent", "-n", &ns, "--tail=200"],
            vec!["logs", "job/sc-job", "-n", &ns, "--tail=200"],
        ] {
            let out = self.kubectl(&args);
            eprintln!("$ kubectl {}\n{}", args.join(" "), out.all());
        }
        if !self.is_external() {
            let log = self.kubesim_log();
            let tail: Vec<&str> = log.lines().rev().take(100).collect();
            eprintln!("---- kubesim log (last 100 lines) ----");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A nested panic here would abort the process; the dump is best effort.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.dump()));
        }
        if let Some(mut child) = self.kubesim.take() {
            // SIGTERM lets kubesim stop every pod process it started.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        } else if self.is_external() {
            let ns = self.release_ns();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.run(
                    "helm3",
                    &["uninstall", RELEASE, "-n", &ns, "--ignore-not-found"],
                    None,
                );
                let mut all = self.namespaces.borrow().clone();
                all.push(ns.clone());
                for n in all {
                    self.kubectl(&[
                        "delete",
                        "namespace",
                        &n,
                        "--ignore-not-found",
                        "--wait=false",
                    ]);
                }
            }));
        }
    }
}

/// `annotations` with the content-hash annotation, when present, set to `hash`.
pub fn rekeyed(annotations: &Value, hash: Option<&String>) -> Value {
    let mut out = annotations.clone();
    if let (Some(h), Some(m)) = (hash, out.as_object_mut())
        && m.contains_key(sc_model::render::HASH_ANNOTATION)
    {
        m.insert(
            sc_model::render::HASH_ANNOTATION.into(),
            Value::from(h.as_str()),
        );
    }
    out
}

/// Asserts every key of the map `want` has the same value in the map `got`.
pub fn assert_subset(want: &Value, got: &Value, what: &str) {
    if let Some(w) = want.as_object() {
        for (k, v) in w {
            assert_eq!(&got[k], v, "{k} of {what} (all: {got})");
        }
    }
}

/// Writes `text` to `path` with mode 0600.
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("writing {} failed: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("writing {} failed: {e}", path.display()));
}

/// The connections of `values` validated by sc-model (what the cluster must end up with).
pub fn expected(values: &Value) -> sc_model::RequestSet {
    sc_model::validate_connections(sc_model::connections_subtree(values))
        .unwrap_or_else(|e| panic!("the scenario's values are invalid: {e:?}"))
}

/// Merges values documents as helm does (later ones win).
pub fn merged(docs: &[&Value]) -> Value {
    let mut out = json!({});
    for d in docs {
        sc_model::merge_values(&mut out, (*d).clone());
    }
    out
}

/// The three connections of the install scenario, in namespace `ns`: Storage Blob with a
/// connection string for Python (`accountKey` = `account_key`), Service Bus with workload
/// identity for .NET, and Key Vault through the CSI driver. Returns (settings, protected).
pub fn three_connections(ns: &str, account_key: &str) -> (Value, Value) {
    let settings = json!({
        "connections": {
            "blob": {
                "namespace": ns,
                "targetType": "storage-blob",
                "authType": "secret",
                "clientType": "python",
                "parameters": {"accountName": "e2estorage"},
                "deletionPolicy": "Delete",
            },
            "bus": {
                "namespace": ns,
                "targetType": "servicebus",
                "authType": "workloadIdentity",
                "clientType": "dotnet",
                "parameters": {
                    "namespaceName": "e2ebus",
                    "clientId": "0a1b2c3d-0000-4000-8000-000000000001",
                    "tenantId": "66666666-7777-8888-9999-000000000000",
                },
            },
            "vault": {
                "namespace": ns,
                "targetType": "keyvault",
                "authType": "keyvaultCsi",
                "parameters": {
                    "keyvaultName": "e2e-vault",
                    "tenantId": "66666666-7777-8888-9999-000000000000",
                    "clientId": "22222222-3333-4444-5555-666666666666",
                    "syncSecret": "true",
                    "objects": [{"name": "db-password", "type": "secret"}],
                },
            },
        }
    });
    let protected = json!({"connections": {"blob": {"secrets": {"accountKey": account_key}}}});
    (settings, protected)
}

/// Defines `mod $name { fn helm3(); fn helm4() }`, each running the scenario function
/// `$name(Helm)` once with that helm.
#[macro_export]
macro_rules! with_both_helms {
    ($name:ident) => {
        mod $name {
            #[test]
            fn helm3() {
                super::$name($crate::Helm::V3)
            }
            #[test]
            fn helm4() {
                super::$name($crate::Helm::V4)
            }
        }
    };
}
