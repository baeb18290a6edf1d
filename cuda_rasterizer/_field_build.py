"""JIT builds of the radiance-field kernels: separate extensions from the rasterizer (same cache, same `_load`)."""

from __future__ import annotations

from types import ModuleType
from typing import Optional

from ._build import _CSRC, _load, load_cuda, memoised


@memoised
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


@memoised
def build_cuda_field_extension(arch_list: Optional[str] = None) -> ModuleType:
    """Compile and import the CUDA field kernels (`splatforge_cuda_field_smXX`, see `_build.load_cuda`)."""
    cu = _CSRC / "cuda"
    return load_cuda(
        "splatforge_cuda_field",
        [cu / "field_bindings.cpp", cu / "field.cu"],
        "splatforge: compiling the CUDA radiance-field kernels for compute capability {arch}...",
        arch_list, ["-O3", "-lineinfo"],
    )
