"""Runtime dependencies load on this machine, and a missing shared library is reported by name.

The first test is the check a fresh machine needs (issue: open3d linked libusb-1.0, absent from the base image,
and only machines that had installed chromium for the tests had it). The others build a real extension module
against a real shared library, remove the library, and check that the failure names it.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from render.system_libs import (
    MissingSystemLibrary,
    describe_missing,
    import_with_system_libraries,
    missing_library_in,
    unresolved_libraries,
)

ROOT = Path(__file__).resolve().parents[1]
needs_cc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build a test shared library")


def test_runtime_dependencies_load_in_a_fresh_interpreter():
    result = subprocess.run(
        [sys.executable, "-m", "scripts.check_runtime", "--json"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    report = json.loads(result.stdout)
    broken = {c["name"]: c["missing_libraries"] or c["error"] for c in report["components"] if not c["ok"]}
    assert not broken, f"components that cannot load (run `bash scripts/setup.sh`): {broken}"
    assert result.returncode == 0
    names = {c["name"] for c in report["components"]}
    assert {"open3d", "viser", "cpu_rasterizer"} <= names


def _build_extension_linking(tmp_path: Path) -> Path:
    """Build libsfdep.so and a CPython extension `sf_needs_dep` that links it; returns the library path."""
    (tmp_path / "dep.c").write_text("int sf_dep_value(void) { return 7; }\n")
    (tmp_path / "mod.c").write_text(
        "#include <Python.h>\n"
        "int sf_dep_value(void);\n"
        "static PyObject* value(PyObject* s, PyObject* a) { return PyLong_FromLong(sf_dep_value()); }\n"
        "static PyMethodDef M[] = {{\"value\", value, METH_NOARGS, 0}, {0}};\n"
        "static struct PyModuleDef D = {PyModuleDef_HEAD_INIT, \"sf_needs_dep\", 0, -1, M};\n"
        "PyMODINIT_FUNC PyInit_sf_needs_dep(void) { return PyModule_Create(&D); }\n"
    )
    library = tmp_path / "libsfdep.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "dep.c", "-o", library.name], cwd=tmp_path, check=True)
    module = "sf_needs_dep" + sysconfig.get_config_var("EXT_SUFFIX")
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        ["gcc", "-shared", "-fPIC", f"-I{include}", "mod.c", "-L.", "-lsfdep", "-o", module], cwd=tmp_path, check=True
    )
    return library


@needs_cc
def test_unresolved_library_is_listed_by_ldd(tmp_path):
    library = _build_extension_linking(tmp_path)
    module = next(tmp_path.glob("sf_needs_dep*.so"))
    assert "libsfdep.so" in unresolved_libraries(module)  # not on the loader path
    library.unlink()
    assert unresolved_libraries(module) == ["libsfdep.so"]


@needs_cc
def test_import_names_the_missing_library(tmp_path, monkeypatch):
    library = _build_extension_linking(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    # The loader reads LD_LIBRARY_PATH at start-up, so load the working case in a child that has it set.
    code = "import sf_needs_dep; print(sf_needs_dep.value())"
    ok = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert ok.stdout.strip() == "7", ok.stderr
    library.unlink()
    sys.modules.pop("sf_needs_dep", None)
    importlib.invalidate_caches()
    with pytest.raises(MissingSystemLibrary, match=r"'sf_needs_dep'.*libsfdep\.so.*scripts/setup\.sh"):
        import_with_system_libraries("sf_needs_dep")


def test_known_libraries_name_their_debian_package():
    error = ImportError("libusb-1.0.so.0: cannot open shared object file: No such file or directory")
    assert missing_library_in(error) == "libusb-1.0.so.0"
    message = describe_missing("open3d", ["libusb-1.0.so.0"])
    assert "libusb-1.0-0" in message and "apt-get install libusb-1.0-0" in message
    assert missing_library_in(ImportError("No module named 'foo'")) is None


def test_other_import_errors_pass_through():
    with pytest.raises(ModuleNotFoundError):
        import_with_system_libraries("sf_no_such_module_anywhere")


def test_readme_lists_the_system_packages_setup_installs():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    readme = (ROOT / "README.md").read_text()
    packages = []
    for name in ("RUNTIME_PACKAGES", "TEST_PACKAGES"):
        match = re.search(rf"^{name}=\(([^)]*)\)", setup, re.MULTILINE)
        assert match, f"scripts/setup.sh defines no {name}"
        packages += match.group(1).split()
    section = readme.split("## System packages", 1)
    assert len(section) == 2, "README has no 'System packages' section"
    missing = [p for p in packages if f"`{p}`" not in section[1]]
    assert not missing, f"README's System packages section does not name {missing}"
