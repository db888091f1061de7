#!/usr/bin/env python3
"""Writes a CycloneDX 1.5 SBOM (JSON) of the sc-agent and sc-job binaries.

usage: sbom.py OUT.json

The components are the crates linked into the two binaries: their normal dependencies for
the release target (x86_64-unknown-linux-gnu) as `cargo metadata` resolves them from
Cargo.lock, without build-time-only crates (build dependencies, proc macros). Each has its
version, purl, licence expression and the SHA-256 of the crate from Cargo.lock. The output
depends only on the commit (timestamp SOURCE_DATE_EPOCH, serial number from the revision).
"""
import datetime
import json
import os
import subprocess
import sys
import tomllib
import uuid

TARGET = "x86_64-unknown-linux-gnu"
BINARIES = ("sc-agent", "sc-job")


def main():
    out = sys.argv[1]
    cargo = os.environ.get("CARGO", "cargo")
    meta = json.loads(subprocess.check_output(
        [cargo, "metadata", "--format-version", "1", "--locked", "--filter-platform", TARGET]))
    with open(os.path.join(meta["workspace_root"], "Cargo.lock"), "rb") as f:
        checksums = {(p["name"], p["version"]): p.get("checksum")
                     for p in tomllib.load(f)["package"]}
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}

    def proc_macro(pkg):
        return all("proc-macro" in t["kind"] for t in pkg["targets"])

    def runtime_deps(node):
        for dep in node["deps"]:
            if any(k["kind"] is None for k in dep["dep_kinds"]) and not proc_macro(packages[dep["pkg"]]):
                yield dep["pkg"]

    roots = [pid for pid, p in packages.items() if p["name"] in BINARIES
             and pid in meta["workspace_members"]]
    seen, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(runtime_deps(nodes[pid]))

    def ref(pkg):
        return f"pkg:cargo/{pkg['name']}@{pkg['version']}"

    components = []
    for pid in sorted(seen, key=lambda i: (packages[i]["name"], packages[i]["version"])):
        pkg = packages[pid]
        c = {"type": "application" if pid in roots else "library", "bom-ref": ref(pkg),
             "name": pkg["name"], "version": pkg["version"], "purl": ref(pkg)}
        if pkg.get("license"):
            c["licenses"] = [{"expression": pkg["license"]}]
        if checksums.get((pkg["name"], pkg["version"])):
            c["hashes"] = [{"alg": "SHA-256", "content": checksums[(pkg["name"], pkg["version"])]}]
        if pkg.get("repository"):
            c["externalReferences"] = [{"type": "vcs", "url": pkg["repository"]}]
        components.append(c)
    dependencies = [
        {"ref": ref(packages[pid]),
         "dependsOn": sorted({ref(packages[d]) for d in runtime_deps(nodes[pid])})}
        for pid in sorted(seen, key=lambda i: ref(packages[i]))
    ]

    revision = subprocess.check_output(["git", "rev-parse", "HEAD"], text=True).strip()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or subprocess.check_output(
        ["git", "log", "-1", "--format=%ct"], text=True))
    version = packages[roots[0]]["version"]
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'sc-extension/' + revision)}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
            .strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "scripts/sbom.py"}]},
            "component": {"type": "application", "bom-ref": f"pkg:generic/sc-extension@{version}",
                          "name": "sc-extension", "version": version,
                          "licenses": [{"expression": packages[roots[0]]["license"]}]},
        },
        "components": components,
        "dependencies": [{"ref": f"pkg:generic/sc-extension@{version}",
                          "dependsOn": sorted(ref(packages[r]) for r in roots)}] + dependencies,
    }
    with open(out, "w") as f:
        json.dump(bom, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"{out}: {len(components)} components")


if __name__ == "__main__":
    main()
