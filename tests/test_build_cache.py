"""The native build folder is keyed by the sources, headers and flags: two checkouts never share (and evict) one."""

from __future__ import annotations

import shutil

from cuda_rasterizer import _build


def _sources(csrc):
    return [csrc / "cpu" / "bindings.cpp", csrc / "cpu" / "project.cpp", csrc / "cpu" / "raster.cpp"]


def test_build_key_depends_on_sources_headers_and_flags(tmp_path, monkeypatch):
    copy = tmp_path / "csrc"
    shutil.copytree(_build._CSRC, copy)
    monkeypatch.setattr(_build, "_CSRC", copy)
    flags = ["-O3", "-fopenmp"]
    key = _build.build_key(_sources(copy), flags)
    assert key == _build.build_key(_sources(copy), list(flags))  # deterministic: an identical checkout shares it
    assert key != _build.build_key(_sources(copy), ["-O2", "-fopenmp"])
    header = copy / "sf_math.h"
    header.write_text(header.read_text() + "\n// another checkout's edit\n")
    edited_header = _build.build_key(_sources(copy), flags)
    assert edited_header != key
    source = copy / "cpu" / "raster.cpp"
    source.write_text(source.read_text() + "\n// edit\n")
    assert _build.build_key(_sources(copy), flags) not in (key, edited_header)


def test_build_folder_name_carries_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    key = _build.build_key(_sources(_build._CSRC), ["-O3"])
    folder = _build.cache_dir(f"splatforge_cpu_rasterizer_{key}")
    assert folder.parent == tmp_path and folder.is_dir() and folder.name.endswith(key)
