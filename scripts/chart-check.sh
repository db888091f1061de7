#!/usr/bin/env bash
# Lints the chart with helm 3 and helm 4 and validates every rendered manifest against the
# Kubernetes 1.33 schemas (kubernetes-validate --strict), for a set of value combinations.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin"
validate="$root/.tools/venv/bin/kubernetes-validate"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for helm in helm3 helm4; do
  "$bin/$helm" lint --strict "$root/chart" >/dev/null
done

cases=(
  "defaults|"
  "arc-flat-strings|--set-string agent.replicas=2,agent.port=9090,waitForResult.enabled=false,waitForResult.timeoutSeconds=60,job.backoffLimit=1,job.activeDeadlineSeconds=120,metrics.service.enabled=false,connections.storage_conn.targetType=storage-blob,connections.storage_conn.authType=secret,connections.storage_conn.clientType=python,connections.storage_conn.secrets.connectionString=x"
  "confined-rbac|--set rbac.namespaces={apps,web}"
  "placement|--set priorityClassName=system-cluster-critical,nodeSelector.pool=system,tolerations[0].key=CriticalAddonsOnly,tolerations[0].operator=Exists,imagePullSecrets[0]=regcred"
  "production|--set agent.replicas=2,agent.logFormat=json,networkPolicy.enabled=true,networkPolicy.apiServer.cidrs={10.0.0.1/32},agent.podLabels.team=x,agent.podAnnotations.a=b,agent.extraEnv[0].name=A,agent.extraEnv[0].value=b,agent.extraArgs={--x},serviceAccount.job.annotations.a=b,image.agent.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000,podSecurityContext.runAsUser=1001 --set-json agent.topologySpreadConstraints=[{\"maxSkew\":1,\"topologyKey\":\"topology.kubernetes.io/zone\",\"whenUnsatisfiable\":\"ScheduleAnyway\"}]"
)
for example in "$root"/examples/*.yaml; do
  [ -e "$example" ] || continue
  case "$example" in *-protected.yaml|*arc-extension.yaml) continue ;; esac
  cases+=("example-$(basename "$example" .yaml)|-f $example")
done

for c in "${cases[@]}"; do
  name=${c%%|*}
  args=${c#*|}
  # shellcheck disable=SC2086
  "$bin/helm3" template sc "$root/chart" -n sc-system $args > "$out/$name.yaml"
  "$validate" --strict --quiet -k 1.33.0 "$out/$name.yaml"
  echo "chart: $name renders and validates"
done
# The ServiceMonitor is a CRD kind the schemas do not know: render it, check its shape.
sm=$("$bin/helm3" template sc "$root/chart" -n sc-system --set metrics.serviceMonitor.enabled=true \
  --api-versions monitoring.coreos.com/v1 --show-only templates/servicemonitor.yaml)
grep -q "kind: ServiceMonitor" <<<"$sm"
echo "chart: servicemonitor renders"
