#!/bin/sh
# Init container of the serving pods: writes the model config TensorFlow Serving reads.
#
# serving/models.config (mounted from its ConfigMap) is the one source of truth for the models,
# their version policy and their version labels (`dfdetect export label` edits it). Its base
# paths name the model repository as mounted at /models. Where the overlay's repository is
# elsewhere (MODEL_REPOSITORY=gs://bucket/path: TensorFlow Serving reads object storage itself),
# the /models/ prefix of every base_path is replaced by it. Nothing else changes.
#
# usage: MODEL_REPOSITORY=gs://bucket/path render-models-config.sh SOURCE DESTINATION
set -eu

usage="usage: MODEL_REPOSITORY=... render-models-config.sh SOURCE DESTINATION"
src=${1:?$usage}
dst=${2:?$usage}
repo=${MODEL_REPOSITORY:?MODEL_REPOSITORY is not set: expected a gs:// URL or a mounted folder such as /models}
repo=${repo%/}

case $repo in
  *[\"\#\&\\\ ]*) ok=no ;;
  /?* | gs://?*) ok=yes ;;
  *) ok=no ;;
esac
if [ "$ok" != yes ]; then
  printf '%s\n' "render-models-config: MODEL_REPOSITORY=$repo is not usable: expected gs://bucket/path or an absolute folder, without quotes, spaces, '#', '&' or backslashes" >&2
  exit 1
fi
if ! grep -q 'base_path: *"/models/' "$src"; then
  printf '%s\n' "render-models-config: $src has no base_path under /models/ (expected e.g. base_path: \"/models/deepfake\")" >&2
  exit 1
fi

sed "s#\(base_path: *\"\)/models/#\1$repo/#" "$src" > "$dst.tmp"
mv "$dst.tmp" "$dst"
printf '%s\n' "render-models-config: $dst reads models from $repo:"
grep 'base_path' "$dst"
