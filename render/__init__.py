"""Cameras, render(), compositing and writers."""

from .camera import Camera
from .render import RenderOutput, prepare_renderer, render

__all__ = ["Camera", "RenderOutput", "prepare_renderer", "render"]
