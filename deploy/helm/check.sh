#!/usr/bin/env bash
# Lints the Rapport chart with each example values file, renders it with each, and
# validates every rendered object against the Kubernetes JSON Schemas of one
# Kubernetes version (kubernetes-validate, strict: unknown fields are errors).
#
# No cluster is involved. `make helm-check` runs this with the pinned Helm:
#   HELM=.tools/bin/helm KUBERNETES_VALIDATE=.venv/bin/kubernetes-validate deploy/helm/check.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
chart="$here/rapport"
helm="${HELM:-helm}"
validate="${KUBERNETES_VALIDATE:-kubernetes-validate}"
kubernetes_version="${KUBERNETES_VERSION:-1.33.0}"
rendered="${RENDERED_DIR:-$root/.tools/rendered}"
examples=(minimal keda-ingress strimzi)
# Custom resources: kubernetes-validate ships no schema for them, so they are skipped
# here by name and checked field by field in tests/test_helm.py. Any other kind
# without a schema (a mistyped apiVersion) fails.
custom_kinds='ScaledObject with api version keda\.sh/v1alpha1|ServiceMonitor with api version monitoring\.coreos\.com/v1|KafkaTopic with api version kafka\.strimzi\.io/(v1|v1beta2)'

mkdir -p "$rendered"
for example in "${examples[@]}"; do
  values="$chart/examples/$example.yaml"
  echo "== $example: helm lint"
  "$helm" lint --strict "$chart" -f "$values" --kube-version "$kubernetes_version"

  echo "== $example: helm template"
  out="$rendered/$example.yaml"
  "$helm" template rapport "$chart" --namespace rapport \
    --kube-version "$kubernetes_version" -f "$values" > "$out"
  kinds="$(grep -E '^kind: ' "$out" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}')"
  echo "rendered ${kinds%, } -> $out"

  echo "== $example: kubernetes-validate --strict -k $kubernetes_version"
  report="$("$validate" --strict -k "$kubernetes_version" "$out")" || {
    echo "$report"
    exit 1
  }
  unexpected="$(grep '^WARN' <<<"$report" | grep -Ev "kind ($custom_kinds) for" || true)"
  if [[ -n "$unexpected" ]]; then
    echo "$unexpected"
    echo "objects above have no schema and are not a known custom resource" >&2
    exit 1
  fi
  passed="$(grep -c '^INFO .* passed' <<<"$report" || true)"
  skipped="$(grep -c '^WARN' <<<"$report" || true)"
  echo "$passed objects valid, $skipped custom resources skipped (checked by tests/test_helm.py)"
done
