"""World-space normalisation of a scene, following the recipe of gsplat's COLMAP parser (our own implementation).

`similarity_from_cameras` returns a 4x4 similarity T (x' = s R x + t) that
1. rotates the world so that the mean camera up vector (-y of each OpenCV camera) becomes +z,
2. recentres on the cameras' focus point: the median over cameras of the point on each optical axis closest to
   the origin (after the rotation),
3. scales so that the median distance of the camera centres from that point is 1.
(gsplat's code comments say "z+ is up"; its Rodrigues step actually maps the mean up to -y. We map it to +z,
as the comment and our viewer expect.)

`align_principal_axes` is the optional second step (off by default here): a rigid transform that moves the
points' median to the origin and aligns the points' principal axes with x, y, z (largest variance on x, smallest
on z). It overrides the "+z is up" rotation, so use it only for scenes where the point cloud is reliable.

`apply_similarity` transforms a SceneData's cameras and points consistently: projections of transformed points by
transformed cameras are unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np

from .dataset import SceneData, View


def _check_c2w(c2w: np.ndarray) -> np.ndarray:
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] not in ((4, 4), (3, 4)) or len(c2w) == 0:
        raise ValueError(f"camera-to-world poses must have shape (N, 4, 4) or (N, 3, 4), got {c2w.shape}")
    if not np.isfinite(c2w).all():
        raise ValueError("camera-to-world poses contain NaN or Inf")
    return c2w


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vector a to unit vector b."""
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1.0 + 1e-12:  # opposite: half turn about an axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def similarity_from_cameras(c2w: np.ndarray, center_method: str = "focus", strict_scaling: bool = False) -> np.ndarray:
    """4x4 similarity normalising OpenCV camera-to-world poses (N, 4, 4): mean up -> +z, focus -> 0, median dist 1.

    `center_method` 'focus' (closest points of the optical axes to the origin) or 'poses' (camera centres);
    `strict_scaling` uses the largest instead of the median camera distance.
    """
    c2w = _check_c2w(c2w)
    rot, centers = c2w[:, :3, :3], c2w[:, :3, 3]
    up = -rot[:, :, 1].mean(axis=0)
    norm = np.linalg.norm(up)
    r_align = np.eye(3) if norm < 1e-9 else _rotation_between(up / norm, np.array([0.0, 0.0, 1.0]))
    centers = centers @ r_align.T
    fwd = (r_align @ rot)[:, :, 2]
    if center_method == "focus":
        nearest = centers - np.sum(fwd * centers, axis=1, keepdims=True) * fwd
        translate = -np.median(nearest, axis=0)
    elif center_method == "poses":
        translate = -np.median(centers, axis=0)
    else:
        raise ValueError(f"center_method must be 'focus' or 'poses', got {center_method!r}")
    dist = np.linalg.norm(centers + translate, axis=1)
    ref = float(dist.max() if strict_scaling else np.median(dist))
    scale = 1.0 / ref if ref > 1e-12 else 1.0
    out = np.eye(4)
    out[:3, :3] = scale * r_align
    out[:3, 3] = scale * translate
    return out


def align_principal_axes(points: np.ndarray) -> np.ndarray:
    """4x4 rigid transform: points' median -> origin, principal axes -> x, y, z (decreasing variance)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 3:
        raise ValueError(f"align_principal_axes needs (M >= 3, 3) points, got shape {pts.shape}")
    center = np.median(pts, axis=0)
    _, vecs = np.linalg.eigh(np.cov(pts - center, rowvar=False))
    vecs = vecs[:, ::-1].copy()  # eigh sorts ascending: largest variance first
    if np.linalg.det(vecs) < 0:
        vecs[:, 0] *= -1.0
    out = np.eye(4)
    out[:3, :3] = vecs.T
    out[:3, 3] = -vecs.T @ center
    return out


def similarity_scale(transform: np.ndarray) -> float:
    """The uniform scale s of a similarity 4x4 (x' = s R x + t)."""
    return float(np.cbrt(np.linalg.det(np.asarray(transform, dtype=np.float64)[:3, :3])))


def transform_c2w(transform: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Apply a similarity to camera-to-world poses (N, 4, 4); rotations stay orthonormal, centres move with T."""
    c2w = _check_c2w(c2w)
    t = np.asarray(transform, dtype=np.float64)
    s = similarity_scale(t)
    out = np.tile(np.eye(4), (len(c2w), 1, 1))
    out[:, :3, :3] = (t[:3, :3] / s) @ c2w[:, :3, :3]
    out[:, :3, 3] = c2w[:, :3, 3] @ t[:3, :3].T + t[:3, 3]
    return out


def _moved_view(view: View, transform: np.ndarray) -> View:
    w2c = view.camera.world_to_camera.double().numpy()
    c2w = transform_c2w(transform, np.linalg.inv(w2c)[None])[0]
    camera = dataclasses.replace(view.camera, world_to_camera=np.linalg.inv(c2w))
    return dataclasses.replace(view, camera=camera)


def apply_similarity(scene: SceneData, transform: np.ndarray, note: str = "") -> SceneData:
    """A new SceneData with cameras and points moved by the 4x4 similarity `transform` (images untouched)."""
    t = np.asarray(transform, dtype=np.float64)
    if t.shape != (4, 4) or not np.isfinite(t).all():
        raise ValueError(f"transform must be a finite 4x4 matrix, got shape {t.shape}")
    s = similarity_scale(t)
    if not s > 0 or not np.allclose((t[:3, :3] / s) @ (t[:3, :3] / s).T, np.eye(3), atol=1e-6):
        raise ValueError("transform is not a similarity (uniform positive scale times a rotation)")
    points = None if scene.points is None else np.asarray(scene.points, dtype=np.float64) @ t[:3, :3].T + t[:3, 3]
    notes = list(scene.notes)
    if note:
        notes.append(note)
    return dataclasses.replace(
        scene,
        train_views=[_moved_view(v, t) for v in scene.train_views],
        test_views=[_moved_view(v, t) for v in scene.test_views],
        extra_splits={k: [_moved_view(v, t) for v in views] for k, views in scene.extra_splits.items()},
        points=points,
        notes=notes,
    )


def _all_c2w(scene: SceneData) -> np.ndarray:
    return np.stack([np.linalg.inv(v.camera.world_to_camera.double().numpy()) for v in scene.train_views])


def normalize_scene(scene: SceneData, align_axes: bool = False) -> Tuple[SceneData, np.ndarray]:
    """(normalised scene, 4x4 similarity applied) from the training cameras (and points when `align_axes`).

    The transform is recorded in the scene notes so a log can undo it.
    """
    t = similarity_from_cameras(_all_c2w(scene))
    how = "mean camera up -> +z, focus point -> origin, median camera distance -> 1"
    if align_axes:
        if scene.points is None or len(scene.points) < 3:
            raise ValueError(f"{scene.source}: align_axes needs seed points, and this scene has none")
        pts = np.asarray(scene.points, dtype=np.float64) @ t[:3, :3].T + t[:3, 3]
        t = align_principal_axes(pts) @ t
        how += ", then points' principal axes -> x, y, z"
    matrix = np.array2string(t, precision=6, separator=", ", suppress_small=True).replace("\n", "")
    note = f"normalised world ({how}); scale {similarity_scale(t):.6g}; world_new = T @ world_old with T = {matrix}"
    return apply_similarity(scene, t, note), t
