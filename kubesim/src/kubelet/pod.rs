//! One pod's life: bind, prepare the working directory and credentials, run the init
//! containers then the containers with their restart policy, report status, and on deletion
//! stop the processes (the kubelet then removes the pod object).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::env::{SourceKind, container_env};
use super::image::{RunAs, command_line, image_command_line, run_as};
use super::logs::LogKey;
use super::oci::Unpacked;
use super::process::{Launch, Process};
use super::status::{ContainerRun, Phase, PodRun, State};
use super::{Kubelet, pods_res};
use super::{probe, volumes};
use crate::controllers::record_event;
use crate::store::{ObjKey, ResKey};

const COMPONENT: &str = "kubelet";

struct Ctx {
    kubelet: Arc<Kubelet>,
    key: ObjKey,
    pod: Value,
    dir: PathBuf,
    base_env: Vec<(String, String)>,
    run: Mutex<PodRun>,
    stop: watch::Receiver<Option<Instant>>,
    config_changed: watch::Receiver<u64>,
}

impl Ctx {
    fn cluster(&self) -> &crate::cluster::Cluster {
        &self.kubelet.cluster
    }

    /// Write the current status; false when the pod object is gone.
    fn publish(&self) -> bool {
        let status = self.run.lock().unwrap_or_else(|e| e.into_inner()).status();
        let r = self.cluster().update_status(
            &pods_res(),
            &self.key.namespace,
            &self.key.name,
            COMPONENT,
            |p| {
                if p["metadata"]["uid"] != self.pod["metadata"]["uid"] {
                    return Err(crate::cluster::ApiError::new(
                        404,
                        "NotFound",
                        "pod replaced",
                    ));
                }
                p["status"] = status;
                Ok(())
            },
        );
        match r {
            Ok(_) => true,
            Err(e) => {
                if !e.is_not_found() {
                    tracing::warn!(pod = %self.key.name, error = %e, "writing the pod status failed");
                }
                !e.is_not_found()
            }
        }
    }

    fn event(&self, warning: bool, reason: &str, message: &str) {
        let pod = self
            .cluster()
            .store()
            .get(&self.key)
            .map(|p| (*p).clone())
            .unwrap_or_else(|| self.pod.clone());
        record_event(self.cluster(), &pod, COMPONENT, warning, reason, message);
    }

    fn stopping(&self) -> bool {
        self.stop.borrow().is_some()
    }

