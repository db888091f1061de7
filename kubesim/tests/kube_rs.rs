//! kube-rs 5 against kubesim: CRUD and errors, watcher/reflector consistency, server-side
//! apply conflicts, CustomResourceDefinitions, leader election over a Lease, metadata-only
//! reads, watches and patches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kubesim::testing::wait_until;
use kubesim::{Kubesim, Options};
use serde_json::json;

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
        "data": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }))
    .unwrap()
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_errors_and_optimistic_concurrency() {
    let ks = Kubesim::start(Options::default()).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(ks.client(), "default");
    let created = api
        .create(&PostParams::default(), &cm("one", &[("a", "1")]))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    // Only workloads and custom resources track a generation.
    assert_eq!(meta.generation, None);

    let dup = api_error(
        api.create(&PostParams::default(), &cm("one", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, "configmaps \"one\" already exists");

    let mut fresh = api.get("one").await.unwrap();
    fresh.data = Some([("a".to_string(), "2".to_string())].into());
    let updated = api
        .replace("one", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    // The first version is stale now.
    let mut stale = created.clone();
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    let conflict = api_error(
        api.replace("one", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        conflict.message,
        "Operation cannot be fulfilled on configmaps \"one\": the object has been modified; please apply your changes to the latest version and try again"
    );

    let missing = api_error(api.get("nope").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"nope\" not found");

    let bad = api_error(
        api.create(&PostParams::default(), &cm("Bad_Name", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((bad.code, bad.reason.as_str()), (422, "Invalid"));
    assert!(bad.message.starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{}", bad.message);

    let elsewhere: Api<ConfigMap> = Api::namespaced(ks.client(), "missing-ns");
    let no_ns = api_error(
        elsewhere
            .create(&PostParams::default(), &cm("x", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (no_ns.code, no_ns.message.as_str()),
        (404, "namespaces \"missing-ns\" not found")
    );

    // Merge and JSON patches; a resourceVersion in the patch is a precondition.
    let merged = api
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "x"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.as_ref().unwrap()["b"], "x");
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "remove", "path": "/data/a"}])).unwrap();
    let patched = api
        .patch("one", &PatchParams::default(), &Patch::Json::<()>(jp))
        .await
        .unwrap();
    assert!(!patched.data.as_ref().unwrap().contains_key("a"));
    let stale_patch =
        Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"c": "y"}}));
    let e = api_error(
        api.patch("one", &PatchParams::default(), &stale_patch)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);

    // Label selectors on lists; limit/continue pages through everything.
    for i in 0..7 {
        let mut c = cm(&format!("page-{i}"), &[]);
        c.metadata.labels = Some(
            [(
                "tier".to_string(),
                if i % 2 == 0 { "even" } else { "odd" }.to_string(),
            )]
            .into(),
        );
        api.create(&PostParams::default(), &c).await.unwrap();
    }
    let even = api
        .list(&ListParams::default().labels("tier=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 4);
    let mut names = Vec::new();
    let mut lp = ListParams::default().labels("tier").limit(3);
    loop {
        let page = api.list(&lp).await.unwrap();
        assert!(page.metadata.resource_version.is_some());
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(names.len(), 7);

    api.delete("one", &DeleteParams::default()).await.unwrap();
    assert_eq!(api.get_opt("one").await.unwrap(), None);

    // deletecollection with a label selector.
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("tier=odd"),
    )
    .await
    .unwrap();
    let left = api
        .list(&ListParams::default().labels("tier"))
        .await
        .unwrap();
    assert_eq!(left.items.len(), 4);

    // The scale subresource maps to spec.replicas.
    let deployments: Api<Deployment> = Api::namespaced(ks.client(), "default");
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}});
    deployments
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    let scale = deployments.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(0));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    let bad = api_error(
        deployments
            .patch_scale(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": -1}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.code, 422);
    let generation = deployments.get("web").await.unwrap().metadata.generation;
    assert_eq!(
        generation,
        Some(1),
        "an unchanged scale is not a spec change"
    );
}

#[tokio::test]
async fn watcher_and_reflector_stay_consistent_through_rapid_writes_and_a_forced_410() {
    let ks = Kubesim::start(Options::default()).await.unwrap();
    let client = ks.client();
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "busy"}})).unwrap(),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "busy");
    let (reader, writer) = reflector::store::<ConfigMap>();
    let inits = Arc::new(AtomicUsize::new(0));
    let counted = inits.clone();
    let stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .inspect_ok(move |e| {
            if matches!(e, watcher::Event::Init) {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
    let task = tokio::spawn(reflector(writer, stream).for_each(|_| futures::future::ready(())));
    reader.wait_until_ready().await.unwrap();

    let cluster = ks.cluster();
    // 37 names and a cycle of 5 operations: every name sees creates, patches and deletes.
    let mut applied = 0;
    for i in 0..1000u32 {
        let name = format!("cm-{}", i % 37);
        match i % 5 {
            0 | 1 => {
                let r = api
                    .create(&PostParams::default(), &cm(&name, &[("i", &i.to_string())]))
                    .await;
                applied += usize::from(r.is_ok());
            }
            2 | 3 => {
                let r = api
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"data": {"i": i.to_string()}})),
                    )
                    .await;
                applied += usize::from(r.is_ok());
            }
            _ => {
                let r = api.delete(&name, &DeleteParams::default()).await;
                applied += usize::from(r.is_ok());
            }
        }
        if i == 500 {
            cluster.expire_watches();
        }
    }

    assert!(applied > 500, "only {applied} of the writes succeeded");
    let server_state = || async {
        let list = api.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .map(|c| {
                (
                    c.metadata.name.unwrap(),
                    c.metadata.resource_version.unwrap(),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    let expected = server_state().await;
    assert!(!expected.is_empty());
    wait_until(
        Duration::from_secs(30),
        "the reflector to match the server",
        || {
            let reader = reader.clone();
            let expected = expected.clone();
            async move {
                let seen: BTreeMap<_, _> = reader
                    .state()
                    .iter()
                    .map(|c| {
                        (
                            c.metadata.name.clone().unwrap(),
                            c.metadata.resource_version.clone().unwrap(),
                        )
                    })
                    .collect();
                (seen == expected).then_some(())
            }
        },
    )
    .await;
    let n = inits.load(Ordering::SeqCst);
    assert!(
        n >= 2,
        "the forced 410 did not make the watcher relist ({n} initial lists)"
    );
    task.abort();
}

#[tokio::test]
async fn server_side_apply_conflicts_force_and_field_removal() {
    let ks = Kubesim::start(Options::default()).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(ks.client(), "default");
    let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1", "b": "2"}});
    api.patch("ssa", &PatchParams::apply("one"), &Patch::Apply(&first))
        .await
        .unwrap();

    let rival = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "other"}});
    let e = api_error(
        api.patch("ssa", &PatchParams::apply("two"), &Patch::Apply(&rival))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(e.message.contains("conflict with \"one\""), "{}", e.message);
    assert!(e.message.contains(".data.a"), "{}", e.message);

    let forced = api
        .patch(
            "ssa",
            &PatchParams::apply("two").force(),
            &Patch::Apply(&rival),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["a"], "other");

    // "one" stops applying b: it disappears; a now belongs to "two" and stays.
    let shrunk =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {}});
    let after = api
        .patch("ssa", &PatchParams::apply("one"), &Patch::Apply(&shrunk))
        .await
        .unwrap();
    let data = after.data.unwrap_or_default();
    assert_eq!(data.get("a").map(String::as_str), Some("other"));
    assert!(!data.contains_key("b"), "{data:?}");
    // A field last written by an Update (not an apply) names that entry's version and time.
    let edit = PatchParams {
        field_manager: Some("editor".into()),
        ..Default::default()
    };
    api.patch("ssa", &edit, &Patch::Merge(json!({"data": {"e": "1"}})))
        .await
        .unwrap();
    let clash = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"e": "2"}});
    let e = api_error(
        api.patch("ssa", &PatchParams::apply("one"), &Patch::Apply(&clash))
            .await
            .unwrap_err(),
    );
    assert!(
        e.message
            .starts_with("Apply failed with 1 conflict: conflict with \"editor\" using v1 at 20"),
        "{}",
        e.message
    );
    assert!(e.message.ends_with(": .data.e"), "{}", e.message);
    let managers: Vec<String> = after
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"two".to_string()), "{managers:?}");
}

