//! Chaos runs: many connections requested across several helm upgrades while kubesim injects
//! API faults into the pods' requests and the agent and sc-job pods are killed at random times;
//! then, faults off, the cluster must converge to exactly what sc-model renders.
//!
//! Everything random comes from one seed ([`seed`], `SC_CHAOS_SEED`): the connections and
//! their changes, the kill schedule, and kubesim's fault PRNG. The size of a run comes from
//! `SC_CHAOS` ([`Scale::from_env`]): `full` for `make chaos`, a short form otherwise.

use crate::{Cluster, MANAGED_SELECTOR, expected, merged, run_command, tool};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The seed of a run: `$SC_CHAOS_SEED`, else a fixed default (so a plain run is reproducible).
pub fn seed() -> u64 {
    std::env::var("SC_CHAOS_SEED")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("SC_CHAOS_SEED={s:?} is not an unsigned integer"))
        })
        .unwrap_or(20_261_123)
}

/// A small deterministic PRNG (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64) / ((1u64 << 53) as f64) < p
    }
}

/// The size of a run.
#[derive(Debug, Clone)]
pub struct Scale {
    /// `full` or `short`.
    pub name: &'static str,
    /// Connections requested over the whole run (each name is requested once).
    pub connections: usize,
    /// Helm revisions that request them.
    pub revisions: usize,
    /// Pods killed at least (agent and sc-job together).
    pub min_kills: usize,
    /// sc-job pods killed at least.
    pub min_job_kills: usize,
    /// Seconds between two upgrades at most (less once the revision's share of kills is
    /// reached), as a range to draw from.
    pub pause_s: (u64, u64),
    /// Milliseconds between two kills of the agent (a uniform draw).
    pub kill_every_ms: (u64, u64),
    /// How long the cluster may take to converge once faults are off.
    pub converge: Duration,
    /// Materialized Secrets deleted or changed by hand at least (see [`Vandal`]).
    pub min_damage: usize,
    /// Milliseconds between two of those (a uniform draw).
    pub damage_every_ms: (u64, u64),
}

impl Scale {
    /// `SC_CHAOS=full`: 300 connections over 5 revisions, at least 20 kills (1 of sc-job) and 20
    /// damaged Secrets; otherwise the short form run by `make test`: 40 connections over 3
    /// revisions, at least 5 kills and 4 damaged Secrets. The agent is killed every 20-45 s (10-25 s in the short form) while it runs:
    /// its restarts back off up to 30 s, and it must get to create Jobs for sc-job to be killed.
    pub fn from_env() -> Scale {
        match std::env::var("SC_CHAOS").as_deref() {
            Ok("full") => Scale {
                name: "full",
                connections: 300,
                revisions: 5,
                min_kills: 20,
                min_job_kills: 1,
                pause_s: (20, 60),
                kill_every_ms: (20_000, 45_000),
                converge: Duration::from_secs(900),
                min_damage: 20,
                damage_every_ms: (2_000, 8_000),
            },
            _ => Scale {
                name: "short",
                connections: 40,
                revisions: 3,
                min_kills: 5,
                min_job_kills: 0,
                pause_s: (10, 30),
                kill_every_ms: (10_000, 25_000),
                converge: Duration::from_secs(420),
                min_damage: 0,
                damage_every_ms: (2_000, 6_000),
            },
        }
    }

    /// kubesim's fault configuration for the run.
    pub fn faults(&self, seed: u64) -> Value {
        json!({
            "seed": seed,
            "errorRate": 0.05,
            "conflictRate": 0.1,
            "latencyMs": "0-20",
            "watchCutRate": 0.3,
            "targets": "serviceAccounts",
        })
    }
}

/// An object by kind, namespace and name.
pub type ObjKey = (String, String, String);

/// The object keys of a connection as sc-model renders it.
pub fn object_keys(d: &sc_model::DesiredObjects) -> Vec<ObjKey> {
    let mut out = Vec::new();
    for (kind, obj) in [
        ("Secret", &d.secret),
        ("ServiceAccount", &d.service_account),
        ("SecretProviderClass", &d.secret_provider_class),
    ] {
        if let Some(o) = obj {
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            out.push((kind.to_string(), d.namespace.clone(), name.to_string()));
        }
    }
    out
}

/// A connection removed during the run.
#[derive(Debug, Clone)]
pub struct Removed {
    /// The revision (index into [`Plan::revisions`]) that no longer requests it.
    pub revision: usize,
    /// Its `deletionPolicy` was `Delete` (else its objects stay).
    pub delete: bool,
    /// The objects it had.
    pub objects: Vec<ObjKey>,
}

