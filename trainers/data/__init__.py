"""Dataset readers: every reader returns a SceneData of posed train/test views and optional seed points."""

from .blender import load_blender
from .dataset import SceneData, View
from .demo_scene import DemoSceneConfig, generate_demo_scene
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
