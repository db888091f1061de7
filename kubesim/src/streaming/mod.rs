//! `pods/exec`, `pods/attach` and `pods/portforward` over WebSocket, as kube-apiserver and
//! the kubelet serve them together:
//!
//! - exec and attach speak the channel protocol `v5.channel.k8s.io` or `v4.channel.k8s.io`
//!   (the client's first choice that is one of them): each binary message is a channel byte
//!   and data; 0 stdin, 1 stdout, 2 stderr, 3 the error channel (one `metav1.Status` as JSON
//!   when the command ended), 4 resize (ignored); with v5, `[255, 0]` from the client closes
//!   stdin. The server closes the connection after the status.
//! - port-forward speaks either SPDY/3.1 tunnelled in binary WebSocket messages
//!   (`SPDY/3.1+portforward.k8s.io`, what kubectl 1.31+ asks for first; see [`spdy`]) or the
//!   channel protocol `v4.channel.k8s.io` (the python client): two channels per port of the
//!   `ports` query parameter, data (2i) and error (2i+1), each opened by the server with the
//!   port as two bytes little endian; one TCP connection to 127.0.0.1:port per port.
//!
//! Requests refused before the upgrade are answered as kube-apiserver does: API errors as a
//! `Status` (404 for a missing pod, 400 for a container the pod lacks), the kubelet's
//! refusals as its plain-text 500 (`container not found ("app")`). A request that is not a
//! WebSocket upgrade (SPDY, which kubectl falls back to only when the WebSocket upgrade
//! fails) is answered 400.

pub mod spdy;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::cluster::{ApiError, Cluster, PodStreams, StreamRefusal};

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const CLOSE: u8 = 255;

/// Which streaming subresource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
    PortForward,
}

impl Kind {
    pub fn of(subresource: &str) -> Option<Self> {
        match subresource {
            "exec" => Some(Kind::Exec),
            "attach" => Some(Kind::Attach),
            "portforward" => Some(Kind::PortForward),
            _ => None,
        }
    }
}

/// The query parameters of a streaming request.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pub container: String,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    /// `ports` values (each may list several, comma-separated).
    pub ports: Vec<String>,
}

fn text_response(code: u16, text: &str) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(text.to_string()))
        .expect("valid response")
}