/// The requests of a run, revision by revision.
#[derive(Debug, Clone)]
pub struct Plan {
    /// (settings, protected settings) of each revision.
    pub revisions: Vec<(Value, Value)>,
    /// The connections removed along the way, by name.
    pub removed: BTreeMap<String, Removed>,
    /// Every secret value requested (for the leak scan).
    pub secrets: Vec<String>,
    /// Connections requested in all.
    pub requested: usize,
    /// Connections changed by a later revision.
    pub changed: usize,
}

/// One generated connection: its settings and protected settings.
#[derive(Debug, Clone)]
struct Conn {
    kind: u64,
    idx: usize,
    settings: Value,
    secrets: Option<Value>,
}

const TENANT: &str = "66666666-7777-8888-9999-000000000000";

fn new_conn(rng: &mut Rng, idx: usize, ns: &str, secrets: &mut Vec<String>) -> Conn {
    let kind = rng.between(0, 3);
    let policy = if rng.chance(0.5) { "Delete" } else { "Retain" };
    let mut secret = |label: &str| {
        let v = crate::secret_value(label);
        secrets.push(v.clone());
        v
    };
    let (settings, protected) = match kind {
        0 => (
            json!({"targetType": "storage-blob", "authType": "secret", "clientType": "python",
                   "parameters": {"accountName": format!("acct{idx}")}}),
            Some(json!({"accountKey": secret("account-key")})),
        ),
        1 => (
            json!({"targetType": "servicebus", "authType": "workloadIdentity", "clientType": "dotnet",
                   "parameters": {"namespaceName": format!("bus{idx}"),
                                  "clientId": format!("0a1b2c3d-0000-4000-8000-{idx:012}"),
                                  "tenantId": TENANT}}),
            None,
        ),
        2 => (
            json!({"targetType": "keyvault", "authType": "keyvaultCsi",
                   "parameters": {"keyvaultName": format!("kv{idx}"), "tenantId": TENANT,
                                  "clientId": format!("22222222-3333-4444-5555-{idx:012}"),
                                  "syncSecret": "true",
                                  "objects": [{"name": "db-password", "type": "secret"}]}}),
            None,
        ),
        _ => (
            json!({"targetType": "redis", "authType": "secret", "clientType": "python",
                   "parameters": {"server": format!("cache{idx}")}}),
            Some(json!({"accessKey": secret("cache-key")})),
        ),
    };
    let mut settings = settings;
    settings["namespace"] = json!(ns);
    settings["deletionPolicy"] = json!(policy);
    Conn {
        kind,
        idx,
        settings,
        secrets: protected,
    }
}

/// Changes a connection's content (not its object names): a parameter, and for connections
/// with secrets sometimes the secret value.
fn change(rng: &mut Rng, c: &mut Conn, rev: usize, secrets: &mut Vec<String>) {
    let p = &mut c.settings["parameters"];
    match c.kind {
        0 => p["accountName"] = json!(format!("acct{}r{rev}", c.idx)),
        1 => p["namespaceName"] = json!(format!("bus{}r{rev}", c.idx)),
        2 => p["keyvaultName"] = json!(format!("kv{}r{rev}", c.idx)),
        _ => p["server"] = json!(format!("cache{}r{rev}", c.idx)),
    }
    if let Some(s) = c.secrets.as_mut()
        && rng.chance(0.5)
    {
        let key = if c.kind == 0 {
            "accountKey"
        } else {
            "accessKey"
        };
        let v = crate::secret_value("rotated");
        secrets.push(v.clone());
        s[key] = json!(v);
    }
}

fn documents(conns: &BTreeMap<String, Conn>) -> (Value, Value) {
    let mut settings = Map::new();
    let mut protected = Map::new();
    for (name, c) in conns {
        settings.insert(name.clone(), c.settings.clone());
        if let Some(s) = &c.secrets {
            protected.insert(name.clone(), json!({"secrets": s}));
        }
    }
    (
        json!({"connections": settings}),
        json!({"connections": protected}),
    )
}

