//! Pod templates (of Jobs, CronJobs and Deployments): the fields `kubectl create` and similar
//! generators send. Anything else is refused rather than dropped.

use k8s_pb::api::core::v1 as core;
use serde_json::{Value, json};

use super::ProtoError;
use super::json::{J, int_or_string, label_selector, local_ref, object_meta, quantities};

pub(super) fn job_spec(s: &k8s_pb::api::batch::v1::JobSpec) -> Result<Value, ProtoError> {
    if s.pod_failure_policy.is_some() {
        return Err(ProtoError::Unsupported(
            "Job with spec.podFailurePolicy".into(),
        ));
    }
    if s.success_policy.is_some() {
        return Err(ProtoError::Unsupported(
            "Job with spec.successPolicy".into(),
        ));
    }
    Ok(J::default()
        .pi("parallelism", s.parallelism)
        .pi("completions", s.completions)
        .pi("activeDeadlineSeconds", s.active_deadline_seconds)
        .pi("backoffLimit", s.backoff_limit)
        .pi("backoffLimitPerIndex", s.backoff_limit_per_index)
        .pi("maxFailedIndexes", s.max_failed_indexes)
        .m("selector", &s.selector, label_selector)
        .pb("manualSelector", s.manual_selector)
        .r(
            "template",
            s.template.as_ref().map(pod_template).transpose()?,
        )
        .pi("ttlSecondsAfterFinished", s.ttl_seconds_after_finished)
        .ps("completionMode", &s.completion_mode)
        .pb("suspend", s.suspend)
        .ps("podReplacementPolicy", &s.pod_replacement_policy)
        .ps("managedBy", &s.managed_by)
        .done())
}

pub(super) fn pod_template(t: &core::PodTemplateSpec) -> Result<Value, ProtoError> {
    Ok(J::default()
        .m("metadata", &t.metadata, object_meta)
        .r("spec", t.spec.as_ref().map(pod_spec).transpose()?)
        .done())
}

fn refuse(field: &str) -> ProtoError {
    ProtoError::Unsupported(format!("pod templates with {field}"))
}

