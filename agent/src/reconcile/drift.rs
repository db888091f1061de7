//! Drift of what sc-job materialized, decided from what the watches show of the objects
//! (their metadata only, never a value). Pure, like the plan stage that calls it: which
//! connections drifted, what `drift.json` each one is to hold, the Warning events, and when
//! repairs become contested.
//!
//! A connection is looked at once it is applied (`status.appliedHash` is the requested hash):
//! each Secret, ServiceAccount and SecretProviderClass its `status.json` lists is checked
//! against the watch. A drift seen for the first time (an object deleted, without our label,
//! or written by another field manager after sc-job) starts an episode: a Warning event names
//! the object, the change and the field manager, and, under `driftPolicy: Repair`, a repair
//! (an `apply` with cause `repair` in the next change set). More than
//! [`DriftLimits::repairs`] episodes within [`DriftLimits::window`] seconds make the
//! connection `Failed` with reason `Contested` until its request changes or an operator runs
//! `sc-agent reapply`. The repairs are counted in `drift.json`, so a restart keeps them.

use super::desired::Desired;
use crate::contract::{
    Change, Drift, DriftedObject, Metadata, ObjectKey, ObjectState, Reason, RunError, RunPhase,
};
use sc_model::DriftPolicy;
use std::collections::{BTreeMap, BTreeSet};

/// The kinds whose drift is watched.
pub const WATCHED_KINDS: [&str; 3] = ["Secret", "ServiceAccount", "SecretProviderClass"];

/// What the watches show of one materialized object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// It does not exist.
    Absent,
    /// It exists, in this state.
    Present(ObjectState),
}

/// How many repairs within how long before the connection is contested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriftLimits {
    /// Repairs allowed within the window.
    pub repairs: usize,
    /// The window, in seconds.
    pub window: i64,
    /// Seconds between two looks at the Secrets (which no watch reports).
    pub interval: i64,
}

impl Default for DriftLimits {
    fn default() -> Self {
        DriftLimits {
            repairs: 3,
            window: 600,
            interval: 30,
        }
    }
}

/// The drift writes and events of a step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftPlan {
    /// `drift.json` to write (`None`: remove the key), by connection.
    pub writes: Vec<DriftWrite>,
    /// Warning events to publish.
    pub events: Vec<DriftEvent>,
}

/// One `drift.json` write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftWrite {
    /// The connection.
    pub connection: String,
    /// Its metadata ConfigMap.
    pub configmap: String,
    /// The new document; `None` removes it.
    pub drift: Option<Drift>,
}

/// One Warning event about drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftEvent {
    /// `Drifted` or `Contested`.
    pub reason: &'static str,
    /// The note: the connection, the objects, what changed, who changed it, what follows.
    pub note: String,
}

/// Whether the drift recorded in `m` for `hash` waits for a repair run.
pub fn awaits_repair(m: &Metadata, hash: &str) -> bool {
    m.drift.as_ref().is_some_and(|d| {
        d.hash == hash && d.repair_pending && d.contested.is_none() && !d.objects.is_empty()
    })
}

