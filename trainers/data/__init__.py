"""Dataset readers: every reader returns a SceneData of posed train/test views and optional seed points."""

from typing import Any

from .blender import load_blender
from .colmap import load_colmap
from .colmap_model import read_colmap_model, write_colmap_model
from .dataset import SceneData, View
from .llff import load_llff
from .load import detect_format, load_dataset
from .n3dv import load_n3dv
from .nerfstudio import load_nerfstudio
from .normalize import apply_similarity, normalize_scene, similarity_from_cameras
from .panoptic import load_panoptic

__all__ = [
    "DemoSceneConfig",
    "SceneData",
    "View",
    "apply_similarity",
    "detect_format",
    "generate_demo_scene",
    "load_blender",
    "load_colmap",
    "load_dataset",
    "load_llff",
    "load_n3dv",
    "load_nerfstudio",
    "load_panoptic",
    "normalize_scene",
    "read_colmap_model",
    "similarity_from_cameras",
    "write_colmap_model",
]


def __getattr__(name: str) -> Any:
    # demo_scene is imported lazily so `python -m trainers.data.demo_scene` runs it cleanly
    if name in ("DemoSceneConfig", "generate_demo_scene"):
        from . import demo_scene

        return getattr(demo_scene, name)
    raise AttributeError(f"module 'trainers.data' has no attribute {name!r}")
