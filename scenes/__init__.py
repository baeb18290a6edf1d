"""Scene models and their files."""

from .checkpoint import load_checkpoint, save_checkpoint
from .gaussian_scene import GaussianScene
from .loading import load_scene, save_scene

__all__ = ["GaussianScene", "load_scene", "save_scene", "load_checkpoint", "save_checkpoint"]