impl Plan {
    /// The requests of a run of `scale` over `namespaces`: each revision adds its share of new
    /// connections, changes about 15 % of the existing ones and removes about 8 %.
    pub fn new(seed: u64, scale: &Scale, namespaces: &[String]) -> Plan {
        let mut rng = Rng::new(seed);
        let mut live: BTreeMap<String, Conn> = BTreeMap::new();
        let mut removed = BTreeMap::new();
        let mut secrets = Vec::new();
        let mut revisions = Vec::new();
        let mut next = 0usize;
        let mut changed = BTreeSet::new();
        for rev in 0..scale.revisions {
            if rev > 0 {
                let names: Vec<String> = live.keys().cloned().collect();
                for name in names {
                    if rng.chance(0.08) {
                        let c = live.remove(&name).expect("live connection");
                        let one = BTreeMap::from([(name.clone(), c.clone())]);
                        let (s, p) = documents(&one);
                        let objects = expected(&merged(&[&s, &p]))
                            .desired()
                            .iter()
                            .flat_map(object_keys)
                            .collect();
                        let delete = c.settings["deletionPolicy"] == "Delete";
                        removed.insert(
                            name,
                            Removed {
                                revision: rev,
                                delete,
                                objects,
                            },
                        );
                    } else if rng.chance(0.15) {
                        let c = live.get_mut(&name).expect("live connection");
                        change(&mut rng, c, rev, &mut secrets);
                        changed.insert(name);
                    }
                }
            }
            let target = scale.connections * (rev + 1) / scale.revisions;
            while next < target {
                let ns = &namespaces[next % namespaces.len()];
                live.insert(
                    format!("c{next:03}"),
                    new_conn(&mut rng, next, ns, &mut secrets),
                );
                next += 1;
            }
            revisions.push(documents(&live));
        }
        Plan {
            revisions,
            removed,
            secrets,
            requested: next,
            changed: changed.len(),
        }
    }

    /// The settings and protected settings of the last revision.
    pub fn last(&self) -> &(Value, Value) {
        self.revisions.last().expect("a plan has revisions")
    }
}

/// `kubectl` 1.37 against a private kubesim, usable from any thread.
#[derive(Debug, Clone)]
pub struct Kubectl {
    kubeconfig: std::path::PathBuf,
    home: std::path::PathBuf,
}

impl Kubectl {
    /// The kubectl of cluster `c` (a private kubesim).
    pub fn of(c: &Cluster) -> Kubectl {
        assert!(
            !c.is_external(),
            "chaos runs need a private kubesim (unset SC_E2E_KUBECONFIG)"
        );
        Kubectl {
            kubeconfig: c.kubeconfig().to_path_buf(),
            home: c.dir().join("home"),
        }
    }

    /// Runs kubectl with `args` (and `stdin`).
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> crate::Out {
        let mut cmd = Command::new(tool("kubectl-1.37"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args);
        run_command(cmd, &format!("kubectl {}", args.join(" ")), stdin)
    }

    /// Runs `kubectl get <args> -o json`.
    fn get_json(&self, args: &[&str]) -> crate::Out {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        self.run(&a, None)
    }

    /// `kubectl get <args> -o json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.get_json(args);
        serde_json::from_str(out.ok())
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e})", out.what))
    }

    /// Sets kubesim's fault configuration (`PUT /kubesim/faults`).
    pub fn set_faults(&self, config: &Value) {
        self.run(
            &["replace", "--raw", "/kubesim/faults", "-f", "-"],
            Some(&config.to_string()),
        )
        .ok();
    }

    /// The faults kubesim injected so far (`GET /kubesim/faults/stats`).
    pub fn fault_stats(&self) -> Value {
        let out = self.run(&["get", "--raw", "/kubesim/faults/stats"], None);
        serde_json::from_str(out.ok()).expect("the fault stats are JSON")
    }

    /// Kills pod `ns/name` with SIGKILL (`POST /kubesim/kill-pod`); false when it has no
    /// running container (or is gone).
    pub fn kill_pod(&self, ns: &str, name: &str) -> bool {
        let path = format!("/kubesim/kill-pod?namespace={ns}&name={name}");
        self.run(&["create", "--raw", &path, "-f", "-"], Some("{}"))
            .success()
    }

    /// `kubectl get <args> -o json`, parsed; `None` when the object is missing or the
    /// cluster cannot be read.
    pub fn try_json(&self, args: &[&str]) -> Option<Value> {
        let out = self.get_json(args);
        out.success()
            .then(|| serde_json::from_str(&out.stdout).ok())
            .flatten()
    }

    /// Names of the pods of `ns` matching `selector` with a running container (none when the
    /// cluster cannot be read).
    pub fn running_pods(&self, ns: &str, selector: &str) -> Vec<String> {
        let out = self.run(
            &["get", "pods", "-n", ns, "-l", selector, "-o", "json"],
            None,
        );
        let list: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["containerStatuses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| !c["state"]["running"].is_null())
            })
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    }
}

