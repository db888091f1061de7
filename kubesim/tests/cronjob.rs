//! The CronJob controller seen by kubectl: a `* * * * *` CronJob gets its Job
//! (`<cronjob>-<minutes since epoch>`, owner reference, scheduled-timestamp annotation) within
//! a minute and `kubectl get cronjob` shows its LAST SCHEDULE; `concurrencyPolicy` Forbid
//! then Replace, `suspend`, the history limit and `lastSuccessfulTime`; the API server's
//! validation of schedules and time zones.

use std::time::Duration;

use kubesim::testing::{CmdOutput, kubectl, run_with_stdin, wait_until};
use kubesim::{Kubesim, Options};
use serde_json::Value;

/// A minute-level schedule fires within 60 s; the slack covers a loaded machine.
const MINUTE: Duration = Duration::from_secs(100);

async fn start() -> Kubesim {
    Kubesim::start(Options::default())
        .await
        .expect("kubesim starts")
}

async fn apply(ks: &Kubesim, manifest: &str) -> CmdOutput {
    run_with_stdin(ks, "kubectl", &["apply", "-f", "-"], Some(manifest)).await
}

async fn json(ks: &Kubesim, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let out = kubectl(ks, &a).await;
    serde_json::from_str(out.ok(&format!("kubectl {}", a.join(" ")))).expect("JSON")
}

async fn jobs(ks: &Kubesim) -> Vec<Value> {
    json(ks, &["get", "jobs"]).await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn cronjob(name: &str, schedule: &str, policy: &str, command: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: {name}
spec:
  schedule: "{schedule}"
  concurrencyPolicy: {policy}
{extra}
  jobTemplate:
    metadata:
      labels:
        team: reports
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: alpine
            command: {command}
"#
    )
}

