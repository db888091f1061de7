use serde_json::{Value, json};

use super::*;

const T1: &str = "2026-01-01T00:00:01Z";
const T2: &str = "2026-01-01T00:00:02Z";
const T3: &str = "2026-01-01T00:00:03Z";
const T4: &str = "2026-01-01T00:00:04Z";

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "ns"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": containers}}}
    })
}

fn smp_deploy(target: &Value, patch: Value) -> Value {
    strategic_merge_patch(target, &patch, "apps/v1", "Deployment").expect("patch applies")
}

fn config_map(labels: Value, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "ns", "labels": labels},
        "data": data
    })
}

/// `object` without `metadata.managedFields`.
fn bare(object: &Value) -> Value {
    let mut out = object.clone();
    out["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    out
}

fn managed(object: &Value) -> Value {
    object["metadata"]["managedFields"].clone()
}

fn apply_entry(manager: &str, api_version: &str, time: &str, fields: Value) -> Value {
    json!({
        "manager": manager, "operation": "Apply", "apiVersion": api_version, "time": time,
        "fieldsType": "FieldsV1", "fieldsV1": fields
    })
}

fn update_entry(manager: &str, api_version: &str, time: &str, fields: Value) -> Value {
    json!({
        "manager": manager, "operation": "Update", "apiVersion": api_version, "time": time,
        "fieldsType": "FieldsV1", "fieldsV1": fields
    })
}

// ---- strategic merge patch ----

#[test]
fn smp_merges_containers_by_name_and_env_by_name() {
    let target = deployment(json!([
        {"name": "main", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "side", "image": "side:1"}
    ]));
    let out = smp_deploy(
        &target,
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "main", "image": "app:2", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}
        ]}}}}),
    );
    assert_eq!(
        out,
        deployment(json!([
            {"name": "main", "image": "app:2", "env": [
                {"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}
            ]},
            {"name": "side", "image": "side:1"}
        ]))
    );
}

#[test]
fn smp_new_list_items_go_before_server_only_items() {
    let target = deployment(json!([{"name": "main", "image": "app:1"}]));
    let out = smp_deploy(
        &target,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "side:1"}]}}}}),
    );
    assert_eq!(
        out,
        deployment(
            json!([{"name": "side", "image": "side:1"}, {"name": "main", "image": "app:1"}])
        )
    );
}

#[test]
fn smp_patch_delete_removes_a_container() {
    let target = deployment(
        json!([{"name": "main", "image": "app:1"}, {"name": "side", "image": "side:1"}]),
    );
    let out = smp_deploy(
        &target,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}}),
    );
    assert_eq!(out, deployment(json!([{"name": "main", "image": "app:1"}])));
}

#[test]
fn smp_patch_replace_on_list_and_map() {
    let target = deployment(
        json!([{"name": "main", "image": "app:1"}, {"name": "side", "image": "side:1"}]),
    );
    let out = smp_deploy(
        &target,
        json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "new", "image": "n:1"}]}}}}),
    );
    assert_eq!(out, deployment(json!([{"name": "new", "image": "n:1"}])));

    let cm = config_map(json!({"a": "1"}), json!({"x": "1", "y": "2"}));
    let out = strategic_merge_patch(
        &cm,
        &json!({"data": {"$patch": "replace", "z": "3"}}),
        "v1",
        "ConfigMap",
    )
    .unwrap();
    assert_eq!(out, config_map(json!({"a": "1"}), json!({"z": "3"})));
}

#[test]
fn smp_null_deletes_keys_at_any_depth() {
    let target = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"a": "1", "b": "2"}, "annotations": {"x": "y"}},
        "data": {"k": "v"}
    });
    let out = strategic_merge_patch(
        &target,
        &json!({"metadata": {"labels": {"a": null}, "annotations": null}, "data": {"missing": null}}),
        "v1",
        "ConfigMap",
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"b": "2"}}, "data": {"k": "v"}})
    );
}

