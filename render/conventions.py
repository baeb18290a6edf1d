"""Conversions between splatforge's OpenCV world-to-camera and the other camera conventions of the field.

- OpenGL / Blender / nerfstudio `transform_matrix`: camera-to-world, camera looks down -z with +y up.
- viser: camera pose as (wxyz, position) of an OpenCV camera-to-world, vertical fov in radians.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch

# Flips the camera's y and z axes: OpenGL camera frame <-> OpenCV camera frame (self-inverse).
_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def _as_matrix(matrix, name: str) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(matrix, dtype=np.float64) if not torch.is_tensor(matrix) else matrix).double()
    if m.shape == (3, 4):
        m = torch.cat([m, torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)], dim=0)
    if m.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 (or 3x4) matrix, got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return m


def opengl_c2w_to_opencv_w2c(c2w_gl) -> torch.Tensor:
    """OpenGL camera-to-world (Blender, nerfstudio) -> OpenCV world-to-camera."""
    c2w = _as_matrix(c2w_gl, "camera-to-world") @ _GL_TO_CV
    return torch.linalg.inv(c2w).float()


def opencv_w2c_to_opengl_c2w(w2c_cv) -> torch.Tensor:
    """OpenCV world-to-camera -> OpenGL camera-to-world (Blender, nerfstudio)."""
    c2w = torch.linalg.inv(_as_matrix(w2c_cv, "world-to-camera"))
    return (c2w @ _GL_TO_CV).float()


def rotation_matrix_to_wxyz(rot: np.ndarray) -> np.ndarray:
    """3x3 rotation -> unit quaternion (w, x, y, z) with w >= 0."""
    r = np.asarray(rot, dtype=np.float64)
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif r[1, 1] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def wxyz_to_rotation_matrix(wxyz) -> np.ndarray:
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def viser_pose_to_opencv_w2c(wxyz, position) -> torch.Tensor:
    """viser camera (OpenCV camera-to-world as quaternion + position) -> OpenCV world-to-camera."""
    c2w = np.eye(4)
    c2w[:3, :3] = wxyz_to_rotation_matrix(wxyz)
    c2w[:3, 3] = np.asarray(position, dtype=np.float64)
    return torch.from_numpy(np.linalg.inv(c2w)).float()


def opencv_w2c_to_viser_pose(w2c) -> Tuple[np.ndarray, np.ndarray]:
    """OpenCV world-to-camera -> (wxyz, position) as viser expects for camera poses."""
    c2w = np.linalg.inv(_as_matrix(w2c, "world-to-camera").numpy())
    return rotation_matrix_to_wxyz(c2w[:3, :3]), c2w[:3, 3].copy()


def look_at_w2c(eye, target, up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """OpenCV world-to-camera for a camera at `eye` looking at `target`, with `up` pointing up in the image."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    norm = np.linalg.norm(forward)
    if norm == 0:
        raise ValueError("look_at: eye and target coincide")
    forward /= norm
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]) if abs(up[1]) < 0.9 else np.array([1.0, 0.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, eye
    return torch.from_numpy(np.linalg.inv(c2w)).float()
