"""Open and save a scene in any file type splatforge knows: PLY, checkpoint, .splat, .spz."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from .checkpoint import load_checkpoint
from .gaussian_scene import GaussianScene

SCENE_SUFFIXES = (".ply", ".pt", ".ckpt", ".pth", ".splat", ".spz")
EXPORT_SUFFIXES = (".ply", ".splat", ".spz")


def load_scene(path: Union[str, Path]) -> GaussianScene:
    """A GaussianScene from a PLY, checkpoint, `.splat` (SH degree 0) or `.spz` file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return GaussianScene.from_ply(path)
    if suffix in (".pt", ".ckpt", ".pth"):
        return GaussianScene.from_state(load_checkpoint(path)["scene"])
    if suffix == ".splat":
        from .splat_format import read_splat

        return GaussianScene(read_splat(path), sh_degree=0)
    if suffix == ".spz":
        from .spz import read_spz

        loaded = read_spz(path)
        return GaussianScene(loaded["params"], sh_degree=loaded["sh_degree"])
    raise ValueError(f"{path}: unknown scene file type {path.suffix!r} (expected one of {', '.join(SCENE_SUFFIXES)})")


def save_scene(scene: GaussianScene, path: Union[str, Path]) -> None:
    """Write `scene` as PLY, `.splat` or `.spz` by the suffix of `path`, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    params = {k: v.detach().cpu() for k, v in scene.params.items()}
    if suffix == ".ply":
        scene.save_ply(path)
    elif suffix == ".splat":
        from .splat_format import write_splat

        write_splat(path, params)
    elif suffix == ".spz":
        from .spz import write_spz

        write_spz(path, params, scene.sh_degree)
    else:
        raise ValueError(f"{path}: cannot export to {path.suffix!r} (expected one of {', '.join(EXPORT_SUFFIXES)})")