#[test]
fn smp_set_element_order_is_honoured_and_stripped() {
    let target = deployment(
        json!([{"name": "main", "image": "app:1"}, {"name": "side", "image": "side:1"}]),
    );
    let out = smp_deploy(
        &target,
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "main"}],
            "containers": [{"name": "main", "image": "app:2"}]
        }}}}),
    );
    assert_eq!(
        out,
        deployment(
            json!([{"name": "side", "image": "side:1"}, {"name": "main", "image": "app:2"}])
        )
    );
    // kubectl's client-side apply patch shape: an order hint for env inside a container.
    let target = deployment(
        json!([{"name": "main", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]),
    );
    let out = smp_deploy(
        &target,
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "main"}],
            "containers": [{"name": "main", "$setElementOrder/env": [{"name": "B"}, {"name": "A"}], "env": [{"name": "B", "value": "3"}]}]
        }}}}),
    );
    assert_eq!(
        out,
        deployment(
            json!([{"name": "main", "env": [{"name": "B", "value": "3"}, {"name": "A", "value": "1"}]}])
        )
    );
}

#[test]
fn smp_retain_keys_clears_other_volume_sources() {
    let target = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}
    });
    let out = strategic_merge_patch(
        &target,
        &json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}}]}}),
        "v1",
        "Pod",
    )
    .unwrap();
    assert_eq!(
        out,
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"volumes": [{"name": "v", "configMap": {"name": "cm"}}, {"name": "w", "emptyDir": {}}]}
        })
    );
}

#[test]
fn smp_finalizers_merge_as_a_set_and_delete_from_primitive_list() {
    let target = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "finalizers": ["a", "b"]}});
    let merged = strategic_merge_patch(
        &target,
        &json!({"metadata": {"finalizers": ["b", "c"]}}),
        "batch/v1",
        "Job",
    )
    .unwrap();
    assert_eq!(
        merged,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "finalizers": ["a", "b", "c"]}})
    );
    let deleted = strategic_merge_patch(
        &merged,
        &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
        "batch/v1",
        "Job",
    )
    .unwrap();
    assert_eq!(
        deleted,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "finalizers": ["a", "c"]}})
    );
}

#[test]
fn smp_lists_without_key_are_replaced() {
    let target = deployment(
        json!([{"name": "main", "command": ["a", "b"], "envFrom": [{"configMapRef": {"name": "x"}}]}]),
    );
    let out = smp_deploy(
        &target,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "command": ["c"], "envFrom": [{"secretRef": {"name": "s"}}]}]}}}}),
    );
    assert_eq!(
        out,
        deployment(
            json!([{"name": "main", "command": ["c"], "envFrom": [{"secretRef": {"name": "s"}}]}])
        )
    );
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
    let out = strategic_merge_patch(
        &role,
        &json!({"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]}),
        "rbac.authorization.k8s.io/v1",
        "Role",
    )
    .unwrap();
    assert_eq!(
        out["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}])
    );
}

#[test]
fn smp_cronjob_and_service_paths() {
    let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "m", "image": "a", "env": [{"name": "X", "value": "1"}]}]}}}}}});
    let out = strategic_merge_patch(
        &cron,
        &json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "m", "env": [{"name": "X", "value": "2"}]}]}}}}}}),
        "batch/v1",
        "CronJob",
    )
    .unwrap();
    assert_eq!(
        out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"],
        json!([{"name": "m", "image": "a", "env": [{"name": "X", "value": "2"}]}])
    );
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}});
    let out = strategic_merge_patch(
        &svc,
        &json!({"spec": {"ports": [{"port": 443, "targetPort": 9443}]}}),
        "v1",
        "Service",
    )
    .unwrap();
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 9443}])
    );
}

#[test]
fn smp_helm3_config_map_data_patch() {
    let cm = config_map(
        json!({"app.kubernetes.io/managed-by": "Helm"}),
        json!({"msg": "hello"}),
    );
    let out =
        strategic_merge_patch(&cm, &json!({"data": {"msg": "bye"}}), "v1", "ConfigMap").unwrap();
    assert_eq!(
        out,
        config_map(
            json!({"app.kubernetes.io/managed-by": "Helm"}),
            json!({"msg": "bye"})
        )
    );
}

