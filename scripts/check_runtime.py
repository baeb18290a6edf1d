"""sf-doctor: check that every runtime dependency imports and its shared libraries resolve on this machine.

Each Python module is imported in its own subprocess (a broken native library must not take this process down);
open3d's native modules and our compiled CPU rasterizer are also checked with `ldd`, so every missing library is
named at once, with the Debian package that provides it. Exit status 1 when anything is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import tyro

from render.system_libs import debian_package, missing_library_in, unresolved_libraries

# Modules the commands import, with what needs them.
RUNTIME_MODULES = {
    "torch": "everything",
    "numpy": "everything",
    "open3d": "demo scenes and shadow ray casting",
    "viser": "the browser viewer",
    "cv2": "image resizing and undistortion",
    "imageio": "image and video files",
    "plyfile": "PLY scenes",
    "scipy": "initial scales",
    "matplotlib": "training curves",
    "tyro": "the command lines",
    "kiss_icp": "LiDAR odometry for driving logs without poses",
}
# Native shared objects inside a package, checked with ldd (relative to the package folder).
NATIVE_OBJECTS = {"open3d": ["pybind*.so", "libOpen3D.so*"]}


@dataclass
class ComponentReport:
    name: str
    needed_for: str
    ok: bool
    missing_libraries: List[str] = field(default_factory=list)
    packages: List[str] = field(default_factory=list)
    error: Optional[str] = None


def _import_in_subprocess(module: str) -> Optional[str]:
    """None when `module` imports in a fresh interpreter, else the last line of the error."""
    code = f"import {module}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return None
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {result.returncode}"


def _package_dir(module: str) -> Optional[Path]:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _report(name: str, needed_for: str, error: Optional[str], missing: List[str]) -> ComponentReport:
    library = missing_library_in(error) if error else None
    if library and library not in missing:
        missing = [library, *missing]
    packages = sorted({p for p in map(debian_package, missing) if p})
    return ComponentReport(name, needed_for, error is None and not missing, missing, packages, error)


def check_module(module: str, needed_for: str) -> ComponentReport:
    """Import `module` in a subprocess and ldd its known native objects."""
    error = _import_in_subprocess(module)
    missing: List[str] = []
    folder = _package_dir(module) if module in NATIVE_OBJECTS else None
    for pattern in NATIVE_OBJECTS.get(module, []) if folder else []:
        for shared_object in sorted(folder.glob(pattern)):
            missing += [lib for lib in unresolved_libraries(shared_object) if lib not in missing]
    return _report(module, needed_for, error, missing)


def check_cpu_rasterizer() -> ComponentReport:
    """Build (first use) and import the CPU rasterizer in a subprocess.

    No ldd here: the module links torch's libraries, which resolve only once torch is loaded, so importing it is
    the real check; a library that fails to load is named by the import error.
    """
    code = "from cuda_rasterizer._build import build_cpu_extension as b; print(b().__file__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        return _report("cpu_rasterizer", "rendering and training", lines[-1] if lines else "build failed", [])
    return _report("cpu_rasterizer", "rendering and training", None, [])


@dataclass
class DoctorConfig:
    """Check that splatforge's runtime dependencies load on this machine."""

    json: bool = False
    """Print one JSON object instead of a table."""
    rasterizer: bool = True
    """Also build (first use, ~1 min) and check the compiled CPU rasterizer."""


def run_checks(config: DoctorConfig) -> List[ComponentReport]:
    reports = [check_module(module, why) for module, why in RUNTIME_MODULES.items()]
    if config.rasterizer:
        reports.append(check_cpu_rasterizer())
    return reports


def main(config: DoctorConfig) -> int:
    reports = run_checks(config)
    failed = [r for r in reports if not r.ok]
    if config.json:
        print(json.dumps({"ok": not failed, "components": [asdict(r) for r in reports]}, indent=2))
    else:
        for r in reports:
            status = "ok" if r.ok else "MISSING " + (", ".join(r.missing_libraries) or (r.error or "?"))
            print(f"{r.name:<15} {status}   ({r.needed_for})")
        if failed:
            packages = sorted({p for r in failed for p in r.packages})
            fix = f"apt-get install {' '.join(packages)}" if packages else "see the errors above"
            print(f"\n{len(failed)} component(s) cannot load: run `bash scripts/setup.sh` or `{fix}`")
    return 1 if failed else 0


def entrypoint() -> None:
    raise SystemExit(main(tyro.cli(DoctorConfig)))


if __name__ == "__main__":
    entrypoint()
