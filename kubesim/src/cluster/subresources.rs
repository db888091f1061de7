//! Subresources: status (PUT), scale, pod logs, and the checks in front of `pods/exec`,
//! `pods/attach` and `pods/portforward`.

use std::future::Future;
use std::pin::Pin;

use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};

use super::write::Scope;
use super::{Cluster, WriteOptions, meta, meta_mut};
use crate::error::{ApiError, Cause};
use crate::resources::ResourceInfo;
use crate::store::ResKey;

/// `pods/log` options. `limit_bytes` is applied by [`Cluster::pod_logs`]; a [`PodLogs`]
/// source handles the others.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Resolved by the cluster: always a container of the pod.
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    /// RFC 3339.
    pub since_time: Option<String>,
    pub limit_bytes: Option<i64>,
}

/// A stream of log bytes (ends when the log ends, or, with `follow`, when the container exits).
pub type LogStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Output of a process or container, chunk by chunk; ends when the output ends.
pub type OutputStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// The streams of a `pods/exec` command or of a `pods/attach` session.
pub struct PodStreams {
    /// The command's stdin (exec with `stdin=true` only).
    pub stdin: Option<Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
    pub stdout: OutputStream,
    pub stderr: OutputStream,
    /// The exit code of an exec'd command once it ended (`None`: attach, which ends with
    /// the container's output).
    pub exit: Option<Pin<Box<dyn Future<Output = i32> + Send>>>,
}

/// Why the kubelet did not start a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamRefusal {
    /// Refused before the connection is upgraded, as the kubelet answers (500 with this text,
    /// e.g. `container not found ("app")`).
    Unavailable(String),
    /// The command could not be started (the connection is upgraded; the error channel says).
    Start(String),
}

/// Where pod logs and streams come from (the kubelet). Without one, every log request answers
/// 400 `container "c" in pod "p" is waiting to start: ContainerCreating`, and every exec,
/// attach or port-forward is refused as for a container that is not running.
pub trait PodLogs: Send + Sync {
    /// The log of `opts.container` of `pod` (the stored Pod object), or the API error to answer
    /// (e.g. 400 waiting to start, 400 `previous terminated container "c" in pod "p" not found`).
    fn logs(&self, pod: &Value, opts: &LogOptions) -> Result<LogStream, ApiError>;

    /// Start `command` in `container` of `pod` the way the container's process was started
    /// (its environment, working directory and user), with a stdin pipe when `stdin`.
    fn exec(
        &self,
        pod: &Value,
        container: &str,
        command: &[String],
        stdin: bool,
    ) -> Result<PodStreams, StreamRefusal> {
        let _ = (pod, command, stdin);
        Err(StreamRefusal::Unavailable(format!(
            "container not found ({container:?})"
        )))
    }

    /// The output of `container`'s running process from now on, until it exits.
    fn attach(&self, pod: &Value, container: &str) -> Result<PodStreams, StreamRefusal> {
        let _ = pod;
        Err(StreamRefusal::Unavailable(format!(
            "container not found ({container:?})"
        )))
    }

    /// Whether the pod's processes run (a port-forward reaches them on 127.0.0.1).
    fn pod_running(&self, pod: &Value) -> bool {
        let _ = pod;
        false
    }
}

impl Cluster {
    /// Replace the status of an object (PUT `/status`): only `.status` of `obj` is taken.
    pub fn replace_status(
        &self,
        res: &ResKey,
        namespace: &str,
        name: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let info = self.info(res)?;
        self.replace(&info, namespace, name, Scope::Status, obj, opts)
    }

    /// Replace a pod's ephemeral containers (PUT `pods/ephemeralcontainers`): only
    /// `spec.ephemeralContainers` of `obj` is taken.
    pub fn replace_ephemeral_containers(
        &self,
        namespace: &str,
        name: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let info = self.info(&ResKey::new("", "pods"))?;
        self.replace(
            &info,
            namespace,
            name,
            Scope::EphemeralContainers,
            obj,
            opts,
        )
    }

