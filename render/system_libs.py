"""Shared libraries that Python packages load at import time, and the Debian packages that provide them.

A fresh machine can have every Python wheel installed and still fail at import: open3d's module links
libusb-1.0 (for its RealSense support), which the base image lacks. This module turns such a failure into one
clear error naming the library and the package to install, and lists unresolved libraries with `ldd`.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional

# Library soname -> Debian package that ships it (the ones our dependencies are known to need).
DEBIAN_PACKAGES: Dict[str, str] = {
    "libusb-1.0.so.0": "libusb-1.0-0",
    "libgomp.so.1": "libgomp1",
    "libstdc++.so.6": "libstdc++6",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libX11.so.6": "libx11-6",
    "libglib-2.0.so.0": "libglib2.0-0",
}

SETUP_HINT = "bash scripts/setup.sh"
_MISSING_RE = re.compile(r"([\w.+-]+\.so[\w.]*): cannot open shared object file")
_LDD_RE = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$")


class MissingSystemLibrary(FileNotFoundError):
    """A Python package is installed but a shared library it links is not on the system."""


def debian_package(library: str) -> Optional[str]:
    """The Debian package that provides `library`, when we know it."""
    return DEBIAN_PACKAGES.get(library)


def describe_missing(module: str, libraries: List[str]) -> str:
    """One line: which module cannot load which libraries, and the command that installs them."""
    packages = [debian_package(lib) for lib in libraries]
    named = ", ".join(f"{lib} (Debian package {pkg})" if pkg else lib for lib, pkg in zip(libraries, packages))
    known = sorted({p for p in packages if p})
    fix = f"run `{SETUP_HINT}`" + (f" or `apt-get install {' '.join(known)}`" if known else "")
    return f"Python module '{module}' is installed but cannot load the system library {named}: {fix}"


def missing_library_in(error: BaseException) -> Optional[str]:
    """The shared library an ImportError/OSError message says could not be opened, else None."""
    match = _MISSING_RE.search(str(error))
    return match.group(1) if match else None


def unresolved_libraries(shared_object: Path) -> List[str]:
    """Libraries `ldd` cannot resolve for `shared_object` (empty when all resolve or ldd is absent)."""
    if shutil.which("ldd") is None:
        return []
    result = subprocess.run(["ldd", str(shared_object)], capture_output=True, text=True, check=False)
    found = [m.group(1) for m in map(_LDD_RE.match, result.stdout.splitlines()) if m]
    return list(dict.fromkeys(found))


def import_with_system_libraries(module: str) -> ModuleType:
    """Import `module`; a missing shared library becomes MissingSystemLibrary naming it and its package."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        library = missing_library_in(exc)
        if library is None:
            raise
        raise MissingSystemLibrary(describe_missing(module, [library])) from exc


def import_open3d() -> ModuleType:
    """open3d, or a clear error when a system library it links (libusb-1.0) is missing."""
    return import_with_system_libraries("open3d")
