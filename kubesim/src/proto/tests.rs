use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::pod_spec;
use super::*;
use k8s_pb::api::{apps, authentication, batch, rbac};

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn body<M: Message>(api_version: &str, kind: &str, m: &M) -> Vec<u8> {
    envelope(api_version, kind, m.encode_to_vec())
}

/// ObjectMeta as client-go encodes it: every non-pointer field present, even when zero.
fn go_meta(name: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(""),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    }
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn field(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(tag << 3 | 2), out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn entry(k: &str, v: &str) -> Vec<u8> {
    let mut e = Vec::new();
    field(1, k.as_bytes(), &mut e);
    field(2, v.as_bytes(), &mut e);
    e
}

/// The helm 3.18 release Secret as recorded (the field tree of its protobuf body),
/// encoded by hand so the field numbers are checked independently of `k8s-pb`.
#[test]
fn captured_helm_release_secret() {
    let mut meta = Vec::new();
    field(1, b"sh.helm.release.v1.sc.v1", &mut meta);
    for tag in 2..=6 {
        field(tag, b"", &mut meta);
    }
    meta.extend([7 << 3, 0]); // generation: 0 (varint)
    field(8, b"", &mut meta); // creationTimestamp: zero Time
    for (k, v) in [
        ("createdAt", "1795433542"),
        ("name", "sc"),
        ("owner", "helm"),
        ("status", "pending-install"),
        ("version", "1"),
    ] {
        field(11, &entry(k, v), &mut meta);
    }
    let mut secret = Vec::new();
    field(1, &meta, &mut secret);
    field(
        2,
        &entry(
            "release",
            "H4sIAAAAAAAC/6RWa2/iOBf+K9F5v4Y2CWpniPR+AGbJQCmdoS0hGaqR45jE",
        ),
        &mut secret,
    );
    field(3, b"helm.sh/release.v1", &mut secret);
    let got = decode(&envelope("v1", "Secret", secret)).unwrap();
    let release = base64::engine::general_purpose::STANDARD
        .encode("H4sIAAAAAAAC/6RWa2/iOBf+K9F5v4Y2CWpniPR+AGbJQCmdoS0hGaqR45jE");
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "sh.helm.release.v1.sc.v1",
                "labels": {"createdAt": "1795433542", "name": "sc", "owner": "helm", "status": "pending-install", "version": "1"}
            },
            "data": {"release": release},
            "type": "helm.sh/release.v1"
        })
    );
}

#[test]
fn secret_all_fields() {
    let mut m = go_meta("s1");
    m.namespace = s("sc-system");
    m.generate_name = s("s-");
    m.annotations.insert("a".into(), "b".into());
    m.finalizers = vec!["example.com/keep".into()];
    m.owner_references = vec![meta::OwnerReference {
        api_version: s("batch/v1"),
        kind: s("Job"),
        name: s("j"),
        uid: s("u1"),
        controller: Some(true),
        block_owner_deletion: Some(false),
    }];
    let secret = core::Secret {
        metadata: Some(m),
        immutable: Some(false),
        data: [("k".to_string(), vec![0u8, 1, 255])].into(),
        string_data: [("plain".to_string(), "text".to_string())].into(),
        r#type: s("Opaque"),
    };
    let got = decode(&body("v1", "Secret", &secret)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s1", "generateName": "s-", "namespace": "sc-system",
                "annotations": {"a": "b"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u1", "controller": true, "blockOwnerDeletion": false}],
                "finalizers": ["example.com/keep"]},
            "immutable": false,
            "data": {"k": "AAH/"},
            "stringData": {"plain": "text"},
            "type": "Opaque"
        })
    );
}

#[test]
fn config_map() {
    let cm = core::ConfigMap {
        metadata: Some(go_meta("c1")),
        immutable: None,
        data: [("a".to_string(), "1".to_string())].into(),
        binary_data: [("b".to_string(), b"xyz".to_vec())].into(),
    };
    let got = decode(&body("v1", "ConfigMap", &cm)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"},
            "data": {"a": "1"}, "binaryData": {"b": "eHl6"}})
    );
}

#[test]
fn delete_options() {
    let d = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        preconditions: Some(meta::Preconditions {
            uid: s("u1"),
            resource_version: s("42"),
        }),
        orphan_dependents: None,
        propagation_policy: s("Background"),
        dry_run: vec!["All".into()],
        ignore_store_read_error_with_cluster_breaking_potential: None,
    };
    let got = decode(&body("", "DeleteOptions", &d)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
            "preconditions": {"uid": "u1", "resourceVersion": "42"},
            "propagationPolicy": "Background", "dryRun": ["All"]})
    );
    let empty = decode(&body(
        "meta.k8s.io/v1",
        "DeleteOptions",
        &meta::DeleteOptions::default(),
    ))
    .unwrap();
    assert_eq!(
        empty,
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions"})
    );
}

