"""Open a scene from any file splatforge writes (PLY or checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from .checkpoint import load_checkpoint
from .gaussian_scene import GaussianScene


def load_scene(path: Union[str, Path]) -> GaussianScene:
    path = Path(path)
    if path.suffix.lower() == ".ply":
        return GaussianScene.from_ply(path)
    if path.suffix.lower() in (".pt", ".ckpt", ".pth"):
        return GaussianScene.from_state(load_checkpoint(path)["scene"])
    raise ValueError(f"{path}: unknown scene file type {path.suffix!r} (expected .ply or .pt checkpoint)")