pub(super) fn pod_spec(p: &core::PodSpec) -> Result<Value, ProtoError> {
    let unconverted = [
        ("ephemeralContainers", !p.ephemeral_containers.is_empty()),
        ("affinity", p.affinity.is_some()),
        ("hostAliases", !p.host_aliases.is_empty()),
        ("dnsConfig", p.dns_config.is_some()),
        ("readinessGates", !p.readiness_gates.is_empty()),
        ("overhead", !p.overhead.is_empty()),
        (
            "topologySpreadConstraints",
            !p.topology_spread_constraints.is_empty(),
        ),
        ("os", p.os.is_some()),
        ("schedulingGates", !p.scheduling_gates.is_empty()),
        ("resourceClaims", !p.resource_claims.is_empty()),
        ("resources", p.resources.is_some()),
        (
            "hostnameOverride",
            p.hostname_override
                .as_deref()
                .is_some_and(|h| !h.is_empty()),
        ),
        ("workloadRef", p.workload_ref.is_some()),
    ];
    if let Some((field, _)) = unconverted.iter().find(|(_, set)| *set) {
        return Err(refuse(&format!("spec.{field}")));
    }
    if let Some(sc) = &p.security_context
        && (sc.se_linux_options.is_some()
            || sc.windows_options.is_some()
            || sc.app_armor_profile.is_some()
            || !sc.sysctls.is_empty())
    {
        return Err(refuse(
            "spec.securityContext options other than user, group and seccomp",
        ));
    }
    let volumes = p
        .volumes
        .iter()
        .map(volume)
        .collect::<Result<Vec<_>, _>>()?;
    let init = p
        .init_containers
        .iter()
        .map(container)
        .collect::<Result<Vec<_>, _>>()?;
    let containers = p
        .containers
        .iter()
        .map(container)
        .collect::<Result<Vec<_>, _>>()?;
    let non_empty = |v: Vec<Value>| (!v.is_empty()).then_some(Value::Array(v));
    Ok(J::default()
        .r("volumes", non_empty(volumes))
        .r("initContainers", non_empty(init))
        .put("containers", Value::Array(containers))
        .s("restartPolicy", &p.restart_policy)
        .pi(
            "terminationGracePeriodSeconds",
            p.termination_grace_period_seconds,
        )
        .pi("activeDeadlineSeconds", p.active_deadline_seconds)
        .s("dnsPolicy", &p.dns_policy)
        .map("nodeSelector", &p.node_selector)
        .s("serviceAccountName", &p.service_account_name)
        .s("serviceAccount", &p.service_account)
        .pb(
            "automountServiceAccountToken",
            p.automount_service_account_token,
        )
        .s("nodeName", &p.node_name)
        .b("hostNetwork", p.host_network)
        .b("hostPID", p.host_pid)
        .b("hostIPC", p.host_ipc)
        .pb("shareProcessNamespace", p.share_process_namespace)
        .m("securityContext", &p.security_context, |sc| {
            J::default()
                .pi("runAsUser", sc.run_as_user)
                .pi("runAsGroup", sc.run_as_group)
                .pb("runAsNonRoot", sc.run_as_non_root)
                .r(
                    "supplementalGroups",
                    (!sc.supplemental_groups.is_empty()).then(|| json!(sc.supplemental_groups)),
                )
                .ps("supplementalGroupsPolicy", &sc.supplemental_groups_policy)
                .pi("fsGroup", sc.fs_group)
                .ps("fsGroupChangePolicy", &sc.fs_group_change_policy)
                .m("seccompProfile", &sc.seccomp_profile, seccomp)
                .ps("seLinuxChangePolicy", &sc.se_linux_change_policy)
                .done()
        })
        .ms("imagePullSecrets", &p.image_pull_secrets, |r| {
            local_ref(&Some(r.clone()))
        })
        .s("hostname", &p.hostname)
        .s("subdomain", &p.subdomain)
        .s("schedulerName", &p.scheduler_name)
        .ms("tolerations", &p.tolerations, |t| {
            J::default()
                .s("key", &t.key)
                .s("operator", &t.operator)
                .s("value", &t.value)
                .s("effect", &t.effect)
                .pi("tolerationSeconds", t.toleration_seconds)
                .done()
        })
        .s("priorityClassName", &p.priority_class_name)
        .pi("priority", p.priority)
        .ps("runtimeClassName", &p.runtime_class_name)
        .pb("enableServiceLinks", p.enable_service_links)
        .ps("preemptionPolicy", &p.preemption_policy)
        .pb("setHostnameAsFQDN", p.set_hostname_as_fqdn)
        .pb("hostUsers", p.host_users)
        .done())
}

