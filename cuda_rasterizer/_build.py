"""JIT builds of the native backends (torch.utils.cpp_extension + ninja) into a per-user cache directory."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, List, Optional, TypeVar

_CSRC = Path(__file__).resolve().parent / "csrc"
_LOCK = threading.Lock()
_CACHE: Dict[str, ModuleType] = {}


def cache_dir(name: str) -> Path:
    """Build folder for extension `name`: $TORCH_EXTENSIONS_DIR/name, else ~/.cache/splatforge/torch_extensions/name."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "splatforge", "torch_extensions"
    )
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_key(sources: List[Path], flags: List[str]) -> str:
    """Short hash of every source and header under csrc/ plus the compile flags.

    Keys the build folder, so two checkouts (or a checkout and an installed copy) with different sources keep
    separate builds instead of evicting each other's, and identical sources share one build.
    """
    digest = hashlib.sha256()
    files = sorted({*map(Path, sources), *_CSRC.rglob("*.h"), *_CSRC.rglob("*.cuh")})
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update("\0".join(flags).encode())
    return digest.hexdigest()[:12]


def _require_cxx() -> None:
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None and shutil.which("g++") is None:
        raise RuntimeError(
            "splatforge: no C++ compiler found (looked for $CXX / c++ / g++); install g++ (e.g. `apt-get install g++`) "
            "or use backend='reference'"
        )


Builder = TypeVar("Builder", bound=Callable[..., ModuleType])


def memoised(builder: Builder) -> Builder:
    """`builder`, returning the module it loaded before for the same arguments without recomputing its sources, flags or
    environment: every render asks for its extension, and on a GPU that host work is what bounds a training step."""
    loaded: Dict[tuple, ModuleType] = {}

    @functools.wraps(builder)
    def cached(*args, **kwargs) -> ModuleType:
        key = (args, tuple(sorted(kwargs.items())))
        module = loaded.get(key)
        if module is None:
            module = loaded[key] = builder(*args, **kwargs)
        return module

    return cached  # type: ignore[return-value]


def _load(name: str, sources: List[Path], message: str, **kwargs) -> ModuleType:
    from torch.utils import cpp_extension

    with _LOCK:
        if name in _CACHE:
            return _CACHE[name]
        _require_cxx()
        flags = [*kwargs.get("extra_cflags", []), *kwargs.get("extra_cuda_cflags", []), *kwargs.get("extra_ldflags", [])]
        flags.append(os.environ.get("TORCH_CUDA_ARCH_LIST", ""))
        build = cache_dir(f"{name}_{build_key(sources, flags)}")
        if not any(build.glob("*.so")):
            print(message, file=sys.stderr, flush=True)
        module = cpp_extension.load(
            name=name, sources=[str(s) for s in sources], build_directory=str(build), verbose=False, **kwargs
        )
        _CACHE[name] = module
        return module


@memoised
def build_cpu_extension() -> ModuleType:
    """Compile (first use only, ~1 min) and import the OpenMP CPU rasterizer."""
    cpu = _CSRC / "cpu"
    # SPLATFORGE_CPU_CFLAGS: extra compiler flags, e.g. "-mno-avx512f" to build and time the AVX2 kernels on an
    # AVX-512 host (they are part of the build key, so each variant keeps its own cached build).
    extra = os.environ.get("SPLATFORGE_CPU_CFLAGS", "").split()
    return _load(
        "splatforge_cpu_rasterizer",
        [cpu / "bindings.cpp", cpu / "project.cpp", cpu / "sh.cpp", cpu / "gabor_project.cpp", cpu / "raster.cpp", cpu / "fused_loss.cpp"],
        "splatforge: compiling the CPU rasterizer (first use, ~1 min)...",
        extra_cflags=["-O3", "-fopenmp", "-march=native", "-fno-trapping-math", "-mprefer-vector-width=512", *extra],
        extra_ldflags=["-fopenmp"],
        extra_include_paths=[str(_CSRC)],
    )


def _default_arch_list() -> str:
    """The visible GPU's compute capability (the kernels must run on it); else $TORCH_CUDA_ARCH_LIST, else 8.0."""
    import torch

    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"{major}.{minor}"
    return os.environ.get("TORCH_CUDA_ARCH_LIST") or "8.0"


def load_cuda(name: str, sources: List[Path], message: str, arch_list: Optional[str], cuda_flags: List[str]) -> ModuleType:
    """Compile and import CUDA extension `{name}_sm{arch}` for `arch_list` (default: the visible GPU's capability,
    else $TORCH_CUDA_ARCH_LIST, else "8.0"); works without a GPU (needs nvcc). Each arch list gets its own build
    folder and module, so a compile check for 8.0 never shadows the build a GPU needs; the environment is restored."""
    os.environ.setdefault("CUDA_HOME", "/usr/local/cuda")
    from torch.utils import cpp_extension

    # torch caches CUDA_HOME when cpp_extension is first imported (e.g. by the CPU build, maybe before CUDA_HOME was
    # set, guessing /usr/local from nvcc's location); point it at the real toolkit.
    cpp_extension.CUDA_HOME = os.environ["CUDA_HOME"]
    arch_list = arch_list or _default_arch_list()
    tag = "".join(ch if ch.isalnum() else "_" for ch in arch_list.replace(".", ""))
    saved = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list  # read by cpp_extension when it writes the nvcc flags
    try:
        return _load(
            f"{name}_sm{tag}", sources, message.format(arch=arch_list), extra_cflags=["-O3"],
            extra_cuda_cflags=cuda_flags, extra_include_paths=[str(_CSRC)],
        )
    finally:
        if saved is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = saved


@memoised
def build_cuda_extension(arch_list: Optional[str] = None) -> ModuleType:
    """Compile and import the CUDA rasterizer (`splatforge_cuda_rasterizer_smXX`, see `load_cuda`)."""
    cu = _CSRC / "cuda"
    return load_cuda(
        "splatforge_cuda_rasterizer",
        [cu / "bindings.cpp", cu / "project.cu", cu / "gabor_project.cu", cu / "raster.cu", cu / "fused_loss.cu"],
        "splatforge: compiling the CUDA rasterizer for compute capability {arch} (first use, a few minutes)...",
        arch_list, ["-O3", "--use_fast_math", "-lineinfo"],
    )
