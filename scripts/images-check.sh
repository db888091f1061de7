#!/usr/bin/env bash
# Checks the image archives of `make images` (dist/images/*.tar):
# - each is a valid OCI image layout whose blobs match their digests (scripts/oci-check.py);
# - assembling them again from the same binaries gives the same bytes (reproducible digests);
# - each entrypoint runs alone in the image's root (chroot into the unpacked layers, nothing
#   from the host) as the image's user 65532:65532: a static binary that needs no file
#   outside the image;
# - the tools of registries and runtimes read them: skopeo inspects each and converts it to
#   the archive `docker load` takes and to an OCI layout, which umoci unpacks into a runtime
#   bundle whose process is the entrypoint as 65532:65532.
# chroot needs root: run as root, or with passwordless sudo. skopeo and umoci come from the
# Debian packages of the same names (`make tools` installs them when run as root).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
images=${OUT:-dist/images}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

OUT="$work/again" bash scripts/images.sh >"$work/again.log" 2>&1 || { cat "$work/again.log"; exit 1; }

for tool in skopeo umoci; do
  command -v "$tool" >/dev/null || { echo "images-check: $tool is missing: apt-get install skopeo umoci (make tools does so as root)" >&2; exit 1; }
done

chroot=$(PATH="$PATH:/usr/sbin:/sbin" command -v chroot) || { echo "images-check: chroot is missing (coreutils)" >&2; exit 1; }
as_root=()
if [ "$(id -u)" != 0 ]; then
  sudo -n true 2>/dev/null || { echo "images-check: chroot needs root or passwordless sudo" >&2; exit 1; }
  as_root=(sudo -n)
fi

for bin in sc-agent sc-job; do
  archive="$images/$bin.tar"
  if ! cmp -s "$archive" "$work/again/$bin.tar"; then
    echo "images-check: $archive differs when built again from the same commit" >&2
    exit 1
  fi
  rootfs="$work/rootfs-$bin"
  mkdir -p "$rootfs"
  "${as_root[@]}" python3 scripts/oci-check.py "$archive" "$rootfs"
  version=$("${as_root[@]}" env -i "$chroot" --userspec=65532:65532 "$rootfs" "/usr/local/bin/$bin" --version)
  [ "$version" = "$bin $(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml)" ] \
    || { echo "images-check: $bin --version in its image printed '$version'" >&2; exit 1; }
  "${as_root[@]}" env -i "$chroot" --userspec=65532:65532 "$rootfs" "/usr/local/bin/$bin" --help >/dev/null
  echo "images-check: $bin runs alone in its image as 65532:65532 ($version)"
  "${as_root[@]}" rm -rf "$rootfs"
  bash scripts/images-interop.sh "$archive" "$bin" "${version#"$bin "}" "$work/interop-$bin"
done
sha256sum "$images"/*.tar
