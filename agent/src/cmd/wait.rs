//! `sc-agent wait`: waits until every connection requested by a Helm revision is Ready (its
//! applied hash equals the hash of the current request), or one failed. Run by the chart's
//! post-install/upgrade hook and by `helm test`.

use super::args::CommonArgs;
use super::block_on;
use super::duration::{go_format, parse_duration};
use super::output::print_value;
use super::snapshot::{Snapshot, api_reason};
use crate::contract::{self, ConnectionPhase};
use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `sc-agent wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The Helm revision whose connections must be applied.
    #[arg(long, value_name = "N")]
    pub revision: i64,
    /// How long to wait: a Go duration (`300s`, `5m`, `1m30s`, `2h`, `500ms`), or a bare
    /// number of seconds as before.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// First wait until the agent Deployment is available.
    #[arg(long)]
    pub require_agent_ready: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The state of one connection of the revision.
#[derive(Debug, Clone)]
struct ConnState {
    name: String,
    phase: ConnectionPhase,
    error: Option<contract::RunError>,
    /// Drifted under `driftPolicy: Report`: nothing will run until an operator does.
    reported: bool,
}

impl ConnState {
    /// Whether the agent has nothing more to do for the revision: Ready, or drift that is
    /// only reported.
    fn settled(&self) -> bool {
        self.phase == ConnectionPhase::Ready || self.reported
    }
}

/// What one look at the cluster says.
enum Verdict {
    Ready(Vec<ConnState>),
    Failed(Vec<ConnState>),
    Pending(String, Vec<ConnState>),
}

fn evaluate(snapshot: &Snapshot, revision: i64) -> anyhow::Result<Verdict> {
    let Some(requests) = &snapshot.requests else {
        return Ok(Verdict::Pending(
            format!(
                "ConfigMap {}/{} does not exist yet",
                snapshot.namespace,
                contract::REQUESTS_CONFIGMAP
            ),
            vec![],
        ));
    };
    if let Some(e) = &snapshot.protected_error {
        anyhow::bail!("{e}; wait needs get on that Secret to compute the requested hashes");
    }
    if requests.revision < revision {
        return Ok(Verdict::Pending(
            format!(
                "the requests are at revision {}, waiting for revision {revision}",
                requests.revision
            ),
            vec![],
        ));
    }
    let mut states = Vec::new();
    for check in sc_model::check_connections_keyed(&requests.connections, &requests.hash_key) {
        let m = snapshot.metadata(&check.name);
        let mut phase = snapshot.phase(&check.name, Some(&check.hash));
        let mut error = m
            .and_then(|m| m.status.as_ref())
            .and_then(|s| s.failure_for(&check.hash))
            .cloned();
        // Contested repairs stay so until the request changes or an operator runs
        // `sc-agent reapply`: a new revision does not run the connection again.
        let contested = m
            .and_then(|m| m.drift.as_ref())
            .and_then(|d| d.contested_for(&check.hash))
            .cloned();
        // A failure recorded by a run of an older revision is not this revision's result: the
        // agent runs the connection again for the new revision.
        let stale = m
            .and_then(|m| m.status.as_ref())
            .and_then(|s| s.revision)
            .is_some_and(|r| r < revision);
        if phase == ConnectionPhase::Failed && error.is_none() && contested.is_some() {
            error = contested;
        } else if phase == ConnectionPhase::Failed && stale {
            phase = ConnectionPhase::Pending;
            error = None;
        }
        // Drift that is only reported (`driftPolicy: Report`) waits for an operator, not for
        // the agent: the revision is applied, the drift is shown.
        let reported = phase == ConnectionPhase::Drifted
            && check
                .connection
                .as_ref()
                .is_some_and(|c| c.spec.drift_policy == sc_model::DriftPolicy::Report);
        if error.is_none() && !check.is_valid() {
            phase = ConnectionPhase::Failed;
            error = Some(contract::RunError {
                reason: "Invalid".into(),
                message: check
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
                remedy: "fix the values and upgrade the release".into(),
            });
        }
        states.push(ConnState {
            name: check.name,
            phase,
            error,
            reported,
        });
    }
    if states.iter().any(|s| s.phase == ConnectionPhase::Failed) {
        return Ok(Verdict::Failed(states));
    }
    if states.iter().all(ConnState::settled) {
        return Ok(Verdict::Ready(states));
    }
    let pending: Vec<String> = states
        .iter()
        .filter(|s| !s.settled())
        .map(|s| format!("{} ({})", s.name, s.phase.as_str()))
        .collect();
    Ok(Verdict::Pending(
        format!("not Ready: {}", pending.join(", ")),
        states,
    ))
}

fn state_json(s: &ConnState) -> Value {
    json!({"name": s.name, "phase": s.phase.as_str(), "error": s.error})
}

fn print_states(states: &[ConnState]) {
    for s in states {
        match &s.error {
            Some(e) if s.phase == ConnectionPhase::Failed => {
                println!("{}: Failed: {}: {}", s.name, e.reason, e.message);
                if !e.remedy.is_empty() {
                    println!("  remedy: {}", e.remedy);
                }
            }
            _ if s.reported => println!(
                "{}: Drifted (driftPolicy Report: see `sc-agent show {}`, restore with `sc-agent reapply {}`)",
                s.name, s.name, s.name
            ),
            _ => println!("{}: {}", s.name, s.phase.as_str()),
        }
    }
}

/// Whether the agent is available: the Deployment's Available condition, or (without read
/// access to Deployments) a Lease renewed within its duration.
async fn agent_ready(client: &kube::Client, ns: &str) -> anyhow::Result<Result<(), String>> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    match deployments.get_opt(contract::AGENT_DEPLOYMENT).await {
        Ok(Some(d)) => {
            let available = d
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Available" && c.status == "True")
                });
            Ok(if available {
                Ok(())
            } else {
                Err(format!(
                    "Deployment {ns}/{} is not available",
                    contract::AGENT_DEPLOYMENT
                ))
            })
        }
        Ok(None) => Ok(Err(format!(
            "Deployment {ns}/{} does not exist",
            contract::AGENT_DEPLOYMENT
        ))),
        Err(kube::Error::Api(e)) if e.code == 403 => {
            let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
            let lease = leases.get_opt(contract::LEASE_NAME).await.map_err(|e| {
                anyhow::anyhow!(
                    "reading Lease {ns}/{} failed: {}",
                    contract::LEASE_NAME,
                    api_reason(&e)
                )
            })?;
            let held = lease.and_then(|l| l.spec).is_some_and(|s| {
                let fresh = match (s.renew_time, s.lease_duration_seconds) {
                    (Some(t), Some(d)) => {
                        t.0.as_second() + i64::from(d) >= jiff::Timestamp::now().as_second()
                    }
                    _ => false,
                };
                s.holder_identity.is_some_and(|h| !h.is_empty()) && fresh
            });
            Ok(if held {
                Ok(())
            } else {
                Err(format!(
                    "no agent holds Lease {ns}/{}",
                    contract::LEASE_NAME
                ))
            })
        }
        Err(e) => anyhow::bail!(
            "reading Deployment {ns}/{} failed: {}",
            contract::AGENT_DEPLOYMENT,
            api_reason(&e)
        ),
    }
}

/// `sc-agent wait`.
pub fn run(args: &WaitArgs) -> ExitCode {
    block_on(async {
        let c = &args.common;
        let client = c.cluster.client().await?;
        let deadline = tokio::time::Instant::now() + args.timeout;
        let tick = Duration::from_millis(500);
        let structured = c.output.structured();
        if args.require_agent_ready {
            loop {
                match agent_ready(&client, &c.namespace).await? {
                    Ok(()) => break,
                    Err(why) if tokio::time::Instant::now() >= deadline => {
                        // A pod no node accepts is the likely cause: say so.
                        let pods = crate::prerequisites::scheduling(&client, &c.namespace).await;
                        if let Some(f) = structured {
                            print_value(
                                &json!({"revision": args.revision, "result": "Timeout", "pending": why, "prerequisites": pods}),
                                f,
                            )?;
                        } else {
                            println!("timed out after {}: {why}", go_format(args.timeout));
                            for f in &pods {
                                println!("{}: {}\n  remedy: {}", f.object, f.problem, f.remedy);
                            }
                        }
                        return Ok(ExitCode::from(1));
                    }
                    Err(_) => tokio::time::sleep(tick).await,
                }
            }
        }
        loop {
            let snapshot = Snapshot::load(&client, &c.namespace, true).await?;
            let verdict = evaluate(&snapshot, args.revision)?;
            let (result, states, why) = match verdict {
                Verdict::Ready(s) => ("Ready", s, String::new()),
                Verdict::Failed(s) => ("Failed", s, String::new()),
                Verdict::Pending(why, s) => {
                    if tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(tick).await;
                        continue;
                    }
                    ("Timeout", s, why)
                }
            };
            // The federated credentials of this revision's workload-identity connections,
            // missing prerequisites and, on a timeout, pods no node accepts.
            let (extra, extra_lines) =
                crate::report::wait(&client, &snapshot, args.revision, result == "Timeout").await;
            if let Some(f) = structured {
                let conns: Vec<Value> = states.iter().map(state_json).collect();
                print_value(
                    &json!({
                        "revision": args.revision,
                        "result": result,
                        "pending": if why.is_empty() { Value::Null } else { Value::String(why.clone()) },
                        "connections": conns,
                        "federatedCredentials": extra["federatedCredentials"],
                        "prerequisites": extra["prerequisites"],
                    }),
                    f,
                )?;
            } else {
                print_states(&states);
                for l in &extra_lines {
                    println!("{l}");
                }
                match result {
                    "Ready" => println!("revision {}: every connection is Ready", args.revision),
                    "Failed" => println!(
                        "revision {}: a connection failed; details: sc-agent show NAME -n {}; logs: kubectl logs job/{} -n {}",
                        args.revision,
                        c.namespace,
                        contract::JOB_NAME,
                        c.namespace
                    ),
                    _ => println!("timed out after {}: {why}", go_format(args.timeout)),
                }
            }
            return Ok(if result == "Ready" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    })
}
