//! The process around the reconcile step (`sc-agent run`): the HTTP endpoints, the signals,
//! the allocator tuning, the Lease, and the debounced loop that runs one step at a time while
//! this replica leads.

use crate::contract::{self, FIELD_MANAGER};
use crate::jobspec::AgentConfig;
use crate::reconcile::Reconciler;
use crate::reconcile::act::Actor;
use crate::reconcile::observe::Observer;
use crate::reconcile::plan::Backoff;
use crate::server::Health;
use anyhow::Context as _;
use kube::Client;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::Notify;

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The configuration file.
    pub config: AgentConfig,
    /// The namespace of the extension.
    pub namespace: String,
    /// Where the endpoints listen.
    pub listen: std::net::SocketAddr,
    /// This replica's identity in the Lease.
    pub identity: String,
    /// Lease duration (seconds).
    pub lease_duration: u64,
    /// Lease renewal margin (seconds).
    pub lease_grace: u64,
    /// How long triggers are collected before a reconcile step, unless the request objects
    /// changed and arrived whole (see [`debounce_for`]).
    pub debounce: Duration,
    /// Most connections in one change set.
    pub changeset_limit: usize,
    /// Backoff of transient sc-job failures.
    pub backoff: Backoff,
    /// When drift repairs are contested.
    pub drift_limits: crate::reconcile::drift::DriftLimits,
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub async fn run(client: Client, settings: RunSettings) -> anyhow::Result<()> {
    let ns = settings.namespace.clone();
    let health = Arc::new(Health::default());

    let listener = listen(settings.listen).await?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    {
        let app = crate::server::router(health.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "the HTTP endpoints stopped");
            }
        });
    }
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing the current step and releasing the lease");
        let _ = stop_tx.send(true);
    });

    let trigger = Arc::new(Notify::new());
    let observer = Observer::watch(client.clone(), &ns, &settings.config, trigger.clone())
        .with_drift_limits(settings.drift_limits);
    {
        let synced = observer.synced();
        let health = health.clone();
        let trigger = trigger.clone();
        tokio::spawn(async move {
            if synced.await {
                tracing::info!("watches synced");
                health.ready.store(true, Ordering::Release);
                trigger.notify_one();
            }
        });
    }

    let lease = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), contract::LEASE_NAME)
        .with_namespace(&ns)
        .with_identity(&settings.identity)
        .with_field_manager(format!("{FIELD_MANAGER}-{}", settings.identity))
        .with_duration(settings.lease_duration)
        .with_grace(settings.lease_grace)
        .build()
        .await
        .with_context(|| format!("setting up the Lease {ns}/{} failed", contract::LEASE_NAME))?;
    let (mut leader, lease_task) = lease.watch().await;

    // Preflight checks of the requested connections (webhook, CSI driver) and of the release's
    // pods (no node accepts them): Warning events; an sc-job stuck on its old placement is
    // replaced.
    // Woken after a step that saw new request objects.
    let requests_changed = Arc::new(Notify::new());
    let prerequisites = tokio::spawn(crate::prerequisites::watch(
        client.clone(),
        ns.clone(),
        settings.identity.clone(),
        leader.clone(),
        Duration::from_secs(30),
        settings.config.job.clone(),
        requests_changed.clone(),
    ));

    // The looks at the Secrets read by name (not watched), each drift interval.
    let secret_looks = observer.look_at_secrets(leader.clone());

    let actor = Actor::new(
        client.clone(),
        &ns,
        observer.requests_name(),
        settings.config.job_config(),
        settings.changeset_limit,
        health.clone(),
        &settings.identity,
    );
    let mut reconciler = Reconciler::new(observer, actor, settings.backoff);

    let mut wake_at: Option<tokio::time::Instant> = None;
    let mut was_leader = false;
    // The versions of the request objects at the last step.
    let mut stepped_on: Option<String> = None;
    // New request objects the preflight checks have not been woken for yet.
    let mut preflight_behind = false;
    loop {
        let sleep = async {
            match wake_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop_rx.wait_for(|s| *s) => break,
            changed = leader.changed() => {
                if changed.is_err() {
                    anyhow::bail!("the leader election of Lease {ns}/{} stopped", contract::LEASE_NAME);
                }
            }
            _ = trigger.notified() => {}
            _ = sleep => { wake_at = None; }
        }
        let is_leader = *leader.borrow();
        if is_leader != was_leader {
            tracing::info!(identity = %settings.identity, leader = is_leader, "leadership changed");
            was_leader = is_leader;
        }
        if !is_leader || !health.ready.load(Ordering::Acquire) {
            continue;
        }
        // Debounce: collect the triggers of a burst of changes, until the request objects
        // changed and are whole (at once when they arrived whole).
        let deadline = tokio::time::Instant::now() + settings.debounce;
        let mut stopping = false;
        loop {
            let seen = reconciler.requests_version();
            if debounce_for(stepped_on.as_deref(), seen.as_ref(), settings.debounce).is_zero() {
                break;
            }
            tokio::select! {
                _ = stop_rx.wait_for(|s| *s) => {
                    stopping = true;
                    break;
                }
                _ = tokio::time::sleep_until(deadline) => break,
                _ = trigger.notified() => {}
            }
        }
        if stopping {
            break;
        }
        if !*leader.borrow() {
            continue;
        }
        let seen = reconciler.requests_version().map(|(key, _)| key);
        let requests_new = seen.is_some() && seen != stepped_on;
        stepped_on = seen;
        let started = std::time::Instant::now();
        match reconciler.step().await {
            Ok(Some(at)) => {
                let secs = (at - jiff::Timestamp::now().as_second()).max(0) as u64;
                wake_at = Some(tokio::time::Instant::now() + Duration::from_secs(secs));
                tracing::debug!(in_seconds = secs, "next step scheduled");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "reconcile step failed, retrying");
                wake_at = Some(tokio::time::Instant::now() + Duration::from_secs(2));
            }
        }
        health
            .metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        release_free_memory();
        // The preflight checks resolve new requests at a later step that finds no Job (the
        // run the new requests started is over), rather than at their next look: resolving
        // thousands of connections takes CPU the run needs. The step that saw them may have
        // just created the Job, which its watch does not show yet, and a run that ends with
        // changes still pending (more than one change set holds) is followed by the next:
        // a step that set out to create a Job counts as one.
        if preflight_behind && !requests_new && !reconciler.job_exists() {
            requests_changed.notify_one();
            preflight_behind = false;
        }
        preflight_behind |= requests_new;
    }

    // Its receiver of the leadership must be gone before the Lease can be released.
    prerequisites.abort();
    let _ = prerequisites.await;
    secret_looks.abort();
    let _ = secret_looks.await;
    // Closing the channel makes the lease task release the Lease.
    drop(leader);
    match tokio::time::timeout(Duration::from_secs(10), lease_task).await {
        Ok(Ok(Ok(_))) => tracing::info!("lease released"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the lease failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the lease task failed"),
        Err(_) => tracing::warn!("releasing the lease timed out"),
    }
    Ok(())
}

