//! `pods/exec` and `pods/attach`. A running container registers how its process was started
//! (environment, working directory, user, image root); an exec'd command starts the same way:
//! its program is looked up as the container's command is (inside the image root for an
//! image container, else in the bin directory and the container's `PATH`), with the
//! container's environment and user and the pod's working directory. Attach streams the
//! container's output from now on, until its process exits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use super::image::RunAs;
use super::logs::{LogQuery, LogStream};
use super::oci::Unpacked;
use super::process::{ExecChild, Launch};
use crate::cluster::{OutputStream, PodStreams, StreamRefusal};

/// How a running container's process was started.
#[derive(Clone, Debug)]
pub struct ExecContext {
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub user: Option<RunAs>,
    pub image: Option<Unpacked>,
}

type Key = (String, String);

/// A running container: how its process was started, and a receiver that sees the
/// container end (its sender is dropped).
type Entry = (Arc<ExecContext>, watch::Receiver<()>);

/// The running containers by (pod uid, container name).
#[derive(Default)]
pub struct Running {
    map: Mutex<HashMap<Key, Entry>>,
}

/// Keeps a container registered as running; dropping it unregisters the container, which
/// ends the commands exec'd in it.
pub struct Registration {
    running: Arc<Running>,
    key: Key,
    context: Arc<ExecContext>,
    _alive: watch::Sender<()>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.running.map.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|(c, _)| Arc::ptr_eq(c, &self.context))
        {
            map.remove(&self.key);
        }
    }
}

impl Running {
    pub fn register(
        self: &Arc<Self>,
        pod_uid: &str,
        container: &str,
        context: ExecContext,
    ) -> Registration {
        let key = (pod_uid.to_string(), container.to_string());
        let context = Arc::new(context);
        let (alive, ended) = watch::channel(());
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), (context.clone(), ended));
        Registration {
            running: self.clone(),
            key,
            context,
            _alive: alive,
        }
    }

    pub fn get(&self, pod_uid: &str, container: &str) -> Option<Entry> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(pod_uid.to_string(), container.to_string()))
            .cloned()
    }

    pub fn pod_running(&self, pod_uid: &str) -> bool {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .any(|(uid, _)| uid == pod_uid)
    }
}

fn not_found(container: &str) -> StreamRefusal {
    StreamRefusal::Unavailable(format!("container not found ({container:?})"))
}

/// What `command` runs as in the container described by `context`. The arguments are taken
/// as given (no `$(VAR)` expansion: that applies to a container's own command only).
pub fn launch(
    context: &ExecContext,
    command: &[String],
    bin_dir: Option<&std::path::Path>,
) -> Result<Launch, String> {
    let Some((first, rest)) = command.split_first() else {
        return Err("no command specified".into());
    };
    let program = match &context.image {
        Some(image) => super::image::find_in_image(first, image, &context.env)?,
        None => {
            let path = context
                .env
                .iter()
                .rev()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.as_str());
            super::image::resolve(first, bin_dir, path)?
        }
    };
    Ok(Launch {
        program,
        args: rest.to_vec(),
        env: context.env.clone(),
        cwd: context.cwd.clone(),
        user: context.user,
    })
}

/// Start `command` in a running container.
pub fn exec(
    kubelet: &super::Kubelet,
    pod_uid: &str,
    container: &str,
    command: &[String],
    stdin: bool,
) -> Result<PodStreams, StreamRefusal> {
    let (context, mut container_ended) = kubelet
        .running
        .get(pod_uid, container)
        .ok_or_else(|| not_found(container))?;
    let launch = launch(&context, command, kubelet.config.bin_dir.as_deref())
        .map_err(StreamRefusal::Start)?;
    let mut child = ExecChild::spawn(&launch, stdin, kubelet.groups.clone())
        .map_err(|e| StreamRefusal::Start(format!("exec: {:?}: {e}", launch.program)))?;
    let stdin = child
        .child
        .stdin
        .take()
        .map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>);
    let stdout = child.child.stdout.take().map(pipe_stream);
    let stderr = child.child.stderr.take().map(pipe_stream);
    Ok(PodStreams {
        stdin,
        stdout: stdout.unwrap_or_else(|| Box::pin(futures::stream::empty())),
        stderr: stderr.unwrap_or_else(|| Box::pin(futures::stream::empty())),
        // A command still running when its container ends is killed with it (SIGKILL:
        // 128 + 9), as the runtime kills every process of a stopped container.
        exit: Some(Box::pin(async move {
            tokio::select! {
                code = child.wait() => code,
                _ = container_ended.changed() => {
                    drop(child);
                    137
                }
            }
        })),
    })
}

/// A pipe as a stream of the chunks read from it.
fn pipe_stream(pipe: impl AsyncRead + Send + Unpin + 'static) -> OutputStream {
    Box::pin(futures::stream::unfold(pipe, |mut pipe| async move {
        let mut buf = vec![0u8; 32 * 1024];
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Bytes::from(buf), pipe))
            }
        }
    }))
}

/// The output of a running container's process from now on.
pub fn attach(
    kubelet: &super::Kubelet,
    pod_uid: &str,
    container: &str,
) -> Result<PodStreams, StreamRefusal> {
    if kubelet.running.get(pod_uid, container).is_none() {
        return Err(not_found(container));
    }
    let Some((_, log)) = kubelet.logs.latest(pod_uid, container) else {
        return Err(not_found(container));
    };
    let stream = |which: LogStream| -> OutputStream {
        let query = LogQuery {
            follow: true,
            timestamps: false,
            tail_lines: Some(0),
            since: None,
            limit_bytes: None,
            stream: Some(which),
        };
        Box::pin(
            log.stream(query)
                .filter(|b| futures::future::ready(!b.is_empty())),
        )
    };
    Ok(PodStreams {
        stdin: None,
        stdout: stream(LogStream::Stdout),
        stderr: stream(LogStream::Stderr),
        exit: None,
    })
}
