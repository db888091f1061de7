//! Admission of built-in kinds: the API server's defaulting (on every decoded object),
//! create-time preparation (generated selectors, initial status) and validation, with the
//! API server's field paths and messages.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, Cause};
use crate::resources::ResourceInfo;
use crate::structural;

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
        ("", "replicationcontrollers") => {
            // SetDefaults_ReplicationController: an empty selector, and empty object labels,
            // are the template's labels.
            let labels = obj["spec"]["template"]["metadata"]["labels"].clone();
            let empty = |v: &Value| v.as_object().is_none_or(|m| m.is_empty());
            if !empty(&labels) {
                if empty(&obj["spec"]["selector"]) {
                    obj_mut(obj, "spec").insert("selector".into(), labels.clone());
                }
                if empty(&obj["metadata"]["labels"]) {
                    obj_mut(obj, "metadata").insert("labels".into(), labels);
                }
            }
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            default_template(spec);
        }
        ("", "persistentvolumeclaims") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "volumeMode", json!("Filesystem"));
        }
        ("", "persistentvolumes") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            set_default(spec, "volumeMode", json!("Filesystem"));
        }
        ("networking.k8s.io", "networkpolicies") => default_network_policy(obj),
        ("admissionregistration.k8s.io", r) if r.ends_with("webhookconfigurations") => {
            default_webhooks(obj, r.starts_with("mutating"))
        }
        ("storage.k8s.io", "storageclasses") => {
            if let Some(m) = obj.as_object_mut() {
                set_default(m, "reclaimPolicy", json!("Delete"));
                set_default(m, "volumeBindingMode", json!("Immediate"));
            }
        }
        ("storage.k8s.io", "csidrivers") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "attachRequired", json!(true));
            set_default(spec, "podInfoOnMount", json!(false));
            set_default(spec, "storageCapacity", json!(false));
            set_default(spec, "requiresRepublish", json!(false));
            set_default(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
            set_default(spec, "volumeLifecycleModes", json!(["Persistent"]));
        }
        ("scheduling.k8s.io", "priorityclasses") => {
            if let Some(m) = obj.as_object_mut() {
                set_default(m, "preemptionPolicy", json!("PreemptLowerPriority"));
            }
        }
        ("autoscaling", "horizontalpodautoscalers") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "minReplicas", json!(1));
            if spec
                .get("metrics")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                spec.insert(
                    "metrics".into(),
                    json!([{"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80}}}]),
                );
            }
        }
        ("discovery.k8s.io", "endpointslices") => {
            if let Some(ports) = obj.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    set_default(p, "protocol", json!("TCP"));
                }
            }
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

/// NetworkPolicy: `policyTypes` from the rules present, TCP ports.
fn default_network_policy(obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    if spec.get("policyTypes").is_none_or(Value::is_null) {
        let mut types = vec![json!("Ingress")];
        if spec.get("egress").and_then(Value::as_array).is_some() {
            types.push(json!("Egress"));
        }
        spec.insert("policyTypes".into(), Value::Array(types));
    }
    for dir in ["ingress", "egress"] {
        for rule in spec
            .get_mut(dir)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for p in rule
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                set_default(p, "protocol", json!("TCP"));
            }
        }
    }
}

/// Webhook configurations: the admissionregistration/v1 defaults of each webhook.
fn default_webhooks(obj: &mut Value, mutating: bool) {
    for w in obj
        .get_mut("webhooks")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        set_default(w, "failurePolicy", json!("Fail"));
        set_default(w, "matchPolicy", json!("Equivalent"));
        set_default(w, "namespaceSelector", json!({}));
        set_default(w, "objectSelector", json!({}));
        set_default(w, "timeoutSeconds", json!(10));
        if mutating {
            set_default(w, "reinvocationPolicy", json!("Never"));
        }
        if let Some(svc) = w
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            set_default(svc, "port", json!(443));
        }
        for r in w
            .get_mut("rules")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            set_default(r, "scope", json!("*"));
        }
    }
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

