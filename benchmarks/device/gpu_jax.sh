#!/bin/sh
# The payload on a GPU machine without TensorFlow (JAX backend), as run on the lent H200:
#   sh benchmarks/device/gpu_jax.sh OUT_DIR
# Needs keras (+ namex, optree) importable, e.g. from wheels installed into /tmp/site (see docs/performance.md).
# Writes OUT_DIR/{nvidia-smi.txt, smoke.json, throughput.json, *.log}; each step has its own time limit, and the
# payload still writes its results document (with what it measured) when the limit's SIGTERM arrives.
set -u
out=${1:?usage: gpu_jax.sh OUT_DIR}
mkdir -p "$out"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)/benchmarks"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > "$out/nvidia-smi.txt" 2>&1
work=$(mktemp -d)
suite() {  # suite NAME PARAMS_JSON
    printf '{"schema_version": 1, "suite": "%s", "run_id": "gpu-%s", "params": %s}\n' "$1" "$1" "$2" > "$work/$1.json"
}
suite smoke '{}'
timeout -s TERM 150 python3 -m keras_bench --suite "$work/smoke.json" --out "$out/smoke.json" > "$out/smoke.log" 2>&1
echo "smoke exit $?"
suite throughput '{"models": ["resnet50"], "batch_sizes": [64, 256], "precisions": ["float32", "mixed_bfloat16"],
  "xla": [true], "image_size": 224, "num_classes": 1000, "warmup_steps": 5, "steps": 30, "repeats": 3, "inference": true}'
timeout -s TERM 330 python3 -m keras_bench --suite "$work/throughput.json" --out "$out/throughput.json" \
    > "$out/throughput.log" 2>&1
echo "throughput exit $?"
grep -h "^\[keras_bench\]" "$out/smoke.log" "$out/throughput.log" | tail -20
