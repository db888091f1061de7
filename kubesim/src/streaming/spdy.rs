//! The server side of SPDY/3.1 port-forwarding, tunnelled in binary WebSocket messages
//! (`SPDY/3.1+portforward.k8s.io`, client-go's port-forward dialer since 1.31). The
//! WebSocket messages carry the SPDY byte stream; message boundaries mean nothing.
//!
//! For each forwarded connection the client opens two streams (SYN_STREAM) with the headers
//! `streamtype` (`error` or `data`), `port` and `requestid`, and waits for a SYN_REPLY to
//! each. Once both streams of a request are there, the server connects to 127.0.0.1:port and
//! copies bytes between the connection and the data stream (DATA frames). When the
//! connection cannot be made, the kubelet's message goes on the error stream. When the pod
//! side closes, both streams are closed (an empty DATA frame with FIN). A FIN from the client
//! on the data stream half-closes the connection; a RST_STREAM ends it.
//!
//! Header blocks share one zlib stream per direction, primed with the SPDY/3 dictionary. The
//! client's are inflated with that dictionary; the server's replies carry no headers and are
//! written as stored (uncompressed) deflate blocks, each followed by an empty stored block
//! (a sync flush), so the client's inflater hands them over frame by frame.
//! PING frames are answered; SETTINGS, WINDOW_UPDATE and HEADERS need no answer (client-go's
//! SPDY implementation does no flow control).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const FLAG_FIN: u8 = 1;

/// The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1):
/// length-prefixed header names and values, then common status lines, dates and tokens.
pub fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413\
        414415416417502504505203 Non-Authoritative Information204 No Content301 Moved \
        Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal \
        Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug \
        Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,\
        image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,\
        text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,\
        utf-,*,enq=0.";
    let mut out = Vec::new();
    for w in WORDS {
        out.extend_from_slice(&(w.len() as u32).to_be_bytes());
        out.extend_from_slice(w.as_bytes());
    }
    out.extend_from_slice(TAIL.as_bytes());
    out
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

const WINDOW: usize = 32 * 1024;

/// The inflater of the client's header blocks: one zlib stream over the whole connection.
pub struct Inflater {
    state: Box<DecompressorOxide>,
    window: Vec<u8>,
    pos: usize,
    /// zlib header bytes still expected (2, plus 4 when it names a dictionary).
    header: Vec<u8>,
    header_done: bool,
}

impl Default for Inflater {
    fn default() -> Self {
        let dict = dictionary();
        let mut window = vec![0u8; WINDOW];
        window[..dict.len()].copy_from_slice(&dict);
        Self {
            state: Box::default(),
            window,
            pos: dict.len(),
            header: Vec::new(),
            header_done: false,
        }
    }
}

impl Inflater {
    /// Inflate the next header block.
    pub fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, String> {
        while !self.header_done && !input.is_empty() {
            self.header.push(input[0]);
            input = &input[1..];
            let needed = if self.header.len() >= 2 && self.header[1] & 0x20 != 0 {
                6
            } else {
                2
            };
            if self.header.len() == needed {
                if self.header[0] & 0x0f != 8 {
                    return Err("the header block is not a zlib stream".into());
                }
                self.header_done = true;
            }
        }
        let mut out = Vec::new();
        loop {
            let (status, consumed, written) = decompress(
                &mut self.state,
                input,
                &mut self.window,
                self.pos,
                inflate_flags::TINFL_FLAG_HAS_MORE_INPUT,
            );
            out.extend_from_slice(&self.window[self.pos..self.pos + written]);
            self.pos = (self.pos + written) & (WINDOW - 1);
            input = &input[consumed..];
            match status {
                TINFLStatus::HasMoreOutput => continue,
                TINFLStatus::NeedsMoreInput | TINFLStatus::Done
                    if input.is_empty() || consumed == 0 =>
                {
                    return Ok(out);
                }
                TINFLStatus::NeedsMoreInput | TINFLStatus::Done => continue,
                other => return Err(format!("inflating a header block failed: {other:?}")),
            }
        }
    }
}

/// The deflater of the server's header blocks (stored blocks, no compression).
#[derive(Default)]
pub struct Deflater {
    started: bool,
}

