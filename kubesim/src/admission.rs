//! Admission of built-in kinds: the API server's defaulting (on every decoded object),
//! create-time preparation (generated selectors, initial status) and validation, with the
//! API server's field paths and messages.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, Cause};
use crate::resources::ResourceInfo;

const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.get(key).is_some_and(Value::is_object) {
        v[key] = json!({});
    }
    v[key].as_object_mut().expect("just made an object")
}

fn set_default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value);
    }
}

/// Defaults applied to every decoded object of a built-in kind (create, update, patch result).
/// Fails with 400 when the body cannot be decoded (e.g. Secret data that is not base64).
pub fn default_object(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    if info.custom {
        return Ok(());
    }
    match (info.group.as_str(), info.resource.as_str()) {
        ("", "pods") => default_pod_spec(obj_mut(obj, "spec"), true),
        ("", "secrets") => default_secret(obj)?,
        ("", "services") => default_service(obj),
        ("", "namespaces") => {
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !name.is_empty() {
                let labels = obj_mut(obj, "metadata")
                    .entry("labels")
                    .or_insert(json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), Value::String(name));
                }
            }
        }
        ("batch", "jobs") => default_job_spec(obj_mut(obj, "spec")),
        ("batch", "cronjobs") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "concurrencyPolicy", json!("Allow"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "successfulJobsHistoryLimit", json!(3));
            set_default(spec, "failedJobsHistoryLimit", json!(1));
            let jt = spec.entry("jobTemplate").or_insert(json!({}));
            default_job_spec(obj_mut(jt, "spec"));
        }
        ("apps", "deployments") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            );
            if spec["strategy"]["type"] == "RollingUpdate" {
                let ru = obj_mut(spec.get_mut("strategy").expect("set"), "rollingUpdate");
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            default_template(spec);
        }
        ("apps", "replicasets") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            default_template(spec);
        }
        ("apps", "statefulsets") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            set_default(spec, "revisionHistoryLimit", json!(10));
            default_template(spec);
        }
        ("apps", "daemonsets") => {
            let spec = obj_mut(obj, "spec");
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
            set_default(spec, "revisionHistoryLimit", json!(10));
            default_template(spec);
        }
        _ => {}
    }
    Ok(())
}

fn default_template(spec: &mut Map<String, Value>) {
    let t = spec.entry("template").or_insert(json!({}));
    default_pod_spec(obj_mut(t, "spec"), false);
}

fn default_job_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completions", json!(1));
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    default_template(spec);
}

fn default_pod_spec(spec: &mut Map<String, Value>, pod: bool) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    if pod {
        set_default(spec, "serviceAccountName", json!("default"));
        let sa = spec["serviceAccountName"].clone();
        set_default(spec, "serviceAccount", sa);
        set_default(spec, "enableServiceLinks", json!(true));
        set_default(spec, "priority", json!(0));
        set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                set_default(c, "resources", json!({}));
                let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
                let last = image.rsplit('/').next().unwrap_or_default();
                let policy = if image.contains('@') {
                    "IfNotPresent"
                } else {
                    match last.split_once(':') {
                        None => "Always",
                        Some((_, "latest")) => "Always",
                        Some(_) => "IfNotPresent",
                    }
                };
                set_default(c, "imagePullPolicy", json!(policy));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

fn default_secret(obj: &mut Value) -> Result<(), ApiError> {
    let Some(m) = obj.as_object_mut() else {
        return Ok(());
    };
    set_default(m, "type", json!("Opaque"));
    if let Some(Value::Object(data)) = m.get("data") {
        for (k, v) in data {
            let s = v.as_str().unwrap_or_default();
            if let Err(e) = base64::engine::general_purpose::STANDARD.decode(s) {
                return Err(ApiError::bad_request(format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data[{k:?}]: {e}"
                )));
            }
        }
    }
    if let Some(Value::Object(sd)) = m.remove("stringData") {
        let data = m.entry("data").or_insert(json!({}));
        if !data.is_object() {
            *data = json!({});
        }
        let data = data.as_object_mut().expect("object");
        for (k, v) in sd {
            let s = v.as_str().unwrap_or_default();
            data.insert(
                k,
                Value::String(base64::engine::general_purpose::STANDARD.encode(s)),
            );
        }
    }
    Ok(())
}

fn default_service(obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    if spec["type"] != "ExternalName" {
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                set_default(p, "targetPort", port);
            }
        }
    }
    let status = obj_mut(obj, "status");
    set_default(status, "loadBalancer", json!({}));
}

