#!/usr/bin/env bash
# Builds the release images without a container engine: sc-agent and sc-job as static
# binaries (glibc, crt-static), each assembled by `xtask image` into an OCI image archive
# dist/images/<name>.tar (a FROM-scratch image: the binary as entrypoint, user 65532:65532).
# Reproducible: the timestamps are the commit's, so the same commit gives the same digests.
#   IMAGE_REGISTRY  repository prefix of the images (default ghcr.io/sc-extension)
#   IMAGE_TAG       tag (default the workspace version of Cargo.toml)
#   OUT             output folder (default dist/images)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo=${CARGO:-cargo}
target=x86_64-unknown-linux-gnu

workspace_field() { sed -n '/^\[workspace.package\]/,/^\[/s/^'"$1"' = "\(.*\)"$/\1/p' Cargo.toml; }
version=$(workspace_field version)
licenses=$(workspace_field license)
source_url=$(workspace_field repository)
registry=${IMAGE_REGISTRY:-ghcr.io/sc-extension}
tag=${IMAGE_TAG:-$version}
out=${OUT:-dist/images}
revision=$(git rev-parse HEAD)
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}

# The same flags on every machine: static, and no path of the build machine in the binary.
# SOURCE_DATE_EPOCH is kept from cargo: build scripts (cc) rerun when it changes, which would
# rebuild the binaries at every commit; only the archives take the commit time.
export RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$root=/src --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
env -u SOURCE_DATE_EPOCH "$cargo" build --release --locked --target "$target" -p sc-agent -p sc-job --bins
unset RUSTFLAGS
env -u SOURCE_DATE_EPOCH "$cargo" build --locked --quiet -p xtask

mkdir -p "$out"
for bin in sc-agent sc-job; do
  "$root/target/debug/xtask" image \
    --binary "target/$target/release/$bin" --name "$bin" \
    --repository "$registry/$bin" --tag "$tag" --arch amd64 \
    --version "$version" --revision "$revision" --source "$source_url" --licenses "$licenses" \
    --epoch "$epoch" --out "$out/$bin.tar"
done
