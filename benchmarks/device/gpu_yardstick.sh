#!/bin/sh
# The payload's training figures against the independent yardstick on a lent GPU machine (JAX backend, no TensorFlow):
#   sh benchmarks/device/gpu_yardstick.sh OUT_DIR
# Needs keras (+ namex, optree) importable, e.g. from wheels installed into /tmp/site (see docs/performance.md).
# ResNet-50 224x224, 1000 classes, batch 64 and 256, float32 and mixed_bfloat16; 5 alternating pairs per case
# (benchmarks/bench_payload.py --cases gpu). Writes OUT_DIR/{nvidia-smi.txt, yardstick.jsonl, yardstick.log}; a case
# finished before the time limit is kept (one JSON line each, written as it ends).
set -u
out=${1:?usage: gpu_yardstick.sh OUT_DIR}
mkdir -p "$out"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)/benchmarks"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > "$out/nvidia-smi.txt" 2>&1
timeout -s TERM 480 python3 benchmarks/bench_payload.py --worker jax --cases gpu --pairs 5 \
    > "$out/yardstick.jsonl" 2> "$out/yardstick.log"
echo "yardstick exit $?"
grep -h " ratio " "$out/yardstick.log"
