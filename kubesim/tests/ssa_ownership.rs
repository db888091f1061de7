//! Server-side apply ownership as kube-apiserver records it, driven by kubectl 1.37 and 1.33
//! (`apply --server-side --field-manager`): a second manager applying a value already there
//! becomes its co-owner (a write: managedFields changed) while a repeated apply is a no-op;
//! a field its only owner stops applying is removed, a co-owned one stays; conflicts name the
//! other manager and `--force-conflicts` takes the field.

use kubesim::testing::{CmdOutput, run, run_with_stdin};
use kubesim::{Kubesim, Options};
use serde_json::Value;

async fn start() -> Kubesim {
    Kubesim::start(Options::default())
        .await
        .expect("kubesim starts")
}

async fn apply(
    ks: &Kubesim,
    tool: &str,
    manager: &str,
    extra: &[&str],
    manifest: &str,
) -> CmdOutput {
    let field_manager = format!("--field-manager={manager}");
    let mut args = vec!["apply", "--server-side", field_manager.as_str(), "-f", "-"];
    args.extend_from_slice(extra);
    run_with_stdin(ks, tool, &args, Some(manifest)).await
}

async fn get(ks: &Kubesim, tool: &str) -> Value {
    let out = run(
        ks,
        tool,
        &[
            "get",
            "configmap",
            "shared",
            "-o",
            "json",
            "--show-managed-fields",
        ],
    )
    .await;
    serde_json::from_str(out.ok("kubectl get configmap")).expect("JSON")
}

fn cm(data: &[(&str, &str)]) -> String {
    let mut s = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n");
    for (k, v) in data {
        s.push_str(&format!("  {k}: {v:?}\n"));
    }
    s
}

fn rv(obj: &Value) -> &str {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
}

/// The managers and the `data` keys each owns, sorted.
fn owners(obj: &Value) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let keys = e["fieldsV1"]["f:data"]
                .as_object()
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.strip_prefix("f:").map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            (e["manager"].as_str().unwrap_or_default().to_string(), keys)
        })
        .collect();
    out.sort();
    out
}

fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == manager))
        .unwrap_or_else(|| panic!("no managedFields entry of {manager}: {obj}"))
}

fn owned(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    pairs
        .iter()
        .map(|(m, ks)| (m.to_string(), ks.iter().map(|k| k.to_string()).collect()))
        .collect()
}

async fn ownership_follows_kube_apiserver(tool: &str) {
    let ks = start().await;
    apply(&ks, tool, "alpha", &[], &cm(&[("a", "1"), ("b", "2")]))
        .await
        .ok("alpha applies");
    let first = get(&ks, tool).await;

    // alpha again, the same configuration: nothing changes, not even the resourceVersion.
    apply(&ks, tool, "alpha", &[], &cm(&[("a", "1"), ("b", "2")]))
        .await
        .ok("alpha again");
    let again = get(&ks, tool).await;
    assert_eq!(rv(&again), rv(&first), "a repeated apply is a no-op");
    assert_eq!(
        again["metadata"]["managedFields"],
        first["metadata"]["managedFields"]
    );

    // beta applies a value already there: co-owner, a new resourceVersion for the
    // managedFields change, the data as it was.
    apply(&ks, tool, "beta", &[], &cm(&[("b", "2")]))
        .await
        .ok("beta co-owns b");
    let shared = get(&ks, tool).await;
    assert_ne!(rv(&shared), rv(&first), "the new owner is a write");
    assert_eq!(shared["data"], first["data"]);
    assert_eq!(
        owners(&shared),
        owned(&[("alpha", &["a", "b"]), ("beta", &["b"])])
    );
    // As kube-apiserver (kubernetes#127938): the new co-owner of unchanged values has no time.
    assert!(entry(&shared, "beta").get("time").is_none(), "{shared}");
    assert_eq!(entry(&shared, "beta")["operation"], "Apply");
    assert_eq!(
        entry(&shared, "alpha")["time"],
        entry(&first, "alpha")["time"]
    );

    // beta once more: a no-op.
    apply(&ks, tool, "beta", &[], &cm(&[("b", "2")]))
        .await
        .ok("beta again");
    assert_eq!(rv(&get(&ks, tool).await), rv(&shared));

    // alpha stops applying b (co-owned: stays, alpha's ownership goes) and a (its alone:
    // removed).
    apply(&ks, tool, "alpha", &[], &cm(&[("c", "3")]))
        .await
        .ok("alpha drops a and b");
    let dropped = get(&ks, tool).await;
    assert_eq!(dropped["data"], serde_json::json!({"b": "2", "c": "3"}));
    assert_eq!(
        owners(&dropped),
        owned(&[("alpha", &["c"]), ("beta", &["b"])])
    );

    // beta stops applying b, which it now owns alone: removed; beta's empty entry goes.
    apply(&ks, tool, "beta", &[], &cm(&[]))
        .await
        .ok("beta drops b");
    let gone = get(&ks, tool).await;
    assert_eq!(gone["data"], serde_json::json!({"c": "3"}));
    assert_eq!(owners(&gone), owned(&[("alpha", &["c"])]));

    // gamma sets c to another value: a conflict naming alpha, nothing written.
    let conflict = apply(&ks, tool, "gamma", &[], &cm(&[("c", "x")])).await;
    assert!(!conflict.success(), "{conflict:?}");
    assert!(
        conflict.stderr.contains(r#"conflict with "alpha""#) && conflict.stderr.contains(".data.c"),
        "{conflict:?}"
    );
    assert_eq!(rv(&get(&ks, tool).await), rv(&gone));

    // --force-conflicts: gamma takes c, alpha keeps nothing, the data is gamma's.
    apply(
        &ks,
        tool,
        "gamma",
        &["--force-conflicts"],
        &cm(&[("c", "x")]),
    )
    .await
    .ok("gamma forces");
    let forced = get(&ks, tool).await;
    assert_eq!(forced["data"], serde_json::json!({"c": "x"}));
    assert_eq!(owners(&forced), owned(&[("gamma", &["c"])]));
    assert!(entry(&forced, "gamma").get("time").is_some());
}

#[tokio::test]
async fn ownership_follows_kube_apiserver_kubectl_137() {
    ownership_follows_kube_apiserver("kubectl-1.37").await;
}

#[tokio::test]
async fn ownership_follows_kube_apiserver_kubectl_133() {
    ownership_follows_kube_apiserver("kubectl-1.33").await;
}
