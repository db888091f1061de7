//! The shipped images run: on a kubesim started with `--image-dir dist/images` (the archives
//! `make images` writes; `make test` builds them first), the chart's sc-agent and sc-job pods
//! run from the archives' unpacked roots, as the images' user, and the install materializes
//! what sc-model renders.

use std::process::Stdio;

use sc_e2e::{
    Cluster, Helm, expected, image_archive, image_digest, merged, secret_value, three_connections,
};
use serde_json::Value;

fn pid_of(status: &Value) -> Option<i32> {
    status["containerID"]
        .as_str()?
        .strip_prefix("process://")?
        .parse()
        .ok()
}

#[test]
fn chart_pods_run_from_the_image_archives() {
    sc_e2e::require_embedded!(
        "kubesim's --image-dir runs the pods as local processes this test inspects"
    );
    let archives = [image_archive("sc-agent"), image_archive("sc-job")];
    let digests = [image_digest("sc-agent"), image_digest("sc-job")];
    let c = Cluster::start_from_images();
    let root_of = |digest: &str| c.image_root(digest).expect("started from the images");
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