/// The drift of `objects` (what `status.json` lists) as the watches show them; objects of
/// kinds not watched (or whose watch has not listed yet) are left out of `live`, so they
/// never count as drifted.
pub fn detect(objects: &[ObjectKey], live: &BTreeMap<ObjectKey, Live>) -> Vec<DriftedObject> {
    let mut out = Vec::new();
    for o in objects {
        let drifted = |change: Change, write: Option<&(String, String)>| DriftedObject {
            kind: o.kind.clone(),
            namespace: o.namespace.clone(),
            name: o.name.clone(),
            change,
            manager: write.map(|w| w.0.clone()),
            at: write.map(|w| w.1.clone()),
        };
        match live.get(o) {
            None => {}
            Some(Live::Absent) => out.push(drifted(Change::Deleted, None)),
            Some(Live::Present(s)) if !s.labelled => {
                out.push(drifted(Change::LabelLost, s.foreign_write.as_ref()))
            }
            Some(Live::Present(s)) => {
                if let Some(w) = &s.foreign_write {
                    out.push(drifted(Change::Written, Some(w)));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The objects of every applied connection whose drift is to be looked at: the keys the
/// observe stage reads from the watches.
pub fn watched_objects<'a>(
    desired: &'a [Desired],
    metadata: &'a [Metadata],
) -> impl Iterator<Item = &'a ObjectKey> + 'a {
    let wanted: BTreeMap<&str, &str> = desired
        .iter()
        .map(|d| (d.name.as_str(), d.hash.as_str()))
        .collect();
    metadata.iter().flat_map(move |m| {
        let applied = m.status.as_ref().filter(|s| {
            wanted.get(m.connection.as_str()).is_some_and(|h| {
                s.applied_hash.as_deref() == Some(*h) && s.failure_for(h).is_none()
            })
        });
        applied
            .into_iter()
            .flat_map(|s| s.objects.iter())
            .filter(|o| WATCHED_KINDS.contains(&o.kind.as_str()))
    })
}

/// The drift writes and events of one step at `now`, every object of `live` read in this
/// step (see [`plan_drift_read`]).
#[cfg(test)]
pub fn plan_drift(
    desired: &[Desired],
    metadata: &[Metadata],
    live: &BTreeMap<ObjectKey, Live>,
    now: i64,
    limits: DriftLimits,
) -> DriftPlan {
    let read: BTreeSet<ObjectKey> = live.keys().cloned().collect();
    plan_drift_read(desired, metadata, live, &read, now, limits)
}

/// The drift writes and events of one step at `now`; `read` holds the objects of `live` read
/// from the API in this step (the others come from watches or earlier looks). An object
/// found deleted by such a read after the repair of its deletion ran (its change set
/// concluded, the run not failed) was deleted again: a new repair, counted towards
/// `Contested`, as a Secret deleted again before any look saw it back would otherwise stay
/// deleted.
pub fn plan_drift_read(
    desired: &[Desired],
    metadata: &[Metadata],
    live: &BTreeMap<ObjectKey, Live>,
    read: &BTreeSet<ObjectKey>,
    now: i64,
    limits: DriftLimits,
) -> DriftPlan {
    let by_name: BTreeMap<&str, &Metadata> = metadata
        .iter()
        .map(|m| (m.connection.as_str(), m))
        .collect();
    let mut out = DriftPlan::default();
    for d in desired {
        let Some(m) = by_name.get(d.name.as_str()).copied() else {
            continue;
        };
        let recorded = m.drift.as_deref();
        let applied = m.status.as_ref().is_some_and(|s| {
            s.applied_hash.as_deref() == Some(d.hash.as_str()) && s.failure_for(&d.hash).is_none()
        });
        if !applied {
            // Not applied (yet): drift of an earlier hash is stale, the next run settles it.
            if recorded.is_some_and(|r| r.hash != d.hash) {
                out.writes.push(write(m, None));
            }
            continue;
        }
        let objects: Vec<ObjectKey> = m
            .status
            .as_ref()
            .map(|s| {
                s.objects
                    .iter()
                    .filter(|o| WATCHED_KINDS.contains(&o.kind.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let mut detected = detect(&objects, live);
        let mut next = recorded
            .filter(|r| r.hash == d.hash)
            .cloned()
            .unwrap_or_else(|| Drift {
                hash: d.hash.clone(),
                ..Drift::default()
            });
        // An object this step did not look at (a Secret outside its turn of reads, a read
        // that failed, a watch not listed yet) keeps the drift recorded for it: only a look
        // clears it. Otherwise its pending repair would be dropped, and the next look would
        // count the same drift as a new repair.
        detected.extend(
            next.objects
                .iter()
                .filter(|o| {
                    let key = ObjectKey::new(&o.kind, &o.namespace, &o.name);
                    !live.contains_key(&key) && objects.contains(&key)
                })
                .cloned(),
        );
        detected.sort();
        detected.dedup();
        next.repairs.retain(|t| now - *t < limits.window);
        if m.reapply.is_some() {
            // An operator's run: the contest and the count start afresh.
            next.contested = None;
            next.repairs.clear();
            next.repair_pending = false;
        }
        if m.applying_hash.as_deref() == Some(d.hash.as_str()) && m.applying_repair {
            // The change set in flight carries the connection as a repair (or an operator's
            // reapply): the repair is under way. A change of the request in flight may have
            // applied the object before the drift: the repair stays pending until a run made
            // for it.
            next.repair_pending = false;
        }
        if detected.is_empty() {
            next.objects.clear();
            next.since = None;
            next.repair_pending = false;
        } else {
            let known: BTreeSet<&DriftedObject> = next.objects.iter().collect();
            let failed = repair_failed(m, &next, d.drift_policy);
            let repaired = !failed && repair_ran(m, &next, d.drift_policy);
            let fresh: Vec<&DriftedObject> = detected
                .iter()
                .filter(|o| {
                    !known.contains(o)
                        || (repaired
                            && o.change == Change::Deleted
                            && read.contains(&ObjectKey::new(&o.kind, &o.namespace, &o.name)))
                })
                .collect();
            if fresh.is_empty() && failed {
                // The repair's run failed (its sc-job killed, the API unreachable): the same
                // repair again, not a new one; the failed-run backoff paces it.
                next.repair_pending = true;
            }
            if !fresh.is_empty() {
                let what: Vec<String> = fresh.iter().map(ToString::to_string).collect();
                let what = what.join("; ");
                next.since = Some(now);
                let follow = if d.drift_policy == DriftPolicy::Report {
                    "driftPolicy is Report: nothing is run; run `sc-agent reapply` to restore it"
                        .to_string()
                } else if next.contested.is_some() {
                    "repairs are contested: nothing is run".to_string()
                } else if next.repairs.len() >= limits.repairs {
                    let managers: BTreeSet<&str> = detected
                        .iter()
                        .filter_map(|o| o.manager.as_deref())
                        .collect();
                    let by = if managers.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " by field manager {}",
                            managers.into_iter().collect::<Vec<_>>().join(", ")
                        )
                    };
                    let message = format!(
                        "connection {}: {what}, again after {} repairs within {} s: contested{by}",
                        d.name,
                        next.repairs.len(),
                        limits.window
                    );
                    let error = RunError::new(
                        Reason::Contested,
                        message.clone(),
                        format!(
                            "stop the other writer{by}, or set connections.{}.driftPolicy to Report; then run `sc-agent reapply {}`",
                            d.name, d.name
                        ),
                    );
                    out.events.push(DriftEvent {
                        reason: "Contested",
                        note: format!("{message}; {}", error.remedy),
                    });
                    next.contested = Some(error);
                    next.repair_pending = false;
                    "no more repairs".to_string()
                } else {
                    next.repairs.push(now);
                    next.repair_pending = true;
                    format!(
                        "repairing (repair {} of at most {} within {} s)",
                        next.repairs.len(),
                        limits.repairs,
                        limits.window
                    )
                };
                out.events.push(DriftEvent {
                    reason: "Drifted",
                    note: format!("connection {}: {what}; {follow}", d.name),
                });
            }
            next.objects = detected;
        }
        let keep = !next.objects.is_empty()
            || next.contested.is_some()
            || !next.repairs.is_empty()
            || !next.extra.is_empty();
        let next = keep.then_some(next);
        if next.as_ref() != recorded {
            out.writes.push(write(m, next));
        }
    }
    out
}

/// Whether the repair of a drift that persists was run and failed: no repair waits or runs,
/// repairs are not contested, and the connection's last journal entry is a failed run that
/// ended after the drift was first seen (the watch cache keeps that entry for this).
fn repair_failed(m: &Metadata, drift: &Drift, policy: DriftPolicy) -> bool {
    if policy == DriftPolicy::Report
        || drift.repair_pending
        || drift.contested.is_some()
        || drift.repairs.is_empty()
        || m.applying_hash.as_deref() == Some(drift.hash.as_str())
    {
        return false;
    }
    let Some(since) = drift.since else {
        return false;
    };
    m.journal.last().is_some_and(|e| {
        e.result == RunPhase::Failed
            && e.time
                .parse::<jiff::Timestamp>()
                .is_ok_and(|ended| ended.as_second() >= since)
    })
}

/// Whether the repair of a drift that persists has run: repairs were started, none waits or
/// runs (a change set carrying one is in flight until it is concluded), and they are not
/// contested.
fn repair_ran(m: &Metadata, drift: &Drift, policy: DriftPolicy) -> bool {
    policy == DriftPolicy::Repair
        && !drift.repair_pending
        && drift.contested.is_none()
        && !drift.repairs.is_empty()
        && m.applying_hash.as_deref() != Some(drift.hash.as_str())
}

fn write(m: &Metadata, drift: Option<Drift>) -> DriftWrite {
    DriftWrite {
        connection: m.connection.clone(),
        configmap: m.configmap.clone(),
        drift,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Status;
    use crate::reconcile::desired::tests::want;
    use std::sync::Arc;

    fn secret() -> ObjectKey {
        ObjectKey::new("Secret", "default", "sc-a-secret")
    }

    fn applied(name: &str, hash: &str) -> Metadata {
        Metadata {
            configmap: format!("sc-conn-{name}"),
            connection: name.into(),
            status: Some(Arc::new(Status {
                phase: "Ready".into(),
                hash: Some(hash.into()),
                applied_hash: Some(hash.into()),
                objects: vec![secret(), ObjectKey::new("Deployment", "default", "web")],
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn present(labelled: bool, write: Option<(&str, &str)>) -> Live {
        Live::Present(ObjectState {
            labelled,
            foreign_write: write.map(|(m, t)| (m.to_string(), t.to_string())),
        })
    }

    fn live(state: Live) -> BTreeMap<ObjectKey, Live> {
        BTreeMap::from([(secret(), state)])
    }

    /// `m` with the drift the plan wrote.
    fn after(mut m: Metadata, p: &DriftPlan) -> Metadata {
        if let Some(w) = p.writes.iter().find(|w| w.connection == m.connection) {
            m.drift = w.drift.clone().map(Box::new);
        }
        m
    }

    #[test]
    fn intact_objects_write_nothing() {
        let d = [want("a", "h1")];
        let p = plan_drift(
            &d,
            &[applied("a", "h1")],
            &live(present(true, None)),
            100,
            DriftLimits::default(),
        );
        assert_eq!(p, DriftPlan::default());
        // Objects of unwatched kinds, or not listed yet, are not drift.
        let p = plan_drift(
            &d,
            &[applied("a", "h1")],
            &BTreeMap::new(),
            100,
            DriftLimits::default(),
        );
        assert_eq!(p, DriftPlan::default());
    }

    #[test]
    fn a_deleted_secret_is_reported_once_and_repaired() {
        let d = [want("a", "h1")];
        let m = applied("a", "h1");
        let gone = live(Live::Absent);
        let p = plan_drift(
            &d,
            std::slice::from_ref(&m),
            &gone,
            100,
            DriftLimits::default(),
        );
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.events[0].reason, "Drifted");
        assert!(
            p.events[0]
                .note
                .starts_with("connection a: secret default/sc-a-secret was deleted; repairing"),
            "{}",
            p.events[0].note
        );
        let m = after(m, &p);
        let drift = m.drift.clone().unwrap();
        assert_eq!(drift.objects[0].change, Change::Deleted);
        assert_eq!(drift.repairs, vec![100]);
        assert!(awaits_repair(&m, "h1"));
        assert_eq!(
            m.phase(Some("h1")),
            crate::contract::ConnectionPhase::Drifted
        );
        // The next step (same drift): no second event, nothing written.
        assert_eq!(
            plan_drift(
                &d,
                std::slice::from_ref(&m),
                &gone,
                101,
                DriftLimits::default()
            ),
            DriftPlan::default()
        );
        // Carried by a change set: the repair is under way.
        let mut carried = m.clone();
        carried.applying_hash = Some("h1".into());
        carried.applying_repair = true;
        let p = plan_drift(
            &d,
            std::slice::from_ref(&carried),
            &gone,
            102,
            DriftLimits::default(),
        );
        assert!(!awaits_repair(&after(carried, &p), "h1"));
        // Restored: the objects are cleared, the repair is still counted.
        let p = plan_drift(
            &d,
            std::slice::from_ref(&m),
            &live(present(true, None)),
            103,
            DriftLimits::default(),
        );
        let m = after(m, &p);
        let drift = m.drift.clone().unwrap();
        assert!(drift.objects.is_empty() && drift.repairs == vec![100]);
        assert_eq!(m.phase(Some("h1")), crate::contract::ConnectionPhase::Ready);
        // Past the window, the document goes.
        let p = plan_drift(
            &d,
            std::slice::from_ref(&m),
            &live(present(true, None)),
            800,
            DriftLimits::default(),
        );
        assert_eq!(p.writes[0].drift, None);
    }

    #[test]
    fn a_failed_repair_run_is_run_again_without_counting_a_new_repair() {
        let d = [want("a", "h1")];
        let gone = live(Live::Absent);
        let m = applied("a", "h1");
        // Seen at T (2026-12-06T18:58:20Z); the run ends at T + 6 s.
        const T: i64 = 1_796_583_500;
        let p = plan_drift(
            &d,
            std::slice::from_ref(&m),
            &gone,
            T,
            DriftLimits::default(),
        );
        // Carried by a change set, whose sc-job is then killed: the run failed.
        let mut carried = after(m, &p);
        carried.applying_hash = Some("h1".into());
        carried.applying_repair = true;
        let p = plan_drift(
            &d,
            std::slice::from_ref(&carried),
            &gone,
            T + 1,
            DriftLimits::default(),
        );
        let mut ended = after(carried, &p);
        ended.applying_hash = None;
        assert!(!awaits_repair(&ended, "h1"));
        let entry = |time: &str, result: &str| -> crate::contract::JournalEntry {
            serde_json::from_value(serde_json::json!({
                "time": time, "job": "sc-system/sc-job", "changeset": "c1", "result": result
            }))
            .unwrap()
        };
        let mut failed = ended.clone();
        failed.journal = vec![entry("2026-12-06T18:58:26Z", "Failed")];
        let p = plan_drift(
            &d,
            std::slice::from_ref(&failed),
            &gone,
            T + 30,
            DriftLimits::default(),
        );
        assert!(p.events.is_empty(), "{:?}", p.events);
        let failed = after(failed, &p);
        assert!(
            awaits_repair(&failed, "h1"),
            "the failed repair is not run again"
        );
        assert_eq!(failed.drift.as_ref().unwrap().repairs, vec![T]);
        // A run that succeeded (what the step holds of the object not read since), a failure
        // before the drift was seen, or a run still in flight: no second run.
        let mut ok = ended.clone();
        ok.journal = vec![entry("2026-12-06T18:58:26Z", "Ready")];
        let mut old = ended.clone();
        old.drift.as_mut().unwrap().since = Some(T + 10);
        old.journal = vec![entry("2026-12-06T18:58:26Z", "Failed")];
        let mut running = failed_again(&ended, entry("2026-12-06T18:58:26Z", "Failed"));
        running.applying_hash = Some("h1".into());
        running.applying_repair = true;
        running.drift.as_mut().unwrap().repair_pending = false;
        for (what, m) in [
            ("succeeded", ok),
            ("older failure", old),
            ("in flight", running),
        ] {
            let p = plan_drift_read(
                &d,
                std::slice::from_ref(&m),
                &gone,
                &BTreeSet::new(),
                T + 40,
                DriftLimits::default(),
            );
            assert!(!awaits_repair(&after(m, &p), "h1"), "{what}");
        }
    }

    /// A Secret deleted again before any look saw it back (its repair ran and succeeded):
    /// read deleted in a step after the repair's change set concluded, it is a new repair,
    /// counted, so a writer that keeps deleting it makes the connection contested.
    #[test]
    fn a_secret_deleted_again_after_its_repair_ran_is_a_new_repair() {
        let d = [want("a", "h1")];
        let gone = live(Live::Absent);
        let read: BTreeSet<ObjectKey> = gone.keys().cloned().collect();
        let limits = DriftLimits {
            repairs: 2,
            ..DriftLimits::default()
        };
        let mut m = applied("a", "h1");
        let mut now = 1_000;
        // Each round: seen deleted, carried by a change set, the change set concluded.
        let round = |m: Metadata, now: i64| {
            let p = plan_drift_read(&d, std::slice::from_ref(&m), &gone, &read, now, limits);
            let mut carried = after(m, &p);
            let pending = awaits_repair(&carried, "h1");
            carried.applying_hash = Some("h1".into());
            carried.applying_repair = true;
            let p2 = plan_drift_read(
                &d,
                std::slice::from_ref(&carried),
                &gone,
                &read,
                now + 1,
                limits,
            );
            let mut ended = after(carried, &p2);
            ended.applying_hash = None;
            ended.applying_repair = false;
            (ended, pending, p.events)
        };
        for n in 1..=2 {
            let (next, pending, events) = round(m, now);
            assert!(pending, "repair {n} is not started");
            assert_eq!(events.len(), 1, "{events:?}");
            assert!(
                events[0].note.contains(&format!("repair {n} of at most 2")),
                "{}",
                events[0].note
            );
            m = next;
            now += 10;
        }
        // Deleted a third time within the window: contested, nothing more is run.
        let p = plan_drift_read(&d, std::slice::from_ref(&m), &gone, &read, now, limits);
        assert!(
            p.events
                .iter()
                .any(|e| e.reason == "Contested" && e.note.contains("again after 2 repairs")),
            "{:?}",
            p.events
        );
        let m = after(m, &p);
        assert!(!awaits_repair(&m, "h1"));
        assert!(m.drift.as_ref().unwrap().contested.is_some());
        // Once contested, a later read starts nothing and says nothing more.
        let p = plan_drift_read(&d, std::slice::from_ref(&m), &gone, &read, now + 5, limits);
        assert!(p.events.is_empty(), "{:?}", p.events);
        assert!(!awaits_repair(&after(m, &p), "h1"));
    }

    /// Only a read of this step counts: the same persisting drift taken from a watch or an
    /// earlier look (not read since the repair) starts no new repair, and a drift other than
    /// a deletion (a write, a lost label: from a watch that may not show the repair yet)
    /// neither.
    #[test]
    fn a_persisting_drift_not_read_in_the_step_starts_no_new_repair() {
        let d = [want("a", "h1")];
        let gone = live(Live::Absent);
        let m = applied("a", "h1");
        let p = plan_drift(
            &d,
            std::slice::from_ref(&m),
            &gone,
            100,
            DriftLimits::default(),
        );
        let mut ended = after(m, &p);
        ended.drift.as_mut().unwrap().repair_pending = false;
        let p = plan_drift_read(
            &d,
            std::slice::from_ref(&ended),
            &gone,
            &BTreeSet::new(),
            110,
            DriftLimits::default(),
        );
        assert!(p.events.is_empty(), "{:?}", p.events);
        assert!(!awaits_repair(&after(ended.clone(), &p), "h1"));
        let written = live(present(
            true,
            Some(("kubectl-patch", "2026-12-06T18:58:30Z")),
        ));
        let read: BTreeSet<ObjectKey> = written.keys().cloned().collect();
        let p = plan_drift(
            &d,
            std::slice::from_ref(&ended),
            &written,
            120,
            DriftLimits::default(),
        );
        let mut w = after(ended, &p);
        assert!(awaits_repair(&w, "h1"), "a write is a new drift");
        w.drift.as_mut().unwrap().repair_pending = false;
        let p = plan_drift_read(
            &d,
            std::slice::from_ref(&w),
            &written,
            &read,
            130,
            DriftLimits::default(),
        );
        assert!(p.events.is_empty(), "{:?}", p.events);
    }

    #[test]
    fn drift_seen_while_a_change_of_the_request_is_in_flight_is_still_repaired() {
        // The run of a changed request applied the Secret, then another writer changed it,
        // and the drift is seen while that run is still in flight: it will not repair it.
        let d = [want("a", "h1")];
        let written = live(present(true, Some(("vandal", "2026-01-01T00:00:05Z"))));
        let mut m = applied("a", "h1");
        m.applying_hash = Some("h1".into());
        m.applying_repair = false;
        let p = plan_drift(
            &d,
            std::slice::from_ref(&m),
            &written,
            100,
            DriftLimits::default(),
        );
        let mut m = after(m, &p);
        assert!(awaits_repair(&m, "h1"), "the repair was dropped");
        // The run ends: the repair is planned (a change set with cause repair).
        m.applying_hash = None;
        let p = plan_drift(
            &d,
            std::slice::from_ref(&m),
            &written,
            101,
            DriftLimits::default(),
        );
        let m = after(m, &p);
        assert!(awaits_repair(&m, "h1"));
        assert_eq!(m.drift.as_ref().unwrap().repairs, vec![100]);
    }

    #[test]
    fn drift_of_an_object_the_step_did_not_look_at_stays() {
        // A step reads at most 64 Secrets (in turns) and a read may fail: its look may have
        // nothing on a drifted Secret. That is no news: the drift and its pending repair
        // stay, and the next look finds the same episode, not a new one.
        let d = [want("a", "h1")];
        let gone = live(Live::Absent);
        let p = plan_drift(
            &d,
            &[applied("a", "h1")],
            &gone,
            100,
            DriftLimits::default(),
        );
        let m = after(applied("a", "h1"), &p);
        assert!(awaits_repair(&m, "h1"));
        let p = plan_drift(
            &d,
            std::slice::from_ref(&m),
            &BTreeMap::new(),
            102,
            DriftLimits::default(),
        );
        assert_eq!(
            p,
            DriftPlan::default(),
            "a step without a look changed the drift"
        );
        let m = after(m, &p);
        assert!(awaits_repair(&m, "h1"), "the pending repair was dropped");
        let p = plan_drift(
            &d,
            std::slice::from_ref(&m),
            &gone,
            104,
            DriftLimits::default(),
        );
        assert!(p.events.is_empty(), "{:?}", p.events);
        let m = after(m, &p);
        assert_eq!(m.drift.as_ref().unwrap().repairs, vec![100]);
        // Looked at and intact: cleared.
        let p = plan_drift(
            &d,
            std::slice::from_ref(&m),
            &live(present(true, None)),
            106,
            DriftLimits::default(),
        );
        assert!(after(m, &p).drift.unwrap().objects.is_empty());
    }

    fn failed_again(m: &Metadata, e: crate::contract::JournalEntry) -> Metadata {
        let mut m = m.clone();
        m.journal = vec![e];
        m
    }

    #[test]
    fn a_write_by_another_manager_and_a_lost_label_name_what_changed() {
        let d = [want("a", "h1")];
        let p = plan_drift(
            &d,
            &[applied("a", "h1")],
            &live(present(
                true,
                Some(("kubectl-patch", "2026-01-01T00:00:05Z")),
            )),
            100,
            DriftLimits::default(),
        );
        assert!(
            p.events[0]
                .note
                .contains("secret default/sc-a-secret was written by field manager kubectl-patch"),
            "{}",
            p.events[0].note
        );
        let p = plan_drift(
            &d,
            &[applied("a", "h1")],
            &live(present(false, None)),
            100,
            DriftLimits::default(),
        );
        assert!(
            p.events[0].note.contains("lost its label"),
            "{}",
            p.events[0].note
        );
    }

    #[test]
    fn report_only_reports() {
        let mut d = want("a", "h1");
        d.drift_policy = DriftPolicy::Report;
        let p = plan_drift(
            &[d],
            &[applied("a", "h1")],
            &live(Live::Absent),
            100,
            DriftLimits::default(),
        );
        assert!(
            p.events[0].note.contains("driftPolicy is Report"),
            "{}",
            p.events[0].note
        );
        let m = after(applied("a", "h1"), &p);
        assert!(!awaits_repair(&m, "h1"));
        assert_eq!(
            m.phase(Some("h1")),
            crate::contract::ConnectionPhase::Drifted
        );
    }

    #[test]
    fn repeated_drift_ends_contested_until_reapply() {
        let d = [want("a", "h1")];
        let limits = DriftLimits {
            repairs: 2,
            window: 600,
            interval: 30,
        };
        let mut m = applied("a", "h1");
        let mut repairs = 0;
        for i in 0..4 {
            // Another write each time, each with its own time.
            let at = format!("2026-01-01T00:00:0{i}Z");
            let p = plan_drift(
                &d,
                std::slice::from_ref(&m),
                &live(present(true, Some(("other-controller", at.as_str())))),
                100 + i,
                limits,
            );
            m = after(m, &p);
            if awaits_repair(&m, "h1") {
                repairs += 1;
                m.applying_hash = Some("h1".into());
                m.applying_repair = true;
                m = after(
                    m.clone(),
                    &plan_drift(
                        &d,
                        std::slice::from_ref(&m),
                        &BTreeMap::new(),
                        100 + i,
                        limits,
                    ),
                );
                m.applying_hash = None;
                m.applying_repair = false;
            }
        }
        assert_eq!(repairs, 2);
        let error = m.error_for("h1").expect("contested").clone();
        assert_eq!(error.reason, Reason::Contested);
        assert!(
            error.message.contains("by field manager other-controller"),
            "{}",
            error.message
        );
        assert!(
            error.remedy.contains("sc-agent reapply a"),
            "{}",
            error.remedy
        );
        assert_eq!(
            m.phase(Some("h1")),
            crate::contract::ConnectionPhase::Failed
        );
        // A new request drops the stale document.
        let p = plan_drift(
            &[want("a", "h2")],
            std::slice::from_ref(&m),
            &BTreeMap::new(),
            201,
            limits,
        );
        assert_eq!(p.writes[0].drift, None);
        // reapply starts afresh.
        m.reapply = Some("now".into());
        let p = plan_drift(
            &d,
            std::slice::from_ref(&m),
            &live(present(true, None)),
            200,
            limits,
        );
        let m = after(m, &p);
        assert_eq!(m.drift, None);
    }
}
