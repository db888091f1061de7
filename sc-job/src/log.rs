//! The job's log: one plain line per step (`--log-format text`) or the same events as JSON
//! lines (`--log-format json`), on standard output. Never a secret value.

use crate::cli::LogFormat;
use sc_contract::{ObjectKey, RunError};
use serde_json::{Map, Value, json};
use std::io::Write;

/// The current time, RFC 3339 in whole seconds.
pub fn now() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The fields of a `failed` event: the connection, if any, and the error's reason, message
/// and remedy.
fn failure_fields(connection: Option<&str>, failure: &RunError) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert("event".into(), "failed".into());
    if let Some(c) = connection {
        f.insert("connection".into(), c.into());
    }
    if let Ok(Value::Object(error)) = serde_json::to_value(failure) {
        f.extend(error);
    }
    f
}

/// Prints events and returns their text line (kept in the connection's journal).
#[derive(Debug, Clone, Copy)]
pub struct Log {
    format: LogFormat,
}

impl Log {
    /// A log in `format`.
    pub fn new(format: LogFormat) -> Self {
        Log { format }
    }

    fn emit(&self, text: &str, fields: Map<String, Value>) {
        let line = match self.format {
            LogFormat::Text => text.to_string(),
            LogFormat::Json => {
                let mut m = Map::new();
                m.insert("time".into(), now().into());
                m.extend(fields);
                m.insert("text".into(), text.into());
                Value::Object(m).to_string()
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// A step on an object: `[conn] secret default/sc-x-secret: created (3 keys)`.
    pub fn step(
        &self,
        connection: &str,
        object: &ObjectKey,
        outcome: &str,
        detail: Option<&str>,
    ) -> String {
        let text = match detail {
            Some(d) => format!("[{connection}] {object}: {outcome} ({d})"),
            None => format!("[{connection}] {object}: {outcome}"),
        };
        let mut f = Map::new();
        f.insert("event".into(), "step".into());
        f.insert("connection".into(), connection.into());
        f.insert("kind".into(), object.kind.clone().into());
        f.insert("namespace".into(), object.namespace.clone().into());
        f.insert("name".into(), object.name.clone().into());
        f.insert("outcome".into(), outcome.into());
        if let Some(d) = detail {
            f.insert("detail".into(), d.into());
        }
        self.emit(&text, f);
        text
    }

    /// A remark about a connection: `[conn] message`.
    pub fn note(&self, connection: &str, message: &str) -> String {
        let text = format!("[{connection}] {message}");
        let mut f = Map::new();
        f.insert("event".into(), "note".into());
        f.insert("connection".into(), connection.into());
        f.insert("message".into(), message.into());
        self.emit(&text, f);
        text
    }

    /// A connection that failed: `[conn] failed: <message>; <remedy>`.
    pub fn failed(&self, connection: &str, failure: &RunError) -> String {
        let text = format!("[{connection}] failed: {failure}");
        self.emit(&text, failure_fields(Some(connection), failure));
        text
    }

    /// A line about the whole run: `sc-job: message`.
    pub fn job(&self, message: &str) {
        let mut f = Map::new();
        f.insert("event".into(), "job".into());
        f.insert("message".into(), message.into());
        self.emit(&format!("sc-job: {message}"), f);
    }

    /// A failure of the whole run: `sc-job: failed: <message>; <remedy>`.
    pub fn job_failed(&self, failure: &RunError) {
        self.emit(
            &format!("sc-job: failed: {failure}"),
            failure_fields(None, failure),
        );
    }

    /// The summary line: `sc-job: 2 applied, 1 failed, 0 deleted`.
    pub fn summary(&self, applied: usize, failed: usize, deleted: usize) {
        let f =
            json!({"event": "summary", "applied": applied, "failed": failed, "deleted": deleted});
        let Value::Object(f) = f else { return };
        self.emit(
            &format!("sc-job: {applied} applied, {failed} failed, {deleted} deleted"),
            f,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sc_contract::Reason;

    #[test]
    fn step_and_failure_lines() {
        let log = Log::new(LogFormat::Text);
        let o = ObjectKey::new("Secret", "default", "sc-storageconn-secret");
        assert_eq!(
            log.step("storage_conn", &o, "created", Some("3 keys")),
            "[storage_conn] secret default/sc-storageconn-secret: created (3 keys)"
        );
        let f = RunError::new(
            Reason::NotManaged,
            "secret default/sc-x-secret exists and is not managed by sc-extension",
            "delete it or rename the connection",
        );
        assert_eq!(
            log.failed("x", &f),
            "[x] failed: secret default/sc-x-secret exists and is not managed by sc-extension; delete it or rename the connection"
        );
    }
}