    /// The `autoscaling/v1` Scale of a type with a scale subresource.
    pub fn get_scale(&self, res: &ResKey, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let info = self.info(res)?;
        if !info.has_subresource("scale") {
            return Err(ApiError::no_route());
        }
        let obj = self.get(res, namespace, name)?;
        Ok(scale_of(&info, &obj))
    }

    /// Set `spec.replicas` from a Scale (`metadata.resourceVersion` in it is a precondition).
    pub fn set_scale(
        &self,
        res: &ResKey,
        namespace: &str,
        name: &str,
        scale: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let info = self.info(res)?;
        if !info.has_subresource("scale") {
            return Err(ApiError::no_route());
        }
        let Some(replicas) = scale["spec"]["replicas"].as_i64() else {
            return Err(ApiError::invalid(
                &info,
                name,
                vec![Cause::required("spec.replicas", "")],
            ));
        };
        if replicas < 0 {
            return Err(ApiError::invalid(
                &info,
                name,
                vec![Cause::invalid(
                    "spec.replicas",
                    &json!(replicas),
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let rv = meta(scale)["resourceVersion"].as_str().map(str::to_string);
        let obj = self.update_inner(
            &info,
            namespace,
            name,
            Scope::Main,
            opts,
            false,
            true,
            |old| {
                let mut v = old.clone();
                let (spec_path, _, _) = scale_paths(&info);
                set_at(&mut v, &spec_path, json!(replicas));
                match &rv {
                    Some(rv) => {
                        meta_mut(&mut v).insert("resourceVersion".into(), Value::String(rv.clone()))
                    }
                    None => meta_mut(&mut v).remove("resourceVersion"),
                };
                Ok(v)
            },
        )?;
        Ok(scale_of(&info, &obj))
    }

    /// The log of a pod's container through the installed [`PodLogs`] source. 404 for a missing
    /// pod; 400 when the container is ambiguous or unknown; `limit_bytes` is applied here.
    pub fn pod_logs(
        &self,
        namespace: &str,
        name: &str,
        mut opts: LogOptions,
    ) -> Result<LogStream, ApiError> {
        let pod = self.get(&ResKey::new("", "pods"), namespace, name)?;
        let names: Vec<String> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect();
        let init: Vec<String> = pod["spec"]["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect();
        if opts.container.is_empty() {
            if let Some(d) =
                meta(&pod)["annotations"]["kubectl.kubernetes.io/default-container"].as_str()
            {
                opts.container = d.to_string();
            } else if names.len() == 1 {
                opts.container = names[0].clone();
            } else {
                let mut msg = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                );
                if !init.is_empty() {
                    msg.push_str(&format!(
                        " or one of the init containers: [{}]",
                        init.join(" ")
                    ));
                }
                return Err(ApiError::bad_request(msg));
            }
        }
        if !names.contains(&opts.container) && !init.contains(&opts.container) {
            return Err(ApiError::bad_request(format!(
                "container {} is not valid for pod {name}",
                opts.container
            )));
        }
        let source = self
            .pod_logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(source) = source else {
            return Err(ApiError::bad_request(format!(
                "container {:?} in pod {name:?} is waiting to start: ContainerCreating",
                opts.container
            )));
        };
        let stream = source.logs(&pod, &opts)?;
        Ok(match opts.limit_bytes.filter(|l| *l > 0) {
            None => stream,
            Some(limit) => limit_stream(stream, limit as usize),
        })
    }
}

/// The pod (stored object), the container and the stream source of a `pods/exec` or
/// `pods/attach` request.
pub type StreamTarget = (Value, String, Option<Arc<dyn PodLogs>>);

impl Cluster {
    /// The pod and container a `pods/exec` or `pods/attach` request names, checked as
    /// kube-apiserver does before it calls the kubelet: 404 for a missing pod; without a
    /// container, the pod's only one (else 400 asking to choose); 400 for a container the pod
    /// does not have, and for a pod not bound to a node. Also returns the stream source.
    pub fn stream_target(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
    ) -> Result<StreamTarget, ApiError> {
        let pod = self.get(&ResKey::new("", "pods"), namespace, name)?;
        let names = |field: &str| -> Vec<String> {
            pod["spec"][field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        };
        let (main, init) = (names("containers"), names("initContainers"));
        let container = if container.is_empty() {
            match main.as_slice() {
                [only] => only.clone(),
                [] => {
                    return Err(ApiError::bad_request(format!(
                        "a container name must be specified for pod {name}"
                    )));
                }
                _ => {
                    let mut msg = format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        main.join(" ")
                    );
                    if !init.is_empty() {
                        msg.push_str(&format!(
                            " or one of the init containers: [{}]",
                            init.join(" ")
                        ));
                    }
                    return Err(ApiError::bad_request(msg));
                }
            }
        } else if main.iter().chain(&init).any(|c| c == container) {
            container.to_string()
        } else {
            return Err(ApiError::bad_request(format!(
                "container {container} is not valid for pod {name}"
            )));
        };
        if pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            return Err(ApiError::bad_request(format!(
                "pod {name} does not have a host assigned"
            )));
        }
        let source = self
            .pod_logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok((pod, container, source))
    }

    /// The pod a `pods/portforward` request names (404 when missing, 400 when not bound to a
    /// node), with the stream source.
    pub fn portforward_target(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(Value, Option<Arc<dyn PodLogs>>), ApiError> {
        let pod = self.get(&ResKey::new("", "pods"), namespace, name)?;
        if pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            return Err(ApiError::bad_request(format!(
                "pod {name} does not have a host assigned"
            )));
        }
        let source = self
            .pod_logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok((pod, source))
    }
}

fn limit_stream(stream: LogStream, limit: usize) -> LogStream {
    use futures::StreamExt;
    Box::pin(stream.scan(limit, |left, chunk| {
        let out = match chunk {
            Err(e) => Some(Err(e)),
            Ok(_) if *left == 0 => None,
            Ok(b) => {
                let take = b.len().min(*left);
                *left -= take;
                Some(Ok(b.slice(..take)))
            }
        };
        futures::future::ready(out)
    }))
}

/// JSON pointers of the replicas in the spec and in the status, and of the label selector: a
/// custom type's `specReplicasPath`, `statusReplicasPath` and `labelSelectorPath` (`.spec.replicas`
/// -> `/spec/replicas`), the workloads' `spec.replicas` and `status.replicas` otherwise.
fn scale_paths(info: &ResourceInfo) -> (String, String, Option<String>) {
    let pointer = |v: &Value| v.as_str().map(|p| p.replace('.', "/"));
    match &info.scale {
        Some(s) => (
            pointer(&s["specReplicasPath"]).unwrap_or_else(|| "/spec/replicas".into()),
            pointer(&s["statusReplicasPath"]).unwrap_or_else(|| "/status/replicas".into()),
            pointer(&s["labelSelectorPath"]),
        ),
        None => ("/spec/replicas".into(), "/status/replicas".into(), None),
    }
}

/// Set the field at JSON pointer `path`, creating the objects on the way.
fn set_at(v: &mut Value, path: &str, value: Value) {
    let mut cur = v;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let m = cur.as_object_mut().expect("object");
        if i + 1 == parts.len() {
            m.insert(p.to_string(), value);
            return;
        }
        cur = m.entry(p.to_string()).or_insert_with(|| json!({}));
    }
}

fn scale_of(info: &ResourceInfo, obj: &Value) -> Value {
    let m = meta(obj);
    let (spec_path, status_path, selector_path) = scale_paths(info);
    // A ReplicationController's selector is the label map itself.
    let labels = if obj["kind"] == "ReplicationController" {
        &obj["spec"]["selector"]
    } else {
        &obj["spec"]["selector"]["matchLabels"]
    };
    let selector = match &selector_path {
        Some(p) if info.custom => obj
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => labels
            .as_object()
            .map(|l| {
                l.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
    };
    let replicas = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": replicas(&spec_path)},
        "status": {"replicas": replicas(&status_path), "selector": selector},
    })
}
