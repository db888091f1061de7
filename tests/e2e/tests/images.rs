//! The shipped images run: on a kubesim started with `--image-dir dist/images` (the archives
//! `make images` writes; `make test` builds them first), the chart's sc-agent and sc-job pods
//! run from the archives' unpacked roots, as the images' user, and the install materializes
//! what sc-model renders.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sc_e2e::{Cluster, Helm, expected, merged, secret_value, three_connections, workspace_root};
use serde_json::Value;

/// The manifest digest of an archive's single image (from its `index.json`, read with tar).
fn manifest_digest(archive: &Path) -> String {
    let out = std::process::Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg("index.json")
        .output()
        .expect("running tar");
    assert!(
        out.status.success(),
        "tar -xOf {} index.json",
        archive.display()
    );
    let index: Value = serde_json::from_slice(&out.stdout).expect("index.json is JSON");
    index["manifests"][0]["digest"]
        .as_str()
        .expect("a manifest digest")
        .to_string()
}

fn pid_of(status: &Value) -> Option<i32> {
    status["containerID"]
        .as_str()?
        .strip_prefix("process://")?
        .parse()
        .ok()
}

#[test]
fn chart_pods_run_from_the_image_archives() {
    if std::env::var_os("SC_E2E_KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        eprintln!("skipped: this checks kubesim's processes, not a real cluster's");
        return;
    }
    let images = workspace_root().join("dist/images");
    let archives: Vec<PathBuf> = ["sc-agent", "sc-job"]
        .iter()
        .map(|n| images.join(format!("{n}.tar")))
        .collect();
    for a in &archives {
        assert!(
            a.is_file(),
            "{} is missing: run `make images` first (`make test` does)",
            a.display()
        );
    }
    let digests: Vec<String> = archives.iter().map(|a| manifest_digest(a)).collect();
    let cache_dir = tempfile::Builder::new()
        .prefix("sc-e2e-images-")
        .tempdir()
        .expect("a cache directory");
    let cache = cache_dir.path().to_path_buf();
    let c = Cluster::start_with(&[
        format!("--image-dir={}", images.display()),
        format!("--image-cache={}", cache.display()),
    ]);
    let root_of = |digest: &str| {
        cache
            .join("sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let rel = c.release_ns();

    // Every pod state of the release namespace, to see the sc-job pod before it is deleted.
    // Into a file: a pipe read only at the end would fill up and stall kubectl.
    let watch_file = c.dir().join("pods.watch.json");
    let mut watch = c.tool_command("kubectl-1.37");
    watch
        .args(["get", "pods", "-n", &rel, "--watch", "-o", "json"])
        .stdout(std::fs::File::create(&watch_file).expect("creating the watch output"))
        .stderr(Stdio::null());
    let mut watch = watch.spawn().expect("starting kubectl get --watch");

    let apps = c.create_namespace("apps");
    c.ensure_spc_crd();
    let key = secret_value("account-key");
    c.remember_secret(&key);
    let (settings, protected) = three_connections(&apps, &key);
    let files = [
        c.write_values("settings", &settings),
        c.write_values("protected", &protected),
    ];
    c.helm_upgrade(Helm::V3, &[&files[0], &files[1]], &[]).ok();
    c.wait_job_gone();
    c.assert_materialized(&expected(&merged(&[&settings, &protected])));

    // The agent runs from the sc-agent image's root, as its user.
    let pods = c.get_json(&[
        "pods",
        "-n",
        &rel,
        "-l",
        "app.kubernetes.io/component=agent",
    ]);
    let agent = pods["items"]
        .as_array()
        .and_then(|items| items.first())
        .unwrap_or_else(|| panic!("no agent pod: {pods}"));
    let status = &agent["status"]["containerStatuses"][0];
    assert_eq!(
        status["imageID"]
            .as_str()
            .map(|id| id.ends_with(&digests[0])),
        Some(true),
        "imageID of the agent: {status}"
    );
    let pid = pid_of(status).unwrap_or_else(|| panic!("no pid in {status}"));
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("the agent's executable");
    assert_eq!(exe, root_of(&digests[0]).join("usr/local/bin/sc-agent"));
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = proc_status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default();
    let am_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if am_root {
        assert_eq!(
            uid_line.split_whitespace().nth(1),
            Some("65532"),
            "{uid_line}"
        );
    }

    // The sc-job pod ran from the sc-job image and succeeded.
    let _ = watch.kill();
    let _ = watch.wait();
    let seen = std::fs::read_to_string(&watch_file).expect("reading the watch output");
    let stream = serde_json::Deserializer::from_str(&seen).into_iter::<Value>();
    let job_states: Vec<Value> = stream
        .filter_map(Result::ok)
        .filter(|p| p["metadata"]["labels"]["job-name"] == "sc-job")
        .filter_map(|p| p["status"]["containerStatuses"].get(0).cloned())
        .collect();
    assert!(
        job_states.iter().any(|s| {
            s["imageID"]
                .as_str()
                .is_some_and(|id| id.ends_with(&digests[1]))
                && s["state"]["terminated"]["exitCode"] == 0
        }),
        "no sc-job pod ran from {} and exited 0: {job_states:?}",
        archives[1].display()
    );
    assert!(
        root_of(&digests[1]).join("usr/local/bin/sc-job").is_file(),
        "the sc-job image is unpacked"
    );
    drop(c);
}
