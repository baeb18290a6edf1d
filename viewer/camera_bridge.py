"""viser client camera -> splatforge `Camera` (OpenCV axes, vertical fov, canvas size capped by a max resolution)."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

from render import Camera
from render.conventions import viser_pose_to_opencv_w2c


def fit_resolution(width: int, height: int, max_side: int) -> Tuple[int, int]:
    """Scale (width, height) down, keeping the aspect ratio, so that neither side exceeds `max_side`."""
    if width <= 0 or height <= 0:
        raise ValueError(f"canvas size must be positive, got {width}x{height}")
    if max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    scale = min(1.0, max_side / max(width, height))
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def camera_from_viser_pose(
    wxyz: Sequence[float],
    position: Sequence[float],
    fov_y: float,
    canvas_width: int,
    canvas_height: int,
    max_resolution: int,
    time: Optional[float] = None,
) -> Camera:
    """Camera for a viser pose (OpenCV camera-to-world as wxyz + position) and vertical fov in radians.

    The canvas size is in device pixels (viser reports `canvas.width/height`); it is scaled down to fit
    `max_resolution` on its longer side.
    """
    if not (0.0 < fov_y < math.pi):
        raise ValueError(f"fov_y must be in (0, pi), got {fov_y}")
    width, height = fit_resolution(int(canvas_width), int(canvas_height), int(max_resolution))
    w2c = viser_pose_to_opencv_w2c(wxyz, position)
    return Camera.from_fov(w2c, fov_y, width, height, time=time)


def camera_from_client(client_camera, max_resolution: int, time: Optional[float] = None) -> Optional[Camera]:
    """Camera for a viser `CameraHandle` (or anything with wxyz, position, fov, image_width, image_height).

    Returns None while the client has not reported a usable camera yet (no canvas size or fov).
    """
    try:
        width, height = int(client_camera.image_width), int(client_camera.image_height)
        fov = float(client_camera.fov)
        wxyz, position = client_camera.wxyz, client_camera.position
    except AssertionError:  # viser asserts until the first camera message has arrived
        return None
    if width <= 0 or height <= 0 or not (0.0 < fov < math.pi):
        return None
    return camera_from_viser_pose(wxyz, position, fov, width, height, max_resolution, time=time)
