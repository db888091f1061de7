//! `sc-agent validate NAME`: compares what is in the cluster with what the connection
//! renders, and reports each drift with the object and the remedy. Exit code 1 on drift.

use super::args::NameArgs;
use super::block_on;
use super::output::print_value;
use super::snapshot::{Snapshot, api_reason};
use crate::contract::{self, ConnectionPhase};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde::Serialize;
use serde_json::{Value, json};
use std::process::ExitCode;

/// One drift found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The object, as `Kind namespace/name`.
    pub object: String,
    /// What is wrong (never a value of a credential).
    pub problem: String,
    /// What to do.
    pub remedy: String,
}

impl From<crate::workloads::Broken> for Finding {
    fn from(b: crate::workloads::Broken) -> Finding {
        let subject = if b.object.starts_with("Pod ") {
            "the pod"
        } else {
            "it"
        };
        Finding {
            problem: format!(
                "{subject} fails on {} that connection {} added to {}: {}",
                b.reference, b.connection, b.workload, b.problem
            ),
            object: b.object,
            remedy: b.remedy,
        }
    }
}

/// The command that makes the agent run a connection again (`sc-agent reapply`).
fn reapply(ns: &str, connection: &str) -> String {
    format!("run the connection again: sc-agent reapply {connection} -n {ns}")
}

/// Compares the live Secret data with the desired one (both decoded); findings name keys only.
pub fn secret_findings(
    object: &str,
    desired: &std::collections::BTreeMap<String, Vec<u8>>,
    live: &std::collections::BTreeMap<String, Vec<u8>>,
    remedy: &str,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (k, v) in desired {
        match live.get(k) {
            None => out.push(Finding {
                object: object.to_string(),
                problem: format!("key {k} is missing"),
                remedy: remedy.to_string(),
            }),
            Some(l) if l != v => out.push(Finding {
                object: object.to_string(),
                problem: format!("the value of key {k} was changed"),
                remedy: remedy.to_string(),
            }),
            Some(_) => {}
        }
    }
    for k in live.keys() {
        if !desired.contains_key(k) {
            out.push(Finding {
                object: object.to_string(),
                problem: format!("key {k} is not part of the connection"),
                remedy: format!(
                    "remove the key (kubectl edit secret), or declare it under configurations; then {remedy}"
                ),
            });
        }
    }
    out
}

/// Whether a pod template carries the workload-identity label.
pub fn has_wi_label(template: &Value) -> bool {
    template["metadata"]["labels"][sc_model::render::WI_USE_LABEL].as_str() == Some("true")
}