/// Create-time preparation after defaulting: generated Job selectors and labels, the initial
/// status of Pods, Namespaces and CustomResourceDefinitions. `uid` is the new object's uid.
pub fn prepare_create(info: &ResourceInfo, obj: &mut Value, uid: &str) {
    if info.custom {
        return;
    }
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match (info.group.as_str(), info.resource.as_str()) {
        ("", "pods") => {
            let status = obj_mut(obj, "status");
            set_default(status, "phase", json!("Pending"));
            set_default(status, "qosClass", json!("BestEffort"));
        }
        ("", "namespaces") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "finalizers", json!(["kubernetes"]));
            obj["status"] = json!({"phase": "Active"});
        }
        ("batch", "jobs") => {
            let manual = obj["spec"]["manualSelector"].as_bool() == Some(true);
            if !manual {
                let labels = json!({CONTROLLER_UID: uid, JOB_NAME: name, "controller-uid": uid, "job-name": name});
                obj["spec"]["selector"] = json!({"matchLabels": {CONTROLLER_UID: uid}});
                let tmeta = obj_mut(
                    obj_mut(obj, "spec").entry("template").or_insert(json!({})),
                    "metadata",
                );
                let tlabels = tmeta.entry("labels").or_insert(json!({}));
                if !tlabels.is_object() {
                    *tlabels = json!({});
                }
                let tl = tlabels.as_object_mut().expect("object");
                for (k, v) in labels.as_object().expect("object") {
                    tl.insert(k.clone(), v.clone());
                }
                let template_labels = Value::Object(tl.clone());
                let meta = obj_mut(obj, "metadata");
                if meta
                    .get("labels")
                    .is_none_or(|l| l.as_object().is_none_or(Map::is_empty))
                {
                    meta.insert("labels".into(), template_labels);
                }
            }
            obj["status"] = json!({});
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let names = obj["spec"]["names"].clone();
            let versions: Vec<Value> = obj["spec"]["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .map(|v| v["name"].clone())
                .collect();
            let now = crate::time::now();
            obj["status"] = json!({
                "acceptedNames": names,
                "storedVersions": versions,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
            });
        }
        _ => {}
    }
}

const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Why a label or annotation key is not a qualified name (`[prefix/]name`).
fn key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Some("prefix part must be non-empty".into());
        }
        if !is_subdomain(p) {
            return Some(format!("prefix part {SUBDOMAIN_MSG}"));
        }
    }
    if name.is_empty() {
        return Some("name part must be non-empty".into());
    }
    if name.len() > 63 {
        return Some("name part must be no more than 63 characters".into());
    }
    (!is_qualified_part(name) || name.contains('/')).then(|| NAME_PART_MSG.to_string())
}