/// The selector of the agent's pods.
pub const AGENT_PODS: &str =
    "app.kubernetes.io/name=sc-extension,app.kubernetes.io/component=agent";
/// The selector of sc-job's pods.
pub const JOB_PODS: &str = "job-name=sc-job";

/// Pods killed by a [`Killer`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Kills {
    /// Agent pods killed.
    pub agent: usize,
    /// sc-job pods killed.
    pub job: usize,
}

/// A thread that kills a running agent or sc-job pod at random times.
pub struct Killer {
    stop: Arc<AtomicBool>,
    agent: Arc<AtomicUsize>,
    job: Arc<AtomicUsize>,
    thread: JoinHandle<()>,
}

impl Killer {
    /// Starts killing pods of the release namespace `ns`: a running agent pod every
    /// `every_ms` (a uniform draw), and each sc-job pod, as soon as it is seen running, with
    /// probability 0.6 after a random delay of up to 3 s (mid-run for a large change set).
    /// Until `min_job_kills` sc-job pods are killed, each one seen running is killed within
    /// 300 ms: a quick run would otherwise often escape, and once the last revision is
    /// applied no sc-job runs any more. A kill counts only when the pod's Job is still there
    /// afterwards: a pod killed after it deleted its own Job had finished its run.
    pub fn start(
        k: Kubectl,
        ns: String,
        seed: u64,
        every_ms: (u64, u64),
        min_job_kills: usize,
    ) -> Killer {
        let stop = Arc::new(AtomicBool::new(false));
        let agent = Arc::new(AtomicUsize::new(0));
        let job = Arc::new(AtomicUsize::new(0));
        let (s, a, j) = (stop.clone(), agent.clone(), job.clone());
        let thread = std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ 0x6b69_6c6c);
            let mut next_agent =
                Instant::now() + Duration::from_millis(rng.between(every_ms.0, every_ms.1));
            let mut decided: BTreeMap<String, Option<Instant>> = BTreeMap::new();
            let kill = |pod: &str, counter: &AtomicUsize| {
                if k.kill_pod(&ns, pod) {
                    counter.fetch_add(1, Ordering::AcqRel);
                    eprintln!("chaos: killed pod {ns}/{pod}");
                }
            };
            // An sc-job pod killed once its run has ended (it deleted its own Job, which is
            // its last step) interrupted nothing: such a kill is not counted.
            let kill_job_pod = |pod: &str| {
                let job_uid = |o: Option<Value>, path: &str| {
                    o.and_then(|o| o.pointer(path).and_then(Value::as_str).map(str::to_string))
                };
                let owner = job_uid(
                    k.try_json(&["pod", pod, "-n", &ns]),
                    "/metadata/ownerReferences/0/uid",
                );
                if !k.kill_pod(&ns, pod) {
                    return;
                }
                let job = k
                    .try_json(&["job", crate::JOB, "-n", &ns])
                    .filter(|j| j["metadata"]["deletionTimestamp"].is_null());
                if owner.is_some() && owner == job_uid(job, "/metadata/uid") {
                    j.fetch_add(1, Ordering::AcqRel);
                    eprintln!("chaos: killed pod {ns}/{pod}");
                } else {
                    eprintln!("chaos: killed pod {ns}/{pod} after its run ended; not counted");
                }
            };
            while !s.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(100));
                let now = Instant::now();
                for pod in k.running_pods(&ns, JOB_PODS) {
                    let owed = j.load(Ordering::Acquire) < min_job_kills;
                    let at = *decided.entry(pod.clone()).or_insert_with(|| {
                        if owed {
                            Some(now + Duration::from_millis(rng.between(0, 300)))
                        } else {
                            rng.chance(0.6)
                                .then(|| now + Duration::from_millis(rng.between(0, 3_000)))
                        }
                    });
                    if at.is_some_and(|t| t <= now) {
                        decided.insert(pod.clone(), None);
                        kill_job_pod(&pod);
                    }
                }
                if now >= next_agent {
                    next_agent = now + Duration::from_millis(rng.between(every_ms.0, every_ms.1));
                    let agents = k.running_pods(&ns, AGENT_PODS);
                    if !agents.is_empty() {
                        let pod = &agents[rng.between(0, agents.len() as u64 - 1) as usize];
                        kill(pod, &a);
                    }
                }
            }
        });
        Killer {
            stop,
            agent,
            job,
            thread,
        }
    }

    /// Kills so far.
    pub fn kills(&self) -> Kills {
        Kills {
            agent: self.agent.load(Ordering::Acquire),
            job: self.job.load(Ordering::Acquire),
        }
    }

    /// Stops the thread; returns the kills.
    pub fn stop(self) -> Kills {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
        Kills {
            agent: self.agent.load(Ordering::Acquire),
            job: self.job.load(Ordering::Acquire),
        }
    }
}