/// How long a busy listen address is tried again before the agent gives up.
const LISTEN_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// Binds the HTTP endpoints' address. An address in use is tried again for a while: pods on
/// the host network (or a node where the previous agent's pod still ends) share their ports,
/// and a roll-out starts the new pod before the old one goes.
async fn listen(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(100);
    let mut said = false;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && started.elapsed() < LISTEN_RETRY =>
            {
                if !said {
                    tracing::warn!(%addr, "the listen address is in use (the previous agent still ending?); trying again for up to {} s", LISTEN_RETRY.as_secs());
                    said = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "listening on {addr} failed; pass a free --listen address"
                )));
            }
        }
    }
}

/// How long to collect triggers before a step: none when the request objects changed since
/// the last step (`stepped_on`, their versions then) and are whole (`seen`: their versions
/// now, and whether every announced shard and the protected Secret carry the same revision),
/// so a Helm revision that arrived whole is acted on at once; `debounce` otherwise (a burst
/// still arriving, or another trigger: sc-job's records, the Job, drift).
pub fn debounce_for(
    stepped_on: Option<&str>,
    seen: Option<&(String, bool)>,
    debounce: Duration,
) -> Duration {
    match seen {
        Some((version, true)) if stepped_on != Some(version.as_str()) => Duration::ZERO,
        _ => debounce,
    }
}

/// Hands the memory freed by a step back to the system. A step over thousands of connections
/// allocates and frees tens of MiB; glibc's allocator would otherwise keep them, and the
/// resident size would stay at the highest step's.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the system; it has no
    // preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Limits glibc to two malloc arenas: one per thread multiplies the memory kept after peaks,
/// for no gain in a process this quiet. Called before the runtime starts its threads.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before other threads
    // exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_new_requests_are_acted_on_at_once_and_the_rest_debounced() {
        let d = Duration::from_millis(500);
        let whole = ("sc-requests@2;sc-protected@1;".to_string(), true);
        let partial = ("sc-requests@2;".to_string(), false);
        // A new revision that arrived whole: at once, also at the first step.
        assert_eq!(
            debounce_for(Some("sc-requests@1;"), Some(&whole), d),
            Duration::ZERO
        );
        assert_eq!(debounce_for(None, Some(&whole), d), Duration::ZERO);
        // Part of a revision (a shard or the protected Secret of another one): wait.
        assert_eq!(debounce_for(Some("sc-requests@1;"), Some(&partial), d), d);
        // Another trigger, the requests as at the last step: wait.
        assert_eq!(debounce_for(Some(whole.0.as_str()), Some(&whole), d), d);
        // No requests yet.
        assert_eq!(debounce_for(None, None, d), d);
    }
}
