"""Open a scene from any file splatforge writes (PLY or checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from .checkpoint import load_checkpoint
from .gaussian_scene import GaussianScene


def load_scene(path: Union[str, Path], allow_empty: bool = False) -> GaussianScene:
    """Load a scene; one with no Gaussians is refused (ValueError naming the file) unless `allow_empty`."""
    path = Path(path)
    if path.suffix.lower() == ".ply":
        scene = GaussianScene.from_ply(path)
    elif path.suffix.lower() in (".pt", ".ckpt", ".pth"):
        scene = GaussianScene.from_state(load_checkpoint(path)["scene"])
    else:
        raise ValueError(f"{path}: unknown scene file type {path.suffix!r} (expected .ply or .pt checkpoint)")
    if len(scene) == 0 and not allow_empty:
        raise ValueError(f"{path}: the scene has no Gaussians (0 primitives), so there is nothing to render; "
                         f"check that it was written by a finished training run")
    return scene
