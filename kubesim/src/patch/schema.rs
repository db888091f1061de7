//! Per-kind merge metadata: which lists merge by key, which are sets of primitives, and
//! which maps are replaced whole by apply. One compact table keyed by field path serves
//! both strategic merge patch and server-side apply.
//!
//! Paths name fields only; list items add no segment, so `spec.containers.env` is the
//! `env` list of every container. A list that is not in the table is atomic (replaced
//! whole), a map that is not in the table merges key by key.

/// How a field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// A list of objects identified by these key fields (`listType=map`). Strategic merge
    /// patch merges on the first key (`patchMergeKey`); apply identifies items by all.
    Keyed(&'static [&'static str]),
    /// A list of primitives merged as a set (`listType=set`, `patchStrategy=merge`).
    Set,
    /// A map or struct that apply owns and replaces as a whole (`mapType=atomic`,
    /// `structType=atomic`). Strategic merge patch still merges it key by key.
    AtomicMap,
}

use Strategy::{AtomicMap, Keyed, Set};

type Rules = &'static [(&'static str, Strategy)];

const OBJECT_META: Rules = &[("finalizers", Set), ("ownerReferences", Keyed(&["uid"]))];

const CONTAINER: Rules = &[
    ("env", Keyed(&["name"])),
    ("env.valueFrom.configMapKeyRef", AtomicMap),
    ("env.valueFrom.secretKeyRef", AtomicMap),
    ("env.valueFrom.fieldRef", AtomicMap),
    ("env.valueFrom.resourceFieldRef", AtomicMap),
    ("ports", Keyed(&["containerPort", "protocol"])),
    ("volumeMounts", Keyed(&["mountPath"])),
    ("volumeDevices", Keyed(&["devicePath"])),
];

const POD_SPEC: Rules = &[
    ("containers", Keyed(&["name"])),
    ("initContainers", Keyed(&["name"])),
    ("ephemeralContainers", Keyed(&["name"])),
    ("volumes", Keyed(&["name"])),
    ("imagePullSecrets", Keyed(&["name"])),
    ("hostAliases", Keyed(&["ip"])),
];

const CONDITIONS: Rules = &[("conditions", Keyed(&["type"]))];
const SELECTOR: Rules = &[("selector", AtomicMap)];
const SERVICE_SPEC: Rules = &[
    ("ports", Keyed(&["port", "protocol"])),
    ("selector", AtomicMap),
];
const SERVICE_ACCOUNT: Rules = &[("secrets", Keyed(&["name"]))];
const WEBHOOKS: Rules = &[("webhooks", Keyed(&["name"]))];

/// A reusable piece of schema mounted at a path prefix.
#[derive(Clone, Copy)]
enum Fragment {
    Rules(Rules),
    PodSpec,
    PodTemplate,
}

use Fragment::{PodSpec, PodTemplate};

/// Keys default to a value when absent (so `ports` items without `protocol` still key).
const KEY_DEFAULTS: &[(&str, &str)] = &[("protocol", "TCP")];

/// Fragments mounted at dotted path prefixes (`""` is the object root).
type Mounts = &'static [(&'static str, Fragment)];

/// Built-in kinds with list or map rules beyond `metadata`: (group, kind, mounts).
const KINDS: &[(&str, &str, Mounts)] = &[
    (
        "",
        "Pod",
        &[("spec", PodSpec), ("status", Fragment::Rules(CONDITIONS))],
    ),
    ("", "PodTemplate", &[("template", PodTemplate)]),
    (
        "",
        "ReplicationController",
        &[
            ("spec.template", PodTemplate),
            ("status", Fragment::Rules(CONDITIONS)),
        ],
    ),
    (
        "",
        "Service",
        &[
            ("spec", Fragment::Rules(SERVICE_SPEC)),
            ("status", Fragment::Rules(CONDITIONS)),
        ],
    ),
    (
        "",
        "ServiceAccount",
        &[("", Fragment::Rules(SERVICE_ACCOUNT))],
    ),
    ("", "Namespace", &[("status", Fragment::Rules(CONDITIONS))]),
    ("", "Node", &[("status", Fragment::Rules(CONDITIONS))]),
    (
        "",
        "PersistentVolumeClaim",
        &[("status", Fragment::Rules(CONDITIONS))],
    ),
    ("apps", "Deployment", WORKLOAD),
    ("apps", "ReplicaSet", WORKLOAD),
    ("apps", "StatefulSet", WORKLOAD),
    ("apps", "DaemonSet", WORKLOAD),
    ("batch", "Job", WORKLOAD),
    (
        "batch",
        "CronJob",
        &[
            ("spec.jobTemplate.metadata", Fragment::Rules(OBJECT_META)),
            ("spec.jobTemplate.spec", Fragment::Rules(SELECTOR)),
            ("spec.jobTemplate.spec.template", PodTemplate),
        ],
    ),
    (
        "policy",
        "PodDisruptionBudget",
        &[
            ("spec", Fragment::Rules(SELECTOR)),
            ("status", Fragment::Rules(CONDITIONS)),
        ],
    ),
    (
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        &[("status", Fragment::Rules(CONDITIONS))],
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        &[("", Fragment::Rules(WEBHOOKS))],
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        &[("", Fragment::Rules(WEBHOOKS))],
    ),
];

