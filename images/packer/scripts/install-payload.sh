#!/usr/bin/env bash
# Packer provisioner (AWS and Azure alike): bakes the payload's environment into the image, so that a run with
#   machine.environment: {prepare: image, python: /opt/orchestrate/venv/bin/python}
# installs nothing. Runs as the build's login user, with sudo. Environment (set by the templates):
#   KERAS_VERSION, TENSORFLOW_VERSION  the pins to install
#   PYTHON                             the interpreter that makes the venv (python3.11; installed with apt if absent)
#   CHECK_GPU                          true: the build machine has a GPU and `nvidia-smi -L` must list it
#   STAGING                            where the file provisioner put requirements-payload.txt and keras_bench/
set -euo pipefail
: "${KERAS_VERSION:?}" "${TENSORFLOW_VERSION:?}" "${PYTHON:?}" "${CHECK_GPU:?}" "${STAGING:?}"
PREFIX=/opt/orchestrate
VENV=$PREFIX/venv
export DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# 1. The source image's NVIDIA driver: the payload's GPUs are useless without it, and installing one is not ours.
if ! command -v nvidia-smi >/dev/null; then
    echo "install-payload.sh: no nvidia-smi on the source image: pick an image with the NVIDIA driver" >&2
    exit 1
fi
if [ "$CHECK_GPU" = true ]; then
    nvidia-smi -L || { echo "install-payload.sh: nvidia-smi sees no GPU (set check_gpu=false on a CPU builder)" >&2
                       exit 1; }
fi

# 2. The interpreter: Ubuntu 22.04's own python3 is 3.10, and keras_bench needs 3.11 or later.
if ! command -v "$PYTHON" >/dev/null || ! dpkg -s "$PYTHON-venv" >/dev/null 2>&1; then
    sudo apt-get update -qq
    sudo apt-get install -y -qq "$PYTHON" "$PYTHON-venv" >/dev/null
fi
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "keras_bench needs Python 3.11+: " + sys.version'

# 3. The venv, at the pins. tensorflow[and-cuda] brings the CUDA and cuDNN libraries TensorFlow was built with, so
#    only the driver comes from the image.
sudo install -d -m 0755 "$PREFIX"
sudo "$PYTHON" -m venv "$VENV"
sudo "$VENV/bin/python" -m pip install -q --upgrade pip
sudo "$VENV/bin/python" -m pip install -q "keras==$KERAS_VERSION" "tensorflow[and-cuda]==$TENSORFLOW_VERSION" \
    -r "$STAGING/requirements-payload.txt"

# 4. keras_bench itself, in the venv's site-packages: `python -m keras_bench` works there from any directory.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
sudo rm -rf "$site/keras_bench"
sudo cp -r "$STAGING/keras_bench" "$site/keras_bench"
sudo find "$site/keras_bench" -name __pycache__ -prune -exec rm -rf {} +
sudo cp "$STAGING/requirements-payload.txt" "$PREFIX/requirements-payload.txt"

# 5. What `prepare: image` checks (find_spec of keras and the backend), plus the pins, plus TensorFlow's GPUs.
"$VENV/bin/python" - "$KERAS_VERSION" "$TENSORFLOW_VERSION" "$CHECK_GPU" <<'PY'
import importlib.util
import sys

keras_version, tensorflow_version, check_gpu = sys.argv[1:]
missing = [m for m in ("keras", "tensorflow", "keras_bench") if importlib.util.find_spec(m) is None]
assert not missing, f"missing from the venv: {missing}"
import keras
import tensorflow as tf

assert keras.__version__ == keras_version, f"keras {keras.__version__}, wanted {keras_version}"
assert tf.__version__ == tensorflow_version, f"tensorflow {tf.__version__}, wanted {tensorflow_version}"
gpus = tf.config.list_physical_devices("GPU")
print(f"payload environment: Python {sys.version.split()[0]}, keras {keras.__version__}, "
      f"tensorflow {tf.__version__}, GPUs seen by TensorFlow: {len(gpus)}")
assert gpus or check_gpu != "true", "TensorFlow sees no GPU although nvidia-smi does: CUDA libraries missing?"
PY
sudo rm -rf "$STAGING"