/// `sc-agent validate NAME`.
pub fn run(args: &NameArgs) -> ExitCode {
    block_on(async {
        let c = &args.common;
        let (client, snapshot) = Snapshot::connect(c, true).await?;
        let conn = snapshot.connection(&args.name)?;
        let name = conn.name().to_string();
        let app_ns = conn.spec.namespace.clone();
        let remedy = reapply(&c.namespace, &name);
        let mut findings: Vec<Finding> = Vec::new();

        // The connection's own state.
        let meta_object = format!(
            "ConfigMap {}/{}",
            c.namespace,
            contract::metadata_name(&name)
        );
        match snapshot.metadata(&name) {
            None => findings.push(Finding {
                object: meta_object,
                problem: format!(
                    "the connection is not applied yet (phase {}): no run of sc-job has recorded it",
                    snapshot.phase(&name, Some(&conn.hash)).as_str()
                ),
                remedy: format!(
                    "wait for the agent (`sc-agent wait -n {ns}`), or check it: kubectl -n {ns} logs deploy/{}",
                    contract::AGENT_DEPLOYMENT,
                    ns = c.namespace,
                ),
            }),
            Some(m) => {
                let phase = m.phase(Some(&conn.hash));
                // Drifted is applied: the findings on the objects below say what drifted.
                if !matches!(phase, ConnectionPhase::Ready | ConnectionPhase::Drifted) {
                    let detail = m
                        .error_for(&conn.hash)
                        .map(|e| format!(": {}: {}", e.reason, e.message))
                        .unwrap_or_default();
                    findings.push(Finding {
                        object: meta_object,
                        problem: format!("the current request is not applied (phase {}){detail}", phase.as_str()),
                        remedy: format!("see `sc-agent show {name} -n {}`; wait for the agent or fix the values", c.namespace),
                    });
                }
            }
        }

        // The Secret.
        let desired = conn.desired();
        if let Some(secret) = &desired.secret {
            let secret_name = secret["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let object = format!("Secret {app_ns}/{secret_name}");
            let api: Api<Secret> = Api::namespaced(client.clone(), &app_ns);
            match api.get_opt(&secret_name).await {
                Err(e) => anyhow::bail!("reading {object} failed: {}", api_reason(&e)),
                Ok(None) => findings.push(Finding {
                    object,
                    problem: "the Secret is missing".into(),
                    remedy: remedy.clone(),
                }),
                Ok(Some(live)) => {
                    let ours = live
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(contract::MANAGED_BY_LABEL))
                        .is_some_and(|v| v == contract::MANAGED_BY);
                    if !ours {
                        findings.push(Finding {
                            object: object.clone(),
                            problem: format!("the Secret lacks the label {}={}: it was not created by sc-extension", contract::MANAGED_BY_LABEL, contract::MANAGED_BY),
                            remedy: "rename the connection or remove the foreign Secret, then re-apply".into(),
                        });
                    }
                    let want = decode_data(&secret["data"]);
                    let have = live
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    findings.extend(secret_findings(&object, &want, &have, &remedy));
                }
            }
        }

        // The ServiceAccount.
        if let Some(sa) = &desired.service_account {
            let sa_name = sa["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let object = format!("ServiceAccount {app_ns}/{sa_name}");
            let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &app_ns);
            match api.get_opt(&sa_name).await {
                Err(e) => anyhow::bail!("reading {object} failed: {}", api_reason(&e)),
                Ok(None) => findings.push(Finding {
                    object,
                    problem: "the ServiceAccount is missing".into(),
                    remedy: remedy.clone(),
                }),
                Ok(Some(live)) => {
                    let ann = live.metadata.annotations.unwrap_or_default();
                    if let Some(want) = sa["metadata"]["annotations"].as_object() {
                        for (k, v) in want {
                            let v = v.as_str().unwrap_or_default();
                            if ann.get(k).map(String::as_str) != Some(v) {
                                findings.push(Finding {
                                    object: object.clone(),
                                    problem: format!(
                                        "annotation {k} is {}, expected {v}",
                                        ann.get(k)
                                            .map_or("missing".to_string(), |x| format!("{x:?}"))
                                    ),
                                    remedy: remedy.clone(),
                                });
                            }
                        }
                    }
                }
            }
            // Workloads running as this ServiceAccount without the workload-identity label.
            for (object, template) in pod_templates(&client, &app_ns).await? {
                if template["spec"]["serviceAccountName"].as_str() == Some(sa_name.as_str())
                    && !has_wi_label(&template)
                {
                    findings.push(Finding {
                        object,
                        problem: format!(
                            "its pods use ServiceAccount {sa_name} without the label {}: \"true\", so they get no workload-identity token",
                            sc_model::render::WI_USE_LABEL
                        ),
                        remedy: format!(
                            "add the label {}: \"true\" to the pod template (spec.template.metadata.labels)",
                            sc_model::render::WI_USE_LABEL
                        ),
                    });
                }
            }
        }

        // The SecretProviderClass.
        if let Some(spc) = &desired.secret_provider_class {
            let spc_name = spc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let object = format!("SecretProviderClass {app_ns}/{spc_name}");
            let gvk =
                GroupVersionKind::gvk("secrets-store.csi.x-k8s.io", "v1", "SecretProviderClass");
            let ar = ApiResource::from_gvk_with_plural(&gvk, "secretproviderclasses");
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &app_ns, &ar);
            match api.get_opt(&spc_name).await {
                Err(e) => findings.push(Finding {
                    object,
                    problem: format!("reading it failed: {}", api_reason(&e)),
                    remedy:
                        "install the Secrets Store CSI driver and its Azure provider, then re-apply"
                            .into(),
                }),
                Ok(None) => findings.push(Finding {
                    object,
                    problem: "the SecretProviderClass is missing".into(),
                    remedy: remedy.clone(),
                }),
                Ok(Some(live)) => {
                    let want = &spc["spec"]["parameters"];
                    let have = &live.data["spec"]["parameters"];
                    for (k, v) in want.as_object().into_iter().flatten() {
                        if have[k] != *v {
                            findings.push(Finding {
                                object: object.clone(),
                                problem: format!("parameter {k} differs from the request"),
                                remedy: remedy.clone(),
                            });
                        }
                    }
                }
            }
        }

        // The workloads listed in the request.
        if let Some(secret_name) = &desired.patch.env_from_secret {
            for w in &desired.workloads {
                let object = format!("{} {app_ns}/{}", w.kind.as_str(), w.name);
                let templates = pod_templates(&client, &app_ns).await?;
                let Some((_, t)) = templates.iter().find(|(o, _)| *o == object) else {
                    findings.push(Finding {
                        object,
                        problem: "the workload listed in the connection does not exist".into(),
                        remedy: "create the workload, then re-apply; or remove it from workloads"
                            .into(),
                    });
                    continue;
                };
                let wired = t["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|c| {
                        c["envFrom"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|e| e["secretRef"]["name"].as_str() == Some(secret_name))
                    });
                if !wired {
                    findings.push(Finding {
                        object,
                        problem: format!(
                            "not every container gets Secret {secret_name} through envFrom"
                        ),
                        remedy: remedy.clone(),
                    });
                }
            }
        }

        // Pods of the listed workloads failing on a reference the connection added.
        let drift_count = findings.len();
        match crate::workloads::check(&client, &conn, &c.namespace, true).await {
            Ok(broken) => findings.extend(broken.into_iter().map(Finding::from)),
            Err(why) => {
                eprintln!("warning: the pods of the listed workloads were not checked: {why}")
            }
        }
        let broken_count = findings.len() - drift_count;

        // What the cluster must have for the connection to work (webhook, CSI driver), and
        // the pods of the release (sc-job, the agent) that no node accepts: nothing is
        // applied while they wait. (Pods that cannot be listed are left to `show`.)
        let pods = crate::prerequisites::scheduling(&client, &c.namespace).await;
        let pods = pods
            .into_iter()
            .filter(crate::prerequisites::is_unschedulable_pod);
        let mut preflight = Vec::new();
        for f in crate::prerequisites::check(&client, [&conn])
            .await
            .into_iter()
            .chain(pods)
        {
            preflight.push(crate::prerequisites::label(&f));
            findings.push(Finding {
                object: f.object,
                problem: f.problem,
                remedy: f.remedy,
            });
        }

        let drift = !findings.is_empty();
        match c.output.structured() {
            Some(f) => print_value(
                &json!({
                    "name": name,
                    "valid": !drift,
                    "findings": findings,
                }),
                f,
            )?,
            None => {
                if drift {
                    // Drift, then broken pods, then the preflight findings (MISSING,
                    // UNCHECKED, UNSCHEDULABLE, as `show` labels them).
                    let labels = std::iter::repeat_n("DRIFT", drift_count)
                        .chain(std::iter::repeat_n("BROKEN", broken_count))
                        .chain(preflight.iter().copied());
                    for (f, label) in findings.iter().zip(labels) {
                        println!(
                            "{label} {}: {}\n      remedy: {}",
                            f.object, f.problem, f.remedy
                        );
                    }
                    println!("{name}: {} finding(s)", findings.len());
                } else {
                    println!("{name}: OK, the cluster matches the connection");
                }
            }
        }
        Ok(if drift {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}

fn decode_data(data: &Value) -> std::collections::BTreeMap<String, Vec<u8>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    data.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                b64.decode(v.as_str().unwrap_or_default())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// Every pod template of the workloads in a namespace, as (`Kind namespace/name`, template).
async fn pod_templates(client: &kube::Client, ns: &str) -> anyhow::Result<Vec<(String, Value)>> {
    let kinds: [(&str, &str, &str, &str, &str); 5] = [
        ("apps", "v1", "Deployment", "deployments", "/spec/template"),
        (
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            "/spec/template",
        ),
        ("apps", "v1", "DaemonSet", "daemonsets", "/spec/template"),
        ("batch", "v1", "Job", "jobs", "/spec/template"),
        (
            "batch",
            "v1",
            "CronJob",
            "cronjobs",
            "/spec/jobTemplate/spec/template",
        ),
    ];
    let mut out = Vec::new();
    for (group, version, kind, plural, pointer) in kinds {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => {
                eprintln!(
                    "warning: cannot list {plural} in namespace {ns}: {} ({})",
                    e.message, e.code
                );
                continue;
            }
            Err(e) => anyhow::bail!(
                "listing {plural} in namespace {ns} failed: {}",
                api_reason(&e)
            ),
        };
        for o in list.items {
            let name = o.metadata.name.clone().unwrap_or_default();
            // `data` holds everything but apiVersion, kind and metadata.
            if let Some(t) = o.data.pointer(pointer) {
                out.push((format!("{kind} {ns}/{name}"), t.clone()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn secret_findings_name_keys_never_values() {
        let want: BTreeMap<String, Vec<u8>> = [
            ("A".to_string(), b"one".to_vec()),
            ("B".to_string(), b"s3cret".to_vec()),
            ("C".to_string(), b"three".to_vec()),
        ]
        .into();
        let have: BTreeMap<String, Vec<u8>> = [
            ("A".to_string(), b"one".to_vec()),
            ("B".to_string(), b"hand-edited".to_vec()),
            ("X".to_string(), b"extra".to_vec()),
        ]
        .into();
        let f = secret_findings("Secret ns/s", &want, &have, "fix");
        let problems: Vec<&str> = f.iter().map(|f| f.problem.as_str()).collect();
        assert_eq!(
            problems,
            vec![
                "the value of key B was changed",
                "key C is missing",
                "key X is not part of the connection"
            ]
        );
        let text = serde_json::to_string(&f).unwrap();
        assert!(!text.contains("s3cret") && !text.contains("hand-edited"));
        assert!(secret_findings("s", &want, &want, "fix").is_empty());
    }

    #[test]
    fn the_wi_label_must_be_the_string_true() {
        assert!(has_wi_label(
            &json!({"metadata": {"labels": {"azure.workload.identity/use": "true"}}})
        ));
        assert!(!has_wi_label(
            &json!({"metadata": {"labels": {"azure.workload.identity/use": "false"}}})
        ));
        assert!(!has_wi_label(&json!({"metadata": {}})));
    }
}