const WORKLOAD: Mounts = &[
    ("spec", Fragment::Rules(SELECTOR)),
    ("spec.template", PodTemplate),
    ("status", Fragment::Rules(CONDITIONS)),
];

/// API groups served by the Kubernetes API server itself; any other group is a custom
/// resource, for which strategic merge patch is not available.
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
];

/// The group of an `apiVersion` (`apps/v1` -> `apps`, `v1` -> ``).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// Whether objects of this `apiVersion` are built-in types (not custom resources).
pub(crate) fn is_builtin(api_version: &str) -> bool {
    BUILTIN_GROUPS.contains(&group_of(api_version))
}

/// The merge rules of one kind, expanded to full field paths.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    rules: Vec<(Vec<&'static str>, Strategy)>,
}

impl Schema {
    /// Rules for `apiVersion`/`kind`. Every kind, custom resources included, gets the
    /// `metadata` rules; kinds absent from the table have no other keyed lists.
    pub(crate) fn for_kind(api_version: &str, kind: &str) -> Schema {
        let mut schema = Schema { rules: Vec::new() };
        schema.mount(&["metadata"], Fragment::Rules(OBJECT_META));
        let group = group_of(api_version);
        if let Some((_, _, mounts)) = KINDS.iter().find(|(g, k, _)| *g == group && *k == kind) {
            for (prefix, fragment) in mounts.iter() {
                let prefix: Vec<&'static str> =
                    prefix.split('.').filter(|s| !s.is_empty()).collect();
                schema.mount(&prefix, *fragment);
            }
        }
        schema
    }

    fn mount(&mut self, prefix: &[&'static str], fragment: Fragment) {
        match fragment {
            Fragment::Rules(rules) => {
                for (path, strategy) in rules {
                    let mut full = prefix.to_vec();
                    full.extend(path.split('.'));
                    self.rules.push((full, *strategy));
                }
            }
            Fragment::PodSpec => {
                self.mount(prefix, Fragment::Rules(POD_SPEC));
                for list in ["containers", "initContainers", "ephemeralContainers"] {
                    let mut at = prefix.to_vec();
                    at.push(list);
                    self.mount(&at, Fragment::Rules(CONTAINER));
                }
            }
            Fragment::PodTemplate => {
                let mut meta = prefix.to_vec();
                meta.push("metadata");
                self.mount(&meta, Fragment::Rules(OBJECT_META));
                let mut spec = prefix.to_vec();
                spec.push("spec");
                self.mount(&spec, Fragment::PodSpec);
            }
        }
    }

    /// The strategy of the field at `path` (field names from the object root), if any.
    pub(crate) fn strategy<S: AsRef<str>>(&self, path: &[S]) -> Option<Strategy> {
        self.rules
            .iter()
            .find(|(p, _)| {
                p.len() == path.len() && p.iter().zip(path).all(|(a, b)| *a == b.as_ref())
            })
            .map(|(_, s)| *s)
    }
}

/// The default of a list-map key field that an item may omit.
pub(crate) fn key_default(key: &str) -> Option<&'static str> {
    KEY_DEFAULTS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_paths_per_kind() {
        let job = Schema::for_kind("batch/v1", "Job");
        assert_eq!(
            job.strategy(&["spec", "template", "spec", "containers"]),
            Some(Keyed(&["name"]))
        );
        assert_eq!(
            job.strategy(&["spec", "template", "spec", "containers", "env"]),
            Some(Keyed(&["name"]))
        );
        assert_eq!(
            job.strategy(&["spec", "template", "spec", "containers", "command"]),
            None
        );
        assert_eq!(job.strategy(&["metadata", "finalizers"]), Some(Set));
        assert_eq!(
            job.strategy(&["status", "conditions"]),
            Some(Keyed(&["type"]))
        );
        let cron = Schema::for_kind("batch/v1", "CronJob");
        assert_eq!(
            cron.strategy(&["spec", "jobTemplate", "spec", "template", "spec", "volumes"]),
            Some(Keyed(&["name"]))
        );
        let svc = Schema::for_kind("v1", "Service");
        assert_eq!(
            svc.strategy(&["spec", "ports"]),
            Some(Keyed(&["port", "protocol"]))
        );
        let role = Schema::for_kind("rbac.authorization.k8s.io/v1", "Role");
        assert_eq!(role.strategy(&["rules"]), None);
        assert!(
            is_builtin("v1") && is_builtin("apps/v1") && is_builtin("rbac.authorization.k8s.io/v1")
        );
        assert!(!is_builtin("secrets-store.csi.x-k8s.io/v1"));
    }
}
