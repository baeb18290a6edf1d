"""splatforge's differentiable tile-based splat rasterizer (reference, CPU and CUDA backends).

This package imports nothing else of splatforge.
"""

import importlib
import shutil

import torch

from .backends import available_backends, register_backend, resolve_backend
from .rasterize import RasterizeOutput, rasterize_gaussians

# Native backends load (and compile on first use) lazily: importing the package builds nothing.
register_backend(
    "cpu",
    lambda: importlib.import_module(".cpu_backend", __name__),
    lambda: shutil.which("c++") is not None or shutil.which("g++") is not None,
)
register_backend(
    "cuda",
    lambda: importlib.import_module(".cuda_backend", __name__),
    lambda: torch.cuda.is_available(),
)

__all__ = ["RasterizeOutput", "rasterize_gaussians", "available_backends", "register_backend", "resolve_backend"]
