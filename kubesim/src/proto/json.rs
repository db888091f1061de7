//! Building the JSON form of protobuf messages with the `omitempty` rules of the Go types,
//! and the `meta/v1` helpers every kind uses.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value, json};

/// A JSON object under construction, with the `omitempty` rules of the Go types.
#[derive(Default)]
pub(super) struct J(Map<String, Value>);

impl J {
    pub(super) fn put(mut self, k: &str, v: Value) -> Self {
        self.0.insert(k.to_string(), v);
        self
    }
    /// A non-pointer string: `""` is omitted.
    pub(super) fn s(self, k: &str, v: &Option<String>) -> Self {
        match v.as_deref() {
            Some(v) if !v.is_empty() => self.put(k, json!(v)),
            _ => self,
        }
    }
    /// A pointer string: kept when set, even to `""`.
    pub(super) fn ps(self, k: &str, v: &Option<String>) -> Self {
        match v {
            Some(v) => self.put(k, json!(v)),
            None => self,
        }
    }
    /// A non-pointer integer: `0` is omitted.
    pub(super) fn i<T: Into<i64>>(self, k: &str, v: Option<T>) -> Self {
        match v.map(Into::into) {
            Some(n) if n != 0 => self.put(k, json!(n)),
            _ => self,
        }
    }
    /// A pointer integer: kept when set, even to `0`.
    pub(super) fn pi<T: Into<i64>>(self, k: &str, v: Option<T>) -> Self {
        match v {
            Some(n) => self.put(k, json!(n.into())),
            None => self,
        }
    }
    /// A non-pointer bool: `false` is omitted.
    pub(super) fn b(self, k: &str, v: Option<bool>) -> Self {
        if v == Some(true) {
            self.put(k, json!(true))
        } else {
            self
        }
    }
    /// A pointer bool: kept when set.
    pub(super) fn pb(self, k: &str, v: Option<bool>) -> Self {
        match v {
            Some(b) => self.put(k, json!(b)),
            None => self,
        }
    }
    pub(super) fn list(self, k: &str, v: &[String]) -> Self {
        if v.is_empty() {
            self
        } else {
            self.put(k, json!(v))
        }
    }
    pub(super) fn map(self, k: &str, v: &BTreeMap<String, String>) -> Self {
        if v.is_empty() {
            self
        } else {
            self.put(k, json!(v))
        }
    }
    pub(super) fn bytes_map(self, k: &str, v: &BTreeMap<String, Vec<u8>>) -> Self {
        if v.is_empty() {
            return self;
        }
        let m: Map<String, Value> = v
            .iter()
            .map(|(k, b)| {
                (
                    k.clone(),
                    json!(base64::engine::general_purpose::STANDARD.encode(b)),
                )
            })
            .collect();
        self.put(k, Value::Object(m))
    }
    pub(super) fn m<T>(self, k: &str, v: &Option<T>, f: impl Fn(&T) -> Value) -> Self {
        match v {
            Some(v) => self.put(k, f(v)),
            None => self,
        }
    }
    pub(super) fn ms<T>(self, k: &str, v: &[T], f: impl Fn(&T) -> Value) -> Self {
        if v.is_empty() {
            self
        } else {
            self.put(k, Value::Array(v.iter().map(f).collect()))
        }
    }
    /// An already converted value, omitted when `None`.
    pub(super) fn r(self, k: &str, v: Option<Value>) -> Self {
        match v {
            Some(v) => self.put(k, v),
            None => self,
        }
    }
    /// Merge the fields of an inlined (embedded) struct.
    pub(super) fn inline(mut self, v: Value) -> Self {
        if let Value::Object(m) = v {
            self.0.extend(m);
        }
        self
    }
    pub(super) fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// `metav1.Time`: the zero time (an empty message) is `None`.
pub(super) fn time(t: &meta::Time) -> Option<Value> {
    let secs = t.seconds.unwrap_or(0);
    if secs == 0 && t.nanos.unwrap_or(0) == 0 {
        return None;
    }
    let ts = jiff::Timestamp::from_second(secs).ok()?;
    Some(json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

pub(super) fn object_meta(m: &meta::ObjectMeta) -> Value {
    J::default()
        .s("name", &m.name)
        .s("generateName", &m.generate_name)
        .s("namespace", &m.namespace)
        .s("selfLink", &m.self_link)
        .s("uid", &m.uid)
        .s("resourceVersion", &m.resource_version)
        .i("generation", m.generation)
        .r(
            "creationTimestamp",
            m.creation_timestamp.as_ref().and_then(time),
        )
        .r(
            "deletionTimestamp",
            m.deletion_timestamp.as_ref().and_then(time),
        )
        .pi(
            "deletionGracePeriodSeconds",
            m.deletion_grace_period_seconds,
        )
        .map("labels", &m.labels)
        .map("annotations", &m.annotations)
        .ms("ownerReferences", &m.owner_references, |o| {
            J::default()
                .s("apiVersion", &o.api_version)
                .s("kind", &o.kind)
                .s("name", &o.name)
                .s("uid", &o.uid)
                .pb("controller", o.controller)
                .pb("blockOwnerDeletion", o.block_owner_deletion)
                .done()
        })
        .list("finalizers", &m.finalizers)
        .ms("managedFields", &m.managed_fields, |f| {
            let fields = f
                .fields_v1
                .as_ref()
                .and_then(|v| v.raw.as_deref())
                .and_then(|raw| serde_json::from_slice::<Value>(raw).ok());
            J::default()
                .s("manager", &f.manager)
                .s("operation", &f.operation)
                .s("apiVersion", &f.api_version)
                .r("time", f.time.as_ref().and_then(time))
                .s("fieldsType", &f.fields_type)
                .r("fieldsV1", fields)
                .s("subresource", &f.subresource)
                .done()
        })
        .done()
}

pub(super) fn label_selector(s: &meta::LabelSelector) -> Value {
    J::default()
        .map("matchLabels", &s.match_labels)
        .ms("matchExpressions", &s.match_expressions, |e| {
            J::default()
                .s("key", &e.key)
                .s("operator", &e.operator)
                .list("values", &e.values)
                .done()
        })
        .done()
}

pub(super) fn int_or_string(v: &IntOrString) -> Value {
    if v.r#type == Some(1) {
        json!(v.str_val.clone().unwrap_or_default())
    } else {
        json!(v.int_val.unwrap_or(0))
    }
}

pub(super) fn quantities(
    m: &BTreeMap<String, k8s_pb::apimachinery::pkg::api::resource::Quantity>,
) -> Option<Value> {
    if m.is_empty() {
        return None;
    }
    Some(Value::Object(
        m.iter()
            .map(|(k, q)| (k.clone(), json!(q.string.clone().unwrap_or_default())))
            .collect(),
    ))
}

pub(super) fn local_ref(r: &Option<core::LocalObjectReference>) -> Value {
    J::default()
        .s("name", &r.as_ref().and_then(|r| r.name.clone()))
        .done()
}
