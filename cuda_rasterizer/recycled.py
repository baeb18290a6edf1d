"""Per-step CPU tensors in the native extension's recycled storage (its buffer pool).

A fresh CPU tensor of tens of MB comes from malloc, which hands such blocks back to the OS when they are freed, so
a tensor of the same size made every training step page-faults all its memory in again (at 1M primitives the SH
gradient alone is 180 MB a step). Tensors made here come from the pool the native stages use for their outputs and
go back to it when freed. Without the extension loaded in this process (another backend, or nothing native rendered
yet), or off the CPU, this is torch.empty.
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import _build


def recycled_empty(shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor of `shape` with `like`'s dtype and device (recycled storage for CPU float tensors)."""
    module = _build._CACHE.get("splatforge_cpu_rasterizer")
    if module is None or like.device.type != "cpu" or not like.dtype.is_floating_point:
        return like.new_empty(tuple(shape))
    return module.recycled_empty([int(s) for s in shape], like.dtype)
