//! `pods/exec`, `pods/attach` and `pods/portforward` with real clients: kubectl 1.37 and 1.33
//! (exec over `v5.channel.k8s.io`, port-forward over SPDY tunnelled in WebSocket) and the
//! python client (`kubernetes.stream.stream` exec, `portforward` over `v4.channel.k8s.io`),
//! against a pod whose process serves HTTP on a loopback port.

use std::time::Duration;

use kubesim::cluster::WriteOptions;
use kubesim::store::ResKey;
use kubesim::testing::{command, free_port, run, run_with_stdin, wait_until};
use kubesim::{Kubesim, Options};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);

/// A running pod `web` serving `index.html` (`marker-<MARKER>`) over HTTP on `port`, with
/// the env `GREETING`.
async fn start_with_web_pod(port: u16) -> Kubesim {
    let ks = Kubesim::start(Options::default()).await.unwrap();
    let python = kubesim::testing::python();
    let script = format!(
        "echo marker-$MARKER > index.html && head -c 3000000 /dev/zero | tr '\\0' a > big.txt \
         && exec {} -m http.server {port} --bind 127.0.0.1",
        python.display()
    );
    ks.cluster()
        .create(
            &ResKey::new("", "pods"),
            "default",
            json!({"metadata": {"name": "web"},
                   "spec": {"containers": [{"name": "main", "image": "busybox:1.36",
                       "command": ["sh", "-c", script],
                       "env": [{"name": "MARKER", "value": "web-pod"},
                               {"name": "GREETING", "value": "hello-from-the-pod"}],
                       "readinessProbe": {"tcpSocket": {"port": port}}}]}}),
            &WriteOptions::default(),
        )
        .unwrap();
    let c = ks.cluster();
    wait_until(WAIT, "the web pod ready", || {
        let c = c.clone();
        async move {
            c.get(&ResKey::new("", "pods"), "default", "web")
                .ok()
                .filter(|p| p["status"]["containerStatuses"][0]["ready"] == json!(true))
        }
    })
    .await;
    ks
}

/// One HTTP/1.0 GET of `path` through `port` on the host; the whole response.
async fn http_get(port: u16, path: &str) -> String {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the forwarded port");
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut out))
        .await
        .expect("the response within 30 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

async fn kubectl_exec_and_port_forward(tool: &str) {
    let remote = free_port();
    let ks = start_with_web_pod(remote).await;

    // The exit code comes back as kubectl's own.
    let out = run(&ks, tool, &["exec", "web", "--", "sh", "-c", "exit 3"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("command terminated with exit code 3"),
        "{out:?}"
    );

    // stdout, stderr and the container's environment and working directory.
    let out = run(
        &ks,
        tool,
        &[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "printenv GREETING; cat index.html; echo oops >&2",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout, "hello-from-the-pod\nmarker-web-pod\n",
        "{out:?}"
    );
    assert!(out.stderr.contains("oops"), "{out:?}");

    // stdin, closed by the client at its end (v5).
    let out = run_with_stdin(
        &ks,
        tool,
        &["exec", "-i", "web", "--", "cat"],
        Some("hi\nthere\n"),
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "hi\nthere\n", "{out:?}");

    // A command that does not exist.
    let out = run(&ks, tool, &["exec", "web", "--", "no-such-command-here"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("executable file not found"), "{out:?}");

    // port-forward: two connections through one session.
    let local = free_port();
    let mut pf = command(
        &ks,
        tool,
        &["port-forward", "pod/web", &format!("{local}:{remote}")],
    )
    .spawn()
    .expect("kubectl port-forward starts");
    let mut lines = tokio::io::BufReader::new(pf.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("port-forward reports within the bound")
        .unwrap()
        .unwrap_or_default();
    assert!(first.contains(&format!("127.0.0.1:{local}")), "{first}");
    for _ in 0..2 {
        let response = http_get(local, "/index.html").await;
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(response.contains("marker-web-pod"), "{response}");
    }
    // Megabytes each way: no flow-control window stops them.
    let big = http_get(local, "/big.txt").await;
    let body = big
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    assert_eq!(body.len(), 3_000_000, "{}", &big[..big.len().min(300)]);
    assert!(body.bytes().all(|b| b == b'a'));
    pf.kill().await.unwrap();

    // Uploads, and the client's half-close: a listener on the host (pods share its network)
    // counts what arrives until EOF and answers the count.
    let counter = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let counter_port = counter.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut conn, _) = counter.accept().await.unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        conn.write_all(format!("{}", got.len()).as_bytes())
            .await
            .unwrap();
    });
    let local = free_port();
    let mut pf = command(
        &ks,
        tool,
        &[
            "port-forward",
            "pod/web",
            &format!("{local}:{counter_port}"),
        ],
    )
    .spawn()
    .unwrap();
    let mut lines = tokio::io::BufReader::new(pf.stdout.take().unwrap()).lines();
    tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("port-forward reports within the bound")
        .unwrap();
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", local))
        .await
        .unwrap();
    conn.write_all(&vec![7u8; 2_500_000]).await.unwrap();
    conn.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_string(&mut answer))
        .await
        .expect("the count within 30 s")
        .unwrap();
    assert_eq!(answer, "2500000");
    server.await.unwrap();
    pf.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_37_exec_and_port_forward() {
    kubectl_exec_and_port_forward("kubectl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_33_exec_and_port_forward() {
    kubectl_exec_and_port_forward("kubectl-1.33").await;
}

/// A port nobody listens on: kubectl reports the kubelet's error for that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_to_a_closed_port_reports_the_error() {
    let remote = free_port();
    let ks = start_with_web_pod(remote).await;
    let closed = free_port();
    let local = free_port();
    let mut pf = command(
        &ks,
        "kubectl",
        &["port-forward", "pod/web", &format!("{local}:{closed}")],
    )
    .spawn()
    .unwrap();
    let mut lines = tokio::io::BufReader::new(pf.stdout.take().unwrap()).lines();
    tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("port-forward reports within the bound")
        .unwrap();
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", local))
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut out))
        .await
        .expect("the forwarded connection closes within 30 s");
    assert!(out.is_empty());
    pf.kill().await.unwrap();
    let mut stderr = String::new();
    pf.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(
        stderr.contains(&format!("error forwarding port {closed}")),
        "{stderr}"
    );
}

