#!/bin/sh
# The device check in one call: installs the carried Keras wheels when there are any (the GPU
# machine has JAX and torch but no Keras and no package registry), then runs gpu_check.py.
#   sh benchmarks/gpu_check.sh BUNDLE OUT [--budget-s 540] [--scale full|tiny]
# Make the wheels first with ../shared/tools/device-wheels.sh (they land in .whl/).
set -eu
cd "$(dirname "$0")/.."
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1
exec python3 benchmarks/gpu_check.py "$@"
