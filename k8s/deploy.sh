#!/usr/bin/env bash
# `make deploy TARGET=k8s [OVERLAY=gpu]`: apply a serving overlay (TensorFlow Serving and the web
# front) to the cluster of kubectl's current context, then wait until the new pods serve.
#
#   bash k8s/deploy.sh [OVERLAY]          OVERLAY: a folder of k8s/overlays/ (default gpu)
#
# Environment: ROLLOUT_TIMEOUT (default 20m: image pull, model load and warm-up on new nodes; each
# rollout gets this long).
# Exit status: 0 rolled out; 1 apply or rollout failed; 2 bad overlay, or no cluster to talk to.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
overlay=${1:-gpu}
timeout=${ROLLOUT_TIMEOUT:-20m}
# What the overlays deploy (k8s/base): the rollouts to wait for, in this order (the web pods are
# ready only once the model server answers them).
namespace=dfdetect
deployments=(deepfake-serving deepfake-web)

say() { printf 'deploy (k8s): %s\n' "$*" >&2; }
refuse() { say "$*"; exit 2; }

overlays=()
for dir in "$here"/overlays/*/; do
  [[ -f "$dir/kustomization.yaml" ]] && overlays+=("$(basename "$dir")")
done
if [[ ! -f "$here/overlays/$overlay/kustomization.yaml" ]]; then
  refuse "unknown overlay '$overlay': expected one of: ${overlays[*]:-none} (the folders of k8s/overlays/), e.g. make deploy TARGET=k8s OVERLAY=gpu"
fi

command -v kubectl >/dev/null 2>&1 || refuse "kubectl not found on PATH: install kubectl and configure access to your cluster"

if ! context=$(kubectl config current-context 2>/dev/null) || [[ -z "$context" ]]; then
  refuse "no cluster configured: kubectl has no current context. Point KUBECONFIG at your cluster's kubeconfig or run 'kubectl config use-context NAME'. To serve on this machine instead: make deploy (TARGET=local)."
fi
if ! reply=$(kubectl --request-timeout=15s get --raw /version 2>&1); then
  refuse "cannot reach the cluster of kubectl context '$context': ${reply:-no answer}"
fi

# Rendered with kustomize's default restrictions, as `kubectl apply -k` and GitOps tools render
# (every file the manifests read is inside k8s/), then applied from the rendered file.
rendered=$(mktemp "${TMPDIR:-/tmp}/dfdetect-k8s-XXXXXX.yaml")
trap 'rm -f "$rendered"' EXIT
if ! kubectl kustomize "$here/overlays/$overlay" > "$rendered"; then
  say "cannot render k8s/overlays/$overlay (run 'make k8s-validate' for details)"
  exit 1
fi

say "applying k8s/overlays/$overlay to context '$context'"
if ! kubectl apply --server-side --field-manager=dfdetect-deploy -f "$rendered"; then
  say "kubectl apply failed for k8s/overlays/$overlay (context '$context')"
  exit 1
fi

for deployment in "${deployments[@]}"; do
  say "waiting up to $timeout for deployment/$deployment in namespace $namespace"
  if ! kubectl --namespace "$namespace" rollout status "deployment/$deployment" --timeout="$timeout"; then
    say "the rollout of $deployment did not finish within $timeout. Look at: kubectl -n $namespace get pods -l app.kubernetes.io/name=$deployment; kubectl -n $namespace describe pods -l app.kubernetes.io/name=$deployment; kubectl -n $namespace logs -l app.kubernetes.io/name=$deployment --all-containers"
    exit 1
  fi
done
say "deployed: gRPC deepfake-serving.$namespace:8500, REST deepfake-serving.$namespace:8501, web page deepfake-web.$namespace:8080 (through your ingress controller, or: kubectl -n $namespace port-forward svc/deepfake-web 8080)"
