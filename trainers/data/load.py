"""Format auto-detection: one entry point for every dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from .blender import load_blender
from .dataset import SceneData
from .nerfstudio import load_nerfstudio


def detect_format(path: Path) -> str:
    """'nerfstudio' (transforms.json) or 'blender' (transforms_train.json); error names the folder otherwise."""
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return "blender" if path.name.startswith("transforms_") else "nerfstudio"
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: dataset folder not found")
    if (path / "transforms.json").is_file():
        return "nerfstudio"
    if (path / "transforms_train.json").is_file():
        return "blender"
    raise ValueError(
        f"{path}: unrecognised dataset folder (expected transforms.json for nerfstudio or "
        f"transforms_train.json for Blender/D-NeRF)"
    )


def load_dataset(path: Path, downscale: int = 1, background: Optional[Sequence[float]] = None) -> SceneData:
    """Load any supported dataset folder, auto-detecting its format."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "nerfstudio":
        return load_nerfstudio(path, downscale=downscale, background=background)
    folder = path.parent if path.is_file() else path
    return load_blender(folder, downscale=downscale, background=background)
