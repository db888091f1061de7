#!/usr/bin/env bash
# images-interop.sh ARCHIVE NAME VERSION WORKDIR: what registries' and runtimes' tools make of
# an image archive of `make images`:
# - `skopeo inspect` reads it: linux/amd64, user 65532:65532, the binary as entrypoint;
# - `skopeo copy` converts it to the archive `docker load` takes (tagged
#   ghcr.io/sc-extension/NAME:VERSION) and to an OCI image layout;
# - `umoci unpack` turns that layout into a runtime bundle whose root holds the binary and
#   whose process is the entrypoint as 65532:65532.
set -euo pipefail
archive=$1 name=$2 version=$3 work=$4
mkdir -p "$work"
fail() { echo "images-check: $name: $*" >&2; exit 1; }

skopeo inspect --config "oci-archive:$archive" > "$work/config.json" \
  || fail "skopeo cannot read oci-archive:$archive"
python3 - "$work/config.json" "$name" <<'PY' || fail "skopeo reports another image configuration"
import json, sys
c = json.load(open(sys.argv[1]))
name = sys.argv[2]
assert (c["os"], c["architecture"]) == ("linux", "amd64"), (c["os"], c["architecture"])
assert c["config"]["User"] == "65532:65532", c["config"]["User"]
assert c["config"]["Entrypoint"] == [f"/usr/local/bin/{name}"], c["config"]["Entrypoint"]
PY

ref="ghcr.io/sc-extension/$name:$version"
skopeo copy --quiet "oci-archive:$archive" "docker-archive:$work/docker.tar:$ref" \
  || fail "skopeo cannot convert it for docker load"
tar -xOf "$work/docker.tar" manifest.json | python3 -c '
import json, sys
m = json.load(sys.stdin)
assert m[0]["RepoTags"] == [sys.argv[1]], m[0]["RepoTags"]
' "$ref" || fail "the docker-archive is not tagged $ref"

skopeo copy --quiet "oci-archive:$archive" "oci:$work/layout:$version" \
  || fail "skopeo cannot copy it to an OCI layout"
umoci unpack --rootless --image "$work/layout:$version" "$work/bundle" >/dev/null \
  || fail "umoci cannot unpack it"
[ -x "$work/bundle/rootfs/usr/local/bin/$name" ] || fail "the bundle's root has no /usr/local/bin/$name"
python3 - "$work/bundle/config.json" "$name" <<'PY' || fail "the bundle runs something else"
import json, sys
c = json.load(open(sys.argv[1]))
p = c["process"]
assert p["args"] == [f"/usr/local/bin/{sys.argv[2]}"], p["args"]
assert (p["user"]["uid"], p["user"]["gid"]) == (65532, 65532), p["user"]
PY
rm -rf "$work"
echo "images-check: $name: skopeo reads it and converts it for docker load ($ref) and to an OCI layout; umoci unpacks it as 65532:65532"
