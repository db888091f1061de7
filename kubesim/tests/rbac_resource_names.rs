//! RBAC rules with `resourceNames` allow a list or watch whose field selector names exactly one
//! object (`metadata.name=NAME`), as kube-apiserver authorizes them, and nothing broader.

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams, WatchParams};
use kubesim::{Kubesim, Options};
use serde_json::json;

fn create<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

#[tokio::test]
async fn a_named_field_selector_is_authorized_by_resource_names() {
    let ks = Kubesim::start(Options::default())
        .await
        .expect("kubesim starts");
    let admin = ks.client();
    Api::<ServiceAccount>::namespaced(admin.clone(), "default")
        .create(
            &PostParams::default(),
            &create(json!({"metadata": {"name": "watcher"}})),
        )
        .await
        .unwrap();
    let secrets_admin: Api<Secret> = Api::namespaced(admin.clone(), "default");
    for name in ["mine", "other"] {
        secrets_admin
            .create(
                &PostParams::default(),
                &create(json!({"metadata": {"name": name}, "stringData": {"k": "v"}})),
            )
            .await
            .unwrap();
    }
    Api::<Role>::namespaced(admin.clone(), "default")
        .create(
            &PostParams::default(),
            &create(json!({"metadata": {"name": "one-secret"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["mine"],
                           "verbs": ["get", "list", "watch"]}]})),
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), "default")
        .create(
            &PostParams::default(),
            &create(json!({"metadata": {"name": "one-secret"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one-secret"},
                "subjects": [{"kind": "ServiceAccount", "name": "watcher", "namespace": "default"}]})),
        )
        .await
        .unwrap();
    let token = ks
        .cluster()
        .issue_token("default", "watcher")
        .expect("a token");
    let secrets: Api<Secret> = Api::namespaced(ks.client_with_token(&token), "default");

    let named = secrets
        .list(&ListParams::default().fields("metadata.name=mine"))
        .await
        .unwrap();
    assert_eq!(named.items.len(), 1);
    assert!(
        secrets
            .watch(&WatchParams::default().fields("metadata.name=mine"), "0")
            .await
            .is_ok()
    );

    for denied in [
        secrets.list(&ListParams::default()).await.unwrap_err(),
        secrets
            .list(&ListParams::default().fields("metadata.name=other"))
            .await
            .unwrap_err(),
        secrets
            .list(&ListParams::default().fields("metadata.name=mine,type=Opaque"))
            .await
            .unwrap_err(),
    ] {
        match denied {
            kube::Error::Api(s) => assert_eq!(s.code, 403, "{s:?}"),
            other => panic!("expected 403, got {other:?}"),
        }
    }
}