fn seccomp(s: &core::SeccompProfile) -> Value {
    J::default()
        .s("type", &s.r#type)
        .ps("localhostProfile", &s.localhost_profile)
        .done()
}

fn key_to_path(k: &core::KeyToPath) -> Value {
    J::default()
        .s("key", &k.key)
        .s("path", &k.path)
        .pi("mode", k.mode)
        .done()
}

fn volume(v: &core::Volume) -> Result<Value, ProtoError> {
    let name = v.name.clone().unwrap_or_default();
    let Some(src) = &v.volume_source else {
        return Ok(json!({ "name": name }));
    };
    let j = J::default().put("name", json!(name));
    let j = if let Some(e) = &src.empty_dir {
        j.put(
            "emptyDir",
            J::default()
                .s("medium", &e.medium)
                .r(
                    "sizeLimit",
                    e.size_limit
                        .as_ref()
                        .and_then(|q| q.string.clone())
                        .map(Value::from),
                )
                .done(),
        )
    } else if let Some(s) = &src.secret {
        j.put(
            "secret",
            J::default()
                .s("secretName", &s.secret_name)
                .ms("items", &s.items, key_to_path)
                .pi("defaultMode", s.default_mode)
                .pb("optional", s.optional)
                .done(),
        )
    } else if let Some(c) = &src.config_map {
        j.put(
            "configMap",
            J::default()
                .inline(local_ref(&c.local_object_reference))
                .ms("items", &c.items, key_to_path)
                .pi("defaultMode", c.default_mode)
                .pb("optional", c.optional)
                .done(),
        )
    } else if let Some(h) = &src.host_path {
        j.put(
            "hostPath",
            J::default().s("path", &h.path).ps("type", &h.r#type).done(),
        )
    } else if let Some(c) = &src.persistent_volume_claim {
        j.put(
            "persistentVolumeClaim",
            J::default()
                .s("claimName", &c.claim_name)
                .b("readOnly", c.read_only)
                .done(),
        )
    } else if let Some(p) = &src.projected {
        let mut sources = Vec::new();
        for s in &p.sources {
            let one = if let Some(t) = &s.service_account_token {
                J::default().put(
                    "serviceAccountToken",
                    J::default()
                        .s("audience", &t.audience)
                        .pi("expirationSeconds", t.expiration_seconds)
                        .s("path", &t.path)
                        .done(),
                )
            } else if let Some(sec) = &s.secret {
                J::default().put(
                    "secret",
                    J::default()
                        .inline(local_ref(&sec.local_object_reference))
                        .ms("items", &sec.items, key_to_path)
                        .pb("optional", sec.optional)
                        .done(),
                )
            } else if let Some(cm) = &s.config_map {
                J::default().put(
                    "configMap",
                    J::default()
                        .inline(local_ref(&cm.local_object_reference))
                        .ms("items", &cm.items, key_to_path)
                        .pb("optional", cm.optional)
                        .done(),
                )
            } else {
                return Err(refuse(&format!(
                    "a projected source of volume {name:?} other than serviceAccountToken, secret or configMap"
                )));
            };
            sources.push(one.done());
        }
        j.put(
            "projected",
            J::default()
                .put("sources", Value::Array(sources))
                .pi("defaultMode", p.default_mode)
                .done(),
        )
    } else {
        return Err(refuse(&format!(
            "volume {name:?} of a type other than emptyDir, secret, configMap, hostPath, persistentVolumeClaim or projected"
        )));
    };
    Ok(j.done())
}

fn container(c: &core::Container) -> Result<Value, ProtoError> {
    let name = c.name.clone().unwrap_or_default();
    let unconverted = [
        ("resizePolicy", !c.resize_policy.is_empty()),
        ("restartPolicyRules", !c.restart_policy_rules.is_empty()),
        ("volumeDevices", !c.volume_devices.is_empty()),
        ("lifecycle", c.lifecycle.is_some()),
    ];
    if let Some((field, _)) = unconverted.iter().find(|(_, set)| *set) {
        return Err(refuse(&format!("{field} in container {name:?}")));
    }
    if let Some(sc) = &c.security_context
        && (sc.se_linux_options.is_some()
            || sc.windows_options.is_some()
            || sc.app_armor_profile.is_some())
    {
        return Err(refuse(&format!(
            "securityContext SELinux, Windows or AppArmor options in container {name:?}"
        )));
    }
    let probes = [&c.liveness_probe, &c.readiness_probe, &c.startup_probe];
    if probes.iter().any(|p| {
        p.as_ref()
            .and_then(|p| p.handler.as_ref())
            .is_some_and(|h| h.grpc.is_some())
    }) {
        return Err(refuse(&format!("a grpc probe in container {name:?}")));
    }
    let resources = c.resources.as_ref().map(|r| {
        J::default()
            .r("limits", quantities(&r.limits))
            .r("requests", quantities(&r.requests))
            .ms("claims", &r.claims, |cl| {
                J::default()
                    .s("name", &cl.name)
                    .s("request", &cl.request)
                    .done()
            })
            .done()
    });
    Ok(J::default()
        .put("name", json!(name))
        .s("image", &c.image)
        .list("command", &c.command)
        .list("args", &c.args)
        .s("workingDir", &c.working_dir)
        .ms("ports", &c.ports, |p| {
            J::default()
                .s("name", &p.name)
                .i("hostPort", p.host_port)
                .i("containerPort", p.container_port)
                .s("protocol", &p.protocol)
                .s("hostIP", &p.host_ip)
                .done()
        })
        .ms("envFrom", &c.env_from, |e| {
            J::default()
                .s("prefix", &e.prefix)
                .m("configMapRef", &e.config_map_ref, |r| {
                    J::default()
                        .inline(local_ref(&r.local_object_reference))
                        .pb("optional", r.optional)
                        .done()
                })
                .m("secretRef", &e.secret_ref, |r| {
                    J::default()
                        .inline(local_ref(&r.local_object_reference))
                        .pb("optional", r.optional)
                        .done()
                })
                .done()
        })
        .ms("env", &c.env, env_var)
        .r("resources", resources)
        .ps("restartPolicy", &c.restart_policy)
        .ms("volumeMounts", &c.volume_mounts, |m| {
            J::default()
                .s("name", &m.name)
                .b("readOnly", m.read_only)
                .ps("recursiveReadOnly", &m.recursive_read_only)
                .s("mountPath", &m.mount_path)
                .s("subPath", &m.sub_path)
                .ps("mountPropagation", &m.mount_propagation)
                .s("subPathExpr", &m.sub_path_expr)
                .done()
        })
        .m("livenessProbe", &c.liveness_probe, probe)
        .m("readinessProbe", &c.readiness_probe, probe)
        .m("startupProbe", &c.startup_probe, probe)
        .s("terminationMessagePath", &c.termination_message_path)
        .s("terminationMessagePolicy", &c.termination_message_policy)
        .s("imagePullPolicy", &c.image_pull_policy)
        .m("securityContext", &c.security_context, |sc| {
            J::default()
                .m("capabilities", &sc.capabilities, |cap| {
                    J::default()
                        .list("add", &cap.add)
                        .list("drop", &cap.drop)
                        .done()
                })
                .pb("privileged", sc.privileged)
                .pi("runAsUser", sc.run_as_user)
                .pi("runAsGroup", sc.run_as_group)
                .pb("runAsNonRoot", sc.run_as_non_root)
                .pb("readOnlyRootFilesystem", sc.read_only_root_filesystem)
                .pb("allowPrivilegeEscalation", sc.allow_privilege_escalation)
                .ps("procMount", &sc.proc_mount)
                .m("seccompProfile", &sc.seccomp_profile, seccomp)
                .done()
        })
        .b("stdin", c.stdin)
        .b("stdinOnce", c.stdin_once)
        .b("tty", c.tty)
        .done())
}

fn env_var(e: &core::EnvVar) -> Value {
    J::default()
        .put("name", json!(e.name.clone().unwrap_or_default()))
        .s("value", &e.value)
        .m("valueFrom", &e.value_from, |v| {
            J::default()
                .m("fieldRef", &v.field_ref, |f| {
                    J::default()
                        .s("apiVersion", &f.api_version)
                        .s("fieldPath", &f.field_path)
                        .done()
                })
                .m("resourceFieldRef", &v.resource_field_ref, |r| {
                    J::default()
                        .s("containerName", &r.container_name)
                        .s("resource", &r.resource)
                        .r(
                            "divisor",
                            r.divisor
                                .as_ref()
                                .and_then(|q| q.string.clone())
                                .filter(|s| !s.is_empty() && s != "0")
                                .map(Value::from),
                        )
                        .done()
                })
                .m("configMapKeyRef", &v.config_map_key_ref, |r| {
                    J::default()
                        .inline(local_ref(&r.local_object_reference))
                        .s("key", &r.key)
                        .pb("optional", r.optional)
                        .done()
                })
                .m("secretKeyRef", &v.secret_key_ref, |r| {
                    J::default()
                        .inline(local_ref(&r.local_object_reference))
                        .s("key", &r.key)
                        .pb("optional", r.optional)
                        .done()
                })
                .done()
        })
        .done()
}

fn probe(p: &core::Probe) -> Value {
    let handler = p.handler.as_ref();
    J::default()
        .r(
            "exec",
            handler
                .and_then(|h| h.exec.as_ref())
                .map(|e| J::default().list("command", &e.command).done()),
        )
        .r(
            "httpGet",
            handler.and_then(|h| h.http_get.as_ref()).map(|g| {
                J::default()
                    .s("path", &g.path)
                    .m("port", &g.port, int_or_string)
                    .s("host", &g.host)
                    .s("scheme", &g.scheme)
                    .ms("httpHeaders", &g.http_headers, |h| {
                        J::default().s("name", &h.name).s("value", &h.value).done()
                    })
                    .done()
            }),
        )
        .r(
            "tcpSocket",
            handler.and_then(|h| h.tcp_socket.as_ref()).map(|t| {
                J::default()
                    .m("port", &t.port, int_or_string)
                    .s("host", &t.host)
                    .done()
            }),
        )
        .i("initialDelaySeconds", p.initial_delay_seconds)
        .i("timeoutSeconds", p.timeout_seconds)
        .i("periodSeconds", p.period_seconds)
        .i("successThreshold", p.success_threshold)
        .i("failureThreshold", p.failure_threshold)
        .pi(
            "terminationGracePeriodSeconds",
            p.termination_grace_period_seconds,
        )
        .done()
}
