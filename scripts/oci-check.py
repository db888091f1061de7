#!/usr/bin/env python3
"""Checks an OCI image archive written by `xtask image` and unpacks its root file system.

usage: oci-check.py ARCHIVE ROOTFS_DIR

Checks that the archive is an OCI image layout (oci-layout, index.json, blobs), that every
blob matches its digest and size, that the index names the image
(org.opencontainers.image.ref.name), that the manifest carries the org.opencontainers.image.*
annotations, and that the config runs the entrypoint as 65532:65532. Unpacks the layers into
ROOTFS_DIR and prints the manifest digest.
"""
import gzip
import hashlib
import io
import json
import sys
import tarfile

REQUIRED_ANNOTATIONS = ("version", "revision", "source", "licenses", "created")


def fail(archive, msg):
    sys.exit(f"{archive}: {msg}")


def main():
    archive, rootfs = sys.argv[1], sys.argv[2]
    with tarfile.open(archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        for m in tar.getmembers():
            if m.uid != 0 or m.gid != 0:
                fail(archive, f"{m.name} is owned by {m.uid}:{m.gid}, not 0:0")

    def blob(desc, media_type):
        if desc.get("mediaType") != media_type:
            fail(archive, f"{desc['digest']} has media type {desc.get('mediaType')}, want {media_type}")
        algo, hexdigest = desc["digest"].split(":", 1)
        data = files.get(f"blobs/{algo}/{hexdigest}")
        if data is None:
            fail(archive, f"blob {desc['digest']} is missing")
        if hashlib.sha256(data).hexdigest() != hexdigest or len(data) != desc["size"]:
            fail(archive, f"blob {desc['digest']} does not match its digest or size")
        return data

    layout = json.loads(files.get("oci-layout", b"{}"))
    if layout.get("imageLayoutVersion") != "1.0.0":
        fail(archive, "oci-layout is missing or not 1.0.0")
    index = json.loads(files["index.json"])
    if index.get("schemaVersion") != 2 or len(index.get("manifests", [])) != 1:
        fail(archive, "index.json must list exactly one manifest")
    desc = index["manifests"][0]
    ref = desc.get("annotations", {}).get("org.opencontainers.image.ref.name")
    if not ref:
        fail(archive, "the index does not name the image (org.opencontainers.image.ref.name)")
    manifest = json.loads(blob(desc, "application/vnd.oci.image.manifest.v1+json"))
    annotations = manifest.get("annotations", {})
    for key in REQUIRED_ANNOTATIONS:
        if not annotations.get(f"org.opencontainers.image.{key}"):
            fail(archive, f"the manifest lacks annotation org.opencontainers.image.{key}")
    config = json.loads(blob(manifest["config"], "application/vnd.oci.image.config.v1+json"))
    if config["config"].get("User") != "65532:65532":
        fail(archive, f"the image runs as {config['config'].get('User')!r}, not 65532:65532")
    entrypoint = config["config"].get("Entrypoint") or []
    if len(entrypoint) != 1:
        fail(archive, f"the entrypoint is {entrypoint!r}, want the one binary")
    layers = manifest["layers"]
    if len(layers) != len(config["rootfs"]["diff_ids"]):
        fail(archive, "the config's diff_ids do not match the layers")
    for layer, diff_id in zip(layers, config["rootfs"]["diff_ids"]):
        data = blob(layer, "application/vnd.oci.image.layer.v1.tar+gzip")
        if "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest() != diff_id:
            fail(archive, f"layer {layer['digest']} does not match its diff_id")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
            t.extractall(rootfs, filter="data")
    print(f"{archive}: {ref} {desc['digest']} entrypoint {entrypoint[0]} user {config['config']['User']}")


if __name__ == "__main__":
    main()