#[tokio::test]
async fn a_custom_resource_definition_is_served_once_created() {
    let ks = Kubesim::start(Options::default()).await.unwrap();
    let client = ks.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "secretproviderclasses.secrets-store.csi.x-k8s.io"},
        "spec": {"group": "secrets-store.csi.x-k8s.io", "scope": "Namespaced",
            "names": {"plural": "secretproviderclasses", "singular": "secretproviderclass",
                      "kind": "SecretProviderClass", "listKind": "SecretProviderClassList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}}}]}});
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(crd).unwrap(),
    )
    .await
    .unwrap();
    let established = crds
        .get("secretproviderclasses.secrets-store.csi.x-k8s.io")
        .await
        .unwrap();
    let conditions = established.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(
        discovery
            .groups()
            .any(|g| g.name() == "secrets-store.csi.x-k8s.io")
    );

    let gvk = GroupVersionKind::gvk("secrets-store.csi.x-k8s.io", "v1", "SecretProviderClass");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "secretproviderclasses");
    let spcs: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let obj = json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
        "metadata": {"name": "kv"}, "spec": {"provider": "azure", "parameters": {"keyvaultName": "v"}}});
    spcs.patch("kv", &PatchParams::apply("sc").force(), &Patch::Apply(&obj))
        .await
        .unwrap();
    let got = spcs.get("kv").await.unwrap();
    assert_eq!(got.data["spec"]["provider"], "azure");
    assert_eq!(got.metadata.generation, Some(1));

    // Status goes through the subresource only, without a generation bump.
    spcs.patch_status(
        "kv",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"byPod": []}})),
    )
    .await
    .unwrap();
    let ignored = spcs
        .patch(
            "kv",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"x": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(ignored.data["status"], json!({"byPod": []}));
    assert_eq!(ignored.metadata.generation, Some(1));
    // Strategic merge patch is refused for custom resources.
    let e = api_error(
        spcs.patch(
            "kv",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"provider": "x"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 415);

    crds.delete(
        "secretproviderclasses.secrets-store.csi.x-k8s.io",
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    let gone = api_error(spcs.get("kv").await.unwrap_err());
    assert_eq!(gone.code, 404);
}

#[tokio::test]
async fn leader_election_over_a_lease() {
    let ks = Kubesim::start(Options::default()).await.unwrap();
    let build = |id: &str| {
        kube_lease_manager::LeaseManagerBuilder::new(ks.client(), "leader")
            .with_namespace("default")
            .with_identity(id)
            .with_duration(3)
            .with_grace(1)
            .build()
    };
    let a = build("a").await.unwrap();
    let b = build("b").await.unwrap();
    assert!(a.changed().await.unwrap(), "a should take the free lease");
    let leases: Api<Lease> = Api::namespaced(ks.client(), "default");
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity);
    assert_eq!(
        holder(leases.get("leader").await.unwrap()).as_deref(),
        Some("a")
    );

    // a stops renewing: b takes over once the lease expires.
    let took = tokio::time::timeout(Duration::from_secs(30), b.changed())
        .await
        .expect("b took over")
        .unwrap();
    assert!(took);
    let lease = leases.get("leader").await.unwrap();
    assert_eq!(holder(lease.clone()).as_deref(), Some("b"));
    assert!(lease.spec.unwrap().lease_transitions.unwrap_or(0) >= 1);

    // b releases: a gets it again.
    b.release().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if a.changed().await.unwrap() {
                    break;
                }
            }
        })
        .await
        .is_ok()
    );
    assert_eq!(
        holder(leases.get("leader").await.unwrap()).as_deref(),
        Some("a")
    );
}

