"""Camera model and convention conversions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from render import Camera
from render.conventions import (
    look_at_w2c,
    opencv_w2c_to_opengl_c2w,
    opencv_w2c_to_viser_pose,
    opengl_c2w_to_opencv_w2c,
    rotation_matrix_to_wxyz,
    viser_pose_to_opencv_w2c,
    wxyz_to_rotation_matrix,
)


def _random_rigid(seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = q, rng.normal(size=3)
    return torch.from_numpy(m).float()


@pytest.mark.parametrize("seed", range(5))
def test_opengl_round_trip(seed):
    c2w_gl = _random_rigid(seed)
    back = opencv_w2c_to_opengl_c2w(opengl_c2w_to_opencv_w2c(c2w_gl))
    assert torch.allclose(back, c2w_gl, atol=1e-5)


def test_opengl_camera_looks_down_minus_z():
    # An OpenGL camera at the origin with identity pose sees a point at (0, 0, -2) in front of it.
    w2c = opengl_c2w_to_opencv_w2c(torch.eye(4))
    p = w2c @ torch.tensor([0.0, 0.5, -2.0, 1.0])
    assert p[2] == pytest.approx(2.0)  # in front (OpenCV +z)
    assert p[1] == pytest.approx(-0.5)  # world up is image up (OpenCV -y)


@pytest.mark.parametrize("seed", range(5))
def test_viser_round_trip(seed):
    w2c = _random_rigid(seed)
    wxyz, position = opencv_w2c_to_viser_pose(w2c)
    assert torch.allclose(viser_pose_to_opencv_w2c(wxyz, position), w2c, atol=1e-5)


def test_quaternion_round_trip():
    for seed in range(10):
        rot = _random_rigid(seed)[:3, :3].double().numpy()
        assert np.allclose(wxyz_to_rotation_matrix(rotation_matrix_to_wxyz(rot)), rot, atol=1e-10)


def test_look_at_puts_target_at_image_centre_and_up_is_up():
    w2c = look_at_w2c([3.0, -2.0, 1.0], [0.0, 0.0, 0.0], up=(0.0, 0.0, 1.0))
    cam = Camera.from_fov(w2c, math.radians(60), 64, 48)
    target = w2c @ torch.tensor([0.0, 0.0, 0.0, 1.0])
    u = cam.fx * target[0] / target[2] + cam.cx
    v = cam.fy * target[1] / target[2] + cam.cy
    assert (u.item(), v.item()) == (pytest.approx(32.0, abs=1e-4), pytest.approx(24.0, abs=1e-4))
    above = w2c @ torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert above[1] / above[2] < target[1] / target[2]  # higher in the world is higher in the image
    assert torch.allclose(cam.center, torch.tensor([3.0, -2.0, 1.0]), atol=1e-5)


def test_scaled_camera_keeps_field_of_view():
    cam = Camera.from_fov(torch.eye(4), 0.9, 400, 300)
    half = cam.scaled(0.5)
    assert (half.width, half.height) == (200, 150)
    assert half.fov_y == pytest.approx(cam.fov_y) and half.fov_x == pytest.approx(cam.fov_x)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(fx=0.0), "fx"),
        (dict(fy=-3.0), "fy"),
        (dict(width=0), "image size"),
        (dict(world_to_camera=torch.eye(3)), "shape"),
        (dict(world_to_camera=torch.full((4, 4), float("nan"))), "NaN"),
        (dict(near=5.0, far=1.0), "near"),
    ],
)
def test_bad_camera_input_names_the_field(kwargs, match):
    base = dict(world_to_camera=torch.eye(4), fx=10.0, fy=10.0, cx=5.0, cy=5.0, width=10, height=10)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Camera(**base)