#[test]
fn smp_rejects_custom_resources_and_missing_merge_keys() {
    let spc = json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass", "metadata": {"name": "s"}});
    assert_eq!(
        strategic_merge_patch(
            &spc,
            &json!({"spec": {}}),
            "secrets-store.csi.x-k8s.io/v1",
            "SecretProviderClass"
        ),
        Err(PatchError::Invalid(SMP_UNSUPPORTED.to_string()))
    );
    let target = deployment(json!([{"name": "main"}]));
    let err = strategic_merge_patch(
        &target,
        &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
        "apps/v1",
        "Deployment",
    )
    .unwrap_err();
    assert_eq!(
        err,
        PatchError::Invalid(
            "spec.template.spec.containers: list item {\"image\":\"x\"} does not contain declared merge key: name".into()
        )
    );
}

// ---- JSON patch and merge patch ----

#[test]
fn json_patch_add_replace_remove() {
    let target = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 1, "list": [1, 2]}});
    let out = json_patch(
        &target,
        &json!([
            {"op": "add", "path": "/metadata/labels/y", "value": "2"},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "remove", "path": "/metadata/labels/x"},
            {"op": "add", "path": "/spec/list/-", "value": 3},
            {"op": "test", "path": "/metadata/name", "value": "a"}
        ]),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"metadata": {"name": "a", "labels": {"y": "2"}}, "spec": {"replicas": 3, "list": [1, 2, 3]}})
    );
}

#[test]
fn json_patch_failed_test_and_bad_document_are_invalid() {
    let target = json!({"metadata": {"name": "a"}});
    let err = json_patch(
        &target,
        &json!([{"op": "test", "path": "/metadata/name", "value": "b"}]),
    )
    .unwrap_err();
    assert!(
        matches!(&err, PatchError::Invalid(m) if m.contains("/metadata/name")),
        "{err:?}"
    );
    let err = json_patch(&target, &json!([{"op": "remove", "path": "/spec"}])).unwrap_err();
    assert!(matches!(err, PatchError::Invalid(_)));
    let err = json_patch(&target, &json!({"op": "add"})).unwrap_err();
    assert!(
        matches!(&err, PatchError::Invalid(m) if m.starts_with("invalid JSON patch")),
        "{err:?}"
    );
}

#[test]
fn merge_patch_nested_null_and_list_replacement() {
    let target = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"list": [1, 2], "x": {"y": 1}}});
    let out = merge_patch(
        &target,
        &json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"list": [3], "x": null}}),
    );
    assert_eq!(
        out,
        json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"list": [3]}})
    );
}

// ---- server-side apply ----

#[test]
fn ssa_create_records_the_applied_fields() {
    let applied = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"annotations": {"helm.sh/hook": "post-install"}, "name": "sc-hook", "namespace": "sc-system"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "containers": [{"command": ["echo", "hook"], "image": "busybox", "name": "hook"}],
            "restartPolicy": "Never"
        }}}
    });
    let out = server_side_apply(None, &applied, "helm", false, T1).unwrap();
    let mut expected = applied.clone();
    expected["metadata"]["managedFields"] = json!([apply_entry(
        "helm",
        "batch/v1",
        T1,
        json!({
            "f:metadata": {"f:annotations": {"f:helm.sh/hook": {}}},
            "f:spec": {
                "f:backoffLimit": {},
                "f:template": {"f:spec": {
                    "f:containers": {"k:{\"name\":\"hook\"}": {".": {}, "f:command": {}, "f:image": {}, "f:name": {}}},
                    "f:restartPolicy": {}
                }}
            }
        })
    )]);
    assert_eq!(out, expected);
}

