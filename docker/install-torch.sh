#!/bin/sh
# Install the CPU build of torch into the image's venv: from docker/wheels/ when a wheel is there,
# else from the index in TORCH_INDEX_URL (PyTorch's CPU wheel index). Never the default index,
# whose torch build pulls several GB of CUDA packages.
set -eu
version=$1
if ls /tmp/wheels/torch-"$version"*.whl >/dev/null 2>&1; then
    pip install --find-links /tmp/wheels "torch==$version"
elif [ -n "${TORCH_INDEX_URL:-}" ]; then
    pip install --index-url "$TORCH_INDEX_URL" "torch==$version"
else
    echo "error: no CPU torch to install: put torch-$version+cpu-*.whl in docker/wheels/," \
         "or pass --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index URL>" >&2
    exit 1
fi
if pip list 2>/dev/null | grep -qi '^nvidia-'; then
    echo "error: CUDA packages were installed; this image is CPU-only" >&2
    exit 1
fi
