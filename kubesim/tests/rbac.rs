//! Authentication and RBAC: ServiceAccount tokens get 403 with the API server's message until a
//! Role grants access; the admin token always works; unknown tokens get 401.

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};
use kubesim::{Kubesim, Options};
use serde_json::json;

fn status(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn service_account_tokens_are_authorized_by_rbac() {
    let ks = Kubesim::start(Options::default())
        .await
        .expect("kubesim starts");
    let admin = ks.client();
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "reader"}})).unwrap(),
    )
    .await
    .unwrap();
    // A token through the TokenRequest subresource, as `kubectl create token` gets one.
    let tr: serde_json::Value = admin
        .request(
            axum::http::Request::post("/api/v1/namespaces/default/serviceaccounts/reader/token")
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})).unwrap())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(tr["kind"], "TokenRequest");
    let token = tr["status"]["token"].as_str().unwrap().to_string();

    let as_sa = ks.client_with_token(&token);
    let secrets: Api<Secret> = Api::namespaced(as_sa.clone(), "default");
    let denied = status(secrets.get("app").await.unwrap_err());
    assert_eq!((denied.code, denied.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        denied.message,
        "secrets \"app\" is forbidden: User \"system:serviceaccount:default:reader\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\""
    );
    let denied_list = status(secrets.list(&Default::default()).await.unwrap_err());
    assert_eq!(denied_list.code, 403);

    let roles: Api<Role> = Api::namespaced(admin.clone(), "default");
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "secret-reader"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), "default");
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "reader-secrets"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let admin_secrets: Api<Secret> = Api::namespaced(admin.clone(), "default");
    admin_secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "app"}, "stringData": {"k": "v"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let got = secrets.get("app").await.unwrap();
    assert_eq!(got.data.unwrap()["k"].0, b"v");
    assert_eq!(
        secrets.list(&Default::default()).await.unwrap().items.len(),
        1
    );
    // The grant covers get and list only, and only this namespace.
    let no_create = status(
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(no_create.code, 403);
    let elsewhere: Api<Secret> = Api::namespaced(as_sa.clone(), "kube-system");
    assert_eq!(
        status(elsewhere.list(&Default::default()).await.unwrap_err()).code,
        403
    );
    // Discovery is open to every authenticated user.
    as_sa.apiserver_version().await.unwrap();

    // The admin can do anything; unknown tokens are rejected.
    let kube_system: Api<Secret> = Api::namespaced(admin, "kube-system");
    kube_system.list(&Default::default()).await.unwrap();
    let stranger: Api<Secret> = Api::namespaced(ks.client_with_token("not-a-token"), "default");
    let e = status(stranger.get("app").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (401, "Unauthorized"));
    // A deleted ServiceAccount's token stops working.
    sas.delete("reader", &Default::default()).await.unwrap();
    assert_eq!(status(secrets.get("app").await.unwrap_err()).code, 401);
}

/// kubectl cannot send a token over http, so RBAC is checked through impersonation (`--as`),
/// `auth can-i` (SelfSubjectAccessReview) and `auth whoami` (SelfSubjectReview).
#[tokio::test]
async fn kubectl_impersonation_and_access_reviews() {
    use kubesim::testing::run;
    let ks = Kubesim::start(Options::default())
        .await
        .expect("kubesim starts");
    let sa = "--as=system:serviceaccount:default:reader";
    for tool in ["kubectl-1.37", "kubectl-1.33"] {
        let ok = |args: &'static [&'static str]| {
            let ks = &ks;
            async move {
                run(ks, tool, args)
                    .await
                    .ok(&format!("{tool} {args:?}"))
                    .to_string()
            }
        };
        if tool == "kubectl-1.37" {
            ok(&["create", "serviceaccount", "reader"]).await;
        }
        assert_eq!(ok(&["auth", "can-i", "get", "pods"]).await.trim(), "yes");
        let who = ok(&[
            "auth",
            "whoami",
            "--as=system:serviceaccount:default:reader",
        ])
        .await;
        assert!(
            who.contains("system:serviceaccount:default:reader"),
            "{who}"
        );
        assert!(who.contains("system:serviceaccounts:default"), "{who}");
        if tool == "kubectl-1.37" {
            let denied = run(&ks, tool, &["get", "secrets", sa]).await;
            assert!(!denied.success());
            assert!(
                denied.stderr.contains(
                    "secrets is forbidden: User \"system:serviceaccount:default:reader\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
                ),
                "{denied:?}"
            );
            let no = run(&ks, tool, &["auth", "can-i", "list", "secrets", sa]).await;
            assert_eq!(no.stdout.trim(), "no", "{no:?}");
            ok(&[
                "create",
                "role",
                "secret-reader",
                "--verb=get,list",
                "--resource=secrets",
            ])
            .await;
            ok(&[
                "create",
                "rolebinding",
                "reader",
                "--role=secret-reader",
                "--serviceaccount=default:reader",
            ])
            .await;
        }
        let yes = run(&ks, tool, &["auth", "can-i", "list", "secrets", sa]).await;
        assert_eq!(yes.stdout.trim(), "yes", "{yes:?}");
        let other_ns = run(
            &ks,
            tool,
            &["auth", "can-i", "list", "secrets", "-n", "kube-system", sa],
        )
        .await;
        assert_eq!(other_ns.stdout.trim(), "no", "{other_ns:?}");
        run(&ks, tool, &["get", "secrets", sa])
            .await
            .ok("listing secrets as the granted ServiceAccount");
    }
}

