//! The process kubelet: every pod (Job pods, ReplicaSet pods, bare pods such as `helm test`
//! hooks) runs its containers as local processes.
//!
//! - Binding: a new pod gets `spec.nodeName` (the node name, `kubesim` by default), unless
//!   the node has a `NoSchedule`/`NoExecute` taint (or is cordoned) the pod does not
//!   tolerate: then it stays Pending, `PodScheduled=False` reason `Unschedulable` with the
//!   scheduler's message and a `FailedScheduling` event, until the node changes; see
//!   [`schedule`].
//! - Images and commands: see [`image`]; image archives (`image_dir`): see [`oci`];
//!   environment: see [`env`](mod@env).
//! - Working directory: one per pod under the kubelet's root directory (a fresh directory in
//!   the system temp dir unless configured), removed with the pod. `HOME` points at it.
//! - Identity: unless `automountServiceAccountToken: false`, the pod's ServiceAccount gets a
//!   token from [`Cluster::issue_token`], written as `<dir>/kubeconfig` (server URL, token,
//!   namespace) with `KUBECONFIG` pointing at it, plus `<dir>/serviceaccount/{token,namespace}`.
//!   `KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT` are set as in a real pod, but the
//!   server speaks plain http, so in-cluster configuration (which needs https and a CA) does
//!   not work: clients find the API through `KUBECONFIG` (kube-rs `Config::infer()` reads it
//!   first).
//! - Logs: stdout and stderr per (pod uid, container, restart count), served through
//!   [`PodLogs`]; kept until the pod object is removed.
//! - Lifecycle: init containers in order, then all containers; restartPolicy Always and
//!   OnFailure restart a container in place (restartCount, CrashLoopBackOff delays), Never
//!   leaves it terminated; the phase follows (Pending, Running, Succeeded, Failed).
//! - Deletion: a pod with `deletionTimestamp` gets SIGTERM (its whole process group), SIGKILL
//!   once the grace period is over, then its object is removed (delete with grace 0).
//! - Shutdown: every process group still running is killed when the kubelet is dropped.

pub mod env;
pub mod exec;
pub mod image;
pub mod logs;
pub mod oci;
mod pod;
pub mod probe;
pub mod process;
mod schedule;
pub mod status;
pub mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cluster::{
    ApiError, Cluster, LogOptions, LogStream, PodLogs, PodStreams, StreamRefusal,
};
use crate::store::{EventType, ObjKey, ResKey, WatchEvent};
use logs::{LogKey, LogQuery, LogStore};
use process::ProcessGroups;

/// Settings of the kubelet.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// Executables that container images map to (image name = file name).
    pub bin_dir: Option<PathBuf>,
    /// OCI image archives (`*.tar`) that container images run from, see [`oci`]; images
    /// without an archive fall back to `bin_dir` and the host.
    pub image_dir: Option<PathBuf>,
    /// Where images are unpacked; `None`: `<root_dir>/.images`.
    pub image_cache: Option<PathBuf>,
    /// The API server URL written into each pod's kubeconfig (no kubeconfig when `None`).
    pub server_url: Option<String>,
    /// Where the pods' working directories go; `None`: a fresh temporary directory, removed
    /// when the kubelet stops.
    pub root_dir: Option<PathBuf>,
    /// The node every pod is bound to.
    pub node_name: String,
    /// First container restart delay (doubled per restart; the real kubelet uses 10 s).
    pub restart_backoff_base: Duration,
    /// Upper bound of the restart delay (the real kubelet: 5 min).
    pub restart_backoff_max: Duration,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        Self {
            bin_dir: None,
            image_dir: None,
            image_cache: None,
            server_url: None,
            root_dir: None,
            node_name: "kubesim".into(),
            restart_backoff_base: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(30),
        }
    }
}

