"""Estimate a directional light + ambient level from a splat scene, seen from a point (e.g. a mesh's centre)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch

from .camera import Camera
from .conventions import look_at_w2c
from .render import render
from .shadows import camera_ray_directions

# Cube faces: (forward, up) pairs covering the sphere.
_FACES = (
    ((1, 0, 0), (0, 0, 1)),
    ((-1, 0, 0), (0, 0, 1)),
    ((0, 1, 0), (0, 0, 1)),
    ((0, -1, 0), (0, 0, 1)),
    ((0, 0, 1), (0, 1, 0)),
    ((0, 0, -1), (0, 1, 0)),
)


@dataclass(frozen=True)
class LightEstimate:
    direction: Tuple[float, float, float]  # unit vector from the probe point toward the light
    intensity: float  # mean luminance of the brightest directions
    ambient: float  # solid-angle weighted mean luminance over the sphere


def render_cube(scene, position, resolution: int = 32, backend: str = "auto", near: float = 0.01):
    """Render 6 90-degree views from `position`: returns (directions (N, 3) unit, rgb (N, 3), solid angles (N,))."""
    position = np.asarray(position, dtype=np.float64)
    dirs, colours, weights = [], [], []
    for forward, up in _FACES:
        w2c = look_at_w2c(position, position + np.asarray(forward, dtype=np.float64), up)
        cam = Camera(w2c, resolution / 2, resolution / 2, resolution / 2, resolution / 2, resolution, resolution, near=near)
        with torch.no_grad():
            out = render(scene, cam, background=(0.0, 0.0, 0.0), backend=backend)
        d = camera_ray_directions(cam).reshape(-1, 3)
        norm = np.linalg.norm(d, axis=1, keepdims=True)
        dirs.append(d / norm)
        weights.append(1.0 / norm[:, 0] ** 3)  # solid angle of a cube-face pixel at z = 1
        colours.append(out.rgb.detach().float().cpu().numpy().reshape(-1, 3))
    return np.concatenate(dirs), np.concatenate(colours), np.concatenate(weights)


def estimate_light(
    scene, position, resolution: int = 32, backend: str = "auto", top_percent: float = 2.0
) -> LightEstimate:
    """Dominant bright direction and ambient level seen from `position`.

    Direction: luminance- and solid-angle-weighted mean of the pixels in the top `top_percent` that are also at
    least half as bright as the brightest one; intensity: their mean luminance; ambient: mean luminance.
    """
    dirs, rgb, solid = render_cube(scene, position, resolution, backend)
    lum = rgb @ np.array([0.2126, 0.7152, 0.0722])
    ambient = float((lum * solid).sum() / solid.sum())
    threshold = max(np.percentile(lum, 100.0 - top_percent), 0.5 * lum.max())  # the brightest lobe only
    top = lum >= threshold
    if lum[top].max() <= 1e-6:
        return LightEstimate((0.0, 0.0, 1.0), 0.0, ambient)
    weighted = (dirs[top] * (lum[top] * solid[top])[:, None]).sum(axis=0)
    norm = np.linalg.norm(weighted)
    direction = weighted / norm if norm > 1e-9 else np.array([0.0, 0.0, 1.0])
    intensity = float((lum[top] * solid[top]).sum() / solid[top].sum())
    return LightEstimate(tuple(float(x) for x in direction), intensity, ambient)