/// Label keys and values, annotation keys and the annotations' total size.
fn validate_meta_maps(meta: &Value, path: &str, causes: &mut Vec<Cause>) {
    let field = format!("{path}.labels");
    for (k, v) in meta["labels"].as_object().into_iter().flatten() {
        if let Some(why) = key_problem(k) {
            causes.push(Cause::invalid(&field, &json!(k), &why));
        }
        let value = v.as_str().unwrap_or_default();
        if value.len() > 63 {
            causes.push(Cause::invalid(
                &field,
                v,
                "must be no more than 63 characters",
            ));
        } else if !value.is_empty() && !is_qualified_part(value) {
            causes.push(Cause::invalid(&field, v, LABEL_VALUE_MSG));
        }
    }
    let field = format!("{path}.annotations");
    let mut total = 0;
    for (k, v) in meta["annotations"].as_object().into_iter().flatten() {
        if let Some(why) = key_problem(&k.to_lowercase()) {
            causes.push(Cause::invalid(&field, &json!(k), &why));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > MAX_ANNOTATIONS_BYTES {
        causes.push(Cause::new(
            "FieldValueTooLong",
            &field,
            format!("Too long: may not be more than {MAX_ANNOTATIONS_BYTES} bytes"),
        ));
    }
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// RFC 1123 subdomain (object names of most kinds).
pub fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

fn validate_name(info: &ResourceInfo, name: &str) -> Option<Cause> {
    let field = "metadata.name";
    let v = Value::String(name.to_string());
    match (info.group.as_str(), info.resource.as_str()) {
        ("", "namespaces") => {
            if !is_label(name) {
                return Some(Cause::invalid(field, &v, LABEL_MSG));
            }
        }
        ("", "services") => {
            if !is_label(name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
                return Some(Cause::invalid(field, &v, DNS1035_MSG));
            }
        }
        ("rbac.authorization.k8s.io", _) => {
            if name == "." || name == ".." {
                return Some(Cause::invalid(field, &v, &format!("may not be '{name}'")));
            }
            if let Some(c) = name.chars().find(|c| *c == '/' || *c == '%') {
                return Some(Cause::invalid(field, &v, &format!("may not contain '{c}'")));
            }
        }
        _ => {
            if !is_subdomain(name) {
                return Some(Cause::invalid(field, &v, SUBDOMAIN_MSG));
            }
        }
    }
    None
}

/// Validation of a create (`old` None) or an update. Returns the causes of a 422.
pub fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_meta_maps(&obj["metadata"], "metadata", &mut causes);
    for (path, meta) in [
        (
            "spec.template.metadata",
            &obj["spec"]["template"]["metadata"],
        ),
        (
            "spec.jobTemplate.spec.template.metadata",
            &obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"],
        ),
    ] {
        if meta.is_object() {
            validate_meta_maps(meta, path, &mut causes);
        }
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if old.is_none() {
        if name.is_empty() {
            causes.push(Cause::required(
                "metadata.name",
                "name or generateName is required",
            ));
            return causes;
        }
        if let Some(c) = validate_name(info, name) {
            causes.push(c);
        }
    }
    if let Some(old) = old {
        let old_fin: Vec<&Value> = old["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        if old["metadata"].get("deletionTimestamp").is_some() {
            let added: Vec<String> = obj["metadata"]["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| !old_fin.contains(f))
                .filter_map(|f| f.as_str().map(|s| format!("{s:?}")))
                .collect();
            if !added.is_empty() {
                causes.push(Cause::forbidden(
                    "metadata.finalizers",
                    &format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                        added.join(", ")
                    ),
                ));
            }
        }
    }
    if info.custom {
        return causes;
    }
    let spec = &obj["spec"];
    match (info.group.as_str(), info.resource.as_str()) {
        ("", "pods") => {
            validate_pod_spec(spec, "spec", &mut causes);
            if let Some(old) = old
                && !pod_update_allowed(&old["spec"], spec)
            {
                causes.push(Cause::forbidden("spec", POD_UPDATE_MSG));
            }
        }
        ("", "secrets") | ("", "configmaps") => {
            if let Some(c) = data_too_long(info, obj) {
                causes.push(c);
            }
            if let Some(old) = old
                && old["immutable"].as_bool() == Some(true)
            {
                for field in ["data", "binaryData", "stringData"] {
                    if obj.get(field).unwrap_or(&Value::Null)
                        != old.get(field).unwrap_or(&Value::Null)
                    {
                        causes.push(Cause::forbidden(
                            field,
                            "field is immutable when `immutable` is set",
                        ));
                    }
                }
                if obj["immutable"].as_bool() != Some(true) {
                    causes.push(Cause::forbidden(
                        "immutable",
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
        }
        ("batch", "jobs") => {
            validate_job_spec(spec, "spec", &mut causes);
            if let Some(old) = old {
                if old["spec"]["template"] != spec["template"] {
                    causes.push(Cause::invalid(
                        "spec.template",
                        &json!({}),
                        "field is immutable",
                    ));
                }
                if old["spec"]["selector"] != spec["selector"] {
                    causes.push(Cause::invalid(
                        "spec.selector",
                        &json!({}),
                        "field is immutable",
                    ));
                }
                if old["spec"]["completions"] != spec["completions"] {
                    causes.push(Cause::invalid(
                        "spec.completions",
                        &spec["completions"],
                        "field is immutable",
                    ));
                }
            }
        }
        ("batch", "cronjobs") => {
            if spec["schedule"].as_str().is_none_or(str::is_empty) {
                causes.push(Cause::required("spec.schedule", ""));
            }
            validate_job_spec(
                &spec["jobTemplate"]["spec"],
                "spec.jobTemplate.spec",
                &mut causes,
            );
        }
        ("apps", "deployments")
        | ("apps", "replicasets")
        | ("apps", "statefulsets")
        | ("apps", "daemonsets") => {
            validate_workload(spec, &mut causes);
            if let Some(old) = old
                && old["spec"]["selector"] != spec["selector"]
            {
                causes.push(Cause::invalid(
                    "spec.selector",
                    &json!({}),
                    "field is immutable",
                ));
            }
        }
        _ => {}
    }
    causes
}

/// Secrets and ConfigMaps hold at most 1 MiB of data.
const MAX_DATA_BYTES: usize = 1024 * 1024;

fn data_too_long(info: &ResourceInfo, obj: &Value) -> Option<Cause> {
    let entries = |field: &str, decode: bool| -> usize {
        obj[field]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let s = v.as_str().unwrap_or_default();
                let len = if decode {
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map(|b| b.len())
                        .unwrap_or(s.len())
                } else {
                    s.len()
                };
                k.len() + len
            })
            .sum()
    };
    let (size, field) = if info.resource == "secrets" {
        (entries("data", true), "data")
    } else {
        (entries("data", false) + entries("binaryData", true), "[]")
    };
    (size > MAX_DATA_BYTES).then(|| {
        Cause::new(
            "FieldValueTooLong",
            field,
            format!("Too long: may not be more than {MAX_DATA_BYTES} bytes"),
        )
    })
}

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Whether a pod spec update only touches what the API server lets change: container images,
/// activeDeadlineSeconds, tolerations and terminationGracePeriodSeconds. Fields the server
/// or the kubelet set (nodeName) may be filled in once.
fn pod_update_allowed(old: &Value, new: &Value) -> bool {
    let mut candidate = old.clone();
    for list in ["containers", "initContainers"] {
        let (Some(o), n) = (
            candidate.get_mut(list).and_then(Value::as_array_mut),
            new[list].as_array(),
        ) else {
            if new.get(list).is_some() != old.get(list).is_some() {
                return false;
            }
            continue;
        };
        let Some(n) = n.filter(|n| n.len() == o.len()) else {
            return false;
        };
        for (oc, nc) in o.iter_mut().zip(n) {
            oc["image"] = nc["image"].clone();
        }
    }
    for field in [
        "activeDeadlineSeconds",
        "tolerations",
        "terminationGracePeriodSeconds",
    ] {
        match new.get(field) {
            Some(v) => candidate[field] = v.clone(),
            None => {
                if let Some(m) = candidate.as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    if old["nodeName"].as_str().is_none_or(str::is_empty)
        && let Some(n) = new.get("nodeName")
    {
        candidate["nodeName"] = n.clone();
    }
    &candidate == new
}

fn validate_workload(spec: &Value, causes: &mut Vec<Cause>) {
    let Some(sel) = spec.get("selector").filter(|s| s.is_object()) else {
        causes.push(Cause::required("spec.selector", ""));
        return;
    };
    let empty = sel["matchLabels"].as_object().is_none_or(Map::is_empty)
        && sel["matchExpressions"].as_array().is_none_or(Vec::is_empty);
    if empty {
        causes.push(Cause::invalid(
            "spec.selector",
            &json!({}),
            "empty selector is invalid for deployment",
        ));
    } else if let Ok(s) = crate::selector::LabelSelector::from_json(sel) {
        let tmpl = &spec["template"];
        if !s.matches(tmpl) {
            let labels = tmpl["metadata"]["labels"].clone();
            causes.push(Cause::invalid(
                "spec.template.metadata.labels",
                &Value::String(labels_string(&labels)),
                "`selector` does not match template `labels`",
            ));
        }
    }
    validate_pod_spec(&spec["template"]["spec"], "spec.template.spec", causes);
}

fn labels_string(labels: &Value) -> String {
    let pairs: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}:{:?}", v.as_str().unwrap_or_default()))
        .collect();
    format!("map[string]string{{{}}}", pairs.join(", "))
}

fn validate_job_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let tpath = format!("{path}.template.spec");
    validate_pod_spec(&spec["template"]["spec"], &tpath, causes);
    let rp = spec["template"]["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or("Always");
    if rp != "OnFailure" && rp != "Never" {
        causes.push(Cause::not_supported(
            &format!("{tpath}.restartPolicy"),
            rp,
            &["OnFailure", "Never"],
        ));
    }
    for f in ["backoffLimit", "completions", "parallelism"] {
        if let Some(n) = spec[f].as_i64()
            && n < 0
        {
            causes.push(Cause::invalid(
                &format!("{path}.{f}"),
                &spec[f],
                "must be greater than or equal to 0",
            ));
        }
    }
}

fn validate_pod_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let containers = spec["containers"].as_array();
    if containers.is_none_or(Vec::is_empty) {
        causes.push(Cause::required(&format!("{path}.containers"), ""));
    }
    let mut seen = Vec::new();
    for (list, items) in [
        ("containers", containers),
        ("initContainers", spec["initContainers"].as_array()),
    ] {
        for (i, c) in items.into_iter().flatten().enumerate() {
            let cpath = format!("{path}.{list}[{i}]");
            match c["name"].as_str() {
                None | Some("") => causes.push(Cause::required(&format!("{cpath}.name"), "")),
                Some(n) => {
                    if !is_label(n) {
                        causes.push(Cause::invalid(
                            &format!("{cpath}.name"),
                            &c["name"],
                            LABEL_MSG,
                        ));
                    } else if seen.contains(&n) {
                        causes.push(Cause::new(
                            "FieldValueDuplicate",
                            &format!("{cpath}.name"),
                            format!("Duplicate value: {n:?}"),
                        ));
                    }
                    seen.push(n);
                }
            }
            if c["image"].as_str().is_none_or(str::is_empty) {
                causes.push(Cause::required(&format!("{cpath}.image"), ""));
            }
        }
    }
    let rp = spec["restartPolicy"].as_str().unwrap_or("Always");
    if !["Always", "OnFailure", "Never"].contains(&rp) {
        causes.push(Cause::not_supported(
            &format!("{path}.restartPolicy"),
            rp,
            &["Always", "OnFailure", "Never"],
        ));
    }
}
