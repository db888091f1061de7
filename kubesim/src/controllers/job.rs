//! The Job controller (Kubernetes 1.31+ semantics, NonIndexed completion mode): pods from the
//! template, restartPolicy Never (a new pod per failure) and OnFailure (the kubelet restarts
//! the container; each restart counts towards the backoff limit), `backoffLimit`,
//! `activeDeadlineSeconds`, `suspend`, the interim `SuccessCriteriaMet` / `FailureTarget`
//! conditions followed by `Complete` / `Failed` once no pod is left running, and
//! `ttlSecondsAfterFinished` (the TTL-after-finished controller).
//!
//! [`plan`] is pure: it looks at a Job and its pods and says what to do.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::time::ts;

/// The component name on Events and managedFields.
pub const COMPONENT: &str = "job-controller";
/// The finalizer on Job pods until the Job controller has counted them.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// Delays of the Job controller.
#[derive(Clone, Debug)]
pub struct JobTiming {
    /// Delay before replacing the first failed pod; doubled per further failure. The real
    /// controller uses 10 s; kubesim defaults to 1 s so that retries stay quick in tests.
    pub backoff_base: Duration,
    /// Upper bound of the replacement delay (the real controller: 6 min).
    pub backoff_max: Duration,
}

impl Default for JobTiming {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// An Event to record on the Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What the controller should do for one Job.
#[derive(Clone, Debug, Default)]
pub struct JobPlan {
    /// How many pods to create from the template.
    pub create: usize,
    /// Names of pods to delete (excess, or remaining after the Job is finished/suspended).
    pub delete: Vec<String>,
    /// The new status (written only when different from the current one).
    pub status: Value,
    pub events: Vec<JobEvent>,
    /// Reconcile again after this delay (a deadline, TTL or backoff timer).
    pub requeue: Option<Duration>,
    /// Delete the Job itself (TTL after finished expired).
    pub delete_job: bool,
}

const SUCCESS_MESSAGE: &str = "Reached expected number of succeeded pods";
const BACKOFF_MESSAGE: &str = "Job has reached the specified backoff limit";
const DEADLINE_MESSAGE: &str = "Job was active longer than specified deadline";

fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
}

/// The Job has a `Complete` or `Failed` condition.
pub fn is_finished(job: &Value) -> bool {
    condition(&job["status"], "Complete").is_some() || condition(&job["status"], "Failed").is_some()
}

fn new_condition(kind: &str, reason: &str, message: &str, now: Timestamp) -> Value {
    json!({
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": ts(now),
        "lastTransitionTime": ts(now),
    })
}

fn add_condition(status: &mut Value, cond: Value) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let list = status["conditions"].as_array_mut().expect("array");
    list.retain(|c| c["type"] != cond["type"]);
    list.push(cond);
}

fn remove_condition(status: &mut Value, kind: &str) {
    if let Some(list) = status["conditions"].as_array_mut() {
        list.retain(|c| c["type"] != kind);
    }
}

