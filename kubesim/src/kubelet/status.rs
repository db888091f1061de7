//! The pod status the kubelet reports, built from what it knows about each container run.
//! Pure: the runner keeps a [`PodRun`] up to date and renders it with [`PodRun::status`].

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::time::ts;

/// The host and pod address every pod reports.
pub const POD_IP: &str = "127.0.0.1";

/// One container's state, as in `containerStatuses[].state`.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        /// The termination message (e.g. the log's tail with `FallbackToLogsOnError`).
        message: Option<String>,
        started_at: Timestamp,
        finished_at: Timestamp,
    },
}

impl State {
    pub fn waiting(reason: &str) -> Self {
        State::Waiting {
            reason: reason.into(),
            message: None,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            State::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            State::Running { started_at } => json!({"running": {"startedAt": ts(*started_at)}}),
            State::Terminated {
                exit_code,
                signal,
                reason,
                message,
                started_at,
                finished_at,
            } => {
                let mut t = json!({
                    "exitCode": exit_code,
                    "reason": reason,
                    "startedAt": ts(*started_at),
                    "finishedAt": ts(*finished_at),
                });
                if let Some(s) = signal {
                    t["signal"] = json!(s);
                }
                if let Some(m) = message {
                    t["message"] = json!(m);
                }
                json!({"terminated": t})
            }
        }
    }
}

/// What the kubelet knows about one container.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerRun {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last_state: Option<State>,
    pub restart_count: u32,
    /// The pid of the current (or last) process, reported as `containerID: process://<pid>`.
    pub pid: Option<i32>,
    /// The resolved executable, reported as `imageID` (`process://<path>`) unless the
    /// container runs from an image archive.
    pub program: Option<String>,
    /// `<repository>@<manifest digest>` of the image archive the container runs from,
    /// reported as `imageID`.
    pub image_id: Option<String>,
    /// The readiness probe's verdict (`None`: the container has no readiness probe).
    pub probe_ready: Option<bool>,
}

impl ContainerRun {
    pub fn new(container: &Value) -> Self {
        Self {
            name: container["name"].as_str().unwrap_or("").to_string(),
            image: container["image"].as_str().unwrap_or("").to_string(),
            state: State::waiting("ContainerCreating"),
            last_state: None,
            restart_count: 0,
            pid: None,
            program: None,
            image_id: None,
            probe_ready: None,
        }
    }

    /// Running, and its readiness probe (if any) succeeded.
    pub fn is_ready(&self) -> bool {
        self.is_running() && self.probe_ready.unwrap_or(true)
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    /// Exited with this code (and is not going to be restarted by the current state).
    pub fn exit_code(&self) -> Option<i32> {
        match self.state {
            State::Terminated { exit_code, .. } => Some(exit_code),
            _ => None,
        }
    }

    fn to_json(&self, init: bool) -> Value {
        let mut v = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id.clone().or_else(|| self.program.as_ref().map(|p| format!("process://{p}"))).unwrap_or_default(),
            "ready": self.is_ready() && !init || init && self.exit_code() == Some(0),
            "restartCount": self.restart_count,
            "started": self.is_running(),
            "state": self.state.to_json(),
            "lastState": self.last_state.as_ref().map(State::to_json).unwrap_or_else(|| json!({})),
        });
        if let Some(pid) = self.pid {
            v["containerID"] = json!(format!("process://{pid}"));
        }
        v
    }
}

/// The pod phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// Everything the kubelet reports about a pod.
#[derive(Clone, Debug)]
pub struct PodRun {
    pub start_time: Timestamp,
    pub phase: Phase,
    pub init: Vec<ContainerRun>,
    pub containers: Vec<ContainerRun>,
    /// Pod-level reason/message (e.g. `DeadlineExceeded`), rarely set.
    pub reason: Option<(String, String)>,
    /// When each condition last changed, by condition type.
    transitions: Vec<(String, bool, Timestamp)>,
}

impl PodRun {
    pub fn new(pod: &Value) -> Self {
        let list = |field: &str| {
            pod["spec"][field]
                .as_array()
                .into_iter()
                .flatten()
                .map(ContainerRun::new)
                .collect()
        };
        let init: Vec<ContainerRun> = list("initContainers");
        let mut containers: Vec<ContainerRun> = list("containers");
        if !init.is_empty() {
            for c in &mut containers {
                c.state = State::waiting("PodInitializing");
            }
        }
        Self {
            start_time: Timestamp::now(),
            phase: Phase::Pending,
            init,
            containers,
            reason: None,
            transitions: Vec::new(),
        }
    }