#[tokio::test]
async fn streaming_lists_end_with_the_initial_events_bookmark() {
    let ks = Kubesim::start(Options::default()).await.unwrap();
    let client = ks.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..3 {
        api.create(&PostParams::default(), &cm(&format!("pre-{i}"), &[]))
            .await
            .unwrap();
    }
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream =
        watcher(api.clone(), watcher::Config::default().streaming_lists()).default_backoff();
    let task = tokio::spawn(reflector(writer, stream).for_each(|_| futures::future::ready(())));
    // Ready only once the k8s.io/initial-events-end bookmark arrived.
    tokio::time::timeout(Duration::from_secs(30), reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    // The test's ConfigMaps, without the cluster CA's kube-root-ca.crt.
    let mine = |reader: &reflector::Store<ConfigMap>| {
        reader
            .state()
            .iter()
            .filter(|c| c.metadata.name.as_deref() != Some("kube-root-ca.crt"))
            .count()
    };
    assert_eq!(mine(&reader), 3);
    api.create(&PostParams::default(), &cm("post", &[]))
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(30),
        "the live event after the initial list",
        || {
            let n = mine(&reader);
            async move { (n == 4).then_some(()) }
        },
    )
    .await;
    task.abort();

    // Watch-list needs resourceVersionMatch=NotOlderThan: 422, so clients fall back.
    let req = axum::http::Request::get(
        "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true",
    )
    .body(Vec::new())
    .unwrap();
    let e = api_error(client.request_text(req).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));

    // Resuming from a compacted version: an ERROR event with 410 Expired.
    let rv = ks.cluster().store().current_rv();
    api.create(&PostParams::default(), &cm("late", &[]))
        .await
        .unwrap();
    ks.cluster().store().compact();
    let req = axum::http::Request::get(format!(
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=5"
    ))
    .body(Vec::new())
    .unwrap();
    let body = client.request_text(req).await.unwrap();
    let first: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "ERROR");
    assert_eq!(first["object"]["code"], 410);
    assert_eq!(first["object"]["reason"], "Expired");

    // timeoutSeconds ends the stream, with a bookmark at the latest version when allowed.
    let now = ks.cluster().store().current_rv();
    let req = axum::http::Request::get(format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={now}&allowWatchBookmarks=true&timeoutSeconds=1"
    ))
    .body(Vec::new())
    .unwrap();
    let body = client.request_text(req).await.unwrap();
    let last: serde_json::Value = serde_json::from_str(body.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "BOOKMARK");
    assert_eq!(last["object"]["kind"], "ConfigMap");
    let bookmark_rv: u64 = last["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        bookmark_rv >= now,
        "bookmark {bookmark_rv} older than {now}"
    );
}

