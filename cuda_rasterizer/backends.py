"""Backend registry: each backend provides the same differentiable stages.

A backend is a module-like object with `quat_scale_to_covar`, `project`, `eval_sh`, `sh_colors` (the pipeline's
colours from SH, max(SH + 0.5, 0)) and `rasterize_to_pixels` taking the arguments of the functions in
`reference.py`. `auto` prefers cuda, then cpu, then reference.
"""

from __future__ import annotations

from types import ModuleType
from typing import Callable, Dict, List

import torch

from . import reference

_LOADERS: Dict[str, Callable[[], object]] = {"reference": lambda: reference}
_AVAILABILITY: Dict[str, Callable[[], bool]] = {"reference": lambda: True}
_PREFERENCE = ["cuda", "cpu", "reference"]


def register_backend(name: str, loader: Callable[[], object], available: Callable[[], bool]) -> None:
    """Make a backend selectable by name; `loader` imports (and builds) it lazily."""
    _LOADERS[name] = loader
    _AVAILABILITY[name] = available


def available_backends() -> List[str]:
    return [name for name in _PREFERENCE if name in _AVAILABILITY and _AVAILABILITY[name]()]


def resolve_backend(name: str, device: torch.device) -> str:
    """Turn 'auto' into a concrete backend name for tensors on `device`."""
    if name != "auto":
        if name not in _LOADERS:
            raise ValueError(f"unknown rasterizer backend {name!r}; choose from {['auto'] + list(_LOADERS)}")
        return name
    for candidate in _PREFERENCE:
        if candidate == "cuda" and device.type != "cuda":
            continue
        if candidate == "cpu" and device.type != "cpu":
            continue
        if candidate in _AVAILABILITY and _AVAILABILITY[candidate]():
            return candidate
    return "reference"


def get_backend(name: str) -> ModuleType:
    if name not in _LOADERS:
        raise ValueError(f"unknown rasterizer backend {name!r}; choose from {list(_LOADERS)}")
    return _LOADERS[name]()


def prepare_backend(name: str, device: torch.device) -> str:
    """Resolve `name` for `device` and build/load it now (a native backend compiles on first use).

    Callers that time their work (training clocks, benchmarks) call this first, so a one-off compile is not
    counted as the first step's time. Returns the resolved backend name.
    """
    resolved = resolve_backend(name, device)
    ensure_built = getattr(get_backend(resolved), "ensure_built", None)  # native backends; the reference has none
    if callable(ensure_built):
        ensure_built()
    return resolved