async fn events(ks: &Kubesim, reason: &str) -> Vec<String> {
    let selector = format!("reason={reason},involvedObject.kind=CronJob");
    json(ks, &["get", "events", "--field-selector", &selector]).await["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn every_minute_creates_a_job_and_get_shows_last_schedule() {
    let ks = start().await;
    apply(
        &ks,
        &cronjob("tick", "* * * * *", "Allow", r#"["sleep", "600"]"#, ""),
    )
    .await
    .ok("kubectl apply cronjob");
    let cj = json(&ks, &["get", "cronjob", "tick"]).await;

    let job = wait_until(MINUTE, "the first Job of the CronJob", || async {
        jobs(&ks).await.into_iter().next()
    })
    .await;
    let name = job["metadata"]["name"].as_str().unwrap();
    let annotation =
        job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            .as_str()
            .expect("the scheduled-timestamp annotation");
    let scheduled: jiff::Timestamp = annotation.parse().expect("RFC 3339");
    assert!(annotation.ends_with('Z'), "{annotation}");
    assert_eq!(scheduled.as_second() % 60, 0, "{annotation}");
    assert_eq!(name, format!("tick-{}", scheduled.as_second() / 60));
    let owner = &job["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "CronJob");
    assert_eq!(owner["name"], "tick");
    assert_eq!(owner["uid"], cj["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);
    assert_eq!(owner["blockOwnerDeletion"], true);
    assert_eq!(job["metadata"]["labels"]["team"], "reports");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"][0],
        "sleep"
    );

    // Status: the Job in `active`, the schedule time as lastScheduleTime.
    let status = wait_until(MINUTE, "the CronJob's status", || async {
        let cj = json(&ks, &["get", "cronjob", "tick"]).await;
        cj["status"]["lastScheduleTime"]
            .is_string()
            .then(|| cj["status"].clone())
    })
    .await;
    assert_eq!(status["lastScheduleTime"], annotation);
    assert_eq!(status["active"][0]["name"], name);
    assert_eq!(status["active"][0]["kind"], "Job");
    assert_eq!(status["active"][0]["uid"], job["metadata"]["uid"]);
    assert!(!events(&ks, "SuccessfulCreate").await.is_empty());

    let table = kubectl(&ks, &["get", "cronjob", "tick"]).await;
    let table = table.ok("kubectl get cronjob");
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"
        ]
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[0], "tick");
    assert_eq!(row[row.len() - 3], "1", "{table}");
    assert_ne!(row[row.len() - 2], "<none>", "{table}");
}

/// Forbid keeps one Job running across schedule times; Replace deletes it for the next
/// one; a finished Job sets lastSuccessfulTime and the history limit removes older ones;
/// suspend stops scheduling.
#[tokio::test]
async fn concurrency_policies_history_and_suspend() {
    let ks = start().await;
    apply(
        &ks,
        &cronjob("one", "* * * * *", "Forbid", r#"["sleep", "600"]"#, ""),
    )
    .await
    .ok("kubectl apply cronjob");
    let first = wait_until(MINUTE, "the first Job", || async {
        jobs(&ks).await.into_iter().next()
    })
    .await;
    let first_name = first["metadata"]["name"].as_str().unwrap().to_string();
    // The next schedule time passes with the first Job still running: no second Job.
    let msgs = wait_until(MINUTE, "a JobAlreadyActive event", || async {
        let m = events(&ks, "JobAlreadyActive").await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(
        msgs[0],
        "Not starting job because prior execution is running and concurrency policy is Forbid"
    );
    let names: Vec<String> = jobs(&ks)
        .await
        .iter()
        .map(|j| j["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, std::slice::from_ref(&first_name));

    // Replace: the running Job is deleted for the next one, which finishes at once.
    kubectl(
        &ks,
        &["patch", "cronjob", "one", "--type=merge", "-p",
          r#"{"spec":{"concurrencyPolicy":"Replace","successfulJobsHistoryLimit":1,"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"alpine","command":["true"]}]}}}}}}"#],
    )
    .await
    .ok("kubectl patch cronjob");
    wait_until(MINUTE, "the first Job replaced", || async {
        let js = jobs(&ks).await;
        (!js.iter()
            .any(|j| j["metadata"]["name"] == first_name.as_str())
            && !js.is_empty())
        .then_some(())
    })
    .await;
    assert!(
        events(&ks, "SuccessfulDelete")
            .await
            .contains(&format!("Deleted job {first_name}")),
    );
    // The replacement completes: lastSuccessfulTime, and the Job leaves `active`.
    let status = wait_until(MINUTE, "lastSuccessfulTime", || async {
        let cj = json(&ks, &["get", "cronjob", "one"]).await;
        (cj["status"]["lastSuccessfulTime"].is_string() && cj["status"]["active"].is_null())
            .then(|| cj["status"].clone())
    })
    .await;
    assert!(status["lastScheduleTime"].is_string());
    assert!(!events(&ks, "SawCompletedJob").await.is_empty());

    // The next one completes too: only the newest successful Job is kept (limit 1).
    let kept = wait_until(
        MINUTE,
        "a second successful Job and the first removed",
        || async {
            let deleted = events(&ks, "SuccessfulDelete").await;
            let js = jobs(&ks).await;
            (deleted.len() >= 2 && js.len() == 1).then_some(js)
        },
    )
    .await;
    assert_eq!(kept[0]["status"]["succeeded"], 1);

    // Suspended: no more Jobs (the status stays as it was).
    kubectl(
        &ks,
        &[
            "patch",
            "cronjob",
            "one",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
    )
    .await
    .ok("suspend");
    let table = kubectl(&ks, &["get", "cronjob", "one"]).await;
    assert!(
        table.ok("get").lines().nth(1).unwrap().contains("True"),
        "{table:?}"
    );
}

#[tokio::test]
async fn schedules_and_time_zones_are_validated() {
    let ks = start().await;
    let bad = apply(
        &ks,
        &cronjob("bad", "61 * * * *", "Allow", r#"["true"]"#, ""),
    )
    .await;
    assert!(!bad.success());
    assert!(
        bad.stderr.contains(r#"spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61"#),
        "{bad:?}"
    );
    let tz = apply(
        &ks,
        &cronjob(
            "tz",
            "0 9 * * *",
            "Allow",
            r#"["true"]"#,
            "  timeZone: Mars/Olympus",
        ),
    )
    .await;
    assert!(!tz.success());
    assert!(
        tz.stderr.contains(
            r#"spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus"#
        ),
        "{tz:?}"
    );
    let policy = apply(
        &ks,
        &cronjob("p", "0 9 * * *", "Sometimes", r#"["true"]"#, ""),
    )
    .await;
    assert!(!policy.success());
    assert!(
        policy.stderr.contains(r#"spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace""#),
        "{policy:?}"
    );
    apply(
        &ks,
        &cronjob(
            "berlin",
            "0 9 * * MON-FRI",
            "Allow",
            r#"["true"]"#,
            "  timeZone: Europe/Berlin",
        ),
    )
    .await
    .ok("a valid zone and names");
    let table = kubectl(&ks, &["get", "cronjob", "berlin"]).await;
    let row = table.ok("get").lines().nth(1).unwrap().to_string();
    assert!(
        row.contains("Europe/Berlin") && row.contains("<none>"),
        "{row}"
    );
}
