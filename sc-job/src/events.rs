//! Warning Events on the Job `sc-job` for each failed connection, so that
//! `kubectl describe job/sc-job -n sc-system` names the failing object, the reason and the
//! remedy next to the job controller's own events. Messages come from [`RunError`], which never
//! carries a secret value.

use crate::api::Kube;
use sc_contract::RunError;
use serde_json::{Value, json};

/// The component name on the Events (`source.component`, `reportingComponent`).
const COMPONENT: &str = "sc-job";
/// The API server rejects longer Event messages.
const MAX_MESSAGE: usize = 1024;

/// The core/v1 Event for `failure` of `connection` (None: the job itself) on `job`.
pub fn failure_event(
    job: &Value,
    connection: Option<&str>,
    failure: &RunError,
    now: &str,
) -> Value {
    let meta = &job["metadata"];
    let job_name = meta["name"].as_str().unwrap_or("sc-job");
    let namespace = meta["namespace"].as_str().unwrap_or_default();
    let mut message = match connection {
        Some(c) => format!("[{c}] {}; {}", failure.message, failure.remedy),
        None => format!("{}; {}", failure.message, failure.remedy),
    };
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE - 3;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": format!("{job_name}."), "namespace": namespace},
        "involvedObject": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job_name,
            "namespace": namespace,
            "uid": meta["uid"],
        },
        "reason": failure.reason,
        "message": message,
        "type": "Warning",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": std::env::var("POD_NAME").unwrap_or_else(|_| COMPONENT.to_string()),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    })
}

/// Posts one Warning Event per failure on Job `job_name` in `namespace` (none when there is no
/// such Job, e.g. sc-job run by hand). Best effort: the failures are already in the log and the
/// metadata ConfigMaps; an Event that cannot be written (no RBAC) is reported in the returned text.
pub async fn post_failures(
    kube: &Kube,
    namespace: &str,
    job_name: &str,
    failures: &[(Option<&str>, &RunError)],
) -> Result<usize, String> {
    if failures.is_empty() {
        return Ok(0);
    }
    let job = match kube.get("Job", namespace, job_name).await {
        Ok(Some(job)) => job,
        // Run by hand, outside a Job: the log and the metadata tell everything.
        Ok(None) => return Ok(0),
        Err(e) => return Err(format!("reading job {namespace}/{job_name} failed: {e}")),
    };
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut written = 0;
    for (connection, failure) in failures {
        let event = failure_event(&job, *connection, failure, &now);
        match kube.create("Event", namespace, &event).await {
            Ok(_) => written += 1,
            Err(e) => {
                return Err(format!(
                    "writing an event on job {namespace}/{job_name} failed: {e}"
                ));
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sc_contract::Reason;

    #[test]
    fn the_event_names_the_object_reason_and_remedy_on_the_job() {
        let job = json!({"metadata": {"name": "sc-job", "namespace": "sc-system", "uid": "u-1"}});
        let f = RunError::new(
            Reason::NotManaged,
            "secret default/sc-x-secret exists and is not managed by sc-extension",
            "delete it or rename the connection",
        );
        let e = failure_event(&job, Some("x"), &f, "2026-01-01T00:00:00Z");
        assert_eq!(e["involvedObject"]["uid"], "u-1");
        assert_eq!(e["involvedObject"]["kind"], "Job");
        assert_eq!(e["reason"], "NotManaged");
        assert_eq!(e["type"], "Warning");
        assert_eq!(
            e["message"],
            "[x] secret default/sc-x-secret exists and is not managed by sc-extension; delete it or rename the connection"
        );
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let job = json!({"metadata": {"name": "sc-job", "namespace": "ns", "uid": "u"}});
        let f = RunError::new(Reason::InvalidRequest, "é".repeat(2000), "fix it");
        let e = failure_event(&job, None, &f, "2026-01-01T00:00:00Z");
        let m = e["message"].as_str().unwrap();
        assert!(m.len() <= MAX_MESSAGE && m.ends_with("..."));
    }
}
