#!/usr/bin/env python3
"""Writes kubesim's OpenAPI definitions: the schemas of the kinds kubesim serves, and every
schema they reference, taken from a Kubernetes OpenAPI v2 document (swagger.json, as the
Kubernetes project publishes it under api/openapi-spec/). kubesim serves them in its
/openapi/v3 documents (`kubectl explain`).

    python3 scripts/openapi-definitions.py SWAGGER.json kubesim/src/openapi-definitions.json.gz

The output is gzip-compressed compact JSON with sorted keys and no timestamp, so the same
input gives the same bytes. A kubesim unit test checks that every built-in kind has its
definition.
"""
import gzip
import json
import sys

# (group, version, kind) of every built-in kind kubesim serves (resources.rs, Registry::builtin).
SERVED = [
    ("", "v1", k) for k in [
        "Namespace", "Pod", "Secret", "ConfigMap", "ServiceAccount", "Service", "Event",
        "Endpoints", "Node", "PersistentVolumeClaim", "PersistentVolume", "ReplicationController",
        "ComponentStatus"]
] + [
    ("events.k8s.io", "v1", "Event"),
    ("batch", "v1", "Job"), ("batch", "v1", "CronJob"),
    ("apps", "v1", "Deployment"), ("apps", "v1", "ReplicaSet"),
    ("apps", "v1", "StatefulSet"), ("apps", "v1", "DaemonSet"),
    ("coordination.k8s.io", "v1", "Lease"),
    ("rbac.authorization.k8s.io", "v1", "Role"), ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
    ("authorization.k8s.io", "v1", "SelfSubjectAccessReview"),
    ("authorization.k8s.io", "v1", "SubjectAccessReview"),
    ("authorization.k8s.io", "v1", "SelfSubjectRulesReview"),
    ("authentication.k8s.io", "v1", "SelfSubjectReview"),
    ("authentication.k8s.io", "v1", "TokenReview"),
    ("policy", "v1", "PodDisruptionBudget"),
    ("networking.k8s.io", "v1", "NetworkPolicy"), ("networking.k8s.io", "v1", "Ingress"),
    ("networking.k8s.io", "v1", "IngressClass"),
    ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration"),
    ("storage.k8s.io", "v1", "CSIDriver"), ("storage.k8s.io", "v1", "StorageClass"),
    ("scheduling.k8s.io", "v1", "PriorityClass"),
    ("autoscaling", "v2", "HorizontalPodAutoscaler"),
    ("discovery.k8s.io", "v1", "EndpointSlice"),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "v1", "APIService"),
    ("certificates.k8s.io", "v1", "CertificateSigningRequest"),
]


def refs(node, out):
    if isinstance(node, dict):
        r = node.get("$ref")
        if isinstance(r, str) and r.startswith("#/definitions/"):
            out.add(r[len("#/definitions/"):])
        for v in node.values():
            refs(v, out)
    elif isinstance(node, list):
        for v in node:
            refs(v, out)


def main(src, dst):
    definitions = json.load(open(src))["definitions"]
    wanted = set(SERVED)
    roots = set()
    for name, d in definitions.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            if (gvk.get("group", ""), gvk.get("version"), gvk.get("kind")) in wanted:
                roots.add(name)
    # ObjectMeta is what custom resources' documents reference.
    roots.add("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    keep, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in keep or name not in definitions:
            continue
        keep.add(name)
        found = set()
        refs(definitions[name], found)
        todo.extend(found - keep)
    out = {name: definitions[name] for name in sorted(keep)}
    data = json.dumps(out, sort_keys=True, separators=(",", ":")).encode()
    with open(dst, "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
            gz.write(data)
    print(f"{len(out)} definitions, {len(data)} bytes of JSON")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
