//! The CronJob controller, after kube-controller-manager's `cronjob_controllerv2`: at each
//! schedule time (in `spec.timeZone`) it creates the Job `<cronjob>-<minutes since epoch>`
//! from `spec.jobTemplate`, with the controller's owner reference and the annotation
//! `batch.kubernetes.io/cronjob-scheduled-timestamp`; it keeps `status.active`,
//! `lastScheduleTime` and `lastSuccessfulTime`, applies `concurrencyPolicy`, `suspend` and
//! `startingDeadlineSeconds`, and deletes finished Jobs beyond the history limits.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use super::job::is_finished;
use super::{meta_str, record_event};
use crate::cluster::{ApiError, Cluster, DeleteOptions, Propagation, WriteOptions};
use crate::cron::{Schedule, time_zone};
use crate::store::{EventType, ObjKey, ResKey, WatchEvent};

pub const COMPONENT: &str = "cronjob-controller";
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Requeue a little after the next schedule time, as the real controller does.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// More missed schedule times than this get a `TooManyMissedTimes` warning.
const MISSED_CAP: usize = 100;

fn cronjobs() -> ResKey {
    ResKey::new("batch", "cronjobs")
}

fn jobs() -> ResKey {
    ResKey::new("batch", "jobs")
}

pub struct CronJobController;

fn parse_time(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(|s| s.parse().ok())
}

/// The condition type (`Complete` / `Failed`) a finished Job ended with.
fn finished_condition(job: &Value) -> Option<&'static str> {
    let conditions = job["status"]["conditions"].as_array()?;
    ["Complete", "Failed"].into_iter().find(|t| {
        conditions
            .iter()
            .any(|c| c["type"] == *t && c["status"] == "True")
    })
}

fn job_ref(job: &Value) -> Value {
    json!({
        "kind": "Job",
        "namespace": meta_str(job, "namespace"),
        "name": meta_str(job, "name"),
        "uid": meta_str(job, "uid"),
        "apiVersion": "batch/v1",
        "resourceVersion": meta_str(job, "resourceVersion"),
    })
}

/// The status fields the controller keeps, in `CronJobStatus`' order.
#[derive(Clone, Debug, PartialEq)]
struct Status {
    active: Vec<Value>,
    last_schedule: Option<String>,
    last_successful: Option<String>,
}

impl Status {
    fn read(cj: &Value) -> Status {
        let s = &cj["status"];
        Status {
            active: s["active"].as_array().cloned().unwrap_or_default(),
            last_schedule: s["lastScheduleTime"].as_str().map(str::to_string),
            last_successful: s["lastSuccessfulTime"].as_str().map(str::to_string),
        }
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.active.is_empty() {
            m.insert("active".into(), Value::Array(self.active.clone()));
        }
        if let Some(t) = &self.last_schedule {
            m.insert("lastScheduleTime".into(), json!(t));
        }
        if let Some(t) = &self.last_successful {
            m.insert("lastSuccessfulTime".into(), json!(t));
        }
        Value::Object(m)
    }

    fn is_active(&self, uid: &str) -> bool {
        self.active.iter().any(|r| r["uid"] == uid)
    }

    fn remove(&mut self, uid: &str) {
        self.active.retain(|r| r["uid"] != uid);
    }
}

/// The Job a CronJob creates for `scheduled`: the template's labels and annotations, the
/// scheduled time annotation (RFC 3339 in the CronJob's zone), the controller reference.
fn job_for(cj: &Value, scheduled: Timestamp, tz: &jiff::tz::TimeZone) -> Value {
    let template = &cj["spec"]["jobTemplate"];
    let mut meta = json!({
        "name": format!("{}-{}", meta_str(cj, "name"), scheduled.as_second().div_euclid(60)),
        "namespace": meta_str(cj, "namespace"),
    });
    if let Some(labels) = template["metadata"]["labels"].as_object() {
        meta["labels"] = Value::Object(labels.clone());
    }
    let mut annotations = template["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let zoned = scheduled.to_zoned(tz.clone());
    annotations.insert(SCHEDULED_TIMESTAMP.into(), json!(rfc3339(&zoned)));
    meta["annotations"] = Value::Object(annotations);
    meta["ownerReferences"] = json!([super::controller_ref(cj, "batch/v1", "CronJob")]);
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": template["spec"].clone(),
    })
}

