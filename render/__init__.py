"""Cameras, render(), compositing and writers."""

from .camera import Camera
from .render import RenderOutput, render

__all__ = ["Camera", "RenderOutput", "render"]
