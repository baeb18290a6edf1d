"""splatforge's differentiable tile-based splat rasterizer (reference, CPU and CUDA backends).

This package imports nothing else of splatforge. Backends: `reference` (dense torch oracle), `cpu` (OpenMP C++,
JIT-compiled on first use into $TORCH_EXTENSIONS_DIR or ~/.cache/splatforge/torch_extensions; prebuild with
`python -c "from cuda_rasterizer._build import build_cpu_extension as b; b()"`), `cuda` (registered only when a GPU
is visible; `cuda_rasterizer._build.build_cuda_extension("8.0")` compiles and imports it without one).
Threads: `cuda_rasterizer.cpu_backend.set_num_threads(n)`. After backward, `meta["means2d"].absgrad` holds the
per-primitive sum of |per-pixel d loss / d means2d| (native backends).
"""

import functools
import importlib
import shutil

import torch

from .backends import available_backends, prepare_backend, register_backend, resolve_backend
from .rasterize import RasterizeOutput, rasterize_gaussians

# Native backends load (and compile on first use) lazily: importing the package builds nothing.


@functools.lru_cache(maxsize=None)
def _has_cxx_compiler() -> bool:
    """Whether the CPU backend can be built here (asked once: `auto` resolves the backend on every render)."""
    return shutil.which("c++") is not None or shutil.which("g++") is not None


register_backend("cpu", lambda: importlib.import_module(".cpu_backend", __name__), _has_cxx_compiler)
register_backend(
    "cuda",
    lambda: importlib.import_module(".cuda_backend", __name__),
    lambda: torch.cuda.is_available(),
)

__all__ = [
    "RasterizeOutput",
    "rasterize_gaussians",
    "available_backends",
    "prepare_backend",
    "register_backend",
    "resolve_backend",
]