/// Go's `time.RFC3339` of a zoned time: `Z` in UTC, the offset otherwise.
fn rfc3339(z: &jiff::Zoned) -> String {
    let offset = z.offset().seconds();
    let dt = z.datetime();
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    if offset == 0 {
        return base + "Z";
    }
    let sign = if offset < 0 { '-' } else { '+' };
    let a = offset.abs();
    format!("{base}{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
}

fn delete_job(cluster: &Cluster, cj: &Value, ns: &str, name: &str) -> Result<(), ApiError> {
    let opts = DeleteOptions {
        propagation_policy: Some(Propagation::Background),
        ..DeleteOptions::default()
    };
    match cluster.delete(&jobs(), ns, name, &opts) {
        Ok(_) => {
            record_event(
                cluster,
                cj,
                COMPONENT,
                false,
                "SuccessfulDelete",
                &format!("Deleted job {name}"),
            );
            Ok(())
        }
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => {
            record_event(
                cluster,
                cj,
                COMPONENT,
                true,
                "FailedDelete",
                &format!("Deleted job: {e}"),
            );
            Err(e)
        }
    }
}

/// Delete the oldest of `finished` (by start time, then name) beyond `limit`.
fn remove_oldest(
    cluster: &Cluster,
    cj: &Value,
    mut finished: Vec<&Value>,
    limit: Option<i64>,
    status: &mut Status,
) -> Result<(), ApiError> {
    let Some(limit) = limit else { return Ok(()) };
    let excess = finished.len() as i64 - limit.max(0);
    if excess <= 0 {
        return Ok(());
    }
    finished.sort_by(|a, b| {
        let (sa, sb) = (
            parse_time(&a["status"]["startTime"]),
            parse_time(&b["status"]["startTime"]),
        );
        match (sa, sb) {
            (Some(x), Some(y)) if x != y => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            _ => meta_str(a, "name").cmp(meta_str(b, "name")),
        }
    });
    for job in finished.into_iter().take(excess as usize) {
        delete_job(
            cluster,
            cj,
            meta_str(job, "namespace"),
            meta_str(job, "name"),
        )?;
        status.remove(meta_str(job, "uid"));
    }
    Ok(())
}

impl CronJobController {
    /// One pass over a CronJob: its Jobs, maybe a new one; when to look again.
    fn sync(&self, cluster: &Cluster, cj: &Value) -> Result<Option<Duration>, ApiError> {
        let ns = meta_str(cj, "namespace");
        let now = Timestamp::now();
        let mut status = Status::read(cj);
        let children = super::owned(cluster, &jobs(), ns, cj);

        for job in &children {
            let uid = meta_str(job, "uid");
            let active = status.is_active(uid);
            if !active && !is_finished(job) {
                record_event(
                    cluster,
                    cj,
                    COMPONENT,
                    true,
                    "UnexpectedJob",
                    &format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        meta_str(job, "name")
                    ),
                );
            } else if active && is_finished(job) {
                status.remove(uid);
                record_event(
                    cluster,
                    cj,
                    COMPONENT,
                    false,
                    "SawCompletedJob",
                    &format!(
                        "Saw completed job: {}, condition: {}",
                        meta_str(job, "name"),
                        finished_condition(job).unwrap_or("Complete")
                    ),
                );
            }
            if finished_condition(job) == Some("Complete")
                && let Some(done) = job["status"]["completionTime"].as_str()
            {
                let later = match (&status.last_successful, parse_time(&json!(done))) {
                    (None, _) => true,
                    (Some(prev), Some(d)) => parse_time(&json!(prev)).is_none_or(|p| d > p),
                    _ => false,
                };
                if later {
                    status.last_successful = Some(done.to_string());
                }
            }
        }
        // Active references to Jobs that are gone.
        let missing: Vec<String> = status
            .active
            .iter()
            .filter(|r| !children.iter().any(|j| j["metadata"]["uid"] == r["uid"]))
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect();
        for name in missing {
            if cluster.get(&jobs(), ns, &name).is_err() {
                record_event(
                    cluster,
                    cj,
                    COMPONENT,
                    false,
                    "MissingJob",
                    &format!("Active job went missing: {name}"),
                );
                status.active.retain(|r| r["name"] != name.as_str());
            }
        }

        let requeue = if cj["metadata"]["deletionTimestamp"].is_null() {
            self.schedule(cluster, cj, &mut status, now)?
        } else {
            None
        };

        // Finished Jobs beyond the history limits.
        let finished = |kind: &str| -> Vec<&Value> {
            children
                .iter()
                .filter(|j| finished_condition(j) == Some(kind))
                .collect()
        };
        let spec = &cj["spec"];
        remove_oldest(
            cluster,
            cj,
            finished("Complete"),
            spec["successfulJobsHistoryLimit"].as_i64(),
            &mut status,
        )?;
        remove_oldest(
            cluster,
            cj,
            finished("Failed"),
            spec["failedJobsHistoryLimit"].as_i64(),
            &mut status,
        )?;

        if status != Status::read(cj) {
            let value = status.to_json();
            cluster.update_status(&cronjobs(), ns, meta_str(cj, "name"), COMPONENT, |c| {
                c["status"] = value;
                Ok(())
            })?;
        }
        Ok(requeue)
    }

    /// Start the Job of the most recent schedule time if it is due; the delay until the
    /// next schedule time.
    fn schedule(
        &self,
        cluster: &Cluster,
        cj: &Value,
        status: &mut Status,
        now: Timestamp,
    ) -> Result<Option<Duration>, ApiError> {
        let spec = &cj["spec"];
        let tz_name = spec["timeZone"].as_str();
        let tz = match time_zone(tz_name) {
            Ok(tz) => tz,
            Err(e) => {
                let msg = format!("invalid timeZone: {:?}: {e}", tz_name.unwrap_or_default());
                record_event(cluster, cj, COMPONENT, true, "UnknownTimeZone", &msg);
                return Ok(None);
            }
        };
        if spec["suspend"] == true {
            return Ok(None);
        }
        let text = spec["schedule"].as_str().unwrap_or_default();
        let sched = match Schedule::parse(text) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("unparseable schedule: {text:?} : {e}");
                record_event(cluster, cj, COMPONENT, true, "UnparseableSchedule", &msg);
                return Ok(None);
            }
        };
        let created = parse_time(&cj["metadata"]["creationTimestamp"]).unwrap_or(now);
        let last = status.last_schedule.as_deref().and_then(|t| t.parse().ok());
        let base = last.unwrap_or(created);
        let deadline = spec["startingDeadlineSeconds"].as_i64();
        let mut earliest = base;
        if let Some(d) = deadline {
            let limit = now - SignedDuration::from_secs(d);
            if limit > earliest {
                earliest = limit;
            }
        }
        // When to look again: right after the next schedule time following the most recent
        // one (the deadline not considered).
        let next_delay = |status: &Status| -> Option<Duration> {
            let base = status
                .last_schedule
                .as_deref()
                .and_then(|t| t.parse().ok())
                .unwrap_or(created);
            let (recent, _) = sched.most_recent(base, now, &tz, MISSED_CAP);
            let next = sched.next(recent.unwrap_or(base), &tz)?;
            let wait = next.duration_since(now).max(SignedDuration::ZERO);
            Some(Duration::try_from(wait).unwrap_or_default() + NEXT_SCHEDULE_DELTA)
        };
        let (scheduled, missed) = sched.most_recent(earliest, now, &tz, MISSED_CAP + 1);
        let Some(scheduled) = scheduled else {
            return Ok(next_delay(status));
        };
        if missed > MISSED_CAP {
            record_event(
                cluster,
                cj,
                COMPONENT,
                true,
                "TooManyMissedTimes",
                &format!(
                    "too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
                ),
            );
        }
        if let Some(d) = deadline
            && scheduled + SignedDuration::from_secs(d) < now
        {
            let msg = format!(
                "Missed scheduled time to start a job: {}",
                scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000")
            );
            record_event(cluster, cj, COMPONENT, true, "MissSchedule", &msg);
            return Ok(next_delay(status));
        }
        let job = job_for(cj, scheduled, &tz);
        let job_name = meta_str(&job, "name").to_string();
        if status.active.iter().any(|r| r["name"] == job_name.as_str()) || last == Some(scheduled) {
            return Ok(next_delay(status));
        }
        match spec["concurrencyPolicy"].as_str() {
            Some("Forbid") if !status.active.is_empty() => {
                record_event(
                    cluster,
                    cj,
                    COMPONENT,
                    false,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid",
                );
                return Ok(next_delay(status));
            }
            Some("Replace") => {
                for r in status.active.clone() {
                    let name = r["name"].as_str().unwrap_or_default();
                    delete_job(
                        cluster,
                        cj,
                        r["namespace"].as_str().unwrap_or_default(),
                        name,
                    )?;
                    status.remove(r["uid"].as_str().unwrap_or_default());
                }
            }
            _ => {}
        }
        let ns = meta_str(cj, "namespace");
        let created_job = match cluster.create(&jobs(), ns, job, &WriteOptions::manager(COMPONENT))
        {
            Ok(j) => {
                record_event(
                    cluster,
                    cj,
                    COMPONENT,
                    false,
                    "SuccessfulCreate",
                    &format!("Created job {job_name}"),
                );
                j
            }
            Err(e) if e.code == 409 => cluster.get(&jobs(), ns, &job_name)?,
            Err(e) => {
                record_event(
                    cluster,
                    cj,
                    COMPONENT,
                    true,
                    "FailedCreate",
                    &format!("Error creating job: {}", e.message),
                );
                return Err(e);
            }
        };
        if !status.is_active(meta_str(&created_job, "uid")) {
            status.active.push(job_ref(&created_job));
        }
        status.last_schedule = Some(crate::time::ts(scheduled));
        Ok(next_delay(status))
    }
}

