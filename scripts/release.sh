#!/usr/bin/env bash
# `make release`: everything a platform team installs from, in dist/:
#   sc-extension-<version>.tgz   the chart (helm package; version and appVersion: Cargo.toml's)
#   images/sc-agent.tar, images/sc-job.tar   the OCI image archives (make images)
#   sbom.cdx.json                CycloneDX SBOM of the crates linked into the binaries
#   SHA256SUMS                   checksums of all of the above
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}

mkdir -p dist
rm -f dist/sc-extension-*.tgz dist/sbom.cdx.json dist/SHA256SUMS
[ -f dist/images/sc-agent.tar ] && [ -f dist/images/sc-job.tar ] || bash scripts/images.sh
"$root/.tools/bin/helm3" package chart --version "$version" --app-version "$version" -d dist
python3 scripts/sbom.py dist/sbom.cdx.json
(cd dist && sha256sum "sc-extension-$version.tgz" images/sc-agent.tar images/sc-job.tar sbom.cdx.json > SHA256SUMS)
echo "dist/SHA256SUMS:"
cat dist/SHA256SUMS
