"""Open a scene from any file splatforge writes (PLY or checkpoint), 3D or 4D."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

from .base import SplatScene
from .checkpoint import load_checkpoint
from .gaussian4d_scene import Gaussian4DScene
from .gaussian_scene import GaussianScene

SCENE_TYPES = {cls.KIND: cls for cls in (GaussianScene, Gaussian4DScene)}


def scene_from_state(state: Dict[str, object]) -> SplatScene:
    """The scene a checkpoint's 'scene' entry describes (its 'kind'; checkpoints without one are 3D)."""
    kind = state.get("kind", GaussianScene.KIND)
    if kind not in SCENE_TYPES:
        raise ValueError(f"unknown scene kind {kind!r} in checkpoint (known: {sorted(SCENE_TYPES)})")
    return SCENE_TYPES[kind].from_state(state)


def load_scene(path: Union[str, Path]) -> SplatScene:
    from .ply import is_gaussian4d_ply

    path = Path(path)
    if path.suffix.lower() == ".ply":
        if path.is_file() and is_gaussian4d_ply(path):
            return Gaussian4DScene.from_ply(path)
        return GaussianScene.from_ply(path)
    if path.suffix.lower() in (".pt", ".ckpt", ".pth"):
        payload = load_checkpoint(path)
        try:
            return scene_from_state(payload["scene"])
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    raise ValueError(f"{path}: unknown scene file type {path.suffix!r} (expected .ply or .pt checkpoint)")
