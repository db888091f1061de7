//! The kubelet runs a container from an OCI image archive of the image directory: from the
//! image's unpacked root (the process's executable lies in the cache), as the image's user or
//! the pod's runAsUser, with Kubernetes' four command/args cases; a runAsNonRoot pod whose
//! image runs as root is refused; an image without an archive keeps the bin-dir/host mapping.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kubesim::cluster::{Cluster, LogOptions, WriteOptions};
use kubesim::store::ResKey;
use kubesim::testing::wait_until;
use kubesim::{Kubesim, Options};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(60);
const ENTRYPOINT_SCRIPT: &str =
    r#"echo "entrypoint $*"; if [ -n "$WAIT" ]; then read x < "$WAIT"; fi"#;
const COMMAND_SCRIPT: &str = r#"echo "command $*""#;

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn tar_of(entries: &[(&str, u32, Option<&[u8]>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, mode, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(*mode);
        match data {
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, path, *d).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// Write `<dir>/<file>.tar`: an OCI layout whose index names tag `tag`, one gzip layer with a
/// copy of the host's /bin/sh as /bin/sh and an /etc/passwd, and a config with `user`,
/// Entrypoint `sh -c ENTRYPOINT_SCRIPT` and Cmd `image-cmd`. Returns the manifest digest.
fn write_archive(dir: &Path, file: &str, tag: &str, user: &str) -> String {
    let sh = std::fs::read("/bin/sh").expect("reading /bin/sh");
    let passwd = b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n";
    let layer_tar = tar_of(&[
        ("bin/", 0o755, None),
        ("bin/sh", 0o755, Some(&sh)),
        ("etc/", 0o755, None),
        ("etc/passwd", 0o644, Some(passwd)),
    ]);
    let diff_id = sha256(&layer_tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer_tar).unwrap();
    let layer = gz.finish().unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"User": user, "Env": ["PATH=/bin"], "WorkingDir": "/",
                   "Entrypoint": ["/bin/sh", "-c", ENTRYPOINT_SCRIPT, "sh"], "Cmd": ["image-cmd"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let digest = sha256(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest, "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }))
    .unwrap();
    let blob = |d: &[u8]| format!("blobs/sha256/{}", &sha256(d)[7..]);
    let (lp, cp, mp) = (blob(&layer), blob(&config), blob(&manifest));
    let archive = tar_of(&[
        (
            "oci-layout",
            0o644,
            Some(br#"{"imageLayoutVersion":"1.0.0"}"#),
        ),
        ("index.json", 0o644, Some(&index)),
        ("blobs/", 0o755, None),
        ("blobs/sha256/", 0o755, None),
        (&lp, 0o644, Some(&layer)),
        (&cp, 0o644, Some(&config)),
        (&mp, 0o644, Some(&manifest)),
    ]);
    std::fs::write(dir.join(format!("{file}.tar")), archive).unwrap();
    digest
}

struct Setup {
    ks: Kubesim,
    /// Holds the image directory and the FIFOs.
    dir: tempfile::TempDir,
    digest: String,
}

async fn start() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    // Traversable by the containers' user (the FIFOs live here).
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let digest = write_archive(&images, "shell", "1.0", "65532:65532");
    write_archive(&images, "rootshell", "1.0", "");
    let ks = Kubesim::start(Options {
        image_dir: Some(images),
        ..Default::default()
    })
    .await
    .unwrap();
    Setup { ks, dir, digest }
}

fn create_pod(c: &Cluster, name: &str, spec: Value) {
    c.create(
        &ResKey::new("", "pods"),
        "default",
        json!({"metadata": {"name": name}, "spec": spec}),
        &WriteOptions::default(),
    )
    .expect("create pod");
}

async fn wait_pod(c: &Arc<Cluster>, name: &str, what: &str, ok: fn(&Value) -> bool) -> Value {
    wait_until(WAIT, &format!("pod {name}: {what}"), || {
        let c = c.clone();
        let name = name.to_string();
        async move {
            c.get(&ResKey::new("", "pods"), "default", &name)
                .ok()
                .filter(ok)
        }
    })
    .await
}

fn finished(p: &Value) -> bool {
    matches!(
        p["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    )
}

fn running(p: &Value) -> bool {
    p["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

async fn log_of(c: &Cluster, name: &str) -> String {
    let mut out = Vec::new();
    let mut s = c
        .pod_logs(
            "default",
            name,
            LogOptions {
                container: "main".into(),
                ..Default::default()
            },
        )
        .unwrap();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

/// `Uid:` / `Gid:` (real ids) of a process.
fn ids(pid: i32) -> (u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u32 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

fn is_root() -> bool {
    ids(std::process::id() as i32).0 == 0
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg("-m")
        .arg("666")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Start a pod that waits on a FIFO, check where its process's executable lies and which
/// user it runs as, then release it.
async fn check_live(s: &Setup, name: &str, extra: Value, want: (u32, u32)) -> PathBuf {
    let c = s.ks.cluster();
    let fifo = s.dir.path().join(format!("{name}.fifo"));
    mkfifo(&fifo);
    let mut spec = json!({"restartPolicy": "Never", "containers": [{
        "name": "main", "image": "registry.example/team/shell:1.0",
        "env": [{"name": "WAIT", "value": fifo.display().to_string()}]}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    create_pod(&c, name, spec);
    let pod = wait_pod(&c, name, "running", running).await;
    let status = &pod["status"]["containerStatuses"][0];
    let pid: i32 = status["containerID"]
        .as_str()
        .and_then(|id| id.strip_prefix("process://"))
        .and_then(|p| p.parse().ok())
        .expect("containerID process://<pid>");
    assert_eq!(
        status["imageID"],
        format!("registry.example/team/shell@{}", s.digest)
    );
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let images = s.ks.kubelet().images().expect("an image store");
    let root = images
        .cache_dir()
        .join("sha256")
        .join(s.digest.trim_start_matches("sha256:"));
    assert_eq!(exe, root.join("bin/sh"), "the executable of pid {pid}");
    if is_root() {
        assert_eq!(ids(pid), want, "uid and gid of pid {pid}");
    } else {
        eprintln!("not root: the container runs as the test's user, ids not checked");
    }
    // Release it: the shell reads a line from the FIFO and exits.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    let pod = wait_pod(&c, name, "finished", finished).await;
    assert_eq!(pod["status"]["phase"], "Succeeded");
    exe
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_from_the_unpacked_root_as_the_image_user() {
    let s = start().await;
    let exe = check_live(&s, "live", json!({}), (65532, 65532)).await;
    // The pod's runAsUser / runAsGroup override the image's user; the root is reused.
    let again = check_live(
        &s,
        "override",
        json!({"securityContext": {"runAsUser": 4321, "runAsGroup": 4322}}),
        (4321, 4322),
    )
    .await;
    assert_eq!(exe, again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_and_args_follow_the_kubernetes_rules() {
    let s = start().await;
    let c = s.ks.cluster();
    let image = "registry.example/team/shell:1.0";
    let command = json!(["sh", "-c", COMMAND_SCRIPT, "sh"]);
    let env = json!([{"name": "GREETING", "value": "hi"}]);
    let cases = [
        ("neither", json!({}), "entrypoint image-cmd"),
        ("command", json!({"command": command}), "command"),
        (
            "args",
            json!({"args": ["$(GREETING)", "pod-arg"]}),
            "entrypoint hi pod-arg",
        ),
        (
            "both",
            json!({"command": command, "args": ["pod-arg"]}),
            "command pod-arg",
        ),
    ];
    for (name, fields, _) in &cases {
        let mut container = json!({"name": "main", "image": image, "env": env});
        if let (Some(c), Some(f)) = (container.as_object_mut(), fields.as_object()) {
            c.extend(f.clone());
        }
        create_pod(
            &c,
            name,
            json!({"restartPolicy": "Never", "containers": [container]}),
        );
    }
    for (name, _, want) in &cases {
        let pod = wait_pod(&c, name, "finished", finished).await;
        let log = log_of(&c, name).await;
        assert_eq!(pod["status"]["phase"], "Succeeded", "{name}: {log}");
        assert_eq!(log.trim_end(), *want, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_as_non_root_with_a_root_image_is_refused() {
    let s = start().await;
    let c = s.ks.cluster();
    create_pod(
        &c,
        "rooted",
        json!({"securityContext": {"runAsNonRoot": true},
               "containers": [{"name": "main", "image": "rootshell:1.0"}]}),
    );
    let pod = wait_pod(&c, "rooted", "refused", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            == "CreateContainerConfigError"
    })
    .await;
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"],
        format!(
            "container has runAsNonRoot and image will run as root (pod: \"rooted_default({uid})\", container: main)"
        )
    );
    assert!(s.ks.kubelet().pids().is_empty(), "no process was started");
    // The same image with a non-root runAsUser runs.
    create_pod(
        &c,
        "as-user",
        json!({"restartPolicy": "Never",
               "securityContext": {"runAsNonRoot": true, "runAsUser": 1000},
               "containers": [{"name": "main", "image": "rootshell:1.0"}]}),
    );
    let pod = wait_pod(&c, "as-user", "finished", finished).await;
    assert_eq!(pod["status"]["phase"], "Succeeded");
    assert_eq!(
        log_of(&c, "as-user").await.trim_end(),
        "entrypoint image-cmd"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_without_an_archive_keep_the_host_mapping() {
    let s = start().await;
    let c = s.ks.cluster();
    // No archive of that name, and one of that name with another tag.
    for (name, image) in [
        ("other", "example.org/other:1.0"),
        ("other-tag", "registry.example/team/shell:2.0"),
    ] {
        create_pod(
            &c,
            name,
            json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": image,
                   "command": ["/bin/sh", "-c", "echo on the host"]}]}),
        );
        let pod = wait_pod(&c, name, "finished", finished).await;
        assert_eq!(pod["status"]["phase"], "Succeeded", "{name}");
        assert_eq!(log_of(&c, name).await.trim_end(), "on the host", "{name}");
        let id = pod["status"]["containerStatuses"][0]["imageID"]
            .as_str()
            .unwrap();
        assert_eq!(id, "process:///bin/sh", "{name}");
    }
}

/// `kubectl exec` in a container run from an image: the program is found in the image root
/// through the image's `PATH`, and runs as the container's user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_from_the_image_root_as_the_container_user() {
    let s = start().await;
    let c = s.ks.cluster();
    let fifo = s.dir.path().join("exec.fifo");
    mkfifo(&fifo);
    create_pod(
        &c,
        "execd",
        json!({"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "registry.example/team/shell:1.0",
            "env": [{"name": "WAIT", "value": fifo.display().to_string()}]}]}),
    );
    wait_pod(&c, "execd", "running", running).await;
    let script = r#"echo "$0"; while read -r l; do case "$l" in Uid:*) echo "$l";; esac; done < /proc/self/status"#;
    let out = kubesim::testing::run(
        &s.ks,
        "kubectl",
        &["exec", "execd", "--", "sh", "-c", script],
    )
    .await;
    let stdout = out.ok("kubectl exec").to_string();
    let root =
        s.ks.kubelet()
            .images()
            .expect("an image store")
            .cache_dir()
            .join("sha256")
            .join(s.digest.trim_start_matches("sha256:"));
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(root.join("bin/sh").display().to_string().as_str()),
        "{stdout}"
    );
    let uid = lines.next().expect("the Uid line");
    if is_root() {
        assert!(uid.split_whitespace().nth(1) == Some("65532"), "{uid}");
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    wait_pod(&c, "execd", "finished", finished).await;
}