    /// All init containers completed successfully.
    pub fn initialized(&self) -> bool {
        self.init.iter().all(|c| c.exit_code() == Some(0))
    }

    fn containers_ready(&self) -> bool {
        !self.containers.is_empty() && self.containers.iter().all(ContainerRun::is_ready)
    }

    /// Record condition changes (call before rendering, after every state change).
    fn condition(&mut self, kind: &str, value: bool, now: Timestamp) -> Timestamp {
        match self.transitions.iter_mut().find(|(k, _, _)| k == kind) {
            Some((_, v, t)) if *v == value => *t,
            Some(entry) => {
                entry.1 = value;
                entry.2 = now;
                now
            }
            None => {
                self.transitions.push((kind.to_string(), value, now));
                now
            }
        }
    }

    /// The `status` of the pod object.
    pub fn status(&mut self) -> Value {
        let now = Timestamp::now();
        let initialized = self.initialized();
        let ready = self.containers_ready() && !self.phase.is_terminal();
        let completed = self.phase.is_terminal();
        let unready: Vec<String> = self
            .containers
            .iter()
            .filter(|c| !c.is_ready())
            .map(|c| c.name.clone())
            .collect();
        let incomplete: Vec<String> = self
            .init
            .iter()
            .filter(|c| c.exit_code() != Some(0))
            .map(|c| c.name.clone())
            .collect();
        let mut conditions = Vec::new();
        let sandbox = !completed;
        for (kind, value) in [
            ("PodReadyToStartContainers", sandbox),
            ("Initialized", initialized),
            ("Ready", ready),
            ("ContainersReady", ready),
            ("PodScheduled", true),
        ] {
            let at = self.condition(kind, value, now);
            let mut c = json!({"type": kind, "status": if value { "True" } else { "False" }, "lastProbeTime": null,
                               "lastTransitionTime": ts(at)});
            if !value {
                match kind {
                    "Initialized" => {
                        c["reason"] = json!("ContainersNotInitialized");
                        c["message"] = json!(format!(
                            "containers with incomplete status: [{}]",
                            incomplete.join(" ")
                        ));
                    }
                    "Ready" | "ContainersReady" if completed => c["reason"] = json!("PodCompleted"),
                    "Ready" | "ContainersReady" => {
                        c["reason"] = json!("ContainersNotReady");
                        c["message"] = json!(format!(
                            "containers with unready status: [{}]",
                            unready.join(" ")
                        ));
                    }
                    _ => {}
                }
            }
            conditions.push(c);
        }
        let mut status = json!({
            "phase": self.phase.as_str(),
            "conditions": conditions,
            "hostIP": POD_IP,
            "hostIPs": [{"ip": POD_IP}],
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "startTime": ts(self.start_time),
            "qosClass": "BestEffort",
            "containerStatuses": self.containers.iter().map(|c| c.to_json(false)).collect::<Vec<_>>(),
        });
        if !self.init.is_empty() {
            status["initContainerStatuses"] = self.init.iter().map(|c| c.to_json(true)).collect();
        }
        if let Some((reason, message)) = &self.reason {
            status["reason"] = json!(reason);
            status["message"] = json!(message);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_then_completed() {
        let pod = json!({"spec": {"containers": [{"name": "main", "image": "alpine"}]}});
        let mut run = PodRun::new(&pod);
        let s = run.status();
        assert_eq!(s["phase"], "Pending");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        let t = Timestamp::now();
        run.phase = Phase::Running;
        run.containers[0].state = State::Running { started_at: t };
        run.containers[0].pid = Some(42);
        let s = run.status();
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        assert_eq!(s["containerStatuses"][0]["containerID"], "process://42");
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        run.phase = Phase::Succeeded;
        run.containers[0].state = State::Terminated {
            message: None,
            exit_code: 0,
            signal: None,
            reason: "Completed".into(),
            started_at: t,
            finished_at: t,
        };
        let s = run.status();
        assert_eq!(s["phase"], "Succeeded");
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "PodCompleted");
        assert!(ts(t).ends_with('Z') && !ts(t).contains('.'));
    }
}