fn parse_ts(v: &Value) -> Option<Timestamp> {
    v.as_str()?.parse().ok()
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

fn is_terminal(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn has_tracking_finalizer(pod: &Value) -> bool {
    pod["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|l| l.iter().any(|f| f == TRACKING_FINALIZER))
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn restarts(pod: &Value) -> u64 {
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["status"]["initContainerStatuses"]
                .as_array()
                .into_iter()
                .flatten(),
        )
        .filter_map(|c| c["restartCount"].as_u64())
        .sum()
}

/// When a failed pod finished (its last container's finishedAt, else its creation).
fn finished_at(pod: &Value) -> Option<Timestamp> {
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| parse_ts(&c["state"]["terminated"]["finishedAt"]))
        .max()
        .or_else(|| parse_ts(&pod["metadata"]["creationTimestamp"]))
}

fn secs(d: jiff::SignedDuration) -> Duration {
    Duration::from_secs_f64(d.as_secs_f64().max(0.0))
}

/// Decide what to do for `job`, given the pods it controls, at `now`.
pub fn plan(job: &Value, pods: &[&Value], now: Timestamp, timing: &JobTiming) -> JobPlan {
    plan_with(job, pods, now, timing, None)
}

/// [`plan`], with the time of the last pod failure the controller recorded (the failed pod
/// itself may be gone).
pub fn plan_with(
    job: &Value,
    pods: &[&Value],
    now: Timestamp,
    timing: &JobTiming,
    recorded_failure: Option<Timestamp>,
) -> JobPlan {
    let spec = &job["spec"];
    let mut status = job["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    let mut out = JobPlan::default();

    let live: Vec<&Value> = pods.iter().copied().filter(|p| !is_terminal(p)).collect();
    let active: Vec<&Value> = live
        .iter()
        .copied()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    let terminating = live.len() - active.len();
    // Only counted pods (in the status) decide: a terminal pod still carrying the tracking
    // finalizer is counted by the next pass (see `track`), never here, so nothing is counted
    // twice.
    let succeeded = status["succeeded"].as_u64().unwrap_or(0);
    let failed = status["failed"].as_u64().unwrap_or(0);
    let restart_failures: u64 = active.iter().map(|p| restarts(p)).sum();

    let finish = |status: &mut Value, out: &mut JobPlan| {
        status["active"] = json!(active.len());
        status["ready"] = json!(active.iter().filter(|p| is_ready(p)).count());
        status["succeeded"] = json!(succeeded);
        status["failed"] = json!(failed);
        status["terminating"] = json!(terminating);
        if !status["uncountedTerminatedPods"].is_object() {
            status["uncountedTerminatedPods"] = json!({});
        }
        if status["active"] == 0 {
            status.as_object_mut().expect("object").remove("active");
        }
        if status["succeeded"] == 0 {
            status.as_object_mut().expect("object").remove("succeeded");
        }
        if status["failed"] == 0 {
            status.as_object_mut().expect("object").remove("failed");
        }
        out.status = status.clone();
    };

    // Finished: only the TTL remains (and stray pods are removed).
    if is_finished(job) {
        out.delete = active.iter().map(|p| name(p)).collect();
        if let Some(ttl) = spec["ttlSecondsAfterFinished"].as_i64() {
            let done = condition(&status, "Complete")
                .or_else(|| condition(&status, "Failed"))
                .and_then(|c| parse_ts(&c["lastTransitionTime"]))
                .or_else(|| parse_ts(&status["completionTime"]))
                .unwrap_or(now);
            let expiry = done + jiff::SignedDuration::from_secs(ttl);
            if now >= expiry {
                out.delete_job = true;
            } else {
                out.requeue = Some(secs(expiry.duration_since(now)));
            }
        }
        finish(&mut status, &mut out);
        return out;
    }

    // Suspended: no pods, condition Suspended.
    if spec["suspend"].as_bool() == Some(true) {
        out.delete = active.iter().map(|p| name(p)).collect();
        if condition(&status, "Suspended").is_none() {
            add_condition(
                &mut status,
                new_condition("Suspended", "JobSuspended", "Job suspended", now),
            );
            out.events.push(JobEvent {
                warning: false,
                reason: "Suspended",
                message: "Job suspended".into(),
            });
        }
        finish(&mut status, &mut out);
        return out;
    }
    if condition(&status, "Suspended").is_some() {
        remove_condition(&mut status, "Suspended");
        out.events.push(JobEvent {
            warning: false,
            reason: "Resumed",
            message: "Job resumed".into(),
        });
    }
    if status["startTime"].is_null() {
        status["startTime"] = json!(ts(now));
    }
    let start = parse_ts(&status["startTime"]).unwrap_or(now);

    // A pod finished but is not counted yet: decide nothing until the next pass counts it.
    if pods
        .iter()
        .any(|p| has_tracking_finalizer(p) && is_terminal(p))
    {
        finish(&mut status, &mut out);
        return out;
    }

    // Terminal targets already decided: wait until no pod runs, then finish.
    let target_failure = condition(&status, "FailureTarget").cloned();
    let target_success = condition(&status, "SuccessCriteriaMet").cloned();

    let completions = spec["completions"].as_u64();
    let parallelism = spec["parallelism"].as_u64().unwrap_or(1);
    let backoff_limit = spec["backoffLimit"].as_u64().unwrap_or(6);

    let mut new_target = None;
    if target_failure.is_none() && target_success.is_none() {
        let success = match completions {
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        };
        if success {
            new_target = Some(("SuccessCriteriaMet", "CompletionsReached", SUCCESS_MESSAGE));
        } else if failed + restart_failures > backoff_limit {
            new_target = Some(("FailureTarget", "BackoffLimitExceeded", BACKOFF_MESSAGE));
        } else if let Some(deadline) = spec["activeDeadlineSeconds"].as_i64() {
            let expiry = start + jiff::SignedDuration::from_secs(deadline);
            if now >= expiry {
                new_target = Some(("FailureTarget", "DeadlineExceeded", DEADLINE_MESSAGE));
            } else {
                out.requeue = Some(secs(expiry.duration_since(now)));
            }
        }
    }
    if let Some((kind, reason, message)) = new_target {
        add_condition(&mut status, new_condition(kind, reason, message, now));
    }
    let target = condition(&status, "FailureTarget")
        .or_else(|| condition(&status, "SuccessCriteriaMet"))
        .cloned();

    if let Some(target) = target {
        out.delete = active.iter().map(|p| name(p)).collect();
        if live.is_empty() {
            let reason = target["reason"].as_str().unwrap_or("").to_string();
            let message = target["message"].as_str().unwrap_or("").to_string();
            if target["type"] == "SuccessCriteriaMet" {
                add_condition(
                    &mut status,
                    new_condition("Complete", &reason, &message, now),
                );
                status["completionTime"] = json!(ts(now));
                out.events.push(JobEvent {
                    warning: false,
                    reason: "Completed",
                    message: "Job completed".into(),
                });
            } else {
                add_condition(&mut status, new_condition("Failed", &reason, &message, now));
                let reason = if reason == "DeadlineExceeded" {
                    "DeadlineExceeded"
                } else {
                    "BackoffLimitExceeded"
                };
                out.events.push(JobEvent {
                    warning: true,
                    reason,
                    message,
                });
            }
            if spec["ttlSecondsAfterFinished"].is_i64() {
                out.requeue = Some(Duration::from_secs(
                    spec["ttlSecondsAfterFinished"].as_u64().unwrap_or(0),
                ));
            }
        }
        out.requeue = out.requeue.filter(|_| live.is_empty());
        finish(&mut status, &mut out);
        return out;
    }

    // Running: keep the wanted number of pods.
    let remaining = completions.map_or(parallelism, |c| c.saturating_sub(succeeded));
    let want = if completions.is_none() && succeeded > 0 {
        0
    } else {
        parallelism.min(remaining)
    } as usize;
    if active.len() > want {
        out.delete = active.iter().skip(want).map(|p| name(p)).collect();
    } else if active.len() < want {
        let delay = if failed == 0 {
            Duration::ZERO
        } else {
            let exp = (failed - 1).min(16) as u32;
            timing
                .backoff_base
                .saturating_mul(2u32.saturating_pow(exp))
                .min(timing.backoff_max)
        };
        let last_failure = pods
            .iter()
            .filter(|p| phase(p) == "Failed")
            .filter_map(|p| finished_at(p))
            .chain(recorded_failure)
            .max();
        let ready_at =
            last_failure.map(|t| t + jiff::SignedDuration::try_from(delay).unwrap_or_default());
        match ready_at {
            Some(at) if at > now => {
                let wait = secs(at.duration_since(now));
                out.requeue = Some(out.requeue.map_or(wait, |r| r.min(wait)));
            }
            _ => out.create = want - active.len(),
        }
    }
    finish(&mut status, &mut out);
    out
}

fn name(pod: &Value) -> String {
    pod["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// The pod a Job creates: the template with `generateName: <job>-`, the template's labels
/// (which carry the Job's selector labels) and a controller reference to the Job.
pub fn pod_from_template(job: &Value) -> Value {
    let template = &job["spec"]["template"];
    let mut meta = super::template_pod_meta(job);
    meta["namespace"] = job["metadata"]["namespace"].clone();
    meta["ownerReferences"] = json!([super::controller_ref(job, "batch/v1", "Job")]);
    meta["finalizers"] = json!([TRACKING_FINALIZER]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"].clone()})
}

/// The Job controller as a [`super::Reconciler`].
pub struct JobController {
    timing: JobTiming,
    /// When a pod of each Job (by uid) last failed, for the replacement backoff.
    failures: std::sync::Mutex<std::collections::HashMap<String, Timestamp>>,
}

impl JobController {
    pub fn new(timing: JobTiming) -> Self {
        Self {
            timing,
            failures: Default::default(),
        }
    }
}

fn jobs() -> crate::store::ResKey {
    crate::store::ResKey::new("batch", "jobs")
}

fn pods() -> crate::store::ResKey {
    crate::store::ResKey::new("", "pods")
}

impl super::Reconciler for JobController {
    fn name(&self) -> &'static str {
        COMPONENT
    }

    fn keys_for(
        &self,
        _cluster: &crate::cluster::Cluster,
        ev: &crate::store::WatchEvent,
    ) -> Vec<crate::store::ObjKey> {
        if ev.key.res == jobs() {
            return vec![ev.key.clone()];
        }
        if ev.key.res == pods() {
            if let Some(name) = super::controller_of(&ev.object, "Job") {
                return vec![crate::store::ObjKey::new(&jobs(), &ev.key.namespace, name)];
            }
            if ev.kind != crate::store::EventType::Deleted
                && has_tracking_finalizer(&ev.object)
                && super::controller_uid(&ev.object).is_none()
            {
                return vec![ev.key.clone()];
            }
        }
        Vec::new()
    }

    fn all_keys(&self, cluster: &crate::cluster::Cluster) -> Vec<crate::store::ObjKey> {
        let orphans = cluster
            .store()
            .list(&pods(), None)
            .0
            .into_iter()
            .filter(|p| has_tracking_finalizer(p) && super::controller_uid(p).is_none())
            .map(|p| super::key_of(&pods(), &p));
        super::all_of(cluster, &jobs())
            .into_iter()
            .chain(orphans)
            .collect()
    }

    fn reconcile(
        &self,
        cluster: &crate::cluster::Cluster,
        key: &crate::store::ObjKey,
    ) -> Result<Option<Duration>, crate::cluster::ApiError> {
        use crate::cluster::{DeleteOptions, Propagation, WriteOptions};
        if key.res == pods() {
            // An orphaned pod (its Job deleted with the orphan policy): release it.
            if let Some(pod) = cluster.store().get(key)
                && super::controller_uid(&pod).is_none()
            {
                release(cluster, &key.namespace, &key.name)?;
            }
            return Ok(None);
        }
        let current = cluster.store().get(key);
        release_stale(
            cluster,
            key,
            current.as_ref().map(|j| super::meta_str(j, "uid")),
        )?;
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(job) = current else {
            // Forget the failures of Jobs that are gone.
            let live: std::collections::HashSet<String> = cluster
                .store()
                .list(&jobs(), None)
                .0
                .iter()
                .map(|j| super::meta_str(j, "uid").to_string())
                .collect();
            failures.retain(|uid, _| live.contains(uid));
            return Ok(None);
        };
        let uid = super::meta_str(&job, "uid").to_string();
        let ns = &key.namespace;
        let newly_failed = track(
            cluster,
            key,
            &job,
            &super::owned(cluster, &pods(), ns, &job),
        )?;
        if newly_failed > 0 {
            failures.insert(uid.clone(), Timestamp::now());
        }
        if is_finished(&job) || !job["metadata"]["deletionTimestamp"].is_null() {
            failures.remove(&uid);
        }
        let recorded_failure = failures.get(&uid).copied();
        drop(failures);
        if !job["metadata"]["deletionTimestamp"].is_null() {
            return Ok(None);
        }
        let Some(job) = cluster.store().get(key) else {
            return Ok(None);
        };
        let job: &Value = &job;
        let owned = super::owned(cluster, &pods(), ns, job);
        let refs: Vec<&Value> = owned.iter().collect();
        let plan = plan_with(job, &refs, Timestamp::now(), &self.timing, recorded_failure);
        if plan.delete_job {
            let opts = DeleteOptions {
                propagation_policy: Some(Propagation::Background),
                ..Default::default()
            };
            match cluster.delete(&key.res, ns, &key.name, &opts) {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            return Ok(None);
        }
        for name in &plan.delete {
            super::delete_pod(cluster, job, COMPONENT, ns, name)?;
        }
        for _ in 0..plan.create {
            let pod = cluster.create(
                &pods(),
                ns,
                pod_from_template(job),
                &WriteOptions::manager(COMPONENT),
            );
            match pod {
                Ok(p) => {
                    let msg = format!("Created pod: {}", super::meta_str(&p, "name"));
                    super::record_event(cluster, job, COMPONENT, false, "SuccessfulCreate", &msg);
                }
                Err(e) => {
                    let msg = format!("Error creating: {}", e.message);
                    super::record_event(cluster, job, COMPONENT, true, "FailedCreate", &msg);
                    return Err(e);
                }
            }
        }
        // Events first: whoever sees the new status finds them already recorded.
        for ev in &plan.events {
            super::record_event(cluster, job, COMPONENT, ev.warning, ev.reason, &ev.message);
        }
        if plan.status != job["status"] {
            let status = plan.status.clone();
            cluster.update_status(&key.res, ns, &key.name, COMPONENT, |j| {
                j["status"] = status;
                Ok(())
            })?;
        }
        Ok(plan.requeue)
    }
}

/// Remove the tracking finalizer from a pod (gone is fine).
fn release(
    cluster: &crate::cluster::Cluster,
    ns: &str,
    name: &str,
) -> Result<(), crate::cluster::ApiError> {
    let r = cluster.mutate(&pods(), ns, name, COMPONENT, |p| {
        if let Some(list) = p["metadata"]["finalizers"].as_array_mut() {
            list.retain(|f| f != TRACKING_FINALIZER);
            if list.is_empty() {
                p["metadata"]
                    .as_object_mut()
                    .expect("object")
                    .remove("finalizers");
            }
        }
        Ok(())
    });
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Release the pods of an earlier Job of this name (deleted, or replaced by one with another
/// uid): nobody will count them any more.
fn release_stale(
    cluster: &crate::cluster::Cluster,
    key: &crate::store::ObjKey,
    current_uid: Option<&str>,
) -> Result<(), crate::cluster::ApiError> {
    let (items, _) = cluster.store().list(&pods(), Some(&key.namespace));
    for p in items {
        if super::controller_of(&p, "Job") == Some(key.name.as_str())
            && super::controller_uid(&p) != current_uid
            && has_tracking_finalizer(&p)
        {
            release(cluster, &key.namespace, super::meta_str(&p, "name"))?;
        }
    }
    Ok(())
}

/// Count the Job's terminal pods that still carry the tracking finalizer, as the real
/// controller does: their uids go to `status.uncountedTerminatedPods`, the finalizers are
/// removed, then the uids move into `succeeded` / `failed`. Returns how many failures were
/// counted.
fn track(
    cluster: &crate::cluster::Cluster,
    key: &crate::store::ObjKey,
    job: &Value,
    pods: &[Value],
) -> Result<usize, crate::cluster::ApiError> {
    let uids = |field: &str| -> Vec<String> {
        job["status"]["uncountedTerminatedPods"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect()
    };
    let (mut succeeded, mut failed) = (uids("succeeded"), uids("failed"));
    let before = succeeded.len() + failed.len();
    for p in pods
        .iter()
        .filter(|p| has_tracking_finalizer(p) && is_terminal(p))
    {
        let uid = super::meta_str(p, "uid").to_string();
        if !succeeded.contains(&uid) && !failed.contains(&uid) {
            if phase(p) == "Succeeded" {
                succeeded.push(uid);
            } else {
                failed.push(uid);
            }
        }
    }
    if succeeded.is_empty() && failed.is_empty() {
        return Ok(0);
    }
    if succeeded.len() + failed.len() != before {
        let uncounted = json!({"succeeded": succeeded, "failed": failed});
        cluster.update_status(&key.res, &key.namespace, &key.name, COMPONENT, |j| {
            j["status"]["uncountedTerminatedPods"] = uncounted;
            Ok(())
        })?;
    }
    for p in pods {
        let uid = super::meta_str(p, "uid").to_string();
        if has_tracking_finalizer(p) && (succeeded.contains(&uid) || failed.contains(&uid)) {
            release(cluster, &key.namespace, super::meta_str(p, "name"))?;
        }
    }
    let (s, f) = (succeeded.len() as u64, failed.len() as u64);
    cluster.update_status(&key.res, &key.namespace, &key.name, COMPONENT, |j| {
        let st = &mut j["status"];
        if s > 0 {
            st["succeeded"] = json!(st["succeeded"].as_u64().unwrap_or(0) + s);
        }
        if f > 0 {
            st["failed"] = json!(st["failed"].as_u64().unwrap_or(0) + f);
        }
        st["uncountedTerminatedPods"] = json!({});
        Ok(())
    })?;
    Ok(failed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(extra: Value) -> Value {
        let mut j = json!({
            "metadata": {"name": "j", "namespace": "ns", "uid": "u-1"},
            "spec": {"completions": 1, "parallelism": 1, "backoffLimit": 0,
                     "template": {"metadata": {"labels": {"job-name": "j"}},
                                  "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "alpine"}]}}},
            "status": {}
        });
        if let Some(spec) = extra.get("spec").and_then(Value::as_object) {
            for (k, v) in spec {
                j["spec"][k] = v.clone();
            }
        }
        if let Some(status) = extra.get("status") {
            j["status"] = status.clone();
        }
        j
    }

    /// A pod; terminal ones are already counted in the fixtures' Job status.
    fn pod(name: &str, phase: &str) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": phase}})
    }

    fn types(status: &Value) -> Vec<String> {
        status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["type"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn creates_a_pod_then_completes_in_two_steps() {
        let now = Timestamp::now();
        let t = JobTiming::default();
        let j = job(json!({}));
        let p = plan(&j, &[], now, &t);
        assert_eq!(p.create, 1);
        assert!(p.status["startTime"].is_string());

        let running = pod("j-a", "Running");
        let j = job(json!({"status": p.status}));
        let p = plan(&j, &[&running], now, &t);
        assert_eq!((p.create, p.status["active"].as_u64()), (0, Some(1)));

        // Once the pod succeeded and was counted:
        let done = pod("j-a", "Succeeded");
        let mut counted = p.status.clone();
        counted["succeeded"] = json!(1);
        let j = job(json!({"status": counted}));
        let p = plan(&j, &[&done], now, &t);
        assert_eq!(types(&p.status), ["SuccessCriteriaMet", "Complete"]);
        assert_eq!(p.status["succeeded"], 1);
        assert!(p.status["completionTime"].is_string());
        assert_eq!(p.events[0].reason, "Completed");
        assert_eq!(p.status["conditions"][1]["reason"], "CompletionsReached");
    }

    #[test]
    fn success_waits_for_terminating_pods() {
        let now = Timestamp::now();
        let j = job(json!({"spec": {"parallelism": 2}, "status": {"succeeded": 1}}));
        let done = pod("j-a", "Succeeded");
        let mut other = pod("j-b", "Running");
        let p = plan(&j, &[&done, &other], now, &JobTiming::default());
        assert_eq!(types(&p.status), ["SuccessCriteriaMet"]);
        assert_eq!(p.delete, ["j-b"]);
        other["metadata"]["deletionTimestamp"] = json!(ts(now));
        let j = job(json!({"spec": {"parallelism": 2}, "status": p.status}));
        let p = plan(&j, &[&done, &other], now, &JobTiming::default());
        assert_eq!(types(&p.status), ["SuccessCriteriaMet"]);
        assert_eq!(p.status["terminating"], 1);
        let p = plan(&j, &[&done], now, &JobTiming::default());
        assert_eq!(types(&p.status), ["SuccessCriteriaMet", "Complete"]);
    }

    #[test]
    fn backoff_limit_fails_the_job() {
        let now = Timestamp::now();
        let j = job(json!({"status": {"failed": 1}}));
        let failed = pod("j-a", "Failed");
        let p = plan(&j, &[&failed], now, &JobTiming::default());
        assert_eq!(types(&p.status), ["FailureTarget", "Failed"]);
        assert_eq!(p.status["failed"], 1);
        assert_eq!(p.status["conditions"][1]["reason"], "BackoffLimitExceeded");
        assert_eq!(p.status["conditions"][1]["message"], BACKOFF_MESSAGE);
        assert!(p.events[0].warning);
        assert!(p.status["completionTime"].is_null());
    }

    #[test]
    fn failed_pods_are_replaced_after_a_backoff() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let j = job(json!({"spec": {"backoffLimit": 3}, "status": {"failed": 1}}));
        let failed = pod("j-a", "Failed");
        let p = plan(&j, &[&failed], now, &JobTiming::default());
        assert_eq!(p.create, 0);
        assert_eq!(p.requeue, Some(Duration::from_secs(1)));
        let later = now + jiff::SignedDuration::from_secs(2);
        assert_eq!(plan(&j, &[&failed], later, &JobTiming::default()).create, 1);
    }

    #[test]
    fn uncounted_pods_do_not_decide() {
        let now = Timestamp::now();
        let j = job(json!({}));
        let mut done = pod("j-a", "Succeeded");
        done["metadata"]["finalizers"] = json!([TRACKING_FINALIZER]);
        let p = plan(&j, &[&done], now, &JobTiming::default());
        assert!(types(&p.status).is_empty());
        assert!(p.status["succeeded"].is_null());
        assert_eq!(p.create, 0, "no replacement before the pod is counted");
    }

    #[test]
    fn on_failure_restarts_count_towards_the_limit() {
        let now = Timestamp::now();
        let j = job(json!({"spec": {"backoffLimit": 1}}));
        let p1 = json!({"metadata": {"name": "j-a"}, "status": {"phase": "Running",
            "containerStatuses": [{"restartCount": 2}]}});
        let p = plan(&j, &[&p1], now, &JobTiming::default());
        assert_eq!(types(&p.status), ["FailureTarget"]);
        assert_eq!(p.delete, ["j-a"]);
    }

    #[test]
    fn deadline_and_ttl() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let j = job(
            json!({"spec": {"activeDeadlineSeconds": 10, "ttlSecondsAfterFinished": 5},
                           "status": {"startTime": ts(start)}}),
        );
        let running = pod("j-a", "Running");
        let p = plan(&j, &[&running], start, &JobTiming::default());
        assert_eq!(p.requeue, Some(Duration::from_secs(10)));
        let late = start + jiff::SignedDuration::from_secs(11);
        let p = plan(&j, &[&running], late, &JobTiming::default());
        assert_eq!(types(&p.status), ["FailureTarget"]);
        assert_eq!(p.status["conditions"][0]["reason"], "DeadlineExceeded");
        let j2 = job(json!({"spec": {"ttlSecondsAfterFinished": 5}, "status": p.status}));
        let p = plan(&j2, &[], late, &JobTiming::default());
        assert_eq!(types(&p.status), ["FailureTarget", "Failed"]);
        assert_eq!(p.events[0].reason, "DeadlineExceeded");
        let j3 = job(json!({"spec": {"ttlSecondsAfterFinished": 5}, "status": p.status}));
        assert_eq!(
            plan(&j3, &[], late, &JobTiming::default()).requeue,
            Some(Duration::from_secs(5))
        );
        let p = plan(
            &j3,
            &[],
            late + jiff::SignedDuration::from_secs(6),
            &JobTiming::default(),
        );
        assert!(p.delete_job);
    }

    #[test]
    fn template_pod_has_owner_and_generate_name() {
        let p = pod_from_template(&job(json!({})));
        assert_eq!(p["metadata"]["generateName"], "j-");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
            true
        );
        assert_eq!(p["metadata"]["labels"]["job-name"], "j");
        assert_eq!(p["spec"]["restartPolicy"], "Never");
    }
}
