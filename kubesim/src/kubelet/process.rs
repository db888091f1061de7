//! Container processes: spawn one in its own process group, capture its output line by line
//! into a [`LogBuffer`], wait for its exit, and stop it (SIGTERM to the group, then SIGKILL
//! after the grace period). When the main process exits, whatever it left behind in its group
//! is killed, as a container runtime does when a container's init process ends.

use std::collections::BTreeSet;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;

use super::logs::{LogBuffer, LogStream};

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
const PR_SET_PDEATHSIG: i32 = 1;

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    fn geteuid() -> u32;
}

/// Whether kubesim runs as root, and so can start processes as another user.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    unsafe { geteuid() == 0 }
}

/// Send `sig` to every process of the group `pgid`. Errors (the group is gone) are ignored.
pub fn signal_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) has no memory effects; a negative pid addresses a process group.
        unsafe {
            kill(-pgid, sig);
        }
    }
}

/// What to run: the resolved executable, its arguments, the complete environment, the
/// working directory, and the user to run as (`None`: kubesim's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub user: Option<super::image::RunAs>,
}

/// The process groups currently alive, so that everything can be killed at shutdown even
/// when the tasks that own the processes are gone.
///
/// With a watchdog, the list is also kept in a file read by a small `sh` process started in
/// its own process group: it waits for its stdin (a pipe from kubesim) to close, which happens
/// however kubesim ends (even SIGKILL), then kills every group in the file and removes the
/// pods' root directory. So no pod process outlives kubesim.
#[derive(Default)]
pub struct ProcessGroups {
    groups: Mutex<BTreeSet<i32>>,
    watchdog: Mutex<Option<Watchdog>>,
}

struct Watchdog {
    file: PathBuf,
    stdin: std::process::ChildStdin,
    child: std::process::Child,
}

const WATCHDOG_SCRIPT: &str = r#"cat >/dev/null
if [ -f "$1" ]; then
  while read -r g; do kill -9 -"$g" 2>/dev/null; done < "$1"
  rm -f "$1"
fi
if [ -n "$2" ]; then rm -rf "$2"; fi
exit 0"#;