#[test]
fn ssa_reapplying_the_same_config_changes_nothing() {
    let applied = config_map(json!({"app": "x"}), json!({"a": "1", "b": "2"}));
    let first = server_side_apply(None, &applied, "helm", false, T1).unwrap();
    let second = server_side_apply(Some(&first), &applied, "helm", false, T2).unwrap();
    assert_eq!(second, first);
    assert_eq!(
        serde_json::to_string(&second).unwrap(),
        serde_json::to_string(&first).unwrap()
    );
    assert_eq!(
        managed(&second),
        json!([apply_entry(
            "helm",
            "v1",
            T1,
            json!({"f:data": {"f:a": {}, "f:b": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
        )])
    );
}

#[test]
fn ssa_removes_dropped_data_key_and_label() {
    let first = server_side_apply(
        None,
        &config_map(json!({"app": "x"}), json!({"a": "1", "b": "2"})),
        "helm",
        false,
        T1,
    )
    .unwrap();
    let second = server_side_apply(
        Some(&first),
        &config_map(json!({"app": "x"}), json!({"a": "1"})),
        "helm",
        false,
        T2,
    )
    .unwrap();
    let mut expected = config_map(json!({"app": "x"}), json!({"a": "1"}));
    expected["metadata"]["managedFields"] = json!([apply_entry(
        "helm",
        "v1",
        T2,
        json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
    )]);
    assert_eq!(second, expected);

    let no_labels = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": {"a": "1"}});
    let third = server_side_apply(Some(&second), &no_labels, "helm", false, T3).unwrap();
    let mut expected = no_labels.clone();
    expected["metadata"]["managedFields"] = json!([apply_entry(
        "helm",
        "v1",
        T3,
        json!({"f:data": {"f:a": {}}})
    )]);
    assert_eq!(third, expected);
}

#[test]
fn ssa_removes_dropped_env_item_but_keeps_items_others_own() {
    let v1 = deployment(
        json!([{"name": "main", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]),
    );
    let live = server_side_apply(None, &v1, "helm", false, T1).unwrap();

    // Another writer changes B and adds C with a plain update.
    let mut edited = live.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}]);
    record_update(Some(&live), &mut edited, "ops", None, T2);

    let v2 = deployment(json!([{"name": "main", "image": "app:1"}]));
    let out = server_side_apply(Some(&edited), &v2, "helm", false, T3).unwrap();
    assert_eq!(
        bare(&out),
        deployment(
            json!([{"name": "main", "image": "app:1", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}])
        )
    );
    let env = |name: &str| format!("k:{{\"name\":\"{name}\"}}");
    let mut ops_env = serde_json::Map::new();
    ops_env.insert(env("B"), json!({"f:value": {}}));
    ops_env.insert(env("C"), json!({".": {}, "f:name": {}, "f:value": {}}));
    assert_eq!(
        managed(&out),
        json!([
            apply_entry(
                "helm",
                "apps/v1",
                T3,
                json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"main\"}": {".": {}, "f:image": {}, "f:name": {}}
                }}}}})
            ),
            update_entry(
                "ops",
                "apps/v1",
                T2,
                json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"main\"}": {"f:env": Value::Object(ops_env)}
                }}}}})
            )
        ])
    );
}

#[test]
fn ssa_conflict_with_another_apply_manager_and_force() {
    let live = server_side_apply(
        None,
        &config_map(json!({"app": "x"}), json!({"a": "1"})),
        "helm",
        false,
        T1,
    )
    .unwrap();
    let theirs = config_map(json!({"app": "y"}), json!({"a": "2"}));
    let err = server_side_apply(Some(&live), &theirs, "kubectl", false, T2).unwrap_err();
    let conflict = |field: &str| ApplyConflict {
        manager: "helm".into(),
        field: field.into(),
        operation: "Apply".into(),
        api_version: "v1".into(),
        subresource: None,
    };
    assert_eq!(
        err,
        PatchError::Conflict(vec![conflict(".data.a"), conflict(".metadata.labels.app")])
    );
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"helm\":\n- .data.a\n- .metadata.labels.app"
    );

    let only_data = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": {"a": "2"}});
    let err = server_side_apply(Some(&live), &only_data, "kubectl", false, T2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"helm\": .data.a"
    );
    if let PatchError::Conflict(list) = &err {
        assert_eq!(list[0].cause_message(), "conflict with \"helm\"");
    }

    let forced = server_side_apply(Some(&live), &only_data, "kubectl", true, T2).unwrap();
    let mut expected = config_map(json!({"app": "x"}), json!({"a": "2"}));
    expected["metadata"]["managedFields"] = json!([
        apply_entry(
            "helm",
            "v1",
            T1,
            json!({"f:metadata": {"f:labels": {"f:app": {}}}})
        ),
        apply_entry("kubectl", "v1", T2, json!({"f:data": {"f:a": {}}}))
    ]);
    assert_eq!(forced, expected);

    // helm no longer owns data.a: re-applying without it keeps kubectl's value.
    let helm_again = config_map(json!({"app": "x"}), json!({}));
    let err = server_side_apply(
        Some(&forced),
        &config_map(json!({"app": "x"}), json!({"a": "1"})),
        "helm",
        false,
        T3,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl\": .data.a"
    );
    let out = server_side_apply(Some(&forced), &helm_again, "helm", false, T3).unwrap();
    assert_eq!(out["data"], json!({"a": "2"}));
}