const PYTHON_CLIENT: &str = r#"
import socket, sys
from kubernetes import client, config
from kubernetes.stream import stream, portforward
config.load_kube_config()
v1 = client.CoreV1Api()
PORT = int(sys.argv[1])

resp = stream(v1.connect_get_namespaced_pod_exec, "web", "default",
              command=["sh", "-c", "printenv GREETING; echo err >&2; exit 5"],
              stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
resp.run_forever(timeout=30)
assert resp.read_stdout() == "hello-from-the-pod\n"
assert resp.read_stderr() == "err\n"
assert resp.returncode == 5, resp.returncode

out = stream(v1.connect_get_namespaced_pod_exec, "web", "default",
             command=["cat", "index.html"], stderr=True, stdin=False, stdout=True, tty=False)
assert out == "marker-web-pod\n", out

resp = stream(v1.connect_get_namespaced_pod_exec, "web", "default", command=["cat"],
              stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
assert resp.subprotocol == "v5.channel.k8s.io", resp.subprotocol
resp.write_stdin("from-python\n")
resp.close_channel(0)
resp.run_forever(timeout=30)
assert resp.read_stdout() == "from-python\n"
assert resp.returncode == 0

try:
    stream(v1.connect_get_namespaced_pod_exec, "web", "default", container="nope",
           command=["true"], stderr=True, stdin=False, stdout=True, tty=False)
    raise SystemExit("an unknown container was accepted")
except client.ApiException as e:
    assert "400" in str(e.reason) or e.status == 400, e

pf = portforward(v1.connect_get_namespaced_pod_portforward, "web", "default", ports=str(PORT))
s = pf.socket(PORT)
s.setblocking(True)
s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
assert data.startswith(b"HTTP/1.0 200"), data
assert b"marker-web-pod" in data, data
assert pf.error(PORT) is None, pf.error(PORT)
print("python-ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_exec_and_portforward() {
    let remote = free_port();
    let ks = start_with_web_pod(remote).await;
    let port = remote.to_string();
    let out = run_with_stdin(&ks, "python", &["-", &port], Some(PYTHON_CLIENT)).await;
    assert!(out.stdout.contains("python-ok"), "{out:?}");
}

/// `kubectl attach` streams the container's output from now on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_attach_streams_the_output() {
    let ks = Kubesim::start(Options::default()).await.unwrap();
    ks.cluster()
        .create(
            &ResKey::new("", "pods"),
            "default",
            json!({"metadata": {"name": "ticker"},
                   "spec": {"containers": [{"name": "main", "image": "busybox:1.36",
                       "command": ["sh", "-c", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.1; done"]}]}}),
            &WriteOptions::default(),
        )
        .unwrap();
    let c = ks.cluster();
    wait_until(WAIT, "the ticker running", || {
        let c = c.clone();
        async move {
            c.get(&ResKey::new("", "pods"), "default", "ticker")
                .ok()
                .filter(|p| p["status"]["phase"] == "Running")
        }
    })
    .await;
    let mut attach = command(&ks, "kubectl", &["attach", "ticker"])
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(attach.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("attach streams within the bound")
        .unwrap()
        .unwrap_or_default();
    assert!(first.starts_with("tick-"), "{first}");
    let second = lines.next_line().await.unwrap().unwrap_or_default();
    let n = |l: &str| l.trim_start_matches("tick-").parse::<u64>().unwrap();
    assert_eq!(n(&second), n(&first) + 1, "{first} {second}");
    attach.kill().await.unwrap();
}

/// A raw WebSocket handshake for `path`: the response's status line and body.
async fn handshake(ks: &Kubesim, path: &str, token: Option<&str>) -> (String, String) {
    let addr = ks.url().trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: kubesim\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: v5.channel.k8s.io, v4.channel.k8s.io\r\n{auth}\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body) = loop {
        let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut chunk))
            .await
            .expect("an answer within 30 s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                break (head.to_string(), body.to_string());
            }
        }
    };
    (head.lines().next().unwrap_or_default().to_string(), body)
}

/// Refusals before the upgrade, as kube-apiserver and the kubelet give them; and RBAC: the
/// WebSocket GET needs both `get` and `create` on `pods/exec`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_rbac() {
    let remote = free_port();
    let ks = start_with_web_pod(remote).await;
    let c = ks.cluster();
    c.create(
        &ResKey::new("", "pods"),
        "default",
        json!({"metadata": {"name": "done"},
               "spec": {"restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}]}}),
        &WriteOptions::default(),
    )
    .unwrap();
    wait_until(WAIT, "the done pod finished", || {
        let c = c.clone();
        async move {
            c.get(&ResKey::new("", "pods"), "default", "done")
                .ok()
                .filter(|p| p["status"]["phase"] == "Succeeded")
        }
    })
    .await;
    let exec = |pod: &str, extra: &str| {
        format!("/api/v1/namespaces/default/pods/{pod}/exec?command=true&stdout=true{extra}")
    };

    let (status, body) = handshake(&ks, &exec("missing", ""), None).await;
    assert!(status.contains(" 404 "), "{status}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["message"], "pods \"missing\" not found");

    let (status, body) = handshake(&ks, &exec("web", "&container=nope"), None).await;
    assert!(status.contains(" 400 "), "{status}");
    assert!(
        body.contains("container nope is not valid for pod web"),
        "{body}"
    );

    let (status, body) = handshake(&ks, &exec("done", ""), None).await;
    assert!(status.contains(" 500 "), "{status}");
    assert_eq!(body, "container not found (\"main\")");

    let (status, body) = handshake(
        &ks,
        "/api/v1/namespaces/default/pods/done/portforward?ports=80",
        None,
    )
    .await;
    assert!(status.contains(" 404 "), "{status}");
    assert_eq!(body, "pod does not exist");

    let (status, body) = handshake(
        &ks,
        "/api/v1/namespaces/default/pods/web/exec?command=true",
        None,
    )
    .await;
    assert!(status.contains(" 400 "), "{status}");
    assert!(
        body.contains("at least 1 of stdin, stdout, stderr"),
        "{body}"
    );

    // A ServiceAccount allowed to `get` pods/exec only, then also to `create` it.
    let create = |group: &str, resource: &str, obj: serde_json::Value| {
        c.create(
            &ResKey::new(group, resource),
            "default",
            obj,
            &WriteOptions::default(),
        )
        .unwrap();
    };
    create(
        "",
        "serviceaccounts",
        json!({"metadata": {"name": "runner"}}),
    );
    create(
        "rbac.authorization.k8s.io",
        "roles",
        json!({"metadata": {"name": "exec"},
               "rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get"]}]}),
    );
    create(
        "rbac.authorization.k8s.io",
        "rolebindings",
        json!({"metadata": {"name": "runner"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "exec"},
               "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": "default"}]}),
    );
    let token = c.issue_token("default", "runner").unwrap();
    let (status, body) = handshake(&ks, &exec("web", ""), Some(&token)).await;
    assert!(status.contains(" 403 "), "{status}");
    assert!(
        body.contains("cannot create resource \\\"pods/exec\\\""),
        "{body}"
    );
    c.mutate(
        &ResKey::new("rbac.authorization.k8s.io", "roles"),
        "default",
        "exec",
        "test",
        |r| {
            r["rules"][0]["verbs"] = json!(["get", "create"]);
            Ok(())
        },
    )
    .unwrap();
    let (status, _) = handshake(&ks, &exec("web", ""), Some(&token)).await;
    assert!(status.contains(" 101 "), "{status}");
}

/// A command exec'd in a container ends when the container's process does (SIGKILL, 137).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_ends_with_its_container() {
    let remote = free_port();
    let ks = start_with_web_pod(remote).await;
    let mut exec = command(
        &ks,
        "kubectl",
        &[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 600",
        ],
    )
    .spawn()
    .unwrap();
    let mut lines = tokio::io::BufReader::new(exec.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the command starts within the bound")
        .unwrap();
    assert_eq!(first.as_deref(), Some("started"));
    kubesim::faults::kill_pod(&ks.cluster(), "default", "web").unwrap();
    let status = tokio::time::timeout(WAIT, exec.wait())
        .await
        .expect("kubectl exec ends with the container")
        .unwrap();
    assert_eq!(status.code(), Some(137), "{status:?}");
}
