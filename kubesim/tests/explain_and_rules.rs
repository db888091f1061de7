//! `kubectl explain` (the `/openapi/v3` documents with the built-in kinds' schemas and the
//! CRDs' schemas) and `kubectl auth can-i --list` (SelfSubjectRulesReview from RBAC, also
//! impersonated), with kubectl 1.37 and 1.33.

use kubesim::testing::{run, run_with_stdin};
use kubesim::{Kubesim, Options};

const KUBECTLS: [&str; 2] = ["kubectl-1.37", "kubectl-1.33"];

async fn start() -> Kubesim {
    Kubesim::start(Options::default())
        .await
        .expect("kubesim starts")
}

/// Lines of a kubectl table with their cells separated by single spaces.
fn rows(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[tokio::test]
async fn kubectl_explain_reads_built_in_and_custom_schemas() {
    let ks = start().await;
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the widget should be.
            properties:
              replicas: {type: integer, description: How many widgets.}
"#;
    run_with_stdin(&ks, "kubectl", &["apply", "-f", "-"], Some(crd))
        .await
        .ok("kubectl apply the CRD");
    for kubectl in KUBECTLS {
        let out = run(&ks, kubectl, &["explain", "deployment.spec.template"]).await;
        let text = out.ok(kubectl);
        let lines = rows(text);
        for want in [
            "KIND: Deployment",
            "VERSION: v1",
            "FIELD: template <PodTemplateSpec>",
            "metadata <ObjectMeta>",
            "spec <PodSpec>",
        ] {
            assert!(lines.iter().any(|l| l == want), "{kubectl}: {want}\n{text}");
        }
        assert!(
            text.contains("PodTemplateSpec describes the data a pod should have"),
            "{kubectl}: {text}"
        );
        let out = run(&ks, kubectl, &["explain", "pods.spec.containers.image"]).await;
        let text = out.ok(kubectl);
        assert!(
            rows(text).iter().any(|l| l == "FIELD: image <string>"),
            "{kubectl}: {text}"
        );
        let out = run(&ks, kubectl, &["explain", "widgets.spec"]).await;
        let text = out.ok(kubectl);
        let lines = rows(text);
        for want in [
            "KIND: Widget",
            "FIELD: spec <Object>",
            "replicas <integer>",
            "How many widgets.",
        ] {
            assert!(lines.iter().any(|l| l == want), "{kubectl}: {want}\n{text}");
        }
        assert!(
            text.contains("What the widget should be."),
            "{kubectl}: {text}"
        );
    }
}

#[tokio::test]
async fn kubectl_auth_can_i_list_shows_the_rbac_rules() {
    let ks = start().await;
    let setup = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: robot, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: secret-reader, namespace: default}
rules:
- {apiGroups: [""], resources: [secrets], resourceNames: [a], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: robot-reads, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: secret-reader}
subjects: [{kind: ServiceAccount, name: robot, namespace: default}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: robot-views-nodes}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-viewer}
subjects: [{kind: ServiceAccount, name: robot, namespace: default}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: node-viewer}
rules:
- {apiGroups: [""], resources: [nodes], verbs: [get, watch]}
- {nonResourceURLs: [/metrics], verbs: [get]}
"#;
    run_with_stdin(&ks, "kubectl", &["apply", "-f", "-"], Some(setup))
        .await
        .ok("kubectl apply the RBAC objects");
    let robot = "--as=system:serviceaccount:default:robot";
    for kubectl in KUBECTLS {
        let out = run(&ks, kubectl, &["auth", "can-i", "--list", robot]).await;
        let text = out.ok(kubectl);
        let lines = rows(text);
        for want in [
            "Resources Non-Resource URLs Resource Names Verbs",
            "secrets [] [a] [get list]",
            "nodes [] [] [get watch]",
            "[/metrics] [] [get]",
            "selfsubjectrulesreviews.authorization.k8s.io [] [] [create]",
            "[/api/*] [] [get]",
        ] {
            assert!(lines.iter().any(|l| l == want), "{kubectl}: {want}\n{text}");
        }
        // The Role is bound in `default` only; the ClusterRoleBinding applies everywhere.
        let out = run(
            &ks,
            kubectl,
            &["auth", "can-i", "--list", robot, "-n", "kube-system"],
        )
        .await;
        let text = out.ok(kubectl);
        let lines = rows(text);
        assert!(
            !lines.iter().any(|l| l.starts_with("secrets ")),
            "{kubectl}: {text}"
        );
        assert!(
            lines.iter().any(|l| l == "nodes [] [] [get watch]"),
            "{kubectl}: {text}"
        );
        // The admin (system:masters, bound to cluster-admin) may do everything.
        let out = run(&ks, kubectl, &["auth", "can-i", "--list"]).await;
        let text = out.ok(kubectl);
        let lines = rows(text);
        assert!(
            lines.iter().any(|l| l == "*.* [] [] [*]"),
            "{kubectl}: {text}"
        );
        assert!(lines.iter().any(|l| l == "[*] [] [*]"), "{kubectl}: {text}");
    }
    // A binding to a missing role makes the answer incomplete, with the resolver's error.
    run(
        &ks,
        "kubectl",
        &[
            "create",
            "rolebinding",
            "dangling",
            "--role=gone",
            "--serviceaccount=default:robot",
        ],
    )
    .await
    .ok("kubectl create rolebinding");
    let review = r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "default"}}"#;
    let out = run_with_stdin(
        &ks,
        "kubectl",
        &["create", "-f", "-", "-o", "json", robot],
        Some(review),
    )
    .await;
    let answer: serde_json::Value =
        serde_json::from_str(out.ok("kubectl create selfsubjectrulesreview")).expect("json");
    assert_eq!(answer["status"]["incomplete"], true, "{answer}");
    assert_eq!(
        answer["status"]["evaluationError"], r#"role.rbac.authorization.k8s.io "gone" not found"#,
        "{answer}"
    );
}
