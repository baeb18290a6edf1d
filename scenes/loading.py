"""Open and save a scene in any file type splatforge knows (PLY, checkpoint, .splat, .spz): 3D, 4D or Gabor."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

from .base import SplatScene
from .checkpoint import load_checkpoint
from .gabor_scene import GaborScene
from .gaussian4d_scene import Gaussian4DScene
from .gaussian_scene import GaussianScene

SCENE_SUFFIXES = (".ply", ".pt", ".ckpt", ".pth", ".splat", ".spz")
EXPORT_SUFFIXES = (".ply", ".splat", ".spz")
from .radiance_field import RadianceField

SCENE_TYPES = {cls.KIND: cls for cls in (GaussianScene, Gaussian4DScene, GaborScene, RadianceField)}


def scene_from_state(state: Dict[str, object]) -> SplatScene:
    """The scene a checkpoint's 'scene' entry describes (its 'kind'; checkpoints without one are 3D)."""
    kind = state.get("kind", GaussianScene.KIND)
    if kind not in SCENE_TYPES:
        raise ValueError(f"unknown scene kind {kind!r} in checkpoint (known: {sorted(SCENE_TYPES)})")
    return SCENE_TYPES[kind].from_state(state)


def _read(path: Path):
    from .gabor_ply import is_gabor_ply
    from .ply import is_gaussian4d_ply

    suffix = path.suffix.lower()
    if suffix == ".ply":
        if path.is_file() and is_gaussian4d_ply(path):
            return Gaussian4DScene.from_ply(path)
        if path.is_file() and is_gabor_ply(path):
            return GaborScene.from_ply(path)
        return GaussianScene.from_ply(path)
    if suffix in (".pt", ".ckpt", ".pth"):
        payload = load_checkpoint(path)
        try:
            return scene_from_state(payload["scene"])
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    if suffix == ".splat":
        from .splat_format import read_splat

        return GaussianScene(read_splat(path), sh_degree=0)
    if suffix == ".spz":
        from .spz import read_spz

        loaded = read_spz(path)
        return GaussianScene(loaded["params"], sh_degree=loaded["sh_degree"])
    raise ValueError(f"{path}: unknown scene file type {path.suffix!r} (expected one of {', '.join(SCENE_SUFFIXES)})")


def load_scene(path: Union[str, Path], allow_empty: bool = False) -> SplatScene:
    """A 3D, 4D or Gabor scene from a PLY or checkpoint, or a 3D one from `.splat` (SH degree 0) or `.spz`.

    One with no primitives is refused (ValueError naming the file) unless `allow_empty`.
    """
    path = Path(path)
    scene = _read(path)
    if isinstance(scene, SplatScene) and len(scene) == 0 and not allow_empty:
        raise ValueError(f"{path}: the scene has no Gaussians (0 primitives), so there is nothing to render; "
                         f"check that it was written by a finished training run")
    return scene


def save_scene(scene: SplatScene, path: Union[str, Path]) -> None:
    """Write `scene` as PLY, `.splat` or `.spz` by the suffix of `path`, atomically (4D and Gabor scenes: PLY only)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise ValueError(f"{path}: cannot export to {path.suffix!r} (expected one of {', '.join(EXPORT_SUFFIXES)})")
    if not isinstance(scene, SplatScene):
        raise ValueError(f"{path}: a {type(scene).__name__} has no splats to export; turn a radiance field into "
                         f"Gaussians with sf-distill first")
    if suffix != ".ply" and not isinstance(scene, GaussianScene):
        raise ValueError(f"{path}: {path.suffix} holds static 3D Gaussians only; export this {type(scene).__name__} as .ply")
    params = {k: v.detach().cpu() for k, v in scene.params.items()}
    if suffix == ".ply":
        scene.save_ply(path)
    elif suffix == ".splat":
        from .splat_format import write_splat

        write_splat(path, params)
    else:
        from .spz import write_spz

        write_spz(path, params, scene.sh_degree)
