//! The ownership check in bulk and the window between it and the write. sc-job reads the
//! metadata of the objects it writes in one metadata-only list per namespace and kind (few
//! objects: a list of each name), then applies each object with a resourceVersion
//! precondition: the object's as listed, or the list's when it was absent. kubesim's one-shot
//! injections (`PUT /kubesim/faults`, `inject`) make a write of another field manager
//! (`intruder`) right before sc-job's apply, so the race is the same on every run:
//!
//! - a foreign Secret created between the list and the apply is never written: the
//!   connection ends Failed/NotManaged naming it, and the Secret is exactly as the intruder
//!   wrote it (data, labels, annotations, managedFields), also when its data is what sc-job
//!   would have written;
//! - a Secret of the connection that lost its `managed-by` label since the list is taken back
//!   (the apply meets 409 Conflict, the new lookup finds it recorded by the connection's last
//!   run); one that another connection's annotation claims since the list is refused.
//!
//! The requests: a run writing 20 Secrets in one namespace lists them once and never gets
//! one; runs of a few look each name up with a list of that name.

use sc_e2e::{Cluster, Helm, SETTLE, expected, merged, secret_value, skipped, wait_for_state};
use sc_model::render::CONNECTION_ANNOTATION;
use serde_json::{Value, json};

const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// A redis connection with a secret in `ns`: (settings, protected settings).
fn redis(name: &str, ns: &str, key: &str) -> (Value, Value) {
    (
        json!({"connections": {name: {
            "namespace": ns, "targetType": "redis", "authType": "secret", "clientType": "python",
            "parameters": {"server": "e2e-cache"},
        }}}),
        json!({"connections": {name: {"secrets": {"accessKey": key}}}}),
    )
}

/// `connections` with a fresh secret each, merged: (settings, protected settings).
fn connections(c: &Cluster, ns: &str, names: &[&str], label: &str) -> (Value, Value) {
    let mut settings = Vec::new();
    let mut protected = Vec::new();
    for name in names {
        let key = secret_value(&format!("{name}-{label}"));
        c.remember_secret(&key);
        let (s, p) = redis(name, ns, &key);
        settings.push(s);
        protected.push(p);
    }
    (
        merged(&settings.iter().collect::<Vec<_>>()),
        merged(&protected.iter().collect::<Vec<_>>()),
    )
}

/// The managers of an object's managedFields.
fn managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["manager"].as_str().map(str::to_string))
        .collect()
}