#[test]
fn namespace_and_service_account() {
    let ns = core::Namespace {
        metadata: Some(go_meta("sc-system")),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus {
            phase: s(""),
            conditions: vec![],
        }),
    };
    let got = decode(&body("v1", "Namespace", &ns)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sc-system"}, "spec": {}, "status": {}})
    );
    let sa = core::ServiceAccount {
        metadata: Some(go_meta("sc-job")),
        secrets: vec![],
        image_pull_secrets: vec![core::LocalObjectReference { name: s("regcred") }],
        automount_service_account_token: Some(false),
    };
    let got = decode(&body("v1", "ServiceAccount", &sa)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sc-job"},
            "imagePullSecrets": [{"name": "regcred"}], "automountServiceAccountToken": false})
    );
}

#[test]
fn token_request() {
    let t = authentication::v1::TokenRequest {
        metadata: Some(go_meta("sc-job")),
        spec: Some(authentication::v1::TokenRequestSpec {
            audiences: vec!["https://kubernetes.default.svc".into()],
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        }),
        status: Some(authentication::v1::TokenRequestStatus {
            token: s(""),
            expiration_timestamp: Some(meta::Time::default()),
        }),
    };
    let got = decode(&body("authentication.k8s.io/v1", "TokenRequest", &t)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "metadata": {"name": "sc-job"},
            "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600}})
    );
}

fn go_container(name: &str, image: &str) -> core::Container {
    core::Container {
        name: s(name),
        image: s(image),
        working_dir: s(""),
        resources: Some(core::ResourceRequirements::default()),
        termination_message_path: s(""),
        termination_message_policy: s(""),
        image_pull_policy: s(""),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        ..Default::default()
    }
}

fn go_pod_spec(containers: Vec<core::Container>, restart: &str) -> core::PodSpec {
    core::PodSpec {
        containers,
        restart_policy: s(restart),
        dns_policy: s(""),
        service_account_name: s(""),
        service_account: s(""),
        node_name: s(""),
        host_network: Some(false),
        host_pid: Some(false),
        host_ipc: Some(false),
        hostname: s(""),
        subdomain: s(""),
        scheduler_name: s(""),
        priority_class_name: s(""),
        ..Default::default()
    }
}

/// What `kubectl create job sc-job --image=busybox -- echo hi` sends.
#[test]
fn job_from_kubectl_create() {
    let mut c = go_container("sc-job", "busybox");
    c.command = vec!["echo".into(), "hi".into()];
    c.env = vec![core::EnvVar {
        name: s("MODE"),
        value: s("test"),
        value_from: None,
    }];
    c.resources = Some(core::ResourceRequirements {
        limits: [(
            "memory".to_string(),
            k8s_pb::apimachinery::pkg::api::resource::Quantity { string: s("64Mi") },
        )]
        .into(),
        ..Default::default()
    });
    let job = batch::v1::Job {
        metadata: Some(go_meta("sc-job")),
        spec: Some(batch::v1::JobSpec {
            backoff_limit: Some(0),
            template: Some(core::PodTemplateSpec {
                metadata: Some(go_meta("")),
                spec: Some(go_pod_spec(vec![c], "Never")),
            }),
            ..Default::default()
        }),
        status: Some(batch::v1::JobStatus::default()),
    };
    let got = decode(&body("batch/v1", "Job", &job)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "sc-job"},
            "spec": {"backoffLimit": 0, "template": {"metadata": {}, "spec": {
                "containers": [{"name": "sc-job", "image": "busybox", "command": ["echo", "hi"],
                    "env": [{"name": "MODE", "value": "test"}],
                    "resources": {"limits": {"memory": "64Mi"}}}],
                "restartPolicy": "Never"}}}})
    );
}

#[test]
fn job_with_unconverted_pod_field_is_refused() {
    let mut spec = go_pod_spec(vec![go_container("a", "b")], "Never");
    spec.affinity = Some(core::Affinity::default());
    let job = batch::v1::Job {
        metadata: Some(go_meta("j")),
        spec: Some(batch::v1::JobSpec {
            template: Some(core::PodTemplateSpec {
                metadata: None,
                spec: Some(spec),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let err = decode(&body("batch/v1", "Job", &job)).unwrap_err();
    assert_eq!(
        err,
        ProtoError::Unsupported("pod templates with spec.affinity".into())
    );
}

/// What `kubectl create deployment web --image=nginx --replicas=0` sends.
#[test]
fn deployment_from_kubectl_create() {
    let mut labels = BTreeMap::new();
    labels.insert("app".to_string(), "web".to_string());
    let mut tmeta = go_meta("");
    tmeta.labels = labels.clone();
    let mut c = go_container("nginx", "nginx");
    c.ports = vec![core::ContainerPort {
        name: s(""),
        host_port: Some(0),
        container_port: Some(80),
        protocol: s(""),
        host_ip: s(""),
    }];
    let d = apps::v1::Deployment {
        metadata: Some({
            let mut m = go_meta("web");
            m.labels = labels.clone();
            m
        }),
        spec: Some(apps::v1::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: labels,
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(tmeta),
                spec: Some(go_pod_spec(vec![c], "")),
            }),
            strategy: Some(apps::v1::DeploymentStrategy {
                r#type: s(""),
                rolling_update: Some(apps::v1::RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("25%"),
                    }),
                    max_surge: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(1),
                        str_val: s(""),
                    }),
                }),
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: None,
    };
    let got = decode(&body("apps/v1", "Deployment", &d)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}}]}},
                "strategy": {"rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}}}})
    );
}

