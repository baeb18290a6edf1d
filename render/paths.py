"""Camera paths for batch renders: an orbit around a scene's cameras, optionally playing through time."""

from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np

from .camera import Camera
from .conventions import look_at_w2c


def focus_point(cameras: Sequence[Camera]) -> np.ndarray:
    """The least-squares point closest to every camera's optical axis (where a capture is looking)."""
    centers = np.stack([c.center.numpy() for c in cameras]).astype(np.float64)
    dirs = np.stack([c.camera_to_world.numpy()[:3, 2] for c in cameras]).astype(np.float64)
    a = np.zeros((3, 3))
    b = np.zeros(3)
    for o, d in zip(centers, dirs):
        p = np.eye(3) - np.outer(d, d)
        a += p
        b += p @ o
    return np.linalg.lstsq(a, b, rcond=None)[0]


def orbit_cameras(reference: Sequence[Camera], num_frames: int = 60, target=None) -> List[Camera]:
    """Cameras circling the reference cameras' look-at target at their mean distance and height.

    The orbit axis is the cameras' mean up vector (their -y axis in world space), so it works for any world up.
    """
    if not reference:
        raise ValueError("orbit_cameras needs at least one reference camera")
    centers = np.stack([c.center.numpy() for c in reference]).astype(np.float64)
    c2ws = np.stack([c.camera_to_world.numpy() for c in reference]).astype(np.float64)
    up = -c2ws[:, :3, 1].mean(axis=0)
    up /= max(np.linalg.norm(up), 1e-9)
    if target is None:
        target = focus_point(reference)
    target = np.asarray(target, dtype=np.float64)
    offsets = centers - target
    height = float(np.mean(offsets @ up))
    radial = offsets - np.outer(offsets @ up, up)
    radius = float(np.mean(np.linalg.norm(radial, axis=1)))
    e1 = radial[0] / max(np.linalg.norm(radial[0]), 1e-9)
    e2 = np.cross(up, e1)
    ref = reference[0]
    cams = []
    for i in range(num_frames):
        angle = 2 * math.pi * i / num_frames
        eye = target + up * height + radius * (math.cos(angle) * e1 + math.sin(angle) * e2)
        cams.append(
            Camera(look_at_w2c(eye, target, up), ref.fx, ref.fy, ref.cx, ref.cy, ref.width, ref.height, ref.near, ref.far)
        )
    return cams


def with_times(cameras: Sequence[Camera], time_range: Sequence[float]) -> List[Camera]:
    """The cameras with times evenly spaced from time_range[0] (first) to time_range[1] (last): a path that also
    plays through a dynamic scene's time."""
    t0, t1 = float(time_range[0]), float(time_range[1])
    count = len(cameras)
    return [cam.with_time(t0 + (t1 - t0) * i / max(count - 1, 1)) for i, cam in enumerate(cameras)]