#[test]
fn ssa_force_drops_entries_left_empty() {
    let cm = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": data});
    let live = server_side_apply(None, &cm(json!({"a": "1"})), "helm", false, T1).unwrap();
    let out = server_side_apply(Some(&live), &cm(json!({"a": "2"})), "kube-rs", true, T2).unwrap();
    let mut expected = cm(json!({"a": "2"}));
    expected["metadata"]["managedFields"] = json!([apply_entry(
        "kube-rs",
        "v1",
        T2,
        json!({"f:data": {"f:a": {}}})
    )]);
    assert_eq!(out, expected);
}

#[test]
fn ssa_conflict_with_an_update_manager() {
    let mut created = deployment(json!([{"name": "main", "image": "app:1"}]));
    record_update(None, &mut created, "kubectl-create", None, T1);
    assert_eq!(
        managed(&created),
        json!([update_entry(
            "kubectl-create",
            "apps/v1",
            T1,
            json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"main\"}": {".": {}, "f:image": {}, "f:name": {}}
            }}}}})
        )])
    );

    let mut applied = deployment(json!([{"name": "main", "image": "app:1"}]));
    applied["spec"]["replicas"] = json!(3);
    let err = server_side_apply(Some(&created), &applied, "helm", false, T2).unwrap_err();
    assert_eq!(
        err,
        PatchError::Conflict(vec![ApplyConflict {
            manager: "kubectl-create".into(),
            field: ".spec.replicas".into(),
            operation: "Update".into(),
            api_version: "apps/v1".into(),
            subresource: None,
        }])
    );
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-create\" using apps/v1: .spec.replicas"
    );

    let image = {
        let mut a = deployment(json!([{"name": "main", "image": "app:2"}]));
        a["spec"]["replicas"] = json!(1);
        a
    };
    let err = server_side_apply(Some(&created), &image, "helm", false, T2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-create\" using apps/v1: .spec.template.spec.containers[name=\"main\"].image"
    );
}

#[test]
fn ssa_co_owned_field_survives_removal_by_one_manager() {
    let live = server_side_apply(
        None,
        &config_map(json!({"app": "x"}), json!({"a": "1"})),
        "helm",
        false,
        T1,
    )
    .unwrap();
    // Same value: no conflict, both own data.a. As in kube-apiserver, the new co-owner of
    // values the apply did not change gets no time, which sorts its entry first.
    let same = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": {"a": "1"}});
    let shared = server_side_apply(Some(&live), &same, "kubectl", false, T2).unwrap();
    assert_eq!(bare(&shared), bare(&live));
    let mut kubectl = apply_entry("kubectl", "v1", T2, json!({"f:data": {"f:a": {}}}));
    kubectl.as_object_mut().unwrap().remove("time");
    assert_eq!(
        managed(&shared),
        json!([
            kubectl.clone(),
            apply_entry(
                "helm",
                "v1",
                T1,
                json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
            ),
        ])
    );
    // helm drops data.a and the label: the label goes, data.a stays (kubectl owns it).
    let helm_v2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": {}});
    let out = server_side_apply(Some(&shared), &helm_v2, "helm", false, T3).unwrap();
    let mut expected = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": {"a": "1"}});
    expected["metadata"]["managedFields"] = json!([
        kubectl,
        apply_entry("helm", "v1", T3, json!({"f:data": {}}))
    ]);
    assert_eq!(out, expected);
}

