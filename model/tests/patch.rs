//! Workload patches: applied with a real JSON patch implementation, idempotent, and
//! refused with a clear error when the workload cannot be patched as asked.

use sc_model::{PatchError, validate_connections, workload_patch_ops};
use serde_json::{Value, json};

const CID: &str = "11111111-1111-1111-1111-111111111111";

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [
                {"name": "app", "image": "app"},
                {"name": "sidecar", "image": "s", "envFrom": [{"configMapRef": {"name": "cm"}}]},
            ]},
        }},
    })
}

fn apply(doc: &Value, ops: &[Value]) -> Value {
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops.to_vec())).unwrap();
    let mut out = doc.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

fn connection(auth: &str) -> sc_model::Connection {
    let v = match auth {
        "wi" => {
            json!({"c1": {"targetType": "storage-blob", "authType": "workloadIdentity", "clientType": "python",
                              "parameters": {"accountName": "a", "clientId": CID}}})
        }
        "csi" => json!({"c1": {"targetType": "keyvault", "authType": "keyvaultCsi",
                               "parameters": {"keyvaultName": "vault1", "clientId": CID,
                                              "tenantId": CID, "syncSecret": "true", "objects": "x"}}}),
        _ => {
            json!({"c1": {"targetType": "storage-blob", "authType": "secret", "clientType": "python",
                           "parameters": {"accountName": "a"}, "secrets": {"accountKey": "k"}}})
        }
    };
    validate_connections(&v).unwrap().connections()[0].clone()
}

#[test]
fn secret_patch_adds_env_from_once() {
    let c = connection("secret");
    let d = deployment();
    let ops = workload_patch_ops(&d, &c.workload_patch()).unwrap();
    assert_eq!(ops.len(), 2);
    let patched = apply(&d, &ops);
    let containers = &patched["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers[0]["envFrom"],
        json!([{"secretRef": {"name": "sc-c1-secret"}}])
    );
    assert_eq!(containers[1]["envFrom"][0]["configMapRef"]["name"], "cm");
    assert_eq!(
        containers[1]["envFrom"][1]["secretRef"]["name"],
        "sc-c1-secret"
    );
    assert!(
        patched["spec"]["template"]["spec"]
            .get("serviceAccountName")
            .is_none()
    );
    assert_eq!(
        workload_patch_ops(&patched, &c.workload_patch()).unwrap(),
        Vec::<Value>::new()
    );
}