impl Kills {
    /// Agent and sc-job kills together.
    pub fn total(&self) -> usize {
        self.agent + self.job
    }
}

/// Secrets a [`Vandal`] damaged, by connection: deleted (`true`) or a value changed.
pub type Damage = BTreeMap<String, (ObjKey, bool)>;

/// A thread that damages materialized Secrets while the chaos runs, as a careless operator or
/// another controller would: it deletes one, or changes one of its values with field manager
/// `vandal`. The agent must repair each (drift repair), faults and kills notwithstanding.
pub struct Vandal {
    stop: Arc<AtomicBool>,
    damage: Arc<Mutex<Damage>>,
    thread: JoinHandle<()>,
}

impl Vandal {
    /// Starts damaging the Secrets of `targets` (connection, Secret): every `every_ms` (a
    /// uniform draw) one that exists, picked at random, each connection at most once so that
    /// its repairs stay under the contest limit. `targets` are connections of the final
    /// request only: a Secret of a connection removed later with `Retain` must stay as it was.
    pub fn start(
        k: Kubectl,
        targets: Vec<(String, ObjKey)>,
        seed: u64,
        every_ms: (u64, u64),
    ) -> Vandal {
        let stop = Arc::new(AtomicBool::new(false));
        let damage = Arc::new(Mutex::new(Damage::new()));
        let (s, d) = (stop.clone(), damage.clone());
        let thread = std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ 0x7661_6e64);
            let draw = |rng: &mut Rng| {
                Instant::now() + Duration::from_millis(rng.between(every_ms.0, every_ms.1))
            };
            let mut next = draw(&mut rng);
            let mut left = targets;
            while !s.load(Ordering::Acquire) && !left.is_empty() {
                std::thread::sleep(Duration::from_millis(100));
                if Instant::now() < next {
                    continue;
                }
                next = draw(&mut rng);
                let i = rng.between(0, left.len() as u64 - 1) as usize;
                let (conn, key) = left[i].clone();
                let (_, ns, name) = &key;
                // Not materialized yet: another draw later.
                let Some(live) = k.try_json(&["secret", name, "-n", ns]) else {
                    continue;
                };
                let delete = rng.chance(0.5);
                let done = if delete {
                    k.run(&["delete", "secret", name, "-n", ns, "--wait=false"], None)
                        .success()
                } else {
                    let Some(field) = live["data"]
                        .as_object()
                        .and_then(|m| m.keys().next().cloned())
                    else {
                        continue;
                    };
                    let patch = json!({"data": {field: "dmFuZGFs"}}).to_string();
                    let args = [
                        "patch",
                        "secret",
                        name,
                        "-n",
                        ns,
                        "--type=merge",
                        "--field-manager=vandal",
                        "-p",
                        &patch,
                    ];
                    k.run(&args, None).success()
                };
                if done {
                    let what = if delete {
                        "deleted"
                    } else {
                        "changed a value of"
                    };
                    eprintln!("chaos: {what} secret {ns}/{name} of connection {conn}");
                    d.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(conn, (key, delete));
                    left.swap_remove(i);
                }
            }
        });
        Vandal {
            stop,
            damage,
            thread,
        }
    }

    /// Secrets damaged so far.
    pub fn hits(&self) -> usize {
        self.damage.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Stops the thread; returns what it damaged.
    pub fn stop(self) -> Damage {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
        let d = self.damage.lock().unwrap_or_else(|e| e.into_inner());
        d.clone()
    }
}

/// The Secrets of the final request's connections: what a [`Vandal`] may damage.
pub fn vandal_targets(set: &sc_model::RequestSet) -> Vec<(String, ObjKey)> {
    set.desired()
        .into_iter()
        .filter_map(|d| {
            let name = d.secret.as_ref()?["metadata"]["name"].as_str()?.to_string();
            let key = ("Secret".to_string(), d.namespace.clone(), name);
            Some((d.connection.clone(), key))
        })
        .collect()
}

