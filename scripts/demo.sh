#!/usr/bin/env bash
# `make demo`: build, start the embedded cluster (kubesim) in the background, install the
# chart with helm 3 and the example connections, run the documentation's printenv Job against
# one of them, show what was created, show the Secret the Secrets Store CSI driver syncs for
# kv_csi once web's pod mounts its volume, and check that every pod is Running or Completed. kubesim keeps running afterwards; `make demo-stop`
# (or `scripts/demo.sh stop`) stops it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
demo="$root/.demo"
bin="$root/target/debug"
tools="$root/.tools/bin"
export KUBECONFIG="$demo/kubeconfig"
kubectl() { "$tools/kubectl-1.37" "$@"; }
helm() { "$tools/helm3" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

stop() {
  if [ -f "$demo/kubesim.pid" ]; then
    pid=$(cat "$demo/kubesim.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "stopped kubesim (pid $pid)"
    fi
    rm -f "$demo/kubesim.pid" "$demo/kubeconfig"
  else
    echo "no demo cluster is running"
  fi
}

if [ "${1:-}" = "stop" ]; then
  stop
  exit 0
fi

for t in kubectl-1.37 helm3; do
  [ -x "$tools/$t" ] || { echo "$tools/$t is missing: run 'make tools'" >&2; exit 1; }
done

step "building sc-agent, sc-job and kubesim"
"${CARGO:-cargo}" build --workspace --bins --quiet
# `kubectl sc ...`: kubectl runs sc-agent as its plugin through this link on PATH.
ln -sfn sc-agent "$bin/kubectl-sc"
start=$(date +%s)

mkdir -p "$demo"
[ -f "$demo/kubesim.pid" ] && { echo "a demo cluster is running: stopping it first"; stop; }
rm -f "$KUBECONFIG"

step "starting the embedded cluster"
# With the image archives of `make images`, the agent and sc-job run from the images
# themselves (their root and user); without them, from the binaries just built.
images=()
if [ -f "$root/dist/images/sc-agent.tar" ] && [ -f "$root/dist/images/sc-job.tar" ]; then
  images=(--image-dir "$root/dist/images")
  echo "running sc-agent and sc-job from the image archives in dist/images"
fi
nohup "$bin/kubesim" --listen 127.0.0.1:0 --kubeconfig "$KUBECONFIG" --bin-dir "$bin" "${images[@]}" \
  > "$demo/kubesim.log" 2>&1 < /dev/null &
echo $! > "$demo/kubesim.pid"
for _ in $(seq 1 300); do
  [ -f "$KUBECONFIG" ] && break
  kill -0 "$(cat "$demo/kubesim.pid")" 2>/dev/null || { echo "kubesim exited:" >&2; cat "$demo/kubesim.log" >&2; exit 1; }
  sleep 0.1
done
[ -f "$KUBECONFIG" ] || { echo "kubesim wrote no kubeconfig within 30 s; see $demo/kubesim.log" >&2; exit 1; }
show kubectl get namespaces

step "the applications the examples connect to"
# examples/secret.yaml and keyvault-csi.yaml inject Deployment web in default,
# examples/workload-identity.yaml Deployment chat in ai.
kubectl create namespace ai
kubectl create deployment web -n default --image=alpine -- sleep 3600
kubectl create deployment chat -n ai --image=alpine -- sleep 3600
# The SecretProviderClass CRD of the Secrets Store CSI driver (AKS: the
# azure-keyvault-secrets-provider add-on installs it).
kubectl apply -f "$root/tests/e2e/manifests/secretproviderclass-crd.yaml"
kubectl wait --for=condition=Established crd/secretproviderclasses.secrets-store.csi.x-k8s.io --timeout=30s

step "the Secrets Store CSI driver and the fake Key Vault my-vault of examples/keyvault-csi.yaml"
# The embedded cluster's kubelet mounts secrets-store.csi.k8s.io volumes once the driver's
# CSIDriver object exists. Its fake Azure provider reads Key Vault my-vault from Secret
# kubesim-system/my-vault, one key per object name (no Key Vault is reachable from here).
show kubectl apply -f - <<'YAML'
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata:
  name: secrets-store.csi.k8s.io
spec:
  attachRequired: false
  podInfoOnMount: true
  volumeLifecycleModes: [Ephemeral]
YAML
kubectl create namespace kubesim-system
show kubectl create secret generic my-vault -n kubesim-system \
  --from-literal=db-password=demo-db-password --from-literal=tls-cert=demo-certificate

step "helm install (helm 3) with examples/secret.yaml, workload-identity.yaml and keyvault-csi.yaml"
# Pods of the embedded cluster are processes of this machine and share its ports: the agent
# gets a free one for /metrics, /healthz and /readyz.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
show helm upgrade --install sc-extension "$root/chart" -n sc-system --create-namespace \
  -f "$root/examples/secret.yaml" -f "$root/examples/workload-identity.yaml" \
  -f "$root/examples/keyvault-csi.yaml" --set agent.port="$port" --timeout 90s

step "sc-job has finished and deleted itself"
show kubectl get job -n sc-system

step "the documentation's printenv Job with envFrom the Secret of blob_conn"
sed -n '/^apiVersion/,$p' "$root/manifests/samples/secret-envfrom-job.yaml"
kubectl apply -f "$root/manifests/samples/secret-envfrom-job.yaml"
kubectl wait --for=condition=complete job/sc-sample-job -n default --timeout=60s
show kubectl logs job/sc-sample-job -n default

step "the release and the connections"
show helm list -n sc-system
show kubectl get secrets,serviceaccounts -A -l app.kubernetes.io/managed-by=sc-extension
show kubectl get secretproviderclasses -A
show "$bin/sc-agent" list

step "kv_csi: the driver mounted web's volume and synced Secret sc-kvcsi-secret"
# kv_csi gave Deployment web the CSI volume and envFrom its Secret sc-kvcsi-secret, which the
# driver writes (secretObjects, syncSecret) when it mounts the volume of web's new pod.
show kubectl rollout status deployment/web -n default --timeout=60s
show kubectl get secret sc-kvcsi-secret -n default --show-labels
show kubectl exec deployment/web -n default -- printenv db-password
show "$bin/sc-agent" validate kv_csi

step "the agent's events on the request ConfigMap"
show kubectl get events -n sc-system --field-selector involvedObject.name=sc-requests

step "every pod is Running or Completed"
# Pods not Running nor Succeeded (Completed), leaving aside those being deleted.
not_running() {
  kubectl get pods -A -o json | python3 -c '
import json, sys
for p in json.load(sys.stdin)["items"]:
    if p["metadata"].get("deletionTimestamp"):
        continue
    phase = p.get("status", {}).get("phase")
    if phase not in ("Running", "Succeeded"):
        print("%s/%s %s" % (p["metadata"]["namespace"], p["metadata"]["name"], phase))'
}
left=
for _ in $(seq 1 300); do
  left=$(not_running)
  [ -z "$left" ] && break
  sleep 0.2
done
show kubectl get pods -A
if [ -n "$left" ]; then
  echo "pods neither Running nor Completed:" >&2
  echo "$left" >&2
  exit 1
fi
echo "every pod is Running or Completed"

echo
echo "done in $(( $(date +%s) - start )) s after the build. The cluster keeps running; in a shell:"
echo "  export KUBECONFIG=$KUBECONFIG PATH=$bin:$tools:\$PATH"
echo "  kubectl get pods -A; sc-agent list; kubectl sc show blob_conn"
echo "stop it with: make demo-stop"