/// The client's offered subprotocols in its order of preference.
fn offered(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The first protocol the client offers that `supported` holds; the error is the
/// handshake's refusal.
fn negotiate(headers: &HeaderMap, supported: &[&str]) -> Result<String, String> {
    let offered = offered(headers);
    offered
        .iter()
        .find(|p| supported.contains(&p.as_str()))
        .cloned()
        .ok_or_else(|| {
            format!("requested protocol(s) are not supported: {offered:?}; supports {supported:?}")
        })
}

/// Serve a streaming request that passed authorization.
pub async fn serve(
    cluster: &Arc<Cluster>,
    kind: Kind,
    namespace: &str,
    name: &str,
    params: Params,
    headers: &HeaderMap,
    ws: Option<WebSocketUpgrade>,
) -> Result<Response, ApiError> {
    match kind {
        Kind::Exec | Kind::Attach => {
            let (pod, container, source) =
                cluster.stream_target(namespace, name, &params.container)?;
            if kind == Kind::Exec && params.command.is_empty() {
                return Err(ApiError::bad_request(
                    "you must specify at least one command for the container",
                ));
            }
            if !params.stdin && !params.stdout && !params.stderr {
                return Ok(text_response(
                    400,
                    "you must specify at least 1 of stdin, stdout, stderr",
                ));
            }
            let Some(ws) = ws else {
                return Err(not_websocket());
            };
            let protocol = match negotiate(headers, &[V5, V4]) {
                Ok(p) => p,
                Err(e) => return Ok(text_response(400, &e)),
            };
            let started = match source {
                None => Err(StreamRefusal::Unavailable(format!(
                    "container not found ({container:?})"
                ))),
                Some(source) if kind == Kind::Exec => {
                    source.exec(&pod, &container, &params.command, params.stdin)
                }
                Some(source) => source.attach(&pod, &container),
            };
            let outcome = match started {
                Err(StreamRefusal::Unavailable(msg)) => return Ok(text_response(500, &msg)),
                Err(StreamRefusal::Start(msg)) => Err(msg),
                Ok(streams) => Ok(streams),
            };
            let v5 = protocol == V5;
            let mut ws = ws;
            ws.set_selected_protocol(HeaderValue::from_str(&protocol).expect("a token"));
            Ok(ws.on_upgrade(move |socket| async move {
                match outcome {
                    Ok(streams) => run_exec(socket, v5, streams, params).await,
                    Err(msg) => {
                        let status =
                            internal_error(&format!("error executing command in container: {msg}"));
                        finish(socket, status).await;
                    }
                }
            }))
        }
        Kind::PortForward => {
            let (pod, source) = cluster.portforward_target(namespace, name)?;
            let Some(ws) = ws else {
                return Err(not_websocket());
            };
            if !source.is_some_and(|s| s.pod_running(&pod)) {
                return Ok(text_response(404, "pod does not exist"));
            }
            let protocol = match negotiate(headers, &[SPDY_TUNNEL, V4]) {
                Ok(p) => p,
                Err(e) => return Ok(text_response(400, &e)),
            };
            let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
            let mut ws = ws;
            ws.set_selected_protocol(HeaderValue::from_str(&protocol).expect("a token"));
            if protocol == SPDY_TUNNEL {
                return Ok(ws.on_upgrade(move |socket| spdy::serve(socket, uid)));
            }
            let mut ports = Vec::new();
            for p in params.ports.iter().flat_map(|p| p.split(',')) {
                match p.trim().parse::<u16>() {
                    Ok(n) if n > 0 => ports.push(n),
                    _ => {
                        return Ok(text_response(
                            400,
                            &format!("unable to parse {p:?} as a port: invalid port"),
                        ));
                    }
                }
            }
            if ports.is_empty() {
                return Ok(text_response(400, "query parameter \"port\" is required"));
            }
            Ok(ws.on_upgrade(move |socket| run_portforward(socket, ports, uid)))
        }
    }
}

fn not_websocket() -> ApiError {
    ApiError::bad_request(
        "Upgrade request required: kubesim serves exec, attach and port-forward over WebSocket \
         only (SPDY is not supported)",
    )
}

fn internal_error(msg: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {msg}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": msg}]},
        "code": 500,
    })
}

/// The status the kubelet writes on the error channel for an exit code.
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The bytes of a data message: binary, or text (the python client writes `str` data as
/// text messages); `None` for control messages. A close ends the session as the end of the
/// stream does.
fn payload(msg: Message) -> Option<Bytes> {
    match msg {
        Message::Binary(b) => Some(b),
        Message::Text(t) => Some(Bytes::copy_from_slice(t.as_str().as_bytes())),
        _ => None,
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    Message::Binary(Bytes::from(out))
}

/// Write the status on the error channel and close the connection.
async fn finish(mut socket: WebSocket, status: Value) {
    let body = serde_json::to_vec(&status).expect("JSON");
    if socket.send(frame(ERROR, &body)).await.is_ok() {
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "".into(),
            })))
            .await;
    }
}

