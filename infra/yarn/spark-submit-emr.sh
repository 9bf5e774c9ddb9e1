#!/usr/bin/env bash
# Submit the corpus job to YARN (Amazon EMR or any Hadoop cluster) in cluster mode.
# The cluster's Python must have mathforge's pinned dependencies (bootstrap: pip install the repository, or
# ship a packed venv with --archives); the driver ships mathforge's own code to the executors itself.
# Usage: infra/yarn/spark-submit-emr.sh INPUT OUTPUT [extra build_corpus.py flags]
#   e.g. infra/yarn/spark-submit-emr.sh /mnt/crawl/warc.paths.gz /mnt/corpora/cc-2024-22 --langs en
set -euo pipefail
input=$1 output=$2; shift 2
exec spark-submit \
  --master yarn --deploy-mode cluster --name mathforge-build-corpus \
  --num-executors "${EXECUTORS:-16}" --executor-cores "${EXECUTOR_CORES:-4}" \
  --executor-memory "${EXECUTOR_MEMORY:-8g}" \
  --conf spark.yarn.maxAppAttempts=1 \
  --conf spark.pyspark.python="${PYSPARK_PYTHON:-python3}" \
  jobs/build_corpus.py --input "${input}" --output "${output}" "$@"