/// What the kubelet tracks per pod (by uid).
struct PodHandle {
    key: ObjKey,
    /// When set: terminate, SIGKILL at this instant.
    stop: watch::Sender<Option<Instant>>,
    /// Bumped when a Secret, ConfigMap or ServiceAccount of the pod's namespace changes.
    config_changed: watch::Sender<u64>,
    /// Set when the pod's task has ended; read and written under its lock together with
    /// the stop request, so a deletion that arrives as the pod ends is never missed: either
    /// the task sees the stop request, or the deletion sees the task ended.
    ended: Arc<Mutex<bool>>,
    task: JoinHandle<()>,
}

/// A kubeconfig with the cluster `kubesim` at `server`, `user` with the bearer `token`, and the
/// context `kubesim` (namespace `namespace`) selected.
pub(crate) fn kubeconfig_yaml(server: &str, user: &str, token: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kubesim
  cluster:
    server: {server}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: kubesim
  context:
    cluster: kubesim
    user: {user}
    namespace: {namespace}
current-context: kubesim
"
    )
}

/// The kubelet. Install it as the cluster's [`PodLogs`] source.
pub struct Kubelet {
    cluster: Arc<Cluster>,
    config: KubeletConfig,
    root: PathBuf,
    owns_root: bool,
    logs: LogStore,
    groups: Arc<ProcessGroups>,
    /// The running containers, for `pods/exec` and `pods/attach`.
    running: Arc<exec::Running>,
    images: Option<Arc<oci::ImageStore>>,
    pods: Mutex<HashMap<String, PodHandle>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

fn pods_res() -> ResKey {
    ResKey::new("", "pods")
}

impl Kubelet {
    /// Start the kubelet on the current tokio runtime and install it as the pod log source.
    pub fn start(cluster: Arc<Cluster>, config: KubeletConfig) -> std::io::Result<Arc<Self>> {
        let (root, owns_root) = match &config.root_dir {
            Some(dir) => (dir.clone(), false),
            None => {
                let suffix: u64 = rand::random();
                (
                    std::env::temp_dir()
                        .join(format!("kubesim-pods-{}-{suffix:x}", std::process::id())),
                    true,
                )
            }
        };
        std::fs::create_dir_all(&root)?;
        let groups = Arc::new(
            ProcessGroups::with_watchdog(
                root.join(".process-groups"),
                owns_root.then_some(root.as_path()),
            )
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "starting the process watchdog failed");
                ProcessGroups::default()
            }),
        );
        let images = config.image_dir.clone().map(|dir| {
            let cache = config
                .image_cache
                .clone()
                .unwrap_or_else(|| root.join(".images"));
            Arc::new(oci::ImageStore::new(dir, cache))
        });
        let kubelet = Arc::new(Self {
            cluster: cluster.clone(),
            images,
            config,
            root,
            owns_root,
            logs: LogStore::default(),
            groups,
            running: Arc::default(),
            pods: Mutex::new(HashMap::new()),
            task: Mutex::new(None),
        });
        cluster.set_pod_logs(kubelet.clone());
        kubelet.register_node();
        let weak = Arc::downgrade(&kubelet);
        let task = tokio::spawn(async move {
            let Some(k) = weak.upgrade() else { return };
            let Ok(sub) = k.cluster.store().subscribe(None) else {
                return;
            };
            let mut live = sub.live;
            let (pods, _) = k.cluster.store().list(&pods_res(), None);
            drop(k);
            for p in pods {
                let Some(k) = weak.upgrade() else { return };
                k.pod_changed(&p);
            }
            loop {
                let ev = live.recv().await;
                let Some(k) = weak.upgrade() else { return };
                match ev {
                    Ok(ev) => k.handle(&ev),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => k.resync(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        *kubelet.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(kubelet)
    }

    fn lock_pods(&self) -> MutexGuard<'_, HashMap<String, PodHandle>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The root of the pods' working directories.
    pub fn root_dir(&self) -> &std::path::Path {
        &self.root
    }

    /// The image archives and their cache, when an image directory is configured.
    pub fn images(&self) -> Option<&Arc<oci::ImageStore>> {
        self.images.as_ref()
    }

    /// Pids of every container process running now.
    pub fn pids(&self) -> Vec<i32> {
        self.groups.pids()
    }

    fn handle(self: &Arc<Self>, ev: &WatchEvent) {
        let res = &ev.key.res;
        if *res == pods_res() {
            if ev.kind == EventType::Deleted {
                self.pod_removed(&ev.object);
            } else {
                self.pod_changed(&ev.object);
            }
        } else if res.group.is_empty() && res.resource == "nodes" {
            // A taint gone (or added): the pods waiting for a node are scheduled again.
            let (pods, _) = self.cluster.store().list(&pods_res(), None);
            for p in pods
                .iter()
                .filter(|p| p["spec"]["nodeName"].as_str().is_none_or(str::is_empty))
            {
                self.pod_changed(p);
            }
        } else if res.group.is_empty()
            && matches!(
                res.resource.as_str(),
                "secrets" | "configmaps" | "serviceaccounts"
            )
        {
            for h in self.lock_pods().values() {
                if h.key.namespace == ev.key.namespace {
                    h.config_changed.send_modify(|n| *n += 1);
                }
            }
        }
    }

    fn pod_changed(self: &Arc<Self>, pod: &Value) {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let key = controllers_key(pod);
        let deleting = deletion_deadline(pod);
        let mut pods = self.lock_pods();
        if let Some(h) = pods.get(&uid) {
            if let Some(deadline) = deleting {
                h.stop.send_if_modified(|cur| match cur {
                    Some(d) if *d <= deadline => false,
                    _ => {
                        *cur = Some(deadline);
                        true
                    }
                });
                if *h.ended.lock().unwrap_or_else(|e| e.into_inner()) {
                    self.final_delete(&key);
                }
            }
            return;
        }
        if deleting.is_some() {
            drop(pods);
            self.final_delete(&key);
            return;
        }
        if matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded") | Some("Failed")
        ) {
            return;
        }
        if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
            let node = self
                .cluster
                .get(&ResKey::new("", "nodes"), "", &self.config.node_name)
                .unwrap_or(Value::Null);
            if let Some(message) = schedule::unschedulable_message(pod, &node) {
                drop(pods);
                self.hold_unschedulable(pod, &message);
                return;
            }
        }
        let (stop, stop_rx) = watch::channel(None);
        let (config_changed, config_rx) = watch::channel(0u64);
        let ended = Arc::new(Mutex::new(false));
        let task = tokio::spawn({
            let (kubelet, pod, key, ended) =
                (self.clone(), pod.clone(), key.clone(), ended.clone());
            async move {
                pod::run(kubelet.clone(), pod, stop_rx.clone(), config_rx).await;
                // The last step of a graceful deletion requested while the pod ran.
                let stopping = {
                    let mut ended = ended.lock().unwrap_or_else(|e| e.into_inner());
                    *ended = true;
                    stop_rx.borrow().is_some()
                };
                if stopping {
                    kubelet.final_delete(&key);
                }
            }
        });
        pods.insert(
            uid,
            PodHandle {
                key,
                stop,
                config_changed,
                ended,
                task,
            },
        );
    }

    /// Leaves a pod no node accepts Pending, saying why (once per message).
    fn hold_unschedulable(&self, pod: &Value, message: &str) {
        if schedule::says_unschedulable(pod, message) {
            return;
        }
        let key = controllers_key(pod);
        let uid = pod["metadata"]["uid"].clone();
        let r = self.cluster.update_status(
            &pods_res(),
            &key.namespace,
            &key.name,
            "kube-scheduler",
            |p| {
                if p["metadata"]["uid"] != uid {
                    return Err(ApiError::new(404, "NotFound", "pod replaced"));
                }
                p["status"] = schedule::unschedulable_status(message);
                Ok(())
            },
        );
        match r {
            Ok(p) => crate::controllers::record_event(
                &self.cluster,
                &p,
                "default-scheduler",
                true,
                "FailedScheduling",
                message,
            ),
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                tracing::warn!(namespace = %key.namespace, pod = %key.name, error = %e, "writing the status of an unschedulable pod failed");
            }
        }
    }

    /// Create the Node object pods are bound to, Ready, with the loopback address.
    fn register_node(&self) {
        let nodes = ResKey::new("", "nodes");
        let name = self.config.node_name.clone();
        let node = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": std::env::consts::OS,
                "kubernetes.io/arch": go_arch(),
            }},
        });
        match self.cluster.create(
            &nodes,
            "",
            node,
            &crate::cluster::WriteOptions::manager("kubelet"),
        ) {
            Ok(_) => {}
            Err(e) if e.is_conflict() => {}
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "registering the node failed");
                return;
            }
        }
        let now = crate::time::now();
        let r = self.cluster.update_status(&nodes, "", &name, "kubelet", |n| {
            n["status"] = serde_json::json!({
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status", "lastHeartbeatTime": now,
                                "lastTransitionTime": now}],
                "addresses": [{"type": "InternalIP", "address": status::POD_IP},
                              {"type": "Hostname", "address": name}],
                "nodeInfo": node_system_info(),
            });
            Ok(())
        });
        if let Err(e) = r {
            tracing::warn!(node = %name, error = %e, "writing the node status failed");
        }
    }

    /// After missed events: start what is new, stop what is gone.
    fn resync(self: &Arc<Self>) {
        let pods = self.cluster.store().list(&pods_res(), None).0;
        let uids: std::collections::HashSet<&str> = pods
            .iter()
            .filter_map(|p| p["metadata"]["uid"].as_str())
            .collect();
        let gone: Vec<Value> = self
            .lock_pods()
            .iter()
            .filter(|(uid, _)| !uids.contains(uid.as_str()))
            .map(|(uid, h)| {
                serde_json::json!({"metadata": {"uid": uid, "namespace": h.key.namespace, "name": h.key.name}})
            })
            .collect();
        for p in &gone {
            self.pod_removed(p);
        }
        for p in &pods {
            self.pod_changed(p);
        }
    }

    fn pod_removed(self: &Arc<Self>, pod: &Value) {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let handle = self.lock_pods().remove(&uid);
        let dir = self.pod_dir(pod);
        let kubelet = self.clone();
        match handle {
            Some(h) => {
                let _ = h.stop.send(Some(Instant::now()));
                tokio::spawn(async move {
                    let _ = h.task.await;
                    kubelet.logs.remove_pod(&uid);
                    let _ = tokio::fs::remove_dir_all(dir).await;
                });
            }
            None => {
                self.logs.remove_pod(&uid);
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// Remove a pod whose processes are gone (the last step of graceful deletion).
    fn final_delete(&self, key: &ObjKey) {
        let opts = crate::cluster::DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        if let Err(e) = self
            .cluster
            .delete(&key.res, &key.namespace, &key.name, &opts)
            && !e.is_not_found()
        {
            tracing::warn!(namespace = %key.namespace, pod = %key.name, error = %e, "removing a terminated pod failed");
        }
    }

    /// The working directory of a pod.
    fn pod_dir(&self, pod: &Value) -> PathBuf {
        let m = &pod["metadata"];
        self.root.join(format!(
            "{}_{}_{}",
            m["namespace"].as_str().unwrap_or(""),
            m["name"].as_str().unwrap_or(""),
            m["uid"].as_str().unwrap_or("")
        ))
    }

    /// Kill every process and stop watching (also done on drop).
    pub fn shutdown(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
        for (_, h) in self.lock_pods().drain() {
            h.task.abort();
        }
        self.groups.kill_all();
        if self.owns_root {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The architecture as Kubernetes names it.
/// `NodeSystemInfo` with every field a kubelet always writes (typed clients require them), from
/// the host where it can be read. `kubeProxyVersion` is deprecated and left empty, as kubelets
/// of this version do.
fn node_system_info() -> Value {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let machine_id = Some(read("/etc/machine-id"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let system_uuid = Some(read("/sys/class/dmi/id/product_uuid"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let boot_id = Some(read("/proc/sys/kernel/random/boot_id"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let os_image = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    serde_json::json!({
        "machineID": machine_id,
        "systemUUID": system_uuid,
        "bootID": boot_id,
        "kernelVersion": read("/proc/sys/kernel/osrelease"),
        "osImage": os_image,
        "containerRuntimeVersion": "process://kubesim",
        "kubeletVersion": crate::resources::GIT_VERSION,
        "kubeProxyVersion": "",
        "operatingSystem": std::env::consts::OS,
        "architecture": go_arch(),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn controllers_key(pod: &Value) -> ObjKey {
    crate::controllers::key_of(&pods_res(), pod)
}

/// When a pod being deleted must be killed: its deletionTimestamp (now + grace at delete).
fn deletion_deadline(pod: &Value) -> Option<Instant> {
    let ts: jiff::Timestamp = pod["metadata"]["deletionTimestamp"]
        .as_str()?
        .parse()
        .ok()?;
    let left = ts
        .duration_since(jiff::Timestamp::now())
        .as_secs_f64()
        .max(0.0);
    Some(Instant::now() + Duration::from_secs_f64(left))
}

impl PodLogs for Kubelet {
    fn logs(&self, pod: &Value, opts: &LogOptions) -> Result<LogStream, ApiError> {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
        let name = pod["metadata"]["name"].as_str().unwrap_or("");
        let container = opts.container.as_str();
        let latest = self.logs.latest(uid, container);
        let buffer = if opts.previous {
            let prev = latest.and_then(|(n, _)| n.checked_sub(1)).and_then(|n| {
                self.logs.get(&LogKey {
                    pod_uid: uid.into(),
                    container: container.into(),
                    restart: n,
                })
            });
            prev.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "previous terminated container {container:?} in pod {name:?} not found"
                ))
            })?
        } else {
            match latest {
                Some((_, b)) => b,
                None => {
                    let reason = waiting_reason(pod, container)
                        .unwrap_or_else(|| "ContainerCreating".into());
                    return Err(ApiError::bad_request(format!(
                        "container {container:?} in pod {name:?} is waiting to start: {reason}"
                    )));
                }
            }
        };
        let since = match (opts.since_seconds, &opts.since_time) {
            (Some(s), _) => Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s)),
            (None, Some(t)) => t.parse().ok(),
            (None, None) => None,
        };
        let query = LogQuery {
            follow: opts.follow,
            timestamps: opts.timestamps,
            tail_lines: opts.tail_lines.filter(|n| *n >= 0).map(|n| n as usize),
            since,
            limit_bytes: None,
            stream: None,
        };
        Ok(Box::pin(buffer.stream(query).map(Ok)))
    }

    fn exec(
        &self,
        pod: &Value,
        container: &str,
        command: &[String],
        stdin: bool,
    ) -> Result<PodStreams, StreamRefusal> {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
        exec::exec(self, uid, container, command, stdin)
    }

    fn attach(&self, pod: &Value, container: &str) -> Result<PodStreams, StreamRefusal> {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
        exec::attach(self, uid, container)
    }

    fn pod_running(&self, pod: &Value) -> bool {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
        self.running.pod_running(uid)
    }
}

fn waiting_reason(pod: &Value, container: &str) -> Option<String> {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .flat_map(|f| pod["status"][f].as_array().into_iter().flatten())
        .find(|c| c["name"] == container)
        .and_then(|c| c["state"]["waiting"]["reason"].as_str())
        .map(str::to_string)
}