async fn run_exec(mut socket: WebSocket, v5: bool, streams: PodStreams, params: Params) {
    let PodStreams {
        stdin,
        mut stdout,
        mut stderr,
        exit,
    } = streams;
    // stdin is written by its own task, so a command that does not read it never blocks
    // the output.
    let stdin_tx = stdin.map(|mut pipe| {
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if pipe.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = pipe.shutdown().await;
        });
        tx
    });
    let mut stdin_tx = stdin_tx;
    let mut exit = exit;
    let mut code: Option<i32> = None;
    let (mut out_done, mut err_done) = (false, false);
    let stderr_channel = if params.tty { STDOUT } else { STDERR };
    loop {
        let exited = exit.is_none() || code.is_some();
        if out_done && err_done && exited {
            break;
        }
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(m)) => match payload(m).as_deref() {
                    Some([STDIN, data @ ..]) if !data.is_empty() => {
                        if let Some(tx) = &stdin_tx {
                            let _ = tx.send(Bytes::copy_from_slice(data));
                        }
                    }
                    Some([CLOSE, STDIN, ..]) if v5 => stdin_tx = None,
                    _ => {}
                },
            },
            chunk = stdout.next(), if !out_done => match chunk {
                Some(data) if params.stdout => {
                    if socket.send(frame(STDOUT, &data)).await.is_err() {
                        return;
                    }
                }
                Some(_) => {}
                None => out_done = true,
            },
            chunk = stderr.next(), if !err_done => match chunk {
                Some(data) if params.stderr || params.tty => {
                    if socket.send(frame(stderr_channel, &data)).await.is_err() {
                        return;
                    }
                }
                Some(_) => {}
                None => err_done = true,
            },
            c = async { exit.as_mut().expect("checked").await }, if !exited => code = Some(c),
        }
    }
    drop(stdin_tx);
    let status = match code {
        Some(c) => exit_status(&params.command, c),
        None => json!({"metadata": {}, "status": "Success"}),
    };
    finish(socket, status).await;
}

/// The message the kubelet writes on a port's error channel when the port cannot be reached.
pub fn forward_error(port: u16, pod_uid: &str, err: &std::io::Error) -> String {
    format!(
        "error forwarding port {port} to pod {pod_uid}, uid : failed to connect to localhost:{port} \
         inside namespace \"{pod_uid}\", IPv4: dial tcp4 127.0.0.1:{port}: connect: {} ",
        err.kind().to_string().replace('_', " ")
    )
}

/// Port-forward with the v4 channel protocol: one connection per port.
async fn run_portforward(mut socket: WebSocket, ports: Vec<u16>, pod_uid: String) {
    // Each port's task sends (channel, data) to the socket; data from the client goes to
    // the port's task.
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(u8, Bytes)>();
    let mut to_port: Vec<Option<mpsc::UnboundedSender<Bytes>>> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let le = port.to_le_bytes();
        for ch in [2 * i as u8, 2 * i as u8 + 1] {
            if socket.send(frame(ch, &le)).await.is_err() {
                return;
            }
        }
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        to_port.push(Some(tx));
        tokio::spawn(forward_port(
            *port,
            2 * i as u8,
            pod_uid.clone(),
            rx,
            out_tx.clone(),
        ));
    }
    drop(out_tx);
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(m)) => {
                    if let Some([ch, data @ ..]) = payload(m).as_deref()
                        && ch % 2 == 0
                        && let Some(Some(tx)) = to_port.get((ch / 2) as usize)
                        && !data.is_empty()
                    {
                        let _ = tx.send(Bytes::copy_from_slice(data));
                    }
                }
            },
            out = out_rx.recv() => match out {
                Some((ch, data)) => {
                    if socket.send(frame(ch, &data)).await.is_err() {
                        return;
                    }
                }
                // Every port's connection ended.
                None => break,
            },
        }
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
}

async fn forward_port(
    port: u16,
    data_channel: u8,
    pod_uid: String,
    mut from_client: mpsc::UnboundedReceiver<Bytes>,
    out: mpsc::UnboundedSender<(u8, Bytes)>,
) {
    let conn = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        Ok(c) => c,
        Err(e) => {
            let msg = forward_error(port, &pod_uid, &e);
            let _ = out.send((data_channel + 1, Bytes::from(msg)));
            return;
        }
    };
    let (mut rd, mut wr) = conn.into_split();
    let writer = tokio::spawn(async move {
        while let Some(chunk) = from_client.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out
                    .send((data_channel, Bytes::copy_from_slice(&buf[..n])))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    writer.abort();
}