impl super::Reconciler for CronJobController {
    fn name(&self) -> &'static str {
        COMPONENT
    }

    fn keys_for(&self, _cluster: &Cluster, ev: &WatchEvent) -> Vec<ObjKey> {
        if ev.key.res == cronjobs() {
            if ev.kind == EventType::Deleted {
                return Vec::new();
            }
            return vec![ev.key.clone()];
        }
        if ev.key.res == jobs()
            && let Some(name) = super::controller_of(&ev.object, "CronJob")
        {
            return vec![ObjKey::new(&cronjobs(), &ev.key.namespace, name)];
        }
        Vec::new()
    }

    fn all_keys(&self, cluster: &Cluster) -> Vec<ObjKey> {
        super::all_of(cluster, &cronjobs())
    }

    fn reconcile(&self, cluster: &Cluster, key: &ObjKey) -> Result<Option<Duration>, ApiError> {
        let Some(cj) = cluster.store().get(key) else {
            return Ok(None);
        };
        self.sync(cluster, &cj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cronjob(tz: Option<&str>) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "apps", "uid": "u-1"},
            "spec": {"schedule": "0 9 * * *", "timeZone": tz, "jobTemplate": {
                "metadata": {"labels": {"team": "x"}, "annotations": {"note": "y"}},
                "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "alpine"}]}}}}}})
    }

    #[test]
    fn job_names_annotations_and_owner() {
        let at: Timestamp = "2026-03-02T08:00:00Z".parse().unwrap();
        let berlin = time_zone(Some("Europe/Berlin")).unwrap();
        let job = job_for(&cronjob(Some("Europe/Berlin")), at, &berlin);
        assert_eq!(
            job["metadata"]["name"],
            format!("nightly-{}", at.as_second() / 60)
        );
        assert_eq!(job["metadata"]["namespace"], "apps");
        assert_eq!(
            job["metadata"]["annotations"],
            json!({"note": "y", SCHEDULED_TIMESTAMP: "2026-03-02T09:00:00+01:00"})
        );
        assert_eq!(job["metadata"]["labels"], json!({"team": "x"}));
        let owner = &job["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&owner["kind"], &owner["uid"], &owner["controller"]),
            (&json!("CronJob"), &json!("u-1"), &json!(true))
        );
        let utc = job_for(&cronjob(None), at, &jiff::tz::TimeZone::UTC);
        assert_eq!(
            utc["metadata"]["annotations"][SCHEDULED_TIMESTAMP],
            "2026-03-02T08:00:00Z"
        );
    }

    #[test]
    fn status_keeps_the_field_order_and_omits_empty_fields() {
        let mut s = Status::read(&json!({}));
        assert_eq!(s.to_json(), json!({}));
        s.last_successful = Some("t2".into());
        s.last_schedule = Some("t1".into());
        s.active.push(json!({"name": "j"}));
        let keys: Vec<String> = s.to_json().as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["active", "lastScheduleTime", "lastSuccessfulTime"]);
    }
}
