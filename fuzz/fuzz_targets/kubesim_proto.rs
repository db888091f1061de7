//! kubesim's protobuf request bodies: the input as a whole body, and as the message of an
//! envelope of each kind the decoder knows (the first byte picks the kind). Never a panic: a bad
//! body is an error answer.
#![no_main]

use libfuzzer_sys::fuzz_target;

const KINDS: [(&str, &str); 15] = [
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "Service"),
    ("", "DeleteOptions"),
    ("meta.k8s.io/v1", "DeleteOptions"),
    ("authentication.k8s.io/v1", "TokenRequest"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
];

fuzz_target!(|data: &[u8]| {
    let _ = kubesim::proto::decode(data);
    if let Some((first, rest)) = data.split_first() {
        let (api_version, kind) = KINDS[usize::from(*first) % KINDS.len()];
        let body = kubesim::proto::envelope(api_version, kind, rest.to_vec());
        if let Ok(v) = kubesim::proto::decode(&body) {
            assert_eq!(v["kind"], kind);
        }
    }
});