impl Deflater {
    pub fn deflate(&mut self, raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(raw.len() + 16);
        if !self.started {
            self.started = true;
            // CMF 0x78 (deflate, 32 KiB window); FLG 0xBB: a preset dictionary follows.
            out.extend_from_slice(&[0x78, 0xBB]);
            out.extend_from_slice(&adler32(&dictionary()).to_be_bytes());
        }
        for chunk in raw.chunks(u16::MAX as usize) {
            let len = chunk.len() as u16;
            out.push(0);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(&[0, 0, 0, 0xff, 0xff]);
        out
    }
}

/// A header block: name/value pairs (a value may hold several, NUL-separated).
pub fn parse_headers(block: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut at = 0usize;
    let u32_at = |at: &mut usize| -> Result<usize, String> {
        let b = block.get(*at..*at + 4).ok_or("a truncated header block")?;
        *at += 4;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(&mut at)?;
    let mut out = Vec::new();
    for _ in 0..count {
        let n = u32_at(&mut at)?;
        let name = block.get(at..at + n).ok_or("a truncated header name")?;
        at += n;
        let n = u32_at(&mut at)?;
        let value = block.get(at..at + n).ok_or("a truncated header value")?;
        at += n;
        out.push((
            String::from_utf8_lossy(name).to_lowercase(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Ok(out)
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[0x80, 0x03]);
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

fn data(stream: u32, fin: bool, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.push(if fin { FLAG_FIN } else { 0 });
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// One forwarded connection: its two streams and, once started, its task.
#[derive(Default)]
struct Pair {
    port: u16,
    error: Option<u32>,
    data: Option<u32>,
    to_pod: Option<mpsc::UnboundedSender<Option<Bytes>>>,
    from_client: Option<mpsc::UnboundedReceiver<Option<Bytes>>>,
    task: Option<JoinHandle<()>>,
    closed: Arc<AtomicBool>,
}

/// Serve one tunnelled SPDY connection.
pub async fn serve(mut socket: WebSocket, pod_uid: String) {
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    let mut inbuf: Vec<u8> = Vec::new();
    let mut inflater = Inflater::default();
    let mut deflater = Deflater::default();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // stream id -> request id
    let mut streams: HashMap<u32, String> = HashMap::new();
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) => inbuf.extend_from_slice(&b),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
            out = out_rx.recv() => {
                let Some(frame) = out else { break };
                if socket.send(Message::Binary(frame)).await.is_err() {
                    break;
                }
                continue;
            }
        }
        // Every complete frame in the buffer.
        let mut goaway = false;
        while inbuf.len() >= 8 {
            let len = u32::from_be_bytes([0, inbuf[5], inbuf[6], inbuf[7]]) as usize;
            if inbuf.len() < 8 + len {
                break;
            }
            let frame: Vec<u8> = inbuf.drain(..8 + len).collect();
            let flags = frame[4];
            let payload = &frame[8..];
            if frame[0] & 0x80 == 0 {
                let stream = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                let Some(pair) = streams.get(&stream).and_then(|r| pairs.get_mut(r)) else {
                    continue;
                };
                if pair.data == Some(stream)
                    && let Some(tx) = &pair.to_pod
                {
                    if !payload.is_empty() {
                        let _ = tx.send(Some(Bytes::copy_from_slice(payload)));
                    }
                    if flags & FLAG_FIN != 0 {
                        let _ = tx.send(None);
                    }
                }
                continue;
            }
            let kind = u16::from_be_bytes([frame[2], frame[3]]);
            match kind {
                SYN_STREAM if payload.len() >= 10 => {
                    let stream =
                        u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                            & 0x7fff_ffff;
                    let headers = match inflater
                        .inflate(&payload[10..])
                        .and_then(|b| parse_headers(&b))
                    {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::warn!(error = %e, "a port-forward stream's headers are unreadable");
                            goaway = true;
                            break;
                        }
                    };
                    let header = |n: &str| {
                        headers
                            .iter()
                            .find(|(k, _)| k == n)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    let request = header("requestid");
                    let port: u16 = header("port").parse().unwrap_or(0);
                    let pair = pairs.entry(request.clone()).or_default();
                    pair.port = port;
                    match header("streamtype").as_str() {
                        "error" => pair.error = Some(stream),
                        "data" => {
                            pair.data = Some(stream);
                            let (tx, rx) = mpsc::unbounded_channel();
                            pair.to_pod = Some(tx);
                            pair.from_client = Some(rx);
                        }
                        _ => {}
                    }
                    streams.insert(stream, request.clone());
                    let mut reply = stream.to_be_bytes().to_vec();
                    reply.extend_from_slice(&deflater.deflate(&0u32.to_be_bytes()));
                    let _ = out_tx.send(control(SYN_REPLY, 0, &reply));
                    if let (Some(err), Some(dat), None) = (pair.error, pair.data, &pair.task) {
                        let rx = pair.from_client.take().expect("set with the data stream");
                        pair.task = Some(tokio::spawn(forward(
                            pair.port,
                            pod_uid.clone(),
                            err,
                            dat,
                            rx,
                            out_tx.clone(),
                            pair.closed.clone(),
                        )));
                    }
                }
                // Keep the shared inflater in step; the headers themselves mean nothing here.
                HEADERS if payload.len() >= 4 && inflater.inflate(&payload[4..]).is_err() => {
                    goaway = true;
                    break;
                }
                RST_STREAM if payload.len() >= 4 => {
                    let stream =
                        u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                            & 0x7fff_ffff;
                    let Some(request) = streams.get(&stream).cloned() else {
                        continue;
                    };
                    if let Some(pair) = pairs.get_mut(&request)
                        && pair.data == Some(stream)
                    {
                        if let Some(task) = pair.task.take() {
                            task.abort();
                        }
                        if !pair.closed.swap(true, Ordering::SeqCst)
                            && let Some(err) = pair.error
                        {
                            let _ = out_tx.send(data(err, true, &[]));
                        }
                        if let Some(pair) = pairs.remove(&request) {
                            for s in [pair.error, pair.data].into_iter().flatten() {
                                streams.remove(&s);
                            }
                        }
                    }
                }
                PING => {
                    let _ = out_tx.send(control(PING, 0, payload));
                }
                GOAWAY => {
                    goaway = true;
                    break;
                }
                _ => {}
            }
        }
        if goaway {
            break;
        }
    }
    for pair in pairs.into_values() {
        if let Some(task) = pair.task {
            task.abort();
        }
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
}

/// One forwarded connection: connect, then copy until the pod side closes.
async fn forward(
    port: u16,
    pod_uid: String,
    error_stream: u32,
    data_stream: u32,
    mut from_client: mpsc::UnboundedReceiver<Option<Bytes>>,
    out: mpsc::UnboundedSender<Bytes>,
    closed: Arc<AtomicBool>,
) {
    let close = |out: &mpsc::UnboundedSender<Bytes>| {
        if !closed.swap(true, Ordering::SeqCst) {
            let _ = out.send(data(data_stream, true, &[]));
            let _ = out.send(data(error_stream, true, &[]));
        }
    };
    let conn = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        Ok(c) => c,
        Err(e) => {
            let msg = super::forward_error(port, &pod_uid, &e);
            let _ = out.send(data(error_stream, false, msg.as_bytes()));
            close(&out);
            return;
        }
    };
    let (mut rd, mut wr) = conn.into_split();
    let writer = tokio::spawn(async move {
        while let Some(Some(chunk)) = from_client.recv().await {
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
                if out.send(data(data_stream, false, &buf[..n])).is_err() {
                    break;
                }
            }
        }
    }
    writer.abort();
    close(&out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_has_the_spec_length_and_checksum() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b",enq=0."));
    }

    #[test]
    fn stored_header_blocks_inflate_with_the_dictionary() {
        let mut deflater = Deflater::default();
        let mut inflater = Inflater::default();
        for round in 0..3u32 {
            let mut raw = 1u32.to_be_bytes().to_vec();
            for s in ["port", &format!("80{round}")] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
            let block = deflater.deflate(&raw);
            let out = inflater.inflate(&block).unwrap();
            assert_eq!(out, raw);
            assert_eq!(
                parse_headers(&out).unwrap(),
                [("port".to_string(), format!("80{round}"))]
            );
        }
    }
}
