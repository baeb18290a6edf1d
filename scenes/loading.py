"""Open and save a scene in any file type splatforge knows: PLY, checkpoint, .splat, .spz."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from .checkpoint import load_checkpoint
from .gaussian_scene import GaussianScene

SCENE_SUFFIXES = (".ply", ".pt", ".ckpt", ".pth", ".splat", ".spz")
EXPORT_SUFFIXES = (".ply", ".splat", ".spz")


def load_scene(path: Union[str, Path], allow_empty: bool = False) -> GaussianScene:
    """A GaussianScene from a PLY, checkpoint, `.splat` (SH degree 0) or `.spz` file.

    One with no Gaussians is refused (ValueError naming the file) unless `allow_empty`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        scene = GaussianScene.from_ply(path)
    elif suffix in (".pt", ".ckpt", ".pth"):
        scene = GaussianScene.from_state(load_checkpoint(path)["scene"])
    elif suffix == ".splat":
        from .splat_format import read_splat

        scene = GaussianScene(read_splat(path), sh_degree=0)
    elif suffix == ".spz":
        from .spz import read_spz

        loaded = read_spz(path)
        scene = GaussianScene(loaded["params"], sh_degree=loaded["sh_degree"])
    else:
        raise ValueError(f"{path}: unknown scene file type {path.suffix!r} (expected one of {', '.join(SCENE_SUFFIXES)})")
    if len(scene) == 0 and not allow_empty:
        raise ValueError(f"{path}: the scene has no Gaussians (0 primitives), so there is nothing to render; "
                         f"check that it was written by a finished training run")
    return scene


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