/// The damaged Secrets not yet restored to what `set` renders (empty once all are repaired).
pub fn damage_gaps(k: &Kubectl, set: &sc_model::RequestSet, damage: &Damage) -> Vec<String> {
    let want: BTreeMap<String, Value> = set
        .desired()
        .into_iter()
        .filter_map(|d| Some((d.connection.clone(), d.secret?["data"].clone())))
        .collect();
    damage
        .iter()
        .filter_map(|(conn, ((_, ns, name), _))| {
            match k.try_json(&["secret", name, "-n", ns, "--show-managed-fields"]) {
                None => Some(format!("{conn}: secret {ns}/{name} not recreated")),
                Some(l) if Some(&l["data"]) != want.get(conn) => Some(format!(
                    "{conn}: secret {ns}/{name} has other data ({})",
                    data_difference(&l, want.get(conn))
                )),
                Some(_) => None,
            }
        })
        .collect()
}

/// What differs between a Secret's data and `want`, by key name only (never a value), and
/// who wrote it: the field managers of its managedFields, with operation, time and the
/// top-level fields each owns.
fn data_difference(live: &Value, want: Option<&Value>) -> String {
    let keys = |v: Option<&Value>| -> BTreeMap<String, Value> {
        v.and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    let (have, want) = (keys(live.get("data")), keys(want));
    let mut what = Vec::new();
    for (k, v) in &have {
        match want.get(k) {
            None => what.push(format!("extra key {k}")),
            Some(w) if w != v => what.push(format!("other value of {k}")),
            Some(_) => {}
        }
    }
    what.extend(
        want.keys()
            .filter(|k| !have.contains_key(*k))
            .map(|k| format!("missing key {k}")),
    );
    let managers: Vec<String> = live["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let owns: Vec<String> = e["fieldsV1"]
                .as_object()
                .into_iter()
                .flatten()
                .flat_map(|(top, sub)| match sub.as_object() {
                    Some(m) if top == "f:data" => m.keys().cloned().collect(),
                    _ => vec![top.clone()],
                })
                .collect();
            format!(
                "{} {} at {} owns {}",
                e["manager"].as_str().unwrap_or("?"),
                e["operation"].as_str().unwrap_or("?"),
                e["time"].as_str().unwrap_or("?"),
                owns.join(" ")
            )
        })
        .collect();
    format!(
        "{}; resourceVersion {}; managedFields: {}",
        what.join(", "),
        live["metadata"]["resourceVersion"].as_str().unwrap_or("?"),
        managers.join("; ")
    )
}

/// The managed objects of the cluster (Secrets, ServiceAccounts, SecretProviderClasses in every
/// namespace), by key.
pub fn managed_objects(k: &Kubectl) -> BTreeMap<ObjKey, Value> {
    let mut out = BTreeMap::new();
    for (kind, resource) in [
        ("Secret", "secrets"),
        ("ServiceAccount", "serviceaccounts"),
        ("SecretProviderClass", "secretproviderclasses"),
    ] {
        let list = k.json(&[resource, "-A", "-l", MANAGED_SELECTOR]);
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let m = &item["metadata"];
            let key = (
                kind.to_string(),
                m["namespace"].as_str().unwrap_or_default().to_string(),
                m["name"].as_str().unwrap_or_default().to_string(),
            );
            out.insert(key, item);
        }
    }
    out
}

/// The objects of the connections `plan` removes at revision `rev` with `Retain` that exist
/// now (they must stay).
pub fn retained_now(k: &Kubectl, plan: &Plan, rev: usize) -> BTreeSet<ObjKey> {
    let removing: Vec<&ObjKey> = plan
        .removed
        .values()
        .filter(|r| r.revision == rev && !r.delete)
        .flat_map(|r| r.objects.iter())
        .collect();
    if removing.is_empty() {
        return BTreeSet::new();
    }
    let live = managed_objects(k);
    removing
        .into_iter()
        .filter(|key| live.contains_key(*key))
        .cloned()
        .collect()
}

