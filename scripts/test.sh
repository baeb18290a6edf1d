#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run it. Exit status = pytest's.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --test
# gsplat's PyTorch references are an independent check of our projection and SH (pure Python install; its
# CUDA kernels are never built here). --no-deps keeps it from touching our torch.
python3 -m pip install -q --no-deps "gsplat>=1.5" jaxtyping || echo "[setup] gsplat unavailable: its cross-check tests will skip"

# The CUDA extension is compiled (not run) here: there is no GPU, so name the toolkit and one architecture.
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0}"

python3 -m pytest -ra "$@"