#[tokio::test]
async fn server_side_apply_of_spec_and_status_keeps_separate_ownership() {
    let ks = Kubesim::start(Options::default()).await.unwrap();
    let client = ks.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}}}]}});
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(crd).unwrap(),
    )
    .await
    .unwrap();
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client, "default", &ar);
    let pp = PatchParams::apply("operator").force();
    let obj = |spec: serde_json::Value, status: serde_json::Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec, "status": status});
    widgets
        .patch(
            "w",
            &pp,
            &Patch::Apply(obj(json!({"a": 1, "b": 2}), json!({}))),
        )
        .await
        .unwrap();
    widgets
        .patch_status(
            "w",
            &pp,
            &Patch::Apply(obj(json!({}), json!({"phase": "Ready", "note": "x"}))),
        )
        .await
        .unwrap();
    // The same manager drops spec.b: it goes; the status it applied separately stays.
    let w = widgets
        .patch("w", &pp, &Patch::Apply(obj(json!({"a": 1}), json!({}))))
        .await
        .unwrap();
    assert_eq!(w.data["spec"], json!({"a": 1}));
    assert_eq!(w.data["status"], json!({"phase": "Ready", "note": "x"}));
    // And drops status.note: it goes; the spec stays.
    let w = widgets
        .patch_status(
            "w",
            &pp,
            &Patch::Apply(obj(json!({}), json!({"phase": "Done"}))),
        )
        .await
        .unwrap();
    assert_eq!(w.data["status"], json!({"phase": "Done"}));
    assert_eq!(w.data["spec"], json!({"a": 1}));
    let subresources: Vec<Option<String>> = w
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| m.subresource)
        .collect();
    assert!(
        subresources.contains(&Some("status".to_string())),
        "{subresources:?}"
    );
    assert!(subresources.contains(&None), "{subresources:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_creating_one_object_all_succeed() {
    // kube-apiserver applies to what a racing create left; it never answers AlreadyExists.
    let ks = Kubesim::start(Options::default()).await.unwrap();
    for round in 0..20 {
        let name = format!("shared-{round}");
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let api: Api<ConfigMap> = Api::namespaced(ks.client(), "default");
                let name = name.clone();
                tokio::spawn(async move {
                    let key = format!("k{i}");
                    let obj = cm(&name, &[(key.as_str(), "v")]);
                    api.patch(
                        &name,
                        &PatchParams::apply(&format!("writer-{i}")),
                        &Patch::Apply(&obj),
                    )
                    .await
                })
            })
            .collect();
        for t in tasks {
            t.await
                .unwrap()
                .unwrap_or_else(|e| panic!("an apply creating {name} failed: {e}"));
        }
        let api: Api<ConfigMap> = Api::namespaced(ks.client(), "default");
        let data = api.get(&name).await.unwrap().data.unwrap_or_default();
        assert_eq!(
            data.len(),
            6,
            "{name}: every writer's key is kept: {data:?}"
        );
    }
}

