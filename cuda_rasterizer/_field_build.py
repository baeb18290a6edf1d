"""JIT builds of the radiance-field kernels: separate extensions from the rasterizer (same cache, same `_load`)."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Optional

from ._build import _CSRC, _default_arch_list, _load


def build_cpu_field_extension() -> ModuleType:
    """Compile (first use only, ~30 s) and import the OpenMP field kernels (`splatforge_cpu_field`)."""
    cpu = _CSRC / "cpu"
    return _load(
        "splatforge_cpu_field",
        [cpu / "field_bindings.cpp", cpu / "field.cpp"],
        "splatforge: compiling the CPU radiance-field kernels (first use, ~30 s)...",
        extra_cflags=["-O3", "-fopenmp", "-march=native", "-fno-trapping-math"],
        extra_ldflags=["-fopenmp"],
        extra_include_paths=[str(_CSRC)],
    )


def build_cuda_field_extension(arch_list: Optional[str] = None) -> ModuleType:
    """Compile and import the CUDA field kernels (`splatforge_cuda_field_smXX`); works without a GPU (needs nvcc).

    `arch_list` as for `build_cuda_extension`: the visible GPU's capability, else $TORCH_CUDA_ARCH_LIST, else 8.0.
    """
    os.environ.setdefault("CUDA_HOME", "/usr/local/cuda")
    from torch.utils import cpp_extension

    cpp_extension.CUDA_HOME = os.environ["CUDA_HOME"]
    arch_list = arch_list or _default_arch_list()
    tag = "".join(ch if ch.isalnum() else "_" for ch in arch_list.replace(".", ""))
    cu = _CSRC / "cuda"
    saved = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list
    try:
        return _load(
            f"splatforge_cuda_field_sm{tag}",
            [cu / "field_bindings.cpp", cu / "field.cu"],
            f"splatforge: compiling the CUDA radiance-field kernels for compute capability {arch_list}...",
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3", "-lineinfo"],
            extra_include_paths=[str(_CSRC)],
        )
    finally:
        if saved is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = saved