/// An APIService (`ValidateAPIService`): named `<version>.<group>`, positive priorities.
fn validate_api_service(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = &obj["spec"];
    let s = |k: &str| spec[k].as_str().unwrap_or_default();
    let required = format!("{}.{}", s("version"), s("group"));
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if !name.is_empty() && name != required {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            &format!("must be `spec.version+\".\"+spec.group`: {required:?}"),
        ));
    }
    if s("version").is_empty() {
        causes.push(Cause::required("spec.version", ""));
    }
    for (k, max) in [("groupPriorityMinimum", 20000), ("versionPriority", 1000)] {
        let v = spec[k].as_i64().unwrap_or(0);
        if v <= 0 || v > max {
            let msg = format!("must be positive and less than {max}");
            causes.push(Cause::invalid(&format!("spec.{k}"), &json!(v), &msg));
        }
    }
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
        ("rbac.authorization.k8s.io", _) | ("apiregistration.k8s.io", "apiservices") => {
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
    if (info.group.as_str(), info.resource.as_str()) == ("apiregistration.k8s.io", "apiservices") {
        validate_api_service(obj, &mut causes);
    }
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
        if let Some(schema) = structural::schema_of(info) {
            causes.extend(structural::validate(schema, obj));
        }
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
            match spec["schedule"].as_str() {
                None | Some("") => causes.push(Cause::required("spec.schedule", "")),
                Some(s) => {
                    if let Err(e) = crate::cron::Schedule::parse(s) {
                        causes.push(Cause::invalid("spec.schedule", &spec["schedule"], &e));
                    }
                }
            }
            if let Some(p) = spec["concurrencyPolicy"].as_str()
                && !["Allow", "Forbid", "Replace"].contains(&p)
            {
                causes.push(Cause::not_supported(
                    "spec.concurrencyPolicy",
                    p,
                    &["Allow", "Forbid", "Replace"],
                ));
            }
            match spec["timeZone"].as_str() {
                None => {}
                Some("") => causes.push(Cause::invalid(
                    "spec.timeZone",
                    &spec["timeZone"],
                    "timeZone must be nil or non-empty string",
                )),
                Some(tz) if tz.eq_ignore_ascii_case("local") => causes.push(Cause::invalid(
                    "spec.timeZone",
                    &spec["timeZone"],
                    "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
                )),
                Some(tz) => {
                    if let Err(e) = crate::cron::time_zone(Some(tz)) {
                        causes.push(Cause::invalid("spec.timeZone", &spec["timeZone"], &e));
                    }
                }
            }
            validate_job_spec(
                &spec["jobTemplate"]["spec"],
                "spec.jobTemplate.spec",
                &mut causes,
            );
        }
        ("policy", "poddisruptionbudgets") => validate_pdb(spec, &mut causes),
        ("networking.k8s.io", "ingresses") => validate_ingress(spec, &mut causes),
        ("networking.k8s.io", "ingressclasses") => {
            if spec["controller"].as_str().is_none_or(str::is_empty) {
                causes.push(Cause::required("spec.controller", ""));
            }
            if let Some(old) = old
                && old["spec"]["controller"] != spec["controller"]
            {
                causes.push(Cause::invalid(
                    "spec.controller",
                    &spec["controller"],
                    "field is immutable",
                ));
            }
        }
        ("admissionregistration.k8s.io", _) => validate_webhooks(obj, &mut causes),
        ("storage.k8s.io", "storageclasses") => {
            if obj["provisioner"].as_str().is_none_or(str::is_empty) {
                causes.push(Cause::required("provisioner", ""));
            }
            if let Some(old) = old {
                for field in ["parameters", "provisioner"] {
                    if obj.get(field) != old.get(field) {
                        causes.push(Cause::forbidden(
                            field,
                            &format!("updates to {field} are forbidden."),
                        ));
                    }
                }
            }
        }
        ("scheduling.k8s.io", "priorityclasses") => validate_priority_class(obj, old, &mut causes),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            causes.extend(structural::validate_crd(obj));
        }
        ("autoscaling", "horizontalpodautoscalers") => validate_hpa(spec, &mut causes),
        ("discovery.k8s.io", "endpointslices") => {
            let ty = obj["addressType"].as_str().unwrap_or_default();
            if ty.is_empty() {
                causes.push(Cause::required("addressType", ""));
            } else if !["IPv4", "IPv6", "FQDN"].contains(&ty) {
                causes.push(Cause::not_supported(
                    "addressType",
                    ty,
                    &["FQDN", "IPv4", "IPv6"],
                ));
            }
            if let Some(old) = old
                && old["addressType"] != obj["addressType"]
            {
                causes.push(Cause::invalid(
                    "addressType",
                    &obj["addressType"],
                    "field is immutable",
                ));
            }
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
    // Ephemeral containers may be added (`pods/ephemeralcontainers`), never changed or removed.
    let old_eph = old["ephemeralContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(n) = new["ephemeralContainers"].as_array()
        && old_eph.iter().all(|c| n.contains(c))
    {
        candidate["ephemeralContainers"] = json!(n);
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

/// `ValidatePositiveIntOrPercent` and `IsNotMoreThan100Percent`.
fn int_or_percent(v: &Value, path: &str, causes: &mut Vec<Cause>) {
    match v {
        Value::Null => {}
        Value::Number(n) => {
            if n.as_i64().is_none_or(|n| n < 0) {
                causes.push(Cause::invalid(
                    path,
                    v,
                    "must be greater than or equal to 0",
                ));
            }
        }
        Value::String(s) => {
            let digits = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
            match digits {
                None => causes.push(Cause::invalid(
                    path,
                    v,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )),
                Some(d) if d.parse::<u64>().map_or(true, |n| n > 100) => {
                    causes.push(Cause::invalid(path, v, "must not be greater than 100%"))
                }
                Some(_) => {}
            }
        }
        _ => causes.push(Cause::invalid(
            path,
            v,
            "must be an integer or a percentage",
        )),
    }
}

/// `ValidatePodDisruptionBudgetSpec`: neither `minAvailable` nor `maxUnavailable` is
/// required, but both together are invalid.
fn validate_pdb(spec: &Value, causes: &mut Vec<Cause>) {
    let min = spec.get("minAvailable").unwrap_or(&Value::Null);
    let max = spec.get("maxUnavailable").unwrap_or(&Value::Null);
    if !min.is_null() && !max.is_null() {
        causes.push(Cause::invalid(
            "spec",
            spec,
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    int_or_percent(min, "spec.minAvailable", causes);
    int_or_percent(max, "spec.maxUnavailable", causes);
}

/// Ingress: a default backend or rules; every HTTP path with a `pathType` and one backend.
fn validate_ingress(spec: &Value, causes: &mut Vec<Cause>) {
    let rules = spec["rules"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if spec.get("defaultBackend").is_none_or(Value::is_null) && rules.is_empty() {
        causes.push(Cause::invalid(
            "spec",
            &json!("[]"),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        let paths = rule["http"]["paths"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (j, p) in paths.iter().enumerate() {
            let at = format!("spec.rules[{i}].http.paths[{j}]");
            match p["pathType"].as_str() {
                None => causes.push(Cause::required(
                    &format!("{at}.pathType"),
                    "pathType must be specified",
                )),
                Some(t) if !["Exact", "Prefix", "ImplementationSpecific"].contains(&t) => causes
                    .push(Cause::not_supported(
                        &format!("{at}.pathType"),
                        t,
                        &["Exact", "ImplementationSpecific", "Prefix"],
                    )),
                Some(_) => {}
            }
            let backend = &p["backend"];
            let service = backend.get("service").is_some_and(|v| !v.is_null());
            let resource = backend.get("resource").is_some_and(|v| !v.is_null());
            if service == resource {
                causes.push(Cause::invalid(
                    &format!("{at}.backend"),
                    &json!(""),
                    "cannot set both resource and service backends",
                ));
            }
        }
    }
}

/// Webhook configurations: the shape the API server (and every client reading them) relies
/// on: fully qualified unique names, one of `url` / `service`, `sideEffects` and
/// `admissionReviewVersions`.
fn validate_webhooks(obj: &Value, causes: &mut Vec<Cause>) {
    let mut names: Vec<&str> = Vec::new();
    for (i, w) in obj["webhooks"].as_array().into_iter().flatten().enumerate() {
        let at = format!("webhooks[{i}]");
        let name = w["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(&format!("{at}.name"), ""));
        } else if !is_subdomain(name) || name.split('.').count() < 3 {
            causes.push(Cause::invalid(
                &format!("{at}.name"),
                &w["name"],
                "should be a domain with at least three segments separated by dots",
            ));
        } else if names.contains(&name) {
            causes.push(Cause::new(
                "FieldValueDuplicate",
                &format!("{at}.name"),
                format!("Duplicate value: {name:?}"),
            ));
        }
        names.push(name);
        let cc = &w["clientConfig"];
        let url = cc.get("url").is_some_and(|v| !v.is_null());
        let service = cc.get("service").is_some_and(|v| !v.is_null());
        if url == service {
            causes.push(Cause::required(
                &format!("{at}.clientConfig"),
                "exactly one of url or service is required",
            ));
        }
        if service && cc["service"]["name"].as_str().is_none_or(str::is_empty) {
            causes.push(Cause::required(
                &format!("{at}.clientConfig.service.name"),
                "service name is required",
            ));
        }
        match w["sideEffects"].as_str() {
            None => causes.push(Cause::required(
                &format!("{at}.sideEffects"),
                "must specify one of None, NoneOnDryRun",
            )),
            Some("None" | "NoneOnDryRun") => {}
            Some(other) => causes.push(Cause::not_supported(
                &format!("{at}.sideEffects"),
                other,
                &["None", "NoneOnDryRun"],
            )),
        }
        let versions = w["admissionReviewVersions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if !versions.iter().any(|v| v == "v1" || v == "v1beta1") {
            causes.push(Cause::required(
                &format!("{at}.admissionReviewVersions"),
                "must specify one of v1, v1beta1",
            ));
        }
    }
}

/// The built-in PriorityClasses every cluster has; other names may not use `system-`.
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i64); 2] = [
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

/// `ValidatePriorityClass`: `system-` names are reserved, user values at most one billion,
/// value and preemption policy immutable.
fn validate_priority_class(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let value = obj["value"].as_i64().unwrap_or(0);
    let system = SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name);
    match system {
        Some((_, v)) if *v != value => causes.push(Cause::forbidden(
            "metadata.name",
            &format!("{name:?} is a system priority class; its value must be {v}"),
        )),
        Some(_) => {}
        None if name.starts_with("system-") => causes.push(Cause::forbidden(
            "metadata.name",
            "priority class names with 'system-' prefix are reserved",
        )),
        None if value > 1_000_000_000 => causes.push(Cause::forbidden(
            "value",
            "maximum allowed value of a user defined priority is 1000000000",
        )),
        None => {}
    }
    if let Some(old) = old {
        if old["value"] != obj["value"] {
            causes.push(Cause::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        if old["preemptionPolicy"] != obj["preemptionPolicy"] {
            causes.push(Cause::invalid(
                "preemptionPolicy",
                &obj["preemptionPolicy"],
                "field is immutable",
            ));
        }
    }
}

/// HorizontalPodAutoscaler: a scale target and sane replica bounds.
fn validate_hpa(spec: &Value, causes: &mut Vec<Cause>) {
    for f in ["kind", "name"] {
        if spec["scaleTargetRef"][f].as_str().is_none_or(str::is_empty) {
            causes.push(Cause::required(&format!("spec.scaleTargetRef.{f}"), ""));
        }
    }
    let min = spec["minReplicas"].as_i64().unwrap_or(1);
    let max = spec["maxReplicas"].as_i64().unwrap_or(0);
    if min < 1 {
        causes.push(Cause::invalid(
            "spec.minReplicas",
            &spec["minReplicas"],
            "must be greater than or equal to 1",
        ));
    }
    if max < 1 {
        causes.push(Cause::invalid(
            "spec.maxReplicas",
            &spec["maxReplicas"],
            "must be greater than or equal to 1",
        ));
    } else if max < min {
        causes.push(Cause::invalid(
            "spec.maxReplicas",
            &spec["maxReplicas"],
            "must be greater than or equal to `minReplicas`",
        ));
    }
}
