//! Container logs: every line a container writes to stdout or stderr, with the time it was
//! read, kept per (pod uid, container, restart count) so terminated containers stay readable
//! until their pod is removed. Readers get a snapshot or a follow stream that ends when the
//! container's process has exited and its output is drained.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::Stream;
use jiff::Timestamp;
use tokio::sync::watch;

/// Which output stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line as written by the container, with its trailing newline when it had one.
#[derive(Clone, Debug)]
pub struct LogLine {
    pub time: Timestamp,
    pub stream: LogStream,
    pub data: Bytes,
}

/// How a reader wants the log (the `pods/log` query options that shape the content).
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    /// Keep streaming new lines until the container exits.
    pub follow: bool,
    /// Prefix each line with its RFC 3339 timestamp (nanoseconds) and a space.
    pub timestamps: bool,
    /// Only the last N lines of what exists when the request starts.
    pub tail_lines: Option<usize>,
    /// Only lines written at or after this time (`sinceSeconds` / `sinceTime`).
    pub since: Option<Timestamp>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<usize>,
    /// Only one of the streams (`stream=Stdout|Stderr`); `None` for both.
    pub stream: Option<LogStream>,
}

#[derive(Default)]
struct BufferState {
    lines: Vec<LogLine>,
    closed: bool,
}

/// The log of one container run. Writers append lines; `close` marks the end of output.
pub struct LogBuffer {
    state: Mutex<BufferState>,
    /// Bumped on every append and on close, so followers wake up.
    changed: watch::Sender<u64>,
}

impl Default for LogBuffer {
    fn default() -> Self {
        Self {
            state: Mutex::new(BufferState::default()),
            changed: watch::channel(0).0,
        }
    }
}

impl LogBuffer {
    fn lock(&self) -> MutexGuard<'_, BufferState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Append a line read now.
    pub fn push(&self, stream: LogStream, data: Bytes) {
        self.push_at(Timestamp::now(), stream, data);
    }

    /// Append a line read at `time`.
    pub fn push_at(&self, time: Timestamp, stream: LogStream, data: Bytes) {
        self.lock().lines.push(LogLine { time, stream, data });
        self.changed.send_modify(|n| *n += 1);
    }

    /// No more output will come (the process exited and its pipes are drained).
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Everything currently in the log, shaped by `query` (ignoring `follow`).
    pub fn snapshot(&self, query: &LogQuery) -> Bytes {
        let st = self.lock();
        let mut out = Vec::new();
        let mut limit = query.limit_bytes;
        for line in select(&st.lines, query) {
            if !append(&mut out, line, query.timestamps, &mut limit) {
                break;
            }
        }
        Bytes::from(out)
    }

    /// A stream of chunks: the selected existing lines, then (with `follow`) every new line
    /// until the log is closed. Without `follow` it ends after the existing lines.
    pub fn stream(self: &Arc<Self>, query: LogQuery) -> impl Stream<Item = Bytes> + Send + 'static {
        let buffer = self.clone();
        let rx = self.changed.subscribe();
        let (start, first) = {
            let st = buffer.lock();
            let selected: Vec<usize> = st
                .lines
                .iter()
                .enumerate()
                .filter(|(_, l)| line_selected(l, &query))
                .map(|(i, _)| i)
                .collect();
            let skip = query
                .tail_lines
                .map_or(0, |n| selected.len().saturating_sub(n));
            (
                selected.get(skip).copied().unwrap_or(st.lines.len()),
                st.lines.len(),
            )
        };
        let state = (buffer, rx, start, first, query.limit_bytes, false);
        futures::stream::unfold(
            state,
            move |(buffer, mut rx, mut pos, first, mut limit, done)| {
                let query = query.clone();
                async move {
                    if done {
                        return None;
                    }
                    loop {
                        let (chunk, closed, end) = {
                            let st = buffer.lock();
                            let end = if query.follow { st.lines.len() } else { first };
                            let mut out = Vec::new();
                            let mut exhausted = false;
                            for line in &st.lines[pos..end] {
                                if !line_selected(line, &query) {
                                    continue;
                                }
                                if !append(&mut out, line, query.timestamps, &mut limit) {
                                    exhausted = true;
                                    break;
                                }
                            }
                            (out, st.closed || exhausted || !query.follow, end)
                        };
                        pos = end;
                        if !chunk.is_empty() {
                            return Some((
                                Bytes::from(chunk),
                                (buffer, rx, pos, first, limit, closed),
                            ));
                        }
                        if closed {
                            return None;
                        }
                        if rx.changed().await.is_err() {
                            return None;
                        }
                    }
                }
            },
        )
    }
}

fn line_selected(line: &LogLine, query: &LogQuery) -> bool {
    query.stream.is_none_or(|s| s == line.stream) && query.since.is_none_or(|t| line.time >= t)
}

/// The lines a non-follow read returns: stream and time filters, then the tail.
fn select<'a>(lines: &'a [LogLine], query: &'a LogQuery) -> impl Iterator<Item = &'a LogLine> + 'a {
    let matching = lines.iter().filter(|l| line_selected(l, query)).count();
    let skip = query.tail_lines.map_or(0, |n| matching.saturating_sub(n));
    lines.iter().filter(|l| line_selected(l, query)).skip(skip)
}