#[test]
fn ssa_keyed_lists_merge_per_key_between_managers() {
    let base = server_side_apply(
        None,
        &deployment(json!([{"name": "main", "image": "app:1", "ports": [{"containerPort": 80}]}])),
        "helm",
        false,
        T1,
    )
    .unwrap();
    // A second manager adds its own sidecar and a port without touching helm's fields.
    let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns"},
    "spec": {"template": {"spec": {"containers": [
        {"name": "main", "ports": [{"containerPort": 9090, "protocol": "TCP"}]},
        {"name": "proxy", "image": "proxy:1"}
    ]}}}});
    let out = server_side_apply(Some(&base), &sidecar, "injector", false, T2).unwrap();
    assert_eq!(
        bare(&out),
        deployment(json!([
            {"name": "main", "image": "app:1", "ports": [{"containerPort": 80}, {"containerPort": 9090, "protocol": "TCP"}]},
            {"name": "proxy", "image": "proxy:1"}
        ]))
    );
    // helm re-applies its config: the injector's items survive.
    let again = server_side_apply(
        Some(&out),
        &deployment(json!([{"name": "main", "image": "app:1", "ports": [{"containerPort": 80}]}])),
        "helm",
        false,
        T3,
    )
    .unwrap();
    assert_eq!(again, out);
    assert_eq!(
        managed(&out)[0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"main\"}"]
            ["f:ports"],
        json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
    );
}

#[test]
fn ssa_finalizers_are_a_set() {
    let job = |finalizers: Value| json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "ns", "finalizers": finalizers}});
    let live = server_side_apply(None, &job(json!(["a"])), "one", false, T1).unwrap();
    let out = server_side_apply(Some(&live), &job(json!(["b"])), "two", false, T2).unwrap();
    assert_eq!(bare(&out), job(json!(["a", "b"])));
    assert_eq!(
        managed(&out),
        json!([
            apply_entry(
                "one",
                "batch/v1",
                T1,
                json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}}}})
            ),
            apply_entry(
                "two",
                "batch/v1",
                T2,
                json!({"f:metadata": {"f:finalizers": {"v:\"b\"": {}}}})
            )
        ])
    );
    let out = server_side_apply(Some(&out), &job(json!([])), "one", false, T3).unwrap();
    assert_eq!(bare(&out), job(json!(["b"])));
}

#[test]
fn ssa_without_name_merges_into_live_and_ignores_server_fields() {
    // kube-rs style: only the fields the manager cares about, plus stale server fields.
    let mut live = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "rs-job", "namespace": "ns", "uid": "u1", "resourceVersion": "7", "labels": {"c": "d"}},
        "spec": {"backoffLimit": 1}});
    record_update(None, &mut live, "kubectl-create", None, T1);
    let applied = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"labels": {"a": "b"}, "uid": "other", "resourceVersion": "1", "managedFields": [{"manager": "x"}]}});
    let out = server_side_apply(Some(&live), &applied, "probe", true, T2).unwrap();
    assert_eq!(
        bare(&out),
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "rs-job", "namespace": "ns", "uid": "u1", "resourceVersion": "7", "labels": {"c": "d", "a": "b"}},
            "spec": {"backoffLimit": 1}})
    );
    assert_eq!(
        managed(&out),
        json!([
            apply_entry(
                "probe",
                "batch/v1",
                T2,
                json!({"f:metadata": {"f:labels": {"f:a": {}}}})
            ),
            update_entry(
                "kubectl-create",
                "batch/v1",
                T1,
                json!({
                    "f:metadata": {"f:labels": {".": {}, "f:c": {}}}, "f:spec": {"f:backoffLimit": {}}
                })
            )
        ])
    );
}

#[test]
fn ssa_rejects_duplicate_and_keyless_items() {
    let dup = deployment(json!([{"name": "main"}, {"name": "main"}]));
    assert_eq!(
        server_side_apply(None, &dup, "m", false, T1),
        Err(PatchError::Invalid(
            ".spec.template.spec.containers: duplicate entries for key [name=\"main\"]".into()
        ))
    );
    let keyless = deployment(json!([{"image": "x"}]));
    assert!(matches!(
        server_side_apply(None, &keyless, "m", false, T1),
        Err(PatchError::Invalid(m)) if m.contains("omits key field \"name\"")
    ));
}

// ---- record_update ----

