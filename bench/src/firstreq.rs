//! sc-job's start-up time: from spawning the process to the first byte of its first API
//! request, seen by a listener that stands in for the API server.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Spawns `sc_job` with a kubeconfig pointing at a local listener and returns the time until
/// the first request's first byte arrives; the process is then killed.
pub async fn start_to_first_request(sc_job: &Path, dir: &Path) -> Result<Duration> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let kubeconfig = dir.join("first-request.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: probe\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             users:\n- name: probe\n  user:\n    token: probe\ncontexts:\n- name: probe\n  context:\n    cluster: probe\n    user: probe\n    namespace: sc-system\n\
             current-context: probe\n"
        ),
    )?;
    let start = Instant::now();
    let mut child = tokio::process::Command::new(sc_job)
        .args(["--changeset", "sc-changeset"])
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} failed", sc_job.display()))?;
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        let (mut s, _) = listener.accept().await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        Ok::<_, std::io::Error>(start.elapsed())
    })
    .await;
    let _ = child.kill().await;
    match first {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => bail!("reading sc-job's first request failed: {e}"),
        Err(_) => bail!("sc-job sent no request within 10 s"),
    }
}
