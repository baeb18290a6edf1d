"""Dataset readers: every reader returns a SceneData of posed train/test views and optional seed points."""

from typing import Any

from .blender import load_blender
from .dataset import SceneData, View
from .load import detect_format, load_dataset
from .nerfstudio import load_nerfstudio

__all__ = [
    "DemoSceneConfig",
    "SceneData",
    "View",
    "detect_format",
    "generate_demo_scene",
    "load_blender",
    "load_dataset",
    "load_nerfstudio",
]


def __getattr__(name: str) -> Any:
    # demo_scene is imported lazily so `python -m trainers.data.demo_scene` runs it cleanly
    if name in ("DemoSceneConfig", "generate_demo_scene"):
        from . import demo_scene

        return getattr(demo_scene, name)
    raise AttributeError(f"module 'trainers.data' has no attribute {name!r}")