/// sc-job's requests in kubesim's request log: (verb, resource, namespace, name, code, count).
fn job_requests(c: &Cluster) -> Vec<(String, String, String, String, u64, u64)> {
    let audit: Value = serde_json::from_str(c.kubectl(&["get", "--raw", "/kubesim/audit"]).ok())
        .expect("the audit log is JSON");
    let s = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_string();
    audit["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["user"].as_str() == Some("system:serviceaccount:sc-system:sc-job"))
        .map(|e| {
            (
                s(e, "verb"),
                s(e, "resource"),
                s(e, "namespace"),
                s(e, "name"),
                e["code"].as_u64().unwrap_or_default(),
                e["count"].as_u64().unwrap_or(1),
            )
        })
        .collect()
}

/// How many requests of sc-job `verb` made on `resource` in `ns` named `name` ("" for a whole
/// collection), answered `code` (any when `None`).
fn count(c: &Cluster, verb: &str, resource: &str, ns: &str, name: &str, code: Option<u64>) -> u64 {
    job_requests(c)
        .iter()
        .filter(|r| {
            r.0 == verb
                && r.1 == resource
                && r.2 == ns
                && r.3 == name
                && code.is_none_or(|k| r.4 == k)
        })
        .map(|r| r.5)
        .sum()
}

/// The `status.json` of `connection` once its phase is `phase` (sc-job records the results
/// of a run after writing everything, in any order).
fn status_when(c: &Cluster, connection: &str, phase: &str) -> Value {
    wait_for_state(SETTLE, &format!("connection {connection} {phase}"), || {
        let status = c.metadata_status(connection);
        if status["phase"] == phase {
            Ok(status)
        } else {
            Err(status.to_string())
        }
    })
}

/// Sets kubesim's fault configuration to `inject` these one-shot writes, and nothing else.
fn inject(c: &Cluster, injections: Value) {
    c.kubectl_stdin(
        &["replace", "--raw", "/kubesim/faults", "-f", "-"],
        &json!({"inject": injections}).to_string(),
    )
    .ok();
}

/// The one-shot writes kubesim made so far, and those still pending.
fn injections(c: &Cluster) -> (u64, usize) {
    let stats: Value =
        serde_json::from_str(c.kubectl(&["get", "--raw", "/kubesim/faults/stats"]).ok())
            .expect("the fault stats are JSON");
    let config: Value = serde_json::from_str(c.kubectl(&["get", "--raw", "/kubesim/faults"]).ok())
        .expect("the fault configuration is JSON");
    (
        stats["injected"].as_u64().unwrap_or_default(),
        config["inject"].as_array().map_or(0, Vec::len),
    )
}

/// Secret `name` in `ns` with its managedFields (which `kubectl get` hides by default).
fn secret(c: &Cluster, ns: &str, name: &str) -> Value {
    c.get_json(&["secret", name, "-n", ns, "--show-managed-fields"])
}

/// A Secret of the connection's name that sc-job did not write: the same metadata and content
/// as the intruder wrote it.
fn assert_untouched(c: &Cluster, ns: &str, name: &str, wrote: &Value) {
    let s = secret(c, ns, name);
    for field in ["labels", "annotations"] {
        assert_eq!(
            s["metadata"][field], wrote["metadata"][field],
            "the {field} of secret {ns}/{name} changed: {}",
            s["metadata"]
        );
    }
    assert_eq!(
        s["data"], wrote["data"],
        "the data of secret {ns}/{name} changed"
    );
    assert_eq!(
        managers(&s),
        ["intruder"],
        "secret {ns}/{name} was written by another manager"
    );
}

fn ownership_race(helm: Helm) {
    let c = Cluster::start();
    if !c.is_embedded() {
        skipped(
            "ownership_race",
            "makes writes right before sc-job's through kubesim's private endpoint (/kubesim/faults)",
        );
        return;
    }
    let apps = c.create_namespace("apps");

    // Revision 1: two connections, Ready (their Secrets recorded by sc-job's run).
    let (first, first_protected) = connections(&c, &apps, &["kept", "claimed"], "1");
    let files = [
        c.write_values("first", &first),
        c.write_values("first-protected", &first_protected),
    ];
    c.helm_upgrade(helm, &[&files[0], &files[1]], &[]).ok();
    c.wait_job_gone();
    for name in ["kept", "claimed"] {
        assert_eq!(c.metadata_status(name)["phase"], "Ready", "{name}");
    }

    // Revision 2: 20 new connections in one namespace (sc-job lists the Secrets there once).
    // Right before sc-job's apply of two of them, the intruder creates a Secret of that name:
    // one foreign, one with exactly the data sc-job would write.
    let fillers: Vec<String> = (0..18).map(|i| format!("f{i:02}")).collect();
    let mut names: Vec<&str> = fillers.iter().map(String::as_str).collect();
    names.extend(["cache", "twin"]);
    let (added, added_protected) = connections(&c, &apps, &names, "2");
    let settings = merged(&[&first, &added]);
    let protected = merged(&[&first_protected, &added_protected]);
    let set = expected(&merged(&[&settings, &protected]));
    let twin_data = set
        .get("twin")
        .expect("twin")
        .desired()
        .secret
        .expect("a Secret")["data"]
        .clone();
    let foreign_value = secret_value("foreign");
    c.remember_secret(&foreign_value);
    let foreign = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "sc-cache-secret", "labels": {"app": "cache"},
                     "annotations": {"owner": "the cache team"}},
        "data": {"password": base64(&foreign_value)}});
    let twin = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "sc-twin-secret", "labels": {"app": "twin"},
                     "annotations": {"owner": "the twin team"}},
        "data": twin_data});
    let before_patch = |name: &str| json!({"verb": "patch", "resource": "secrets", "namespace": apps, "name": name});
    inject(
        &c,
        json!([
            {"before": before_patch("sc-cache-secret"), "create": foreign},
            {"before": before_patch("sc-twin-secret"), "create": twin},
        ]),
    );
    let files = [
        c.write_values("settings", &settings),
        c.write_values("protected", &protected),
    ];
    let out = c.helm_upgrade(helm, &[&files[0], &files[1]], &[]);
    assert!(
        !out.success(),
        "the upgrade succeeded despite the foreign Secrets:\n{}",
        out.all()
    );
    assert_eq!(
        injections(&c),
        (2, 0),
        "the intruder's writes were not made"
    );
    for (name, secret, wrote) in [
        ("cache", "sc-cache-secret", &foreign),
        ("twin", "sc-twin-secret", &twin),
    ] {
        let status = status_when(&c, name, "Failed");
        assert_eq!(status["error"]["reason"], "NotManaged", "{name}: {status}");
        let message = status["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("secret {apps}/{secret}")),
            "{name}: the failure does not name the Secret: {status}"
        );
        assert!(
            status["objects"].as_array().is_none_or(Vec::is_empty),
            "{name}: objects recorded: {status}"
        );
        assert_untouched(&c, &apps, secret, wrote);
        // Nothing else of the connection was written.
        let owned = c.get_json(&["secrets,serviceaccounts", "-n", &apps]);
        for o in owned["items"].as_array().into_iter().flatten() {
            assert_ne!(
                o["metadata"]["annotations"][CONNECTION_ANNOTATION], name,
                "an object of {name} was written: {}",
                o["metadata"]["name"]
            );
        }
        // The apply met the precondition's 409 and wrote nothing.
        assert!(
            count(&c, "patch", "secrets", &apps, secret, Some(409)) >= 1,
            "{name}: sc-job's apply did not meet 409 Conflict: {:?}",
            job_requests(&c)
        );
    }
    for f in &fillers {
        status_when(&c, f, "Ready");
        let s = c.get("secret", &apps, &format!("sc-{f}-secret"));
        assert_eq!(s["metadata"]["labels"][MANAGED_BY_LABEL], "sc-extension");
    }
    // The requests: the Secrets of the namespace in one metadata-only list, never a get.
    assert_eq!(
        count(&c, "list", "secrets", &apps, "", None),
        1,
        "sc-job did not list the Secrets of {apps} exactly once: {:?}",
        job_requests(&c)
    );
    assert_eq!(
        job_requests(&c)
            .iter()
            .filter(|r| r.0 == "get" && r.1 == "secrets" && r.2 == apps)
            .map(|r| r.5)
            .sum::<u64>(),
        0,
        "sc-job got Secrets one by one: {:?}",
        job_requests(&c)
    );

    // Revision 3: new secrets for kept and claimed. Right before sc-job's apply, kept's
    // Secret loses its managed-by label (sc-job takes it back: its last run recorded it) and
    // claimed's is claimed by another connection's annotation (refused).
    let (changed, changed_protected) = connections(&c, &apps, &["kept", "claimed"], "3");
    let claimed_before = c.get("secret", &apps, "sc-claimed-secret");
    inject(
        &c,
        json!([
            {"before": before_patch("sc-kept-secret"),
             "patch": {"metadata": {"labels": {MANAGED_BY_LABEL: null}}}},
            {"before": before_patch("sc-claimed-secret"),
             "patch": {"metadata": {"annotations": {CONNECTION_ANNOTATION: "other"}}}},
        ]),
    );
    let settings3 = merged(&[&settings, &changed]);
    let protected3 = merged(&[&protected, &changed_protected]);
    let set3 = expected(&merged(&[&settings3, &protected3]));
    let files = [
        c.write_values("settings3", &settings3),
        c.write_values("protected3", &protected3),
    ];
    let out = c.helm_upgrade(helm, &[&files[0], &files[1]], &[]);
    assert!(
        !out.success(),
        "the upgrade succeeded despite claimed's Secret claimed by another connection:\n{}",
        out.all()
    );
    assert_eq!(
        injections(&c),
        (4, 0),
        "the intruder's writes were not made"
    );
    let kept = c.get("secret", &apps, "sc-kept-secret");
    assert_eq!(
        kept["metadata"]["labels"][MANAGED_BY_LABEL], "sc-extension",
        "kept's Secret did not get its label back"
    );
    assert_eq!(
        kept["data"],
        set3.get("kept")
            .expect("kept")
            .desired()
            .secret
            .expect("a Secret")["data"],
        "kept's Secret does not hold the new secret"
    );
    assert!(
        count(&c, "patch", "secrets", &apps, "sc-kept-secret", Some(409)) >= 1,
        "kept: sc-job's apply did not meet 409 Conflict: {:?}",
        job_requests(&c)
    );
    let status = status_when(&c, "claimed", "Failed");
    assert_eq!(
        status["error"]["reason"], "OwnedByAnotherConnection",
        "claimed: {status}"
    );
    let claimed = c.get("secret", &apps, "sc-claimed-secret");
    assert_eq!(
        claimed["metadata"]["annotations"][CONNECTION_ANNOTATION], "other",
        "claimed's Secret was written after it was claimed"
    );
    assert_eq!(
        claimed["data"], claimed_before["data"],
        "claimed's Secret got the new secret despite the claim"
    );
    // The foreign Secrets are still untouched.
    assert_untouched(&c, &apps, "sc-cache-secret", &foreign);
    assert_untouched(&c, &apps, "sc-twin-secret", &twin);
}

/// Standard base64 of `s`.
fn base64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn ownership_race_helm3() {
    ownership_race(Helm::V3);
}
