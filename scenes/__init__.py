"""Scene models and their files."""

from .base import SplatScene
from .checkpoint import load_checkpoint, save_checkpoint
from .gabor_scene import GaborScene
from .gaussian4d_scene import Gaussian4DScene
from .gaussian_scene import GaussianScene
from .loading import load_scene, save_scene, scene_from_state

__all__ = [
    "SplatScene",
    "GaussianScene",
    "Gaussian4DScene",
    "GaborScene",
    "load_scene",
    "save_scene",
    "scene_from_state",
    "load_checkpoint",
    "save_checkpoint",
]
