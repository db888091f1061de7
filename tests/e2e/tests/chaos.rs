//! Chaos: connections requested across several helm upgrades while kubesim answers a share of
//! the pods' API requests with 500/503/429 and 409, adds latency, cuts watches and expires
//! their resumes, the agent and sc-job pods are killed with SIGKILL at random times, and
//! materialized Secrets are deleted or changed by hand (drift the agent must repair). Once
//! the faults stop, every connection must be Ready with exactly the objects sc-model renders,
//! nothing stray or duplicated, no Job left, a journal that tells what happened, and no secret
//! value anywhere but in Secrets. Once with one agent replica, once with two.
//!
//! `SC_CHAOS=full` (`make chaos`) runs 300 connections over 5 revisions with at least 20
//! kills and 20 damaged Secrets; otherwise a short form (40 connections, 3 revisions, at least
//! 5 kills and 4 damaged Secrets) runs with the rest of the suite. `SC_CHAOS_SEED` replays a run (see tests/e2e/CHAOS.md).

use sc_e2e::chaos::{
    Killer, Kubectl, Plan, Rng, Scale, Vandal, assert_exact_objects, assert_journals,
    convergence_gaps, damage_gaps, failed_changesets, retained_now, seed, vandal_targets,
};
use sc_e2e::{Cluster, Helm, JOB, expected, merged, wait_for_state};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The application namespaces the connections are spread over.
const NAMESPACES: [&str; 4] = ["chaos-a", "chaos-b", "chaos-c", "chaos-d"];
/// How often the agent looks at the Secrets for drift (30 s by default): the damaged ones must
/// be repaired within the convergence time.
const DRIFT_INTERVAL: &str = "agent.drift.intervalSeconds=2";
/// How long the chaos may go on after the last upgrade to reach the minimum of kills.
const KILL_DEADLINE: Duration = Duration::from_secs(600);