#[test]
fn record_update_moves_ownership_between_writers() {
    let mut created = config_map(json!({"app": "x"}), json!({"a": "1", "b": "2"}));
    record_update(None, &mut created, "kubectl-create", None, T1);
    assert_eq!(
        managed(&created),
        json!([update_entry(
            "kubectl-create",
            "v1",
            T1,
            json!({
                "f:data": {".": {}, "f:a": {}, "f:b": {}},
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}}
            })
        )])
    );

    let mut edited = created.clone();
    edited["data"]["a"] = json!("10");
    edited["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("app");
    record_update(Some(&created), &mut edited, "editor", None, T2);
    let mut expected = config_map(json!({}), json!({"a": "10", "b": "2"}));
    expected["metadata"]["managedFields"] = json!([
        update_entry(
            "kubectl-create",
            "v1",
            T1,
            json!({"f:data": {".": {}, "f:b": {}}, "f:metadata": {"f:labels": {}}})
        ),
        update_entry("editor", "v1", T2, json!({"f:data": {"f:a": {}}}))
    ]);
    assert_eq!(edited, expected);

    // A write that changes nothing leaves managedFields (and their times) alone.
    let mut same = edited.clone();
    record_update(Some(&edited), &mut same, "editor", None, T3);
    assert_eq!(same, edited);

    // The same manager writing again extends its entry and refreshes its time.
    let mut more = edited.clone();
    more["data"]["b"] = json!("20");
    record_update(Some(&edited), &mut more, "editor", None, T4);
    assert_eq!(
        managed(&more),
        json!([
            update_entry(
                "kubectl-create",
                "v1",
                T1,
                json!({"f:data": {}, "f:metadata": {"f:labels": {}}})
            ),
            update_entry(
                "editor",
                "v1",
                T4,
                json!({"f:data": {"f:a": {}, "f:b": {}}})
            )
        ])
    );
}

#[test]
fn record_update_status_subresource_and_apply_takeover() {
    let mut job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "ns"},
        "spec": {"backoffLimit": 0}});
    let live = server_side_apply(None, &job, "helm", false, T1).unwrap();
    job = live.clone();
    job["status"] = json!({"active": 1, "conditions": [{"type": "Complete", "status": "True"}]});
    record_update(Some(&live), &mut job, "job-controller", Some("status"), T2);
    let mut status_entry = update_entry(
        "job-controller",
        "batch/v1",
        T2,
        json!({"f:status": {
            "f:active": {},
            "f:conditions": {"k:{\"type\":\"Complete\"}": {".": {}, "f:status": {}, "f:type": {}}}
        }}),
    );
    status_entry["subresource"] = json!("status");
    assert_eq!(
        managed(&job),
        json!([managed(&live)[0].clone(), status_entry])
    );

    // An update by a client that sends managedFields `[{}]` resets them.
    let mut reset = job.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    reset["spec"]["backoffLimit"] = json!(2);
    record_update(Some(&job), &mut reset, "kubectl-edit", None, T3);
    assert_eq!(
        managed(&reset),
        json!([update_entry(
            "kubectl-edit",
            "batch/v1",
            T3,
            json!({"f:spec": {"f:backoffLimit": {}}})
        )])
    );
}

#[test]
fn ssa_after_create_with_same_values_is_not_a_conflict() {
    // kubectl create, then kubectl apply --server-side of the same manifest.
    let manifest = deployment(json!([{"name": "main", "image": "app:1"}]));
    let mut created = manifest.clone();
    record_update(None, &mut created, "kubectl-create", None, T1);
    let out = server_side_apply(Some(&created), &manifest, "kubectl", false, T2).unwrap();
    assert_eq!(bare(&out), manifest);
    assert_eq!(managed(&out).as_array().unwrap().len(), 2);
    // Dropping the container from the apply keeps it: kubectl-create still owns it.
    let mut without = manifest.clone();
    without["spec"]["template"]["spec"]["containers"] = json!([]);
    let out = server_side_apply(Some(&out), &without, "kubectl", false, T3).unwrap();
    assert_eq!(bare(&out), manifest);
}

