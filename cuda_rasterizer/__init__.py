"""splatforge's differentiable tile-based splat rasterizer (reference, CPU and CUDA backends).

This package imports nothing else of splatforge.
"""

from .backends import available_backends, register_backend, resolve_backend
from .rasterize import RasterizeOutput, rasterize_gaussians

__all__ = ["RasterizeOutput", "rasterize_gaussians", "available_backends", "register_backend", "resolve_backend"]