#[tokio::test]
async fn an_apply_that_creates_also_needs_create() {
    let ks = Kubesim::start(Options::default())
        .await
        .expect("kubesim starts");
    let admin = ks.client();
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "patcher"}})).unwrap(),
    )
    .await
    .unwrap();
    let roles: Api<Role> = Api::namespaced(admin.clone(), "default");
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "patcher"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "patch"]}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), "default");
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "patcher"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "patcher"},
                "subjects": [{"kind": "ServiceAccount", "name": "patcher", "namespace": "default"}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let tr: serde_json::Value = admin
        .request(
            axum::http::Request::post("/api/v1/namespaces/default/serviceaccounts/patcher/token")
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})).unwrap())
                .unwrap(),
        )
        .await
        .unwrap();
    let as_sa = ks.client_with_token(tr["status"]["token"].as_str().unwrap());
    let secrets: Api<Secret> = Api::namespaced(as_sa, "default");
    let apply = |name: &str| {
        serde_json::from_value::<Secret>(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name}, "stringData": {"k": "v"}}))
        .unwrap()
    };
    let pp = kube::api::PatchParams::apply("patcher");
    // Patching alone does not allow creating.
    let denied = status(
        secrets
            .patch("new", &pp, &kube::api::Patch::Apply(&apply("new")))
            .await
            .unwrap_err(),
    );
    assert_eq!(denied.code, 403, "{denied:?}");
    assert!(
        denied
            .message
            .contains("cannot create resource \"secrets\""),
        "{}",
        denied.message
    );
    let all: Api<Secret> = Api::namespaced(admin.clone(), "default");
    assert!(all.get_opt("new").await.unwrap().is_none());
    // An existing object is patched with `patch` alone.
    all.create(&PostParams::default(), &apply("old"))
        .await
        .unwrap();
    secrets
        .patch("old", &pp, &kube::api::Patch::Apply(&apply("old")))
        .await
        .expect("an apply to an existing object needs only patch");

    // With `create` granted, the apply creates the object. The request record counts one
    // request: its `patch`, and the `create` it implied, marked as such.
    roles
        .patch(
            "patcher",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "patch", "create"]}]})),
        )
        .await
        .unwrap();
    secrets
        .patch("fresh", &pp, &kube::api::Patch::Apply(&apply("fresh")))
        .await
        .expect("an apply with patch and create creates");
    let audit: serde_json::Value = admin
        .request(
            axum::http::Request::get("/kubesim/audit")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let entries: Vec<&serde_json::Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["user"] == "system:serviceaccount:default:patcher")
        .collect();
    let of = |verb: &str, name: &str| -> Vec<&serde_json::Value> {
        entries
            .iter()
            .copied()
            .filter(|e| e["verb"] == verb && e["name"] == name)
            .collect()
    };
    let fresh_patch = of("patch", "fresh");
    assert_eq!(fresh_patch.len(), 1, "{entries:?}");
    assert_eq!(
        (&fresh_patch[0]["code"], &fresh_patch[0]["count"]),
        (&json!(201), &json!(1))
    );
    assert!(fresh_patch[0].get("implied").is_none(), "{entries:?}");
    let fresh_create = of("create", "fresh");
    assert_eq!(fresh_create.len(), 1, "{entries:?}");
    assert_eq!(fresh_create[0]["implied"], true, "{entries:?}");
    // The apply to the existing object implied nothing; the refused one implied no create.
    assert!(of("create", "old").is_empty(), "{entries:?}");
    assert!(of("create", "new").is_empty(), "{entries:?}");
    let requests: u64 = entries
        .iter()
        .filter(|e| e.get("implied").is_none())
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    // The refused apply of "new", the apply of "old", the apply of "fresh".
    assert_eq!(requests, 3, "{entries:?}");
}