#[test]
fn helm3_owner_then_helm4_apply_reports_conflicts() {
    // helm 3: create, then a strategic merge patch, both recorded as Update by "helm".
    let mut created = config_map(
        json!({"app.kubernetes.io/managed-by": "Helm"}),
        json!({"msg": "hello"}),
    );
    record_update(None, &mut created, "helm", None, T1);
    let mut patched = strategic_merge_patch(
        &created,
        &json!({"data": {"msg": "bye"}}),
        "v1",
        "ConfigMap",
    )
    .unwrap();
    record_update(Some(&created), &mut patched, "helm", None, T2);
    assert_eq!(
        managed(&patched),
        json!([update_entry(
            "helm",
            "v1",
            T2,
            json!({
                "f:data": {".": {}, "f:msg": {}},
                "f:metadata": {"f:labels": {".": {}, "f:app.kubernetes.io/managed-by": {}}}
            })
        )])
    );
    // helm 4 applies the old manifest as "helm" (operation Apply): a different owner.
    let manifest = config_map(
        json!({"app.kubernetes.io/managed-by": "Helm"}),
        json!({"msg": "hello"}),
    );
    let err = server_side_apply(Some(&patched), &manifest, "helm", false, T3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"helm\" using v1: .data.msg"
    );
    // The same values as live apply cleanly and share ownership.
    let same = config_map(
        json!({"app.kubernetes.io/managed-by": "Helm"}),
        json!({"msg": "bye"}),
    );
    let out = server_side_apply(Some(&patched), &same, "helm", false, T3).unwrap();
    assert_eq!(bare(&out), bare(&patched));
}

#[test]
fn concurrent_lease_acquisition_conflicts() {
    let lease = |holder: &str, time: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l", "namespace": "ns"},
            "spec": {"holderIdentity": holder, "acquireTime": time, "renewTime": time, "leaseDurationSeconds": 5}})
    };
    let mut created = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l", "namespace": "ns"}, "spec": {}});
    record_update(None, &mut created, "kube-lease-manager-a", None, T1);
    let held = server_side_apply(
        Some(&created),
        &lease("a", T2),
        "kube-lease-manager-a",
        false,
        T2,
    )
    .unwrap();
    let err = server_side_apply(
        Some(&held),
        &lease("b", T3),
        "kube-lease-manager-b",
        false,
        T3,
    )
    .unwrap_err();
    let PatchError::Conflict(conflicts) = &err else {
        panic!("expected a conflict, got {err:?}")
    };
    let fields: Vec<&str> = conflicts.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            ".spec.acquireTime",
            ".spec.holderIdentity",
            ".spec.renewTime"
        ]
    );

    // Release (strategic merge patch with nulls) frees the fields for the next holder.
    let mut released = strategic_merge_patch(
        &held,
        &json!({"spec": {"acquireTime": null, "renewTime": null, "holderIdentity": null, "leaseDurationSeconds": null}}),
        "coordination.k8s.io/v1",
        "Lease",
    )
    .unwrap();
    record_update(Some(&held), &mut released, "kube-lease-manager-a", None, T3);
    assert_eq!(bare(&released)["spec"], json!({}));
    let taken = server_side_apply(
        Some(&released),
        &lease("b", T4),
        "kube-lease-manager-b",
        false,
        T4,
    )
    .unwrap();
    assert_eq!(taken["spec"]["holderIdentity"], json!("b"));
}

#[test]
fn smp_status_conditions_merge_by_type() {
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "status": {"conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]}});
    let out = strategic_merge_patch(
        &job,
        &json!({"status": {"conditions": [{"type": "Complete", "status": "True"}, {"type": "SuccessCriteriaMet", "reason": "Done"}]}}),
        "batch/v1",
        "Job",
    )
    .unwrap();
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type": "Complete", "status": "True"}, {"type": "SuccessCriteriaMet", "status": "True", "reason": "Done"}])
    );
}

#[test]
fn status_apply_is_a_separate_entry_from_main_apply() {
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "ns"},
        "spec": {"backoffLimit": 0}});
    let live = server_side_apply(None, &job, "ctl", false, T1).unwrap();
    let status = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "status": {"conditions": [{"type": "Complete", "status": "True"}]}});
    let out =
        server_side_apply_subresource(&live, &status, "ctl", Some("status"), false, T2).unwrap();
    let mut expected = job.clone();
    expected["status"] = status["status"].clone();
    let mut status_entry = apply_entry(
        "ctl",
        "batch/v1",
        T2,
        json!({"f:status": {"f:conditions": {
            "k:{\"type\":\"Complete\"}": {".": {}, "f:status": {}, "f:type": {}}
        }}}),
    );
    status_entry["subresource"] = json!("status");
    expected["metadata"]["managedFields"] = json!([managed(&live)[0].clone(), status_entry]);
    assert_eq!(out, expected);
}