fn chaos(replicas: u32) {
    let started = Instant::now();
    let scale = Scale::from_env();
    let base = seed();
    let seed = base.wrapping_add(u64::from(replicas));
    eprintln!(
        "chaos: {} run, {replicas} agent replica(s), seed {seed} (SC_CHAOS_SEED={base})",
        scale.name
    );
    let c = Cluster::start();
    let k = Kubectl::of(&c);
    let ns = c.release_ns();
    let namespaces: Vec<String> = NAMESPACES.iter().map(|n| c.create_namespace(n)).collect();
    c.ensure_spc_crd();
    let plan = Plan::new(seed, &scale, &namespaces);
    for s in &plan.secrets {
        c.remember_secret(s);
    }

    k.set_faults(&scale.faults(seed));
    let killer = Killer::start(
        k.clone(),
        ns.clone(),
        seed,
        scale.kill_every_ms,
        scale.min_job_kills,
    );
    let (settings, protected) = plan.last();
    let set = expected(&merged(&[settings, protected]));
    let vandal = Vandal::start(k.clone(), vandal_targets(&set), seed, scale.damage_every_ms);
    let mut rng = Rng::new(seed ^ 0x7570_6772);
    let replicas_arg = format!("agent.replicas={replicas}");
    let per_revision = scale.min_kills.div_ceil(scale.revisions);
    let mut kept = BTreeSet::new();
    for (i, (settings, protected)) in plan.revisions.iter().enumerate() {
        kept.extend(retained_now(&k, &plan, i));
        let files = [
            c.write_values(&format!("settings-{i}"), settings),
            c.write_values(&format!("protected-{i}"), protected),
        ];
        // The hook would wait for each revision; under chaos the next upgrade comes while
        // sc-job runs. The final upgrade below runs the hook.
        c.helm_upgrade(
            Helm::V3,
            &[&files[0], &files[1]],
            &[
                "--set",
                "waitForResult.enabled=false",
                "--set",
                &replicas_arg,
                "--set",
                DRIFT_INTERVAL,
            ],
        )
        .ok();
        eprintln!(
            "chaos: revision {} requested ({} connections), {:?} so far",
            i + 1,
            settings["connections"].as_object().map_or(0, |m| m.len()),
            killer.kills()
        );
        // Let the chaos act on this revision: until its share of kills happened, at most a
        // random pause of the scale's range.
        let want = per_revision * (i + 1);
        let end =
            Instant::now() + Duration::from_secs(rng.between(scale.pause_s.0, scale.pause_s.1));
        while Instant::now() < end && killer.kills().total() < want {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    wait_for_state(
        KILL_DEADLINE,
        "the minimum number of kills and damaged Secrets",
        || {
            let kills = killer.kills();
            let hits = vandal.hits();
            if kills.total() >= scale.min_kills
                && kills.job >= scale.min_job_kills
                && hits >= scale.min_damage
            {
                Ok(())
            } else {
                Err(format!("{kills:?}, {hits} Secrets damaged"))
            }
        },
    );
    let kills = killer.stop();
    let damage = vandal.stop();

    // Faults off; the figures of what was injected.
    k.set_faults(&json!({"seed": seed}));
    let stats = k.fault_stats();
    let converge_start = Instant::now();
    let key = sc_e2e::chaos::hash_key(&k, &ns);
    wait_for_state(scale.converge, "convergence after the chaos", || {
        let mut gaps = convergence_gaps(&k, &ns, &key, &set, &plan.removed);
        gaps.extend(damage_gaps(&k, &set, &damage));
        if gaps.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} gaps, first: {:?}",
                gaps.len(),
                &gaps[..gaps.len().min(5)]
            ))
        }
    });
    let converged_in = converge_start.elapsed();

    // The wait hook agrees: the same request once more, with the hook, succeeds.
    let files = [
        c.write_values("settings-final", settings),
        c.write_values("protected-final", protected),
    ];
    c.helm_upgrade(
        Helm::V3,
        &[&files[0], &files[1]],
        &["--set", &replicas_arg, "--set", DRIFT_INTERVAL],
    )
    .ok();
    c.assert_deployed(Helm::V3, plan.revisions.len() as u32 + 1);

    let objects = assert_exact_objects(&k, &ns, &set, &plan.removed, &kept);
    let journals = assert_journals(&k, &ns, &set);
    let failed_runs = failed_changesets(&k, &ns);
    if kills.job > 0 {
        // A killed sc-job fails its Job; the journals tell what became of that run: a
        // `Failed` entry for each connection it left unrecorded, or, when it was killed after
        // recording every connection, their entries of its change set.
        let told = failed_runs.intersection(&journals.changesets).count();
        assert!(
            journals.failed > 0 || told > 0,
            "{} sc-job pods were killed, the agent reported failed runs {failed_runs:?}, \
             but no journal records a failed run or names one of them",
            kills.job
        );
    }
    assert!(
        c.try_get("job", &ns, JOB).is_none(),
        "Job sc-job is still there"
    );
    let orphans = k.json(&["pods", "-n", &ns, "-l", "batch.kubernetes.io/job-name"]);
    assert_eq!(
        orphans["items"].as_array().map_or(0, |a| a.len()),
        0,
        "pods of a Job are left in {ns}: {}",
        orphans["items"]
    );
    assert!(
        kills.total() >= scale.min_kills,
        "only {kills:?} kills, want {}",
        scale.min_kills
    );

    eprintln!(
        "chaos figures ({} run, {replicas} agent replica(s), seed {seed}):\n  \
         connections requested {}, changed {}, removed {} (Delete {}, Retain {}; \
         {} retained objects must stay), final {}\n  \
         helm revisions {}, kills: agent {}, sc-job {}, total {}\n  \
         Secrets damaged and repaired: {} ({} deleted, {} changed)\n  \
         faults injected: {}\n  \
         objects checked {}, journal entries of failed runs {}, failed runs reported {}\n  \
         converged {:.0?} after the faults stopped, whole run {:.0?}",
        scale.name,
        plan.requested,
        plan.changed,
        plan.removed.len(),
        plan.removed.values().filter(|r| r.delete).count(),
        plan.removed.values().filter(|r| !r.delete).count(),
        kept.len(),
        set.connections().len(),
        plan.revisions.len() + 1,
        kills.agent,
        kills.job,
        kills.total(),
        damage.len(),
        damage.values().filter(|(_, deleted)| *deleted).count(),
        damage.values().filter(|(_, deleted)| !*deleted).count(),
        stats,
        objects,
        journals.failed,
        failed_runs.len(),
        converged_in,
        started.elapsed(),
    );
    let names: Vec<&str> = set.connections().iter().take(3).map(|c| c.name()).collect();
    c.leak_scan(&names);
}

#[test]
fn one_agent() {
    sc_e2e::require_embedded!(
        "injects API faults and kills pods through kubesim's private endpoints (/kubesim/faults, /kubesim/kill-pod)"
    );
    chaos(1);
}

#[test]
fn two_agents() {
    sc_e2e::require_embedded!(
        "injects API faults and kills pods through kubesim's private endpoints (/kubesim/faults, /kubesim/kill-pod)"
    );
    chaos(2);
}