/// The parsed JSON of key `key` of a metadata ConfigMap (Null when absent).
pub fn metadata_doc(cm: &Value, key: &str) -> Value {
    cm["data"][key]
        .as_str()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// The metadata ConfigMaps of the release namespace, by connection name.
/// The key of the content hashes: the uid of the protected Secret in `ns`.
pub fn hash_key(k: &Kubectl, ns: &str) -> String {
    k.json(&["secret", "sc-protected", "-n", ns])["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn metadata_by_connection(k: &Kubectl, ns: &str) -> BTreeMap<String, Value> {
    let list = k.json(&[
        "configmaps",
        "-n",
        ns,
        "-l",
        "app.kubernetes.io/component=connection",
    ]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|cm| {
            let name = cm["metadata"]["annotations"]["sc-extension.io/connection-name"]
                .as_str()?
                .to_string();
            Some((name, cm))
        })
        .collect()
}

/// What still differs from the converged state (empty once converged); `key` is the key of
/// the content hashes ([`hash_key`], read once per run).
pub fn convergence_gaps(
    k: &Kubectl,
    ns: &str,
    key: &str,
    set: &sc_model::RequestSet,
    removed: &BTreeMap<String, Removed>,
) -> Vec<String> {
    let mut gaps = Vec::new();
    let meta = metadata_by_connection(k, ns);
    for c in set.connections() {
        let hash = c.hash_with_key(key);
        match meta.get(c.name()) {
            None => gaps.push(format!("{}: no metadata ConfigMap", c.name())),
            Some(cm) => {
                let st = metadata_doc(cm, "status.json");
                if st["phase"] != "Ready" || st["appliedHash"] != hash.as_str() {
                    gaps.push(format!(
                        "{}: phase {} appliedHash {} (want {hash})",
                        c.name(),
                        st["phase"],
                        st["appliedHash"],
                    ));
                }
            }
        }
    }
    for name in removed.keys() {
        if meta.contains_key(name) {
            gaps.push(format!("{name}: removed, metadata ConfigMap still there"));
        }
    }
    let jobs = k.json(&["jobs", "-n", ns]);
    for j in jobs["items"].as_array().into_iter().flatten() {
        gaps.push(format!("Job {} still exists", j["metadata"]["name"]));
    }
    gaps
}

/// Asserts the managed objects are exactly the final request's (contents as sc-model renders
/// them) plus what removed `Retain` connections keep, and that `kept` (objects of `Retain`
/// connections that existed when their removal was requested) are all still there; returns
/// the number of objects checked.
pub fn assert_exact_objects(
    k: &Kubectl,
    ns: &str,
    set: &sc_model::RequestSet,
    removed: &BTreeMap<String, Removed>,
    kept: &BTreeSet<ObjKey>,
) -> usize {
    let live = managed_objects(k);
    let key = hash_key(k, ns);
    let keyed: BTreeMap<&str, String> = set
        .connections()
        .iter()
        .map(|c| (c.name(), c.hash_with_key(&key)))
        .collect();
    let mut want: BTreeMap<ObjKey, (String, Value)> = BTreeMap::new();
    for d in set.desired() {
        for (kind, obj) in [
            ("Secret", &d.secret),
            ("ServiceAccount", &d.service_account),
            ("SecretProviderClass", &d.secret_provider_class),
        ] {
            if let Some(o) = obj {
                let key = (
                    kind.to_string(),
                    d.namespace.clone(),
                    o["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
                let prev = want.insert(key.clone(), (d.connection.clone(), o.clone()));
                assert!(
                    prev.is_none(),
                    "two connections render {key:?}: the scenario's connections collide"
                );
            }
        }
    }
    let mut checked = 0;
    for (key, (conn, w)) in &want {
        let got = live
            .get(key)
            .unwrap_or_else(|| panic!("{key:?} of connection {conn} is missing"));
        match key.0.as_str() {
            "Secret" => {
                assert_eq!(got["data"], w["data"], "data of {key:?} ({conn})");
                assert_eq!(got["type"], "Opaque", "type of {key:?}");
            }
            "SecretProviderClass" => assert_eq!(got["spec"], w["spec"], "spec of {key:?} ({conn})"),
            _ => {}
        }
        crate::assert_subset(
            &w["metadata"]["labels"],
            &got["metadata"]["labels"],
            &format!("{key:?}"),
        );
        crate::assert_subset(
            &crate::rekeyed(&w["metadata"]["annotations"], keyed.get(conn.as_str())),
            &got["metadata"]["annotations"],
            &format!("{key:?}"),
        );
        checked += 1;
    }
    let retained: BTreeSet<&ObjKey> = removed
        .values()
        .filter(|r| !r.delete)
        .flat_map(|r| r.objects.iter())
        .collect();
    for (name, r) in removed.iter().filter(|(_, r)| r.delete) {
        for key in &r.objects {
            assert!(
                !live.contains_key(key) || want.contains_key(key) || retained.contains(key),
                "{key:?} of removed connection {name} (deletionPolicy Delete) is still there"
            );
            checked += 1;
        }
    }
    for key in live.keys() {
        assert!(
            want.contains_key(key) || retained.contains(key),
            "{key:?} is labelled managed-by sc-extension but neither the final request nor a \
             retained removal produces it (a stray or duplicate)"
        );
    }
    for key in kept {
        assert!(
            live.contains_key(key),
            "{key:?} of a connection removed with deletionPolicy Retain existed when the removal \
             was requested and is gone"
        );
        checked += 1;
    }
    checked
}

/// What the journals of the final connections hold.
#[derive(Debug, Default)]
pub struct Journals {
    /// Entries that record a failed run (`JobFailed` and the like).
    pub failed: usize,
    /// The change sets any entry names.
    pub changesets: BTreeSet<String>,
}

/// Asserts the journal of every connection ends with sc-job's `Ready` entry for its hash and
/// revision; returns what the journals hold.
pub fn assert_journals(k: &Kubectl, ns: &str, set: &sc_model::RequestSet) -> Journals {
    let meta = metadata_by_connection(k, ns);
    let key = hash_key(k, ns);
    let mut out = Journals::default();
    for c in set.connections() {
        let hash = c.hash_with_key(&key);
        let cm = &meta[c.name()];
        let journal = metadata_doc(cm, "journal.json");
        let entries = journal
            .as_array()
            .unwrap_or_else(|| panic!("connection {} has no journal: {cm}", c.name()));
        assert!(
            !entries.is_empty() && entries.len() <= 10,
            "journal of {} holds {} entries",
            c.name(),
            entries.len()
        );
        out.failed += entries.iter().filter(|e| e["result"] == "Failed").count();
        out.changesets.extend(
            entries
                .iter()
                .filter_map(|e| e["changeset"].as_str().map(str::to_string)),
        );
        // The run that applied the final request: an entry for its hash, or the entry of the
        // change set `status.json` records as having applied it (a change set written for an
        // earlier hash applies the request as it is when it runs; its entry keeps the hash it
        // asked for).
        let status = metadata_doc(cm, "status.json");
        let ready = entries
            .iter()
            .rev()
            .find(|e| {
                e["hash"] == hash.as_str()
                    || (status["appliedHash"] == hash.as_str()
                        && e["changeset"] == status["changeset"])
            })
            .unwrap_or_else(|| {
                panic!(
                    "the journal of {} has no entry for its hash {hash}: {journal}",
                    c.name(),
                )
            });
        assert_eq!(
            ready["result"],
            "Ready",
            "last journal entry of {} for its hash: {ready}",
            c.name()
        );
        for key in ["time", "job", "changeset", "revision", "action", "steps"] {
            assert!(
                !ready[key].is_null(),
                "journal entry of {} has no {key}: {ready}",
                c.name()
            );
        }
    }
    out
}

/// The change sets of the runs the agent reported failed (its `JobFailed` events on the
/// request ConfigMap: "change set <id> failed (...)").
pub fn failed_changesets(k: &Kubectl, ns: &str) -> BTreeSet<String> {
    let events = k.json(&["events", "-n", ns]);
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == "JobFailed")
        .filter_map(|e| {
            e["message"]
                .as_str()?
                .strip_prefix("change set ")?
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_the_same_for_the_same_seed_and_valid() {
        let scale = Scale {
            name: "test",
            connections: 60,
            revisions: 4,
            min_kills: 0,
            min_job_kills: 0,
            pause_s: (0, 0),
            kill_every_ms: (1, 1),
            converge: Duration::ZERO,
            min_damage: 0,
            damage_every_ms: (1, 1),
        };
        let nss = vec!["a".to_string(), "b".to_string()];
        let p = Plan::new(7, &scale, &nss);
        let q = Plan::new(7, &scale, &nss);
        assert_eq!(p.revisions[3].0, q.revisions[3].0);
        assert_eq!(p.requested, 60);
        assert_eq!(p.revisions.len(), 4);
        assert!(!p.removed.is_empty() && p.changed > 0);
        for (s, pr) in &p.revisions {
            let set = expected(&merged(&[s, pr]));
            assert_eq!(
                set.connections().len(),
                s["connections"].as_object().unwrap().len()
            );
        }
        let last = expected(&merged(&[&p.last().0, &p.last().1]));
        for name in p.removed.keys() {
            assert!(last.connections().iter().all(|c| c.name() != name));
        }
    }

    #[test]
    fn rng_is_deterministic_and_bounded() {
        let mut a = Rng::new(1);
        let mut b = Rng::new(1);
        for _ in 0..1000 {
            let x = a.between(3, 9);
            assert_eq!(x, b.between(3, 9));
            assert!((3..=9).contains(&x));
        }
    }
}
