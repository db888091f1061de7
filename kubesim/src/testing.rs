//! Helpers for scenario tests: the pinned client tools (kubectl, helm, python), run against a
//! [`Kubesim`] with a private HOME and its kubeconfig, and waiting on conditions.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::Kubesim;

/// A TCP port free on every address now, for a server a test starts later (a pod's process
/// shares the host network). Taken from 12000-19999, below the ephemeral range, where an
/// outgoing connection of another test could take a port `bind(0)` had just given out.
pub fn free_port() -> u16 {
    const LOW: u32 = 12_000;
    const SPAN: u32 = 8_000;
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

/// The directory of the pinned tools: `$SC_TOOLS_DIR`, else `<workspace>/.tools`.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("SC_TOOLS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools"),
    }
}

/// A pinned tool binary in `<tools>/bin` (`kubectl`, `kubectl-1.33`, `kubectl-1.35`,
/// `kubectl-1.37`, `helm3`, `helm4`). Panics with what to do when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let p = tools_dir().join("bin").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `make tools` first",
        p.display()
    );
    p
}

/// The python interpreter of the tools venv (with the `kubernetes` package).
pub fn python() -> PathBuf {
    let p = tools_dir().join("venv/bin/python");
    assert!(
        p.is_file(),
        "{} is missing: run `make tools` first",
        p.display()
    );
    p
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panic with both streams unless it exited 0; returns stdout.
    pub fn ok(&self, what: &str) -> &str {
        assert!(
            self.success(),
            "{what} failed with {}:\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }
}

/// A command for `tool` (see [`tool`]) against `ks`: its kubeconfig, a private HOME (discovery
/// and helm caches), no proxy.
pub fn command(ks: &Kubesim, tool_name: &str, args: &[&str]) -> tokio::process::Command {
    let bin = if tool_name == "python" {
        python()
    } else {
        tool(tool_name)
    };
    let home = ks.tools_home();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("KUBECONFIG", ks.kubeconfig_path())
        .env("HELM_CACHE_HOME", home.join(".cache/helm"))
        .env("HELM_CONFIG_HOME", home.join(".config/helm"))
        .env("HELM_DATA_HOME", home.join(".local/share/helm"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Run `tool` with `args` to completion (at most 3 minutes).
pub async fn run(ks: &Kubesim, tool_name: &str, args: &[&str]) -> CmdOutput {
    run_with_stdin(ks, tool_name, args, None).await
}

/// Run `tool` with `args`, feeding `stdin` (e.g. a manifest for `-f -` or a python script).
pub async fn run_with_stdin(
    ks: &Kubesim,
    tool_name: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> CmdOutput {
    use tokio::io::AsyncWriteExt;
    let mut cmd = command(ks, tool_name, args);
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {tool_name} failed: {e}"));
    if let Some(input) = stdin {
        let mut w = child.stdin.take().expect("piped stdin");
        w.write_all(input.as_bytes()).await.expect("writing stdin");
        drop(w);
    }
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{tool_name} {args:?} did not finish within 3 minutes"))
        .unwrap_or_else(|e| panic!("waiting for {tool_name} failed: {e}"));
    CmdOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `kubectl` (1.37) with `args`.
pub async fn kubectl(ks: &Kubesim, args: &[&str]) -> CmdOutput {
    run(ks, "kubectl", args).await
}

/// Poll `condition` until it returns `Some` or `deadline` passes (then panic naming `what`).
pub async fn wait_until<T, F, Fut>(deadline: Duration, what: &str, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = condition().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
