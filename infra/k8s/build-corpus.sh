#!/usr/bin/env bash
# Submit the corpus job to Spark on Kubernetes (cluster mode) with the mathforge image.
# Usage: infra/k8s/build-corpus.sh K8S_API_URL IMAGE INPUT OUTPUT [extra build_corpus.py flags]
# Driver and executor pods run as the image's non-root user (spark-pod-template.yaml); Spark creates no claims.
set -euo pipefail
api=$1 image=$2 input=$3 output=$4; shift 4
template="$(cd "$(dirname "$0")" && pwd)/spark-pod-template.yaml"
exec spark-submit \
  --master "k8s://${api}" --deploy-mode cluster --name mathforge-build-corpus \
  --conf spark.kubernetes.container.image="${image}" \
  --conf spark.kubernetes.namespace=mathforge \
  --conf spark.kubernetes.authenticate.driver.serviceAccountName=mathforge-spark \
  --conf spark.kubernetes.driver.podTemplateFile="${template}" \
  --conf spark.kubernetes.executor.podTemplateFile="${template}" \
  --conf spark.kubernetes.driver.ownPersistentVolumeClaim=false \
  --conf spark.kubernetes.driver.reusePersistentVolumeClaim=false \
  --conf spark.executor.instances="${EXECUTORS:-8}" \
  --conf spark.executor.cores="${EXECUTOR_CORES:-4}" \
  --conf spark.executor.memory="${EXECUTOR_MEMORY:-8g}" \
  --conf spark.kubernetes.driver.volumes.persistentVolumeClaim.corpus.options.claimName=mathforge-data \
  --conf spark.kubernetes.driver.volumes.persistentVolumeClaim.corpus.mount.path=/data \
  --conf spark.kubernetes.executor.volumes.persistentVolumeClaim.corpus.options.claimName=mathforge-data \
  --conf spark.kubernetes.executor.volumes.persistentVolumeClaim.corpus.mount.path=/data \
  local:///opt/mathforge/jobs/build_corpus.py --input "${input}" --output "${output}" "$@"
