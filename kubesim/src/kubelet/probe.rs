//! Container probes: `httpGet` (HTTP/1.1 GET on 127.0.0.1, success for 2xx and 3xx),
//! `tcpSocket` (a connection is accepted) and `exec` (the command exits 0, run like the
//! container with its environment and working directory). `grpc` probes are not run and count
//! as successful.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The timing of a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTiming {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl ProbeTiming {
    pub fn of(probe: &Value) -> Self {
        let secs = |f: &str, d: u64| Duration::from_secs(probe[f].as_u64().unwrap_or(d));
        Self {
            initial_delay: secs("initialDelaySeconds", 0),
            period: secs("periodSeconds", 10).max(Duration::from_secs(1)),
            timeout: secs("timeoutSeconds", 1).max(Duration::from_secs(1)),
            success_threshold: probe["successThreshold"].as_u64().unwrap_or(1).max(1) as u32,
            failure_threshold: probe["failureThreshold"].as_u64().unwrap_or(3).max(1) as u32,
        }
    }
}

/// The port a probe names: a number, or the name of one of the container's ports.
fn port(container: &Value, port: &Value) -> Result<u16, String> {
    if let Some(n) = port.as_u64() {
        return u16::try_from(n).map_err(|_| format!("invalid port {n}"));
    }
    let name = port.as_str().unwrap_or("");
    if let Ok(n) = name.parse::<u16>() {
        return Ok(n);
    }
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| format!("port {name:?} is not a named port of the container"))
}

/// Run `probe` once; `Err` carries the failure message the kubelet reports.
pub async fn run(
    probe: &Value,
    container: &Value,
    env: &[(String, String)],
    cwd: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let attempt = async {
        if probe["httpGet"].is_object() {
            http_get(&probe["httpGet"], container).await
        } else if probe["tcpSocket"].is_object() {
            let p = port(container, &probe["tcpSocket"]["port"])?;
            tokio::net::TcpStream::connect(("127.0.0.1", p))
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp 127.0.0.1:{p}: {e}"))
        } else if let Some(cmd) = probe["exec"]["command"].as_array() {
            exec(cmd, env, cwd).await
        } else {
            Ok(())
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("probe timed out after {}s", timeout.as_secs())))
}

async fn http_get(spec: &Value, container: &Value) -> Result<(), String> {
    let p = port(container, &spec["port"])?;
    let path = spec["path"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("/");
    let url = format!("http://127.0.0.1:{p}{path}");
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", p))
        .await
        .map_err(|e| format!("Get \"{url}\": dial tcp 127.0.0.1:{p}: {e}"))?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for h in spec["httpHeaders"].as_array().into_iter().flatten() {
        request.push_str(&format!(
            "{}: {}\r\n",
            h["name"].as_str().unwrap_or(""),
            h["value"].as_str().unwrap_or("")
        ));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
        if n == 0 {
            return Err(format!("Get \"{url}\": EOF"));
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

async fn exec(cmd: &[Value], env: &[(String, String)], cwd: &Path) -> Result<(), String> {
    let argv: Vec<&str> = cmd.iter().filter_map(Value::as_str).collect();
    let Some((program, args)) = argv.split_first() else {
        return Err("empty exec probe command".into());
    };
    let status = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| format!("exec {program:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("command {argv:?} exited with {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn http_tcp_and_exec_probes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let status = if req.starts_with("GET /ok ") {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        let c = json!({"ports": [{"name": "http", "containerPort": p}]});
        let cwd = std::env::temp_dir();
        let env = vec![("PATH".to_string(), std::env::var("PATH").unwrap())];
        let t = Duration::from_secs(5);
        let ok = json!({"httpGet": {"path": "/ok", "port": "http"}});
        assert_eq!(run(&ok, &c, &env, &cwd, t).await, Ok(()));
        let bad = json!({"httpGet": {"path": "/bad", "port": p}});
        assert_eq!(
            run(&bad, &c, &env, &cwd, t).await,
            Err("HTTP probe failed with statuscode: 503".into())
        );
        assert_eq!(
            run(&json!({"tcpSocket": {"port": p}}), &c, &env, &cwd, t).await,
            Ok(())
        );
        assert!(
            run(&json!({"httpGet": {"port": "nope"}}), &c, &env, &cwd, t)
                .await
                .is_err()
        );
        assert_eq!(
            run(&json!({"exec": {"command": ["true"]}}), &c, &env, &cwd, t).await,
            Ok(())
        );
        assert!(
            run(&json!({"exec": {"command": ["false"]}}), &c, &env, &cwd, t)
                .await
                .is_err()
        );
        let timing = ProbeTiming::of(&json!({"periodSeconds": 2}));
        assert_eq!(
            (timing.period, timing.failure_threshold),
            (Duration::from_secs(2), 3)
        );
    }
}
