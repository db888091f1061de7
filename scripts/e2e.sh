#!/usr/bin/env bash
# `make e2e`: the end-to-end scenarios (tests/e2e) against the cluster of $KUBECONFIG instead
# of a private embedded cluster per scenario. The cluster must be able to pull the images
# (SC_E2E_IMAGE_REGISTRY / SC_E2E_IMAGE_TAG override the chart's ghcr.io/sc-extension and
# appVersion). Each scenario installs the release in its own namespace sc-system-<random>
# (and its connections in <name>-<random>) and removes them when it ends.
# Scenarios that need a cluster the harness starts itself (kubesim's fault injection, pod
# kills and request log, pods run as local processes from dist/images, fixtures in fixed
# namespaces) skip themselves, or the part that needs it, and are listed at the end with why.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools/bin"

if [ -z "${KUBECONFIG:-}" ]; then
  echo "set KUBECONFIG to the cluster to test (make e2e KUBECONFIG=~/.kube/config)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One self-contained file, even when KUBECONFIG lists several.
"$tools/kubectl-1.37" config view --flatten --raw > "$work/kubeconfig"
chmod 600 "$work/kubeconfig"
echo "cluster: $("$tools/kubectl-1.37" --kubeconfig "$work/kubeconfig" config current-context)"
"$tools/kubectl-1.37" --kubeconfig "$work/kubeconfig" version 2>&1 | sed 's/^/  /'
"$tools/kubectl-1.37" --kubeconfig "$work/kubeconfig" get namespaces >/dev/null

export SC_E2E_KUBECONFIG="$work/kubeconfig"
export SC_TOOLS_DIR="$root/.tools"
export SC_E2E_SKIP_LOG="$work/skipped"
: > "$SC_E2E_SKIP_LOG"
cd "$root"
rc=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -p sc-e2e --no-fail-fast "$@" || rc=$?
else
  cargo test -p sc-e2e --no-fail-fast "$@" || rc=$?
fi
if [ -s "$SC_E2E_SKIP_LOG" ]; then
  echo
  echo "Skipped on this cluster, in whole or in part (see README.md, make e2e):"
  sort -u "$SC_E2E_SKIP_LOG" | sed 's/^/  /'
fi
exit "$rc"