#[test]
fn workload_identity_patch_sets_account_and_label() {
    let c = connection("wi");
    for mut d in [
        deployment(),
        json!({"kind": "CronJob", "metadata": {"name": "cj"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}}}),
    ] {
        if d["kind"] == "Deployment" {
            d["spec"]["template"]["spec"]["serviceAccountName"] = json!("default");
        }
        let ops = workload_patch_ops(&d, &c.workload_patch()).unwrap();
        let patched = apply(&d, &ops);
        let base = if d["kind"] == "CronJob" {
            "/spec/jobTemplate/spec/template"
        } else {
            "/spec/template"
        };
        let t = patched.pointer(base).unwrap();
        assert_eq!(t["spec"]["serviceAccountName"], format!("sc-account-{CID}"));
        assert_eq!(
            t["metadata"]["labels"]["azure.workload.identity/use"],
            "true"
        );
        assert_eq!(
            t["spec"]["containers"][0]["envFrom"][0]["secretRef"]["name"],
            "sc-c1-secret"
        );
        assert!(
            workload_patch_ops(&patched, &c.workload_patch())
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn csi_patch_mounts_the_volume() {
    let c = connection("csi");
    let d = deployment();
    let patched = apply(&d, &workload_patch_ops(&d, &c.workload_patch()).unwrap());
    let spec = &patched["spec"]["template"]["spec"];
    assert_eq!(
        spec["volumes"][0]["csi"]["volumeAttributes"]["secretProviderClass"],
        "sc-c1-spc"
    );
    assert_eq!(
        spec["containers"][1]["volumeMounts"][0]["mountPath"],
        "/mnt/secrets-store/c1"
    );
    assert_eq!(
        spec["containers"][0]["envFrom"][0]["secretRef"]["name"],
        "sc-c1-secret"
    );
    assert!(
        workload_patch_ops(&patched, &c.workload_patch())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn refuses_what_it_cannot_patch() {
    let c = connection("wi");
    let mut d = deployment();
    d["spec"]["template"]["spec"]["serviceAccountName"] = json!("mine");
    let e = workload_patch_ops(&d, &c.workload_patch()).unwrap_err();
    assert!(matches!(e, PatchError::ServiceAccountConflict { .. }));
    assert!(
        e.to_string().contains("uses serviceAccountName mine"),
        "{e}"
    );

    let pod =
        json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
    let e = workload_patch_ops(&pod, &c.workload_patch()).unwrap_err();
    assert!(e.to_string().starts_with("Pod/p: cannot inject"), "{e}");

    let empty = json!({"kind": "Deployment", "metadata": {"name": "d"}, "spec": {}});
    assert!(matches!(
        workload_patch_ops(&empty, &c.workload_patch()),
        Err(PatchError::NoPodTemplate { .. })
    ));

    let csi = connection("csi");
    let mut d = deployment();
    d["spec"]["template"]["spec"]["volumes"] = json!([{"name": "sc-c1-kv", "emptyDir": {}}]);
    assert!(matches!(
        workload_patch_ops(&d, &csi.workload_patch()),
        Err(PatchError::VolumeConflict { .. })
    ));
}

#[test]
fn rendered_objects_carry_the_contract_labels() {
    let c = connection("wi");
    let d = c.desired();
    let s = d.secret.unwrap();
    assert_eq!(s["metadata"]["name"], "sc-c1-secret");
    assert_eq!(
        s["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "sc-extension"
    );
    assert_eq!(s["metadata"]["labels"]["sc-extension.io/connection"], "c1");
    assert_eq!(s["type"], "Opaque");
    let sa = d.service_account.unwrap();
    assert_eq!(
        sa["metadata"]["annotations"]["azure.workload.identity/client-id"],
        CID
    );
    assert!(d.secret_provider_class.is_none());
    let redacted = connection("secret").secret_object_redacted().unwrap();
    assert_eq!(
        redacted["stringData"]["AZURE_STORAGEBLOB_CONNECTIONSTRING"],
        "<redacted>"
    );
    let spc = connection("csi").secret_provider_class_object().unwrap();
    assert_eq!(spc["spec"]["parameters"]["userAssignedIdentityID"], CID);
    assert_eq!(spc["spec"]["parameters"]["useVMManagedIdentity"], "true");
}

#[test]
fn a_shared_service_account_renders_identically() {
    let wi = |tenant: Option<&str>| {
        let mut c = json!({"targetType": "openai", "authType": "workloadIdentity", "clientType": "python",
                           "parameters": {"resourceName": "r", "clientId": CID}});
        if let Some(t) = tenant {
            c["parameters"]["tenantId"] = json!(t);
        }
        c
    };
    let tid = "22222222-2222-2222-2222-222222222222";
    let set = validate_connections(&json!({"a": wi(None), "b": wi(Some(tid))})).unwrap();
    let a = set.get("a").unwrap().service_account_object().unwrap();
    let b = set.get("b").unwrap().service_account_object().unwrap();
    assert_eq!(a, b);
    assert_eq!(
        a["metadata"]["annotations"]["azure.workload.identity/tenant-id"],
        tid
    );
    let shared = set.service_accounts();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].0, a);
    assert_eq!(shared[0].1, vec!["a".to_string(), "b".to_string()]);
}

/// `connection("secret")` with `extra` fields in its request, validated with `key`.
fn secret_connection(extra: Value, secret: &str, key: &str) -> sc_model::Connection {
    let mut c = json!({"targetType": "storage-blob", "authType": "secret", "clientType": "python",
                       "parameters": {"accountName": "a"}, "secrets": {"accountKey": secret}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    sc_model::validate_connections_keyed(&json!({ "c1": c }), key)
        .unwrap()
        .connections()[0]
        .clone()
}

fn user_deployment() -> Value {
    let mut d = deployment();
    d["metadata"]["annotations"] = json!({"team": "a"});
    d["spec"]["template"]["metadata"]["annotations"] = json!({"mine": "1"});
    d["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "OWN", "value": "x"}]);
    d
}

const RESTART: &str = "sc-extension.io/restarted-for-c1";

#[test]
fn restart_annotation_follows_the_secret_content_and_nothing_else() {
    let c = secret_connection(json!({}), "k1", "uid");
    let d = user_deployment();
    let patched = apply(
        &d,
        &sc_model::inject_ops(&d, &c.workload_patch(), false).unwrap(),
    );
    let hash = patched["spec"]["template"]["metadata"]["annotations"][RESTART]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(hash.len(), 32);
    assert!(!hash.contains("k1"));
    assert_eq!(
        patched["spec"]["template"]["metadata"]["annotations"]["mine"],
        "1"
    );
    // The same content again: nothing to do.
    assert!(
        sc_model::inject_ops(&patched, &c.workload_patch(), true)
            .unwrap()
            .is_empty()
    );
    // Another workload listed, another deletion policy: no roll-out.
    let listed = secret_connection(
        json!({"workloads": [{"kind": "Deployment", "name": "other"}], "deletionPolicy": "Delete"}),
        "k1",
        "uid",
    );
    assert_ne!(listed.hash, c.hash);
    assert!(
        sc_model::inject_ops(&patched, &listed.workload_patch(), true)
            .unwrap()
            .is_empty()
    );
    // A rotated secret: only the annotation changes.
    let rotated = secret_connection(json!({}), "k2", "uid");
    let ops = sc_model::inject_ops(&patched, &rotated.workload_patch(), true).unwrap();
    assert_eq!(ops.len(), 1, "{ops:?}");
    let rolled = apply(&patched, &ops);
    assert_ne!(
        rolled["spec"]["template"]["metadata"]["annotations"][RESTART],
        hash.as_str()
    );
    // The hash is keyed: the same content under another key hashes differently.
    assert_ne!(
        secret_connection(json!({}), "k1", "other").rollout_hash,
        c.rollout_hash
    );
    // restartOnChange: false adds no annotation (any string form).
    for off in [json!(false), json!("false"), json!("no")] {
        let quiet = secret_connection(json!({"restartOnChange": off}), "k1", "uid");
        assert!(!quiet.spec.restart_on_change);
        let p = apply(
            &d,
            &sc_model::inject_ops(&d, &quiet.workload_patch(), false).unwrap(),
        );
        assert!(
            p["spec"]["template"]["metadata"]["annotations"]
                .get(RESTART)
                .is_none()
        );
    }
    // The default keeps the content hash of a request that does not set it.
    let on = secret_connection(json!({"restartOnChange": "true"}), "k1", "uid");
    assert_eq!(on.hash, c.hash);
}

#[test]
fn eject_removes_exactly_what_inject_added() {
    let c = secret_connection(json!({}), "k1", "uid");
    let d = user_deployment();
    let patched = apply(
        &d,
        &sc_model::inject_ops(&d, &c.workload_patch(), false).unwrap(),
    );
    assert_ne!(patched, d);
    let e = sc_model::Ejection {
        connection: "c1",
        service_accounts: &[],
        heir: None,
    };
    let back = apply(&patched, &sc_model::eject_ops(&patched, &e).unwrap());
    assert_eq!(back, d);
    assert!(sc_model::eject_ops(&back, &e).unwrap().is_empty());

    // An envFrom entry the user wrote is the user's: it stays.
    let mut own = user_deployment();
    own["spec"]["template"]["spec"]["containers"][1]["envFrom"] =
        json!([{"secretRef": {"name": "sc-c1-secret"}}]);
    let patched = apply(
        &own,
        &sc_model::inject_ops(&own, &c.workload_patch(), false).unwrap(),
    );
    let back = apply(&patched, &sc_model::eject_ops(&patched, &e).unwrap());
    assert_eq!(back, own);
}

#[test]
fn eject_restores_the_service_account_and_label() {
    let c = connection("wi");
    let sa = format!("sc-account-{CID}");
    let mut d = user_deployment();
    d["spec"]["template"]["spec"]["serviceAccountName"] = json!("default");
    let patched = apply(
        &d,
        &sc_model::inject_ops(&d, &c.workload_patch(), false).unwrap(),
    );
    assert_eq!(
        patched["spec"]["template"]["spec"]["serviceAccountName"],
        sa.as_str()
    );
    let record = sc_model::Injected::read(&patched, "c1").unwrap();
    assert_eq!(record.service_account.as_ref().unwrap().previous, "default");
    assert!(record.label);
    let e = sc_model::Ejection {
        connection: "c1",
        service_accounts: std::slice::from_ref(&sa),
        heir: None,
    };
    let back = apply(&patched, &sc_model::eject_ops(&patched, &e).unwrap());
    assert_eq!(back, d);

    // Another connection on the workload with the same ServiceAccount: they stay, its record
    // takes them over.
    let mut shared = patched.clone();
    shared["metadata"]["annotations"]["sc-extension.io/injected-c2"] =
        json!("{\"envFrom\":[\"app\"]}");
    let heir = sc_model::Ejection {
        heir: Some("c2"),
        ..e
    };
    let kept = apply(&shared, &sc_model::eject_ops(&shared, &heir).unwrap());
    assert_eq!(
        kept["spec"]["template"]["spec"]["serviceAccountName"],
        sa.as_str()
    );
    assert_eq!(
        kept["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    let taken = sc_model::Injected::read(&kept, "c2").unwrap();
    assert_eq!(taken.service_account.unwrap().previous, "default");
    assert!(taken.label);
    assert!(sc_model::Injected::read(&kept, "c1").is_none());
}

#[test]
fn a_workload_patched_without_a_record_is_cleaned_by_name() {
    // Patched by a version that kept no record (0.1): the plain patch.
    let c = connection("wi");
    let sa = format!("sc-account-{CID}");
    let d = user_deployment();
    let legacy = apply(&d, &workload_patch_ops(&d, &c.workload_patch()).unwrap());
    // Applied again, it records what it finds of its own.
    let ops = sc_model::inject_ops(&legacy, &c.workload_patch(), true).unwrap();
    let recorded = apply(&legacy, &ops);
    let record = sc_model::Injected::read(&recorded, "c1").unwrap();
    assert_eq!(record.env_from, ["app", "sidecar"]);
    assert!(record.label);
    // Removed without a record: what carries its names goes.
    let e = sc_model::Ejection {
        connection: "c1",
        service_accounts: std::slice::from_ref(&sa),
        heir: None,
    };
    let back = apply(&legacy, &sc_model::eject_ops(&legacy, &e).unwrap());
    assert_eq!(back, d);
    let back = apply(&recorded, &sc_model::eject_ops(&recorded, &e).unwrap());
    assert_eq!(back, d);
}

#[test]
fn csi_eject_removes_volume_and_mounts() {
    let c = connection("csi");
    let d = user_deployment();
    let patched = apply(
        &d,
        &sc_model::inject_ops(&d, &c.workload_patch(), false).unwrap(),
    );
    let e = sc_model::Ejection {
        connection: "c1",
        service_accounts: &[],
        heir: None,
    };
    assert_eq!(
        apply(&patched, &sc_model::eject_ops(&patched, &e).unwrap()),
        d
    );
}