    fn update(&self, f: impl FnOnce(&mut PodRun)) {
        f(&mut self.run.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Wait until deletion is requested.
    async fn stopped(&self) {
        let mut rx = self.stop.clone();
        let _ = rx.wait_for(Option::is_some).await;
    }

    fn secret_or_config(
        &self,
        kind: SourceKind,
        name: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let ns = &self.key.namespace;
        let (res, field) = match kind {
            SourceKind::Secret => (ResKey::new("", "secrets"), "data"),
            SourceKind::ConfigMap => (ResKey::new("", "configmaps"), "data"),
        };
        let obj = self.cluster().store().get(&ObjKey::new(&res, ns, name))?;
        let mut out = std::collections::BTreeMap::new();
        for (k, v) in obj[field].as_object().into_iter().flatten() {
            let s = v.as_str().unwrap_or("");
            let value = match kind {
                SourceKind::Secret => base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default(),
                SourceKind::ConfigMap => s.to_string(),
            };
            out.insert(k.clone(), value);
        }
        if kind == SourceKind::ConfigMap {
            for (k, v) in obj["binaryData"].as_object().into_iter().flatten() {
                let b = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap_or(""))
                    .unwrap_or_default();
                out.insert(k.clone(), String::from_utf8_lossy(&b).into_owned());
            }
        }
        Some(out)
    }
}

/// Run a pod until it finishes or is deleted.
pub(super) async fn run(
    kubelet: Arc<Kubelet>,
    pod: Value,
    stop: watch::Receiver<Option<Instant>>,
    config_changed: watch::Receiver<u64>,
) {
    let key = super::controllers_key(&pod);
    let cluster = kubelet.cluster.clone();
    let node = kubelet.config.node_name.clone();
    // Bind.
    let bound = cluster.mutate(
        &pods_res(),
        &key.namespace,
        &key.name,
        "kube-scheduler",
        |p| {
            if p["metadata"]["uid"] != pod["metadata"]["uid"] {
                return Err(crate::cluster::ApiError::new(
                    404,
                    "NotFound",
                    "pod replaced",
                ));
            }
            if p["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
                p["spec"]["nodeName"] = json!(node);
            }
            Ok(())
        },
    );
    let pod = match bound {
        Ok(p) => p,
        Err(_) => return,
    };
    if pod["metadata"]["deletionTimestamp"].is_null() {
        let msg = format!(
            "Successfully assigned {}/{} to {node}",
            key.namespace, key.name
        );
        record_event(
            &cluster,
            &pod,
            "default-scheduler",
            false,
            "Scheduled",
            &msg,
        );
    }
    let dir = kubelet.pod_dir(&pod);
    let mut base_env = vec![
        (
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
        ("HOSTNAME".to_string(), key.name.clone()),
        ("HOME".to_string(), dir.display().to_string()),
    ];
    if let Some(url) = &kubelet.config.server_url
        && let Some((host, port)) = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .rsplit_once(':')
    {
        base_env.push(("KUBERNETES_SERVICE_HOST".into(), host.to_string()));
        base_env.push(("KUBERNETES_SERVICE_PORT".into(), port.to_string()));
    }
    let ctx = Arc::new(Ctx {
        kubelet: kubelet.clone(),
        key: key.clone(),
        run: Mutex::new(PodRun::new(&pod)),
        pod,
        dir,
        base_env,
        stop,
        config_changed,
    });
    if !ctx.publish() {
        return;
    }
    if let Err(e) = std::fs::create_dir_all(&ctx.dir) {
        ctx.event(
            true,
            "FailedMount",
            &format!("creating the working directory failed: {e}"),
        );
    }
    let credentials = prepare_credentials(&ctx).await;
    let (ctx, token) = match credentials {
        Some((extra, token)) => {
            let mut c = Arc::into_inner(ctx).expect("sole owner");
            c.base_env.extend(extra);
            (Arc::new(c), Some(token))
        }
        None => (ctx, None),
    };
    if !mount_volumes(&ctx, token.as_deref()).await {
        finish(&ctx, false);
        return;
    }
    // Keep configMap / secret volume contents current, as the kubelet does.
    let refresh = {
        let ctx = ctx.clone();
        let mut changed = ctx.config_changed.clone();
        tokio::spawn(async move {
            while changed.changed().await.is_ok() {
                let lookup = |kind: SourceKind, n: &str| ctx.secret_or_config(kind, n);
                let _ = volumes::materialize(&ctx.pod, &ctx.dir, token.as_deref(), &lookup);
            }
        })
    };

    // Init containers, in order.
    let init_count = ctx.pod["spec"]["initContainers"]
        .as_array()
        .map_or(0, Vec::len);
    let mut init_ok = true;
    for i in 0..init_count {
        if ctx.stopping() {
            init_ok = false;
            break;
        }
        let exit = run_container(&ctx, true, i).await;
        if exit != Some(0) {
            init_ok = false;
            break;
        }
    }
    if init_ok && !ctx.stopping() {
        let count = ctx.pod["spec"]["containers"].as_array().map_or(0, Vec::len);
        let runs = (0..count).map(|i| run_container(&ctx, false, i));
        futures::future::join_all(runs).await;
    }
    refresh.abort();
    finish(&ctx, init_ok);
}

/// Report the terminal phase (the caller removes the pod object when it is being deleted).
fn finish(ctx: &Arc<Ctx>, init_ok: bool) {
    ctx.update(|r| {
        let all_zero = r
            .init
            .iter()
            .chain(r.containers.iter())
            .all(|c| c.exit_code() == Some(0));
        r.phase = if all_zero && init_ok {
            Phase::Succeeded
        } else {
            Phase::Failed
        };
    });
    ctx.publish();
}

/// Set up the volumes; waits (ContainerCreating, FailedMount events) while a referenced
/// ConfigMap or Secret is missing. False when the pod is deleted meanwhile.
async fn mount_volumes(ctx: &Arc<Ctx>, token: Option<&str>) -> bool {
    let mut changed = ctx.config_changed.clone();
    loop {
        changed.borrow_and_update();
        let lookup = |kind: SourceKind, n: &str| ctx.secret_or_config(kind, n);
        match volumes::materialize(&ctx.pod, &ctx.dir, token, &lookup) {
            Ok(()) => return true,
            Err(e) => {
                ctx.event(true, "FailedMount", &e.to_string());
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = ctx.stopped() => return false,
                }
            }
        }
    }
}

/// Issue the ServiceAccount token and write the credentials; the env entries to add. Waits
/// (as CreateContainerConfigError) while the ServiceAccount does not exist.
async fn prepare_credentials(ctx: &Arc<Ctx>) -> Option<(Vec<(String, String)>, String)> {
    let spec = &ctx.pod["spec"];
    if spec["automountServiceAccountToken"] == false {
        return None;
    }
    let url = ctx.kubelet.config.server_url.clone()?;
    let sa = spec["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let ns = ctx.key.namespace.clone();
    let mut changed = ctx.config_changed.clone();
    let token = loop {
        changed.borrow_and_update();
        match ctx.cluster().issue_token(&ns, sa) {
            Ok(t) => break t,
            Err(e) => {
                let message = format!("error looking up service account {ns}/{sa}: {}", e.message);
                ctx.update(|r| {
                    for c in r.init.iter_mut().chain(r.containers.iter_mut()) {
                        c.state = State::Waiting {
                            reason: "CreateContainerConfigError".into(),
                            message: Some(message.clone()),
                        };
                    }
                });
                ctx.publish();
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = ctx.stopped() => return None,
                }
            }
        }
    };
    let kubeconfig = ctx.dir.join("kubeconfig");
    let text = super::kubeconfig_yaml(&url, sa, &token, &ns);
    let sa_dir = ctx.dir.join("serviceaccount");
    let written = write_private(&kubeconfig, &text)
        .and_then(|_| std::fs::create_dir_all(&sa_dir))
        .and_then(|_| write_private(&sa_dir.join("token"), &token))
        .and_then(|_| write_private(&sa_dir.join("namespace"), &ns));
    if let Err(e) = written {
        ctx.event(
            true,
            "FailedMount",
            &format!("writing the service account credentials failed: {e}"),
        );
        return None;
    }
    Some((
        vec![("KUBECONFIG".into(), kubeconfig.display().to_string())],
        token,
    ))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// Run the container's probes while it runs: startup first (retried until it succeeds), then
/// readiness (sets the container's ready state; retried every second at most until the first
/// success) and liveness. Returns only when the liveness probe failed `failureThreshold` times
/// in a row.
async fn watch_probes(
    ctx: &Arc<Ctx>,
    init: bool,
    i: usize,
    spec: &Value,
    env: &[(String, String)],
) {
    if init {
        return std::future::pending().await;
    }
    let first = Duration::from_secs(1);
    let startup = &spec["startupProbe"];
    if startup.is_object() {
        let t = probe::ProbeTiming::of(startup);
        tokio::time::sleep(t.initial_delay).await;
        while probe::run(startup, spec, env, &ctx.dir, t.timeout)
            .await
            .is_err()
        {
            tokio::time::sleep(t.period.min(first)).await;
        }
    }
    let readiness = async {
        let p = &spec["readinessProbe"];
        if !p.is_object() {
            return std::future::pending().await;
        }
        let t = probe::ProbeTiming::of(p);
        tokio::time::sleep(t.initial_delay).await;
        let (mut ready, mut ok, mut failed) = (false, 0, 0);
        loop {
            match probe::run(p, spec, env, &ctx.dir, t.timeout).await {
                Ok(()) => {
                    (ok, failed) = (ok + 1, 0);
                    if !ready && ok >= t.success_threshold {
                        ready = true;
                        ctx.update(|r| r.containers[i].probe_ready = Some(true));
                        ctx.publish();
                    }
                }
                Err(msg) => {
                    (ok, failed) = (0, failed + 1);
                    ctx.event(true, "Unhealthy", &format!("Readiness probe failed: {msg}"));
                    if ready && failed >= t.failure_threshold {
                        ready = false;
                        ctx.update(|r| r.containers[i].probe_ready = Some(false));
                        ctx.publish();
                    }
                }
            }
            tokio::time::sleep(if ready { t.period } else { t.period.min(first) }).await;
        }
    };
    let liveness = async {
        let p = &spec["livenessProbe"];
        if !p.is_object() {
            return std::future::pending().await;
        }
        let t = probe::ProbeTiming::of(p);
        tokio::time::sleep(t.initial_delay).await;
        let mut failed = 0;
        loop {
            match probe::run(p, spec, env, &ctx.dir, t.timeout).await {
                Ok(()) => failed = 0,
                Err(msg) => {
                    failed += 1;
                    ctx.event(true, "Unhealthy", &format!("Liveness probe failed: {msg}"));
                    if failed >= t.failure_threshold {
                        return;
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    };
    tokio::select! {
        () = readiness => {}
        () = liveness => {}
    }
}

/// The termination message taken from the log: its last 80 lines, at most 2048 bytes.
fn log_tail(log: &super::logs::LogBuffer) -> String {
    let query = super::logs::LogQuery {
        tail_lines: Some(80),
        ..Default::default()
    };
    let bytes = log.snapshot(&query);
    let start = bytes.len().saturating_sub(2048);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn backoff(ctx: &Ctx, restarts: u32) -> Duration {
    let cfg = &ctx.kubelet.config;
    cfg.restart_backoff_base
        .saturating_mul(2u32.saturating_pow(restarts.min(16)))
        .min(cfg.restart_backoff_max)
}

fn slot(r: &mut PodRun, init: bool, i: usize) -> &mut ContainerRun {
    if init {
        &mut r.init[i]
    } else {
        &mut r.containers[i]
    }
}

/// The image archive `spec.image` runs from, unpacked; `None` without an image directory or
/// a matching archive. The error is the `ErrImagePull` message.
async fn resolve_image(ctx: &Arc<Ctx>, spec: &Value) -> Result<Option<Unpacked>, String> {
    let Some(store) = ctx.kubelet.images.clone() else {
        return Ok(None);
    };
    let reference = spec["image"].as_str().unwrap_or("").to_string();
    tokio::task::spawn_blocking(move || store.resolve(&reference))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The environment an image container starts from: the image's `Env`, then the kubelet's
/// variables without the host's `PATH` (the image's, or the runtime's default, applies).
fn image_base_env(image: &Unpacked, base: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = image.config.env.clone();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(
            0,
            ("PATH".to_string(), super::image::DEFAULT_PATH.to_string()),
        );
    }
    for (k, v) in base.iter().filter(|(k, _)| k != "PATH") {
        env.retain(|(e, _)| e != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// Hand the pod's working directory and credentials to the user a container runs as, so it
/// can use them as a pod's files (its HOME, the kubeconfig and token, emptyDir volumes).
fn give_workdir(dir: &Path, user: RunAs) {
    let mut paths = vec![
        dir.to_path_buf(),
        dir.join("kubeconfig"),
        dir.join("serviceaccount"),
        dir.join("serviceaccount/token"),
        dir.join("serviceaccount/namespace"),
    ];
    paths.retain(|p| p.symlink_metadata().is_ok());
    for p in paths {
        if let Err(e) = std::os::unix::fs::lchown(&p, Some(user.uid), Some(user.gid)) {
            tracing::warn!(path = %p.display(), error = %e, "handing a pod file to its user failed");
        }
    }
}

/// Run one container with its restart policy until it is done (or the pod is deleted).
/// Returns the exit code of the last run, `None` when it never ran to completion.
async fn run_container(ctx: &Arc<Ctx>, init: bool, i: usize) -> Option<i32> {
    let field = if init { "initContainers" } else { "containers" };
    let mut spec = ctx.pod["spec"][field][i].clone();
    let mounts = volumes::mounts(&ctx.pod, &spec, &ctx.dir);
    for list in ["command", "args"] {
        for arg in spec[list].as_array_mut().into_iter().flatten() {
            if let Some(a) = arg.as_str() {
                *arg = Value::String(volumes::translate(a, &mounts));
            }
        }
    }
    let name = spec["name"].as_str().unwrap_or("").to_string();
    let policy = ctx.pod["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or("Always")
        .to_string();
    let uid = ctx.pod["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut last_exit = None;
    let mut changed = ctx.config_changed.clone();
    // The image archive the container runs from: looked up (and unpacked) once.
    let mut image: Option<Option<Unpacked>> = None;
    loop {
        if ctx.stopping() {
            return last_exit;
        }
        changed.borrow_and_update();
        if image.is_none() {
            match resolve_image(ctx, &spec).await {
                Ok(found) => image = Some(found),
                Err(message) => {
                    let reference = spec["image"].as_str().unwrap_or("");
                    ctx.update(|r| {
                        slot(r, init, i).state = State::Waiting {
                            reason: "ErrImagePull".into(),
                            message: Some(message.clone()),
                        }
                    });
                    ctx.publish();
                    ctx.event(
                        true,
                        "Failed",
                        &format!("Failed to pull image \"{reference}\": {message}"),
                    );
                    tokio::select! {
                        _ = changed.changed() => continue,
                        _ = ctx.stopped() => return last_exit,
                    }
                }
            }
        }
        let unpacked = image.as_ref().and_then(Option::as_ref);
        // Configuration: the user (image containers), env (may wait for a Secret/ConfigMap),
        // then the command.
        let user = match unpacked.map(|img| run_as(&ctx.pod, &spec, img)).transpose() {
            Ok(user) => user,
            Err(message) => {
                ctx.update(|r| {
                    slot(r, init, i).state = State::Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message: Some(message.clone()),
                    }
                });
                ctx.publish();
                ctx.event(true, "Failed", &format!("Error: {message}"));
                tokio::select! {
                    _ = changed.changed() => continue,
                    _ = ctx.stopped() => return last_exit,
                }
            }
        };
        let base_env = match unpacked {
            Some(img) => image_base_env(img, &ctx.base_env),
            None => ctx.base_env.clone(),
        };
        let lookup = |kind: SourceKind, n: &str| ctx.secret_or_config(kind, n);
        let env = match container_env(&ctx.pod, &spec, &base_env, &lookup) {
            Ok(env) => env
                .into_iter()
                .map(|(k, v)| (k, volumes::translate(&v, &mounts)))
                .collect::<Vec<_>>(),
            Err(e) => {
                ctx.update(|r| {
                    slot(r, init, i).state = State::Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message: Some(e.0.clone()),
                    }
                });
                ctx.publish();
                ctx.event(true, "Failed", &format!("Error: {}", e.0));
                tokio::select! {
                    _ = changed.changed() => continue,
                    _ = ctx.stopped() => return last_exit,
                }
            }
        };
        let restart = ctx.run.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let restart = if init {
            restart.init[i].restart_count
        } else {
            restart.containers[i].restart_count
        };
        let log = ctx.kubelet.logs.open(LogKey {
            pod_uid: uid.clone(),
            container: name.clone(),
            restart,
        });
        let started_at = Timestamp::now();
        let resolved = match unpacked {
            Some(img) => image_command_line(&spec, img, &env),
            None => command_line(&spec, ctx.kubelet.config.bin_dir.as_deref(), &env),
        };
        // Only root can start a process as another user.
        let user = user.filter(|_| super::process::is_root());
        if let Some(u) = user {
            give_workdir(&ctx.dir, u);
        }
        let exec_context = super::exec::ExecContext {
            env: env.clone(),
            cwd: ctx.dir.clone(),
            user,
            image: unpacked.cloned(),
        };
        let spawned = resolved.and_then(|(program, args)| {
            let launch = Launch {
                program: program.clone(),
                args,
                env: env.clone(),
                cwd: ctx.dir.clone(),
                user,
            };
            Process::spawn(&launch, log.clone(), ctx.kubelet.groups.clone())
                .map(|p| (p, program))
                .map_err(|e| format!("exec: {:?}: {e}", launch.program))
        });
        let exit = match spawned {
            Err(message) => {
                log.close();
                ctx.event(true, "Failed", &format!("Error: {message}"));
                ctx.update(|r| {
                    let c = slot(r, init, i);
                    c.state = State::Terminated {
                        exit_code: 128,
                        signal: None,
                        reason: "StartError".into(),
                        message: Some(message.clone()),
                        started_at,
                        finished_at: Timestamp::now(),
                    };
                });
                128
            }
            Ok((mut process, program)) => {
                let pid = process.pid();
                let _running = ctx.kubelet.running.register(&uid, &name, exec_context);
                ctx.update(|r| {
                    if !init {
                        r.phase = Phase::Running;
                    }
                    let c = slot(r, init, i);
                    c.state = State::Running { started_at };
                    c.pid = Some(pid);
                    c.program = Some(program.display().to_string());
                    c.image_id = unpacked.map(|img| {
                        let reference = super::oci::ImageRef::parse(&c.image);
                        format!("{}@{}", reference.repository, img.digest)
                    });
                    c.probe_ready = (!init && spec["readinessProbe"].is_object()).then_some(false);
                });
                if restart == 0 {
                    let image = spec["image"].as_str().unwrap_or("");
                    ctx.event(
                        false,
                        "Pulled",
                        &format!("Container image \"{image}\" already present on machine"),
                    );
                    ctx.event(false, "Created", &format!("Created container: {name}"));
                    ctx.event(false, "Started", &format!("Started container {name}"));
                }
                ctx.publish();
                enum Why {
                    Exited,
                    Deleted,
                    Unhealthy,
                }
                let why = tokio::select! {
                    _ = process.exited() => Why::Exited,
                    _ = ctx.stopped() => Why::Deleted,
                    _ = watch_probes(ctx, init, i, &spec, &env) => Why::Unhealthy,
                };
                let exit = match why {
                    Why::Exited => process.wait().await,
                    Why::Deleted => {
                        ctx.event(false, "Killing", &format!("Stopping container {name}"));
                        process.terminate_until(ctx.stop.clone()).await
                    }
                    Why::Unhealthy => {
                        let msg =
                            format!("Container {name} failed liveness probe, will be restarted");
                        ctx.event(false, "Killing", &msg);
                        let grace = ctx.pod["spec"]["terminationGracePeriodSeconds"]
                            .as_u64()
                            .unwrap_or(30);
                        process.terminate(Duration::from_secs(grace)).await
                    }
                };
                let reason = if exit.code == 0 { "Completed" } else { "Error" };
                let fallback = spec["terminationMessagePolicy"] == "FallbackToLogsOnError";
                let message = (exit.code != 0 && fallback).then(|| log_tail(&log));
                ctx.update(|r| {
                    slot(r, init, i).state = State::Terminated {
                        exit_code: exit.code,
                        signal: exit.signal,
                        reason: reason.into(),
                        message,
                        started_at,
                        finished_at: Timestamp::now(),
                    }
                });
                exit.code
            }
        };
        last_exit = Some(exit);
        let again = !ctx.stopping()
            && match policy.as_str() {
                "Never" => false,
                "OnFailure" => exit != 0,
                _ => !init || exit != 0,
            };
        if !again {
            ctx.publish();
            return last_exit;
        }
        // Restart after a back-off.
        let delay = backoff(ctx, restart);
        ctx.update(|r| {
            // A restarting container has stopped (it has a last termination state): the
            // kubelet's getPhase counts the pod Running, even when it never started.
            if !init && r.phase == Phase::Pending {
                r.phase = Phase::Running;
            }
            let c = slot(r, init, i);
            c.last_state = Some(c.state.clone());
            c.restart_count += 1;
            c.state = State::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(format!(
                    "back-off {}s restarting failed container={name} pod={}_{}({uid})",
                    delay.as_secs(),
                    ctx.key.name,
                    ctx.key.namespace
                )),
            };
        });
        ctx.publish();
        ctx.event(true, "BackOff", "Back-off restarting failed container");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = ctx.stopped() => return last_exit,
        }
    }
}