impl ProcessGroups {
    /// Groups tracked in `file` by a watchdog process that also removes `cleanup_dir` (if
    /// any) once kubesim is gone.
    pub fn with_watchdog(
        file: PathBuf,
        cleanup_dir: Option<&std::path::Path>,
    ) -> std::io::Result<Self> {
        std::fs::write(&file, "")?;
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("kubesim-watchdog")
            .arg(&file)
            .arg(
                cleanup_dir
                    .map(|d| d.as_os_str().to_owned())
                    .unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        Ok(Self {
            groups: Mutex::default(),
            watchdog: Mutex::new(Some(Watchdog { file, stdin, child })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeSet<i32>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record the current set in the watchdog's file (called with the set locked).
    fn sync(&self, groups: &BTreeSet<i32>) {
        let watchdog = self.watchdog.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = watchdog.as_ref() {
            let text: String = groups.iter().map(|g| format!("{g}\n")).collect();
            let tmp = w.file.with_extension("tmp");
            if std::fs::write(&tmp, text)
                .and_then(|_| std::fs::rename(&tmp, &w.file))
                .is_err()
            {
                tracing::warn!(file = %w.file.display(), "recording the pod process groups failed");
            }
        }
    }

    fn add(&self, pgid: i32) {
        let mut groups = self.lock();
        groups.insert(pgid);
        self.sync(&groups);
    }

    /// Forget a group; whether it was known.
    fn remove(&self, pgid: i32) -> bool {
        let mut groups = self.lock();
        let known = groups.remove(&pgid);
        if known {
            self.sync(&groups);
        }
        known
    }

    /// SIGKILL every known group (synchronous, for drop and signal handlers) and stop the
    /// watchdog.
    pub fn kill_all(&self) {
        let mut groups = self.lock();
        for pgid in std::mem::take(&mut *groups) {
            signal_group(pgid, SIGKILL);
        }
        self.sync(&groups);
        if let Some(w) = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            drop(w.stdin);
            let mut child = w.child;
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
    }

    /// The pids (= group ids) of the processes still running.
    pub fn pids(&self) -> Vec<i32> {
        self.lock().iter().copied().collect()
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or 128 + the signal number when killed by a signal.
    pub code: i32,
    pub signal: Option<i32>,
}

/// A running container process.
pub struct Process {
    child: Child,
    pid: i32,
    groups: Arc<ProcessGroups>,
    output: Vec<tokio::task::JoinHandle<()>>,
    log: Arc<LogBuffer>,
}

impl Process {
    /// Start `launch` in a new process group with its output captured into `log`. The
    /// process also gets SIGKILL if the thread that started it dies (a backstop for a
    /// kubesim killed without a chance to clean up).
    pub fn spawn(
        launch: &Launch,
        log: Arc<LogBuffer>,
        groups: Arc<ProcessGroups>,
    ) -> std::io::Result<Self> {
        let mut cmd = std::process::Command::new(&launch.program);
        cmd.args(&launch.args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&launch.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(u) = launch.user {
            // std drops the supplementary groups when it changes the user as root.
            cmd.uid(u.uid).gid(u.gid);
        }
        // SAFETY: prctl is async-signal-safe; the closure touches no shared state.
        unsafe {
            cmd.pre_exec(|| {
                prctl(PR_SET_PDEATHSIG, SIGKILL as u64, 0, 0, 0);
                Ok(())
            });
        }
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().map(|p| p as i32).unwrap_or_default();
        groups.add(pid);
        let mut output = Vec::new();
        if let Some(out) = child.stdout.take() {
            output.push(tokio::spawn(capture(out, LogStream::Stdout, log.clone())));
        }
        if let Some(err) = child.stderr.take() {
            output.push(tokio::spawn(capture(err, LogStream::Stderr, log.clone())));
        }
        Ok(Self {
            child,
            pid,
            groups,
            output,
            log,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Wait for the main process to exit (cancel-safe; call [`Process::wait`] afterwards to
    /// collect the rest).
    pub async fn exited(&mut self) {
        let _ = self.child.wait().await;
    }

    /// Wait for the process to exit; then kill what remains of its group, drain its output
    /// and close the log.
    pub async fn wait(&mut self) -> Exit {
        let status = self.child.wait().await;
        signal_group(self.pid, SIGKILL);
        self.groups.remove(self.pid);
        for task in self.output.drain(..) {
            let _ = task.await;
        }
        self.log.close();
        match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => Exit { code, signal: None },
                (None, Some(sig)) => Exit {
                    code: 128 + sig,
                    signal: Some(sig),
                },
                (None, None) => Exit {
                    code: 1,
                    signal: None,
                },
            },
            Err(_) => Exit {
                code: 1,
                signal: None,
            },
        }
    }

    /// SIGTERM the group, wait up to `grace` for the exit, then SIGKILL it.
    pub async fn terminate(&mut self, grace: Duration) -> Exit {
        signal_group(self.pid, SIGTERM);
        if let Ok(exit) = tokio::time::timeout(grace, self.wait()).await {
            return exit;
        }
        signal_group(self.pid, SIGKILL);
        self.wait().await
    }
}

impl Process {
    /// SIGTERM the group, then SIGKILL it at the deadline `deadline` holds (it may be moved
    /// earlier while waiting, e.g. when the pod is removed).
    pub async fn terminate_until(
        &mut self,
        mut deadline: tokio::sync::watch::Receiver<Option<tokio::time::Instant>>,
    ) -> Exit {
        signal_group(self.pid, SIGTERM);
        loop {
            let at = (*deadline.borrow_and_update()).unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                biased;
                _ = self.child.wait() => break,
                _ = tokio::time::sleep_until(at) => {
                    signal_group(self.pid, SIGKILL);
                    break;
                }
                changed = deadline.changed() => if changed.is_err() {
                    signal_group(self.pid, SIGKILL);
                    break;
                },
            }
        }
        self.wait().await
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.groups.remove(self.pid) {
            signal_group(self.pid, SIGKILL);
        }
    }
}

/// A command started for `pods/exec` in a container's environment: its own process group,
/// registered like a container's, with piped stdout and stderr (and stdin when asked). When
/// it exits, or when this is dropped, whatever is left in its group is killed.
pub struct ExecChild {
    pub child: Child,
    pid: i32,
    groups: Arc<ProcessGroups>,
}

impl ExecChild {
    pub fn spawn(
        launch: &Launch,
        stdin: bool,
        groups: Arc<ProcessGroups>,
    ) -> std::io::Result<Self> {
        let mut cmd = std::process::Command::new(&launch.program);
        cmd.args(&launch.args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&launch.cwd)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(u) = launch.user {
            cmd.uid(u.uid).gid(u.gid);
        }
        // SAFETY: prctl is async-signal-safe; the closure touches no shared state.
        unsafe {
            cmd.pre_exec(|| {
                prctl(PR_SET_PDEATHSIG, SIGKILL as u64, 0, 0, 0);
                Ok(())
            });
        }
        let child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().map(|p| p as i32).unwrap_or_default();
        groups.add(pid);
        Ok(Self { child, pid, groups })
    }

    /// Wait for the command to exit, then kill what remains of its group. The exit code, or
    /// 128 + the signal number.
    pub async fn wait(&mut self) -> i32 {
        let status = self.child.wait().await;
        if self.groups.remove(self.pid) {
            signal_group(self.pid, SIGKILL);
        }
        match status {
            Ok(s) => s.code().or(s.signal().map(|sig| 128 + sig)).unwrap_or(1),
            Err(_) => 1,
        }
    }
}

impl Drop for ExecChild {
    fn drop(&mut self) {
        if self.groups.remove(self.pid) {
            signal_group(self.pid, SIGKILL);
        }
    }
}

/// Copy a pipe into the log, one line at a time (a last line without newline included).
async fn capture(pipe: impl AsyncRead + Unpin, stream: LogStream, log: Arc<LogBuffer>) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => log.push(stream, Bytes::copy_from_slice(&line)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::logs::LogQuery;
    use futures::StreamExt;

    fn launch(program: &str, args: &[&str]) -> Launch {
        Launch {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![
                ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
                ("GREETING".into(), "hi".into()),
            ],
            cwd: std::env::temp_dir(),
            user: None,
        }
    }

    #[tokio::test]
    async fn captures_output_and_exit_code() {
        let log = Arc::new(LogBuffer::default());
        let groups = Arc::new(ProcessGroups::default());
        let script = "echo $GREETING; echo oops >&2; printf partial; exit 3";
        let mut p = Process::spawn(
            &launch("/bin/sh", &["-c", script]),
            log.clone(),
            groups.clone(),
        )
        .unwrap();
        let exit = p.wait().await;
        assert_eq!(
            exit,
            Exit {
                code: 3,
                signal: None
            }
        );
        assert!(log.is_closed());
        let text = String::from_utf8(log.snapshot(&LogQuery::default()).to_vec()).unwrap();
        assert!(text.contains("hi\n"), "{text}");
        assert!(text.contains("oops\n"), "{text}");
        assert!(text.contains("partial"), "{text}");
        assert!(groups.pids().is_empty());
    }

    #[tokio::test]
    async fn terminate_kills_the_whole_group() {
        let log = Arc::new(LogBuffer::default());
        let groups = Arc::new(ProcessGroups::default());
        // The shell ignores SIGTERM and has a child: both must be gone after terminate.
        let script = "trap '' TERM; sleep 300 & echo $!; wait";
        let mut p = Process::spawn(
            &launch("/bin/sh", &["-c", script]),
            log.clone(),
            groups.clone(),
        )
        .unwrap();
        let first = Box::pin(log.stream(LogQuery {
            follow: true,
            ..Default::default()
        }))
        .next()
        .await
        .unwrap();
        let child_pid: i32 = String::from_utf8_lossy(&first).trim().parse().unwrap();
        assert!(process_alive(child_pid));
        let exit = p.terminate(Duration::from_millis(200)).await;
        assert_eq!(exit.signal, Some(SIGKILL));
        assert_eq!(exit.code, 137);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while process_alive(child_pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "child {child_pid} survived its group's SIGKILL"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Alive and not a zombie.
    pub(crate) fn process_alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }
}