/// Append one line to `out`; false when the byte limit is reached.
fn append(out: &mut Vec<u8>, line: &LogLine, timestamps: bool, limit: &mut Option<usize>) -> bool {
    let mut rendered = Vec::with_capacity(line.data.len() + 32);
    if timestamps {
        rendered.extend_from_slice(format_timestamp(line.time).as_bytes());
        rendered.push(b' ');
    }
    rendered.extend_from_slice(&line.data);
    match limit {
        Some(0) => false,
        Some(left) if rendered.len() >= *left => {
            out.extend_from_slice(&rendered[..*left]);
            *left = 0;
            false
        }
        Some(left) => {
            *left -= rendered.len();
            out.extend_from_slice(&rendered);
            true
        }
        None => {
            out.extend_from_slice(&rendered);
            true
        }
    }
}

/// RFC 3339 with nanoseconds, as the kubelet prints log timestamps.
pub fn format_timestamp(t: Timestamp) -> String {
    format!("{t:.9}")
}

/// Identifies one container run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogKey {
    pub pod_uid: String,
    pub container: String,
    pub restart: u32,
}

/// Every container log the kubelet holds.
#[derive(Default)]
pub struct LogStore {
    logs: Mutex<BTreeMap<LogKey, Arc<LogBuffer>>>,
}

impl LogStore {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<LogKey, Arc<LogBuffer>>> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh buffer for a container run (replacing any previous one with the same key).
    pub fn open(&self, key: LogKey) -> Arc<LogBuffer> {
        let buf = Arc::new(LogBuffer::default());
        self.lock().insert(key, buf.clone());
        buf
    }

    pub fn get(&self, key: &LogKey) -> Option<Arc<LogBuffer>> {
        self.lock().get(key).cloned()
    }

    /// The newest run of a container: its restart count and log.
    pub fn latest(&self, pod_uid: &str, container: &str) -> Option<(u32, Arc<LogBuffer>)> {
        self.lock()
            .iter()
            .filter(|(k, _)| k.pod_uid == pod_uid && k.container == container)
            .max_by_key(|(k, _)| k.restart)
            .map(|(k, v)| (k.restart, v.clone()))
    }

    /// Forget every log of a pod (when its object is removed).
    pub fn remove_pod(&self, pod_uid: &str) {
        self.lock().retain(|k, _| k.pod_uid != pod_uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn line(s: &str) -> Bytes {
        Bytes::from(format!("{s}\n"))
    }

    #[test]
    fn snapshot_applies_tail_since_limit_and_timestamps() {
        let b = LogBuffer::default();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        for (i, s) in ["a", "b", "c"].iter().enumerate() {
            b.push_at(
                t0 + jiff::SignedDuration::from_secs(i as i64),
                LogStream::Stdout,
                line(s),
            );
        }
        b.push_at(t0, LogStream::Stderr, line("err"));
        assert_eq!(b.snapshot(&LogQuery::default()), "a\nb\nc\nerr\n");
        assert_eq!(
            b.snapshot(&LogQuery {
                tail_lines: Some(2),
                ..Default::default()
            }),
            "c\nerr\n"
        );
        let since = LogQuery {
            since: Some(t0 + jiff::SignedDuration::from_secs(1)),
            ..Default::default()
        };
        assert_eq!(b.snapshot(&since), "b\nc\n");
        assert_eq!(
            b.snapshot(&LogQuery {
                limit_bytes: Some(3),
                ..Default::default()
            }),
            "a\nb"
        );
        let ts = b.snapshot(&LogQuery {
            timestamps: true,
            tail_lines: Some(1),
            ..Default::default()
        });
        assert_eq!(ts, "2026-01-01T00:00:00.000000000Z err\n");
        let err_only = LogQuery {
            stream: Some(LogStream::Stderr),
            ..Default::default()
        };
        assert_eq!(b.snapshot(&err_only), "err\n");
    }

    #[tokio::test]
    async fn follow_streams_new_lines_and_ends_on_close() {
        let b = Arc::new(LogBuffer::default());
        b.push(LogStream::Stdout, line("one"));
        let mut s = Box::pin(b.stream(LogQuery {
            follow: true,
            ..Default::default()
        }));
        assert_eq!(s.next().await.unwrap(), "one\n");
        let writer = b.clone();
        let task = tokio::spawn(async move {
            writer.push(LogStream::Stdout, line("two"));
            writer.close();
        });
        let mut rest = Vec::new();
        while let Some(chunk) = s.next().await {
            rest.extend_from_slice(&chunk);
        }
        task.await.unwrap();
        assert_eq!(rest, b"two\n");
    }

    #[tokio::test]
    async fn non_follow_stream_ends_after_existing_lines() {
        let b = Arc::new(LogBuffer::default());
        b.push(LogStream::Stdout, line("x"));
        b.push(LogStream::Stdout, line("y"));
        let s = b.stream(LogQuery {
            tail_lines: Some(1),
            ..Default::default()
        });
        let chunks: Vec<Bytes> = s.collect().await;
        assert_eq!(chunks.concat(), b"y\n");
    }
}