#[test]
fn rbac_kinds() {
    let role = rbac::v1::Role {
        metadata: Some(go_meta("r")),
        rules: vec![rbac::v1::PolicyRule {
            verbs: vec!["get".into()],
            api_groups: vec!["".into()],
            resources: vec!["secrets".into()],
            resource_names: vec![],
            non_resource_ur_ls: vec![],
        }],
    };
    let got = decode(&body("rbac.authorization.k8s.io/v1", "Role", &role)).unwrap();
    assert_eq!(
        got["rules"],
        json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}])
    );
    let rb = rbac::v1::RoleBinding {
        metadata: Some(go_meta("b")),
        subjects: vec![rbac::v1::Subject {
            kind: s("ServiceAccount"),
            api_group: s(""),
            name: s("sc-job"),
            namespace: s("sc-system"),
        }],
        role_ref: Some(rbac::v1::RoleRef {
            api_group: s("rbac.authorization.k8s.io"),
            kind: s("Role"),
            name: s("r"),
        }),
    };
    let got = decode(&body("rbac.authorization.k8s.io/v1", "RoleBinding", &rb)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b"},
            "subjects": [{"kind": "ServiceAccount", "name": "sc-job", "namespace": "sc-system"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}})
    );
}

#[test]
fn timestamps_and_managed_fields() {
    let mut m = go_meta("t");
    m.creation_timestamp = Some(meta::Time {
        seconds: Some(1_795_433_542),
        nanos: Some(0),
    });
    m.managed_fields = vec![meta::ManagedFieldsEntry {
        manager: s("kubectl-create"),
        operation: s("Update"),
        api_version: s("v1"),
        time: Some(meta::Time {
            seconds: Some(1_795_433_542),
            nanos: Some(0),
        }),
        fields_type: s("FieldsV1"),
        fields_v1: Some(meta::FieldsV1 {
            raw: Some(br#"{"f:data":{}}"#.to_vec()),
        }),
        subresource: s(""),
    }];
    let cm = core::ConfigMap {
        metadata: Some(m),
        ..Default::default()
    };
    let got = decode(&body("v1", "ConfigMap", &cm)).unwrap();
    assert_eq!(got["metadata"]["creationTimestamp"], "2026-11-23T11:32:22Z");
    assert_eq!(
        got["metadata"]["managedFields"],
        json!([{"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
            "time": "2026-11-23T11:32:22Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}])
    );
}

#[test]
fn cron_job_and_service() {
    let cj = batch::v1::CronJob {
        metadata: Some(go_meta("nightly")),
        spec: Some(batch::v1::CronJobSpec {
            schedule: s("0 3 * * *"),
            concurrency_policy: s("Forbid"),
            suspend: Some(false),
            job_template: Some(batch::v1::JobTemplateSpec {
                metadata: Some(go_meta("")),
                spec: Some(batch::v1::JobSpec {
                    template: Some(core::PodTemplateSpec {
                        metadata: None,
                        spec: Some(go_pod_spec(vec![go_container("a", "img")], "OnFailure")),
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let got = decode(&body("batch/v1", "CronJob", &cj)).unwrap();
    assert_eq!(
        got["spec"],
        json!({"schedule": "0 3 * * *", "concurrencyPolicy": "Forbid", "suspend": false,
            "jobTemplate": {"metadata": {}, "spec": {"template": {"spec": {
                "containers": [{"name": "a", "image": "img", "resources": {}}], "restartPolicy": "OnFailure"}}}}})
    );
    let svc = core::Service {
        metadata: Some(go_meta("web")),
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                name: s("80-8080"),
                protocol: s("TCP"),
                port: Some(80),
                target_port: Some(IntOrString {
                    r#type: Some(0),
                    int_val: Some(8080),
                    str_val: s(""),
                }),
                node_port: Some(0),
                ..Default::default()
            }],
            selector: [("app".to_string(), "web".to_string())].into(),
            r#type: s("ClusterIP"),
            cluster_ip: s(""),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus::default()),
    };
    let got = decode(&body("v1", "Service", &svc)).unwrap();
    assert_eq!(
        got["spec"],
        json!({"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "web"}, "type": "ClusterIP"})
    );
}

#[test]
fn pod_spec_volumes_env_probes() {
    let mut c = go_container("main", "img");
    c.env = vec![core::EnvVar {
        name: s("PASSWORD"),
        value: s(""),
        value_from: Some(core::EnvVarSource {
            secret_key_ref: Some(core::SecretKeySelector {
                local_object_reference: Some(core::LocalObjectReference { name: s("db") }),
                key: s("password"),
                optional: None,
            }),
            ..Default::default()
        }),
    }];
    c.volume_mounts = vec![core::VolumeMount {
        name: s("token"),
        read_only: Some(true),
        mount_path: s("/var/run/token"),
        sub_path: s(""),
        sub_path_expr: s(""),
        ..Default::default()
    }];
    c.readiness_probe = Some(core::Probe {
        handler: Some(core::ProbeHandler {
            http_get: Some(core::HttpGetAction {
                path: s("/healthz"),
                port: Some(IntOrString {
                    r#type: Some(1),
                    int_val: Some(0),
                    str_val: s("http"),
                }),
                host: s(""),
                scheme: s("HTTP"),
                http_headers: vec![],
            }),
            ..Default::default()
        }),
        initial_delay_seconds: Some(0),
        period_seconds: Some(5),
        ..Default::default()
    });
    c.security_context = Some(core::SecurityContext {
        run_as_non_root: Some(true),
        capabilities: Some(core::Capabilities {
            add: vec![],
            drop: vec!["ALL".into()],
        }),
        ..Default::default()
    });
    let mut spec = go_pod_spec(vec![c], "Never");
    spec.service_account_name = s("sc-job");
    spec.termination_grace_period_seconds = Some(0);
    spec.volumes = vec![
        core::Volume {
            name: s("scratch"),
            volume_source: Some(core::VolumeSource {
                empty_dir: Some(core::EmptyDirVolumeSource::default()),
                ..Default::default()
            }),
        },
        core::Volume {
            name: s("token"),
            volume_source: Some(core::VolumeSource {
                projected: Some(core::ProjectedVolumeSource {
                    sources: vec![core::VolumeProjection {
                        service_account_token: Some(core::ServiceAccountTokenProjection {
                            audience: s("api"),
                            expiration_seconds: Some(600),
                            path: s("token"),
                        }),
                        ..Default::default()
                    }],
                    default_mode: None,
                }),
                ..Default::default()
            }),
        },
    ];
    let got = pod_spec(&spec).unwrap();
    assert_eq!(
        got,
        json!({
            "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"audience": "api", "expirationSeconds": 600, "path": "token"}}]}}
            ],
            "containers": [{"name": "main", "image": "img",
                "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
                "resources": {},
                "volumeMounts": [{"name": "token", "readOnly": true, "mountPath": "/var/run/token"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "periodSeconds": 5},
                "securityContext": {"capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true}}],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "serviceAccountName": "sc-job"
        })
    );
    spec.volumes[0].volume_source = Some(core::VolumeSource {
        nfs: Some(core::NfsVolumeSource::default()),
        ..Default::default()
    });
    assert!(
        matches!(pod_spec(&spec), Err(ProtoError::Unsupported(m)) if m.contains("\"scratch\""))
    );
}

#[test]
fn errors() {
    assert_eq!(decode(b""), Err(ProtoError::NotEnvelope));
    assert_eq!(
        decode(b"{\"kind\":\"Secret\"}"),
        Err(ProtoError::NotEnvelope)
    );
    assert!(matches!(
        decode(b"k8s\0\xff\xff\xff"),
        Err(ProtoError::Malformed(_))
    ));
    assert!(matches!(
        decode(&envelope("v1", "Secret", vec![0x0a, 0x05, 0x01])),
        Err(ProtoError::Malformed(_))
    ));
    let pod = core::Pod::default();
    assert_eq!(
        decode(&body("v1", "Pod", &pod)),
        Err(ProtoError::Unsupported("v1 Pod".into()))
    );
    let mut gz = MAGIC.to_vec();
    gz.extend(
        k8s_pb::apimachinery::pkg::runtime::Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: s("v1"),
                kind: s("Secret"),
            }),
            raw: Some(vec![]),
            content_encoding: s("gzip"),
            content_type: None,
        }
        .encode_to_vec(),
    );
    assert_eq!(
        decode(&gz),
        Err(ProtoError::Unsupported(
            "Secret with content encoding gzip".into()
        ))
    );
}