#[tokio::test]
async fn metadata_only_reads_watches_and_patches() {
    use k8s_openapi::api::core::v1::Secret;
    let ks = Kubesim::start(Options::default()).await.unwrap();
    let api: Api<Secret> = Api::namespaced(ks.client(), "default");
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "labels": {"k": "v"}},
        "stringData": {"password": "hunter2"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &secret).await.unwrap();

    let meta = api.get_metadata("creds").await.unwrap();
    assert_eq!(meta.metadata.name.as_deref(), Some("creds"));
    let types = meta.types.clone().expect("typed");
    assert_eq!(
        (types.api_version.as_str(), types.kind.as_str()),
        ("meta.k8s.io/v1", "PartialObjectMetadata")
    );
    let list = api
        .list_metadata(&ListParams::default().limit(1))
        .await
        .unwrap();
    assert!(list.metadata.resource_version.is_some());
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.labels.as_ref().unwrap()["k"], "v");

    // The raw bodies carry no data at all.
    let raw = ks
        .client()
        .request_text(
            axum::http::Request::get("/api/v1/namespaces/default/secrets/creds")
                .header(
                    "accept",
                    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
                )
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(
        !raw.contains("\"data\"") && !raw.contains("aHVudGVyMg"),
        "{raw}"
    );

    // `Api<PartialObjectMeta<K>>` watches metadata only (kube-rs' `metadata_watcher`).
    let metadata: Api<kube::core::PartialObjectMeta<Secret>> =
        Api::namespaced(ks.client(), "default");
    let mut stream = watcher(metadata, watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(20), stream.try_next())
        .await
        .expect("the watcher lists")
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("creds"));

    let patched = api
        .patch_metadata(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"k": "w"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["k"], "w");
    let changed = tokio::time::timeout(Duration::from_secs(20), stream.try_next())
        .await
        .expect("the watcher sees the patch")
        .unwrap()
        .unwrap();
    assert_eq!(changed.metadata.labels.unwrap()["k"], "w");
    let full = api.get("creds").await.unwrap();
    assert!(full.data.unwrap().contains_key("password"));
}
