"""The procedural demo scene: deterministic, loadable, non-trivial, and geometrically consistent."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import pytest

from trainers.data import DemoSceneConfig, generate_demo_scene, load_dataset, load_nerfstudio
from trainers.data.demo_scene import TARGET, is_up_to_date

SMALL = dict(num_views=9, width=64, height=48, num_points=600, supersample=1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return generate_demo_scene(DemoSceneConfig(output=tmp_path_factory.mktemp("demo") / "scene", **SMALL))


def test_deterministic_and_idempotent(demo, tmp_path):
    again = generate_demo_scene(DemoSceneConfig(output=tmp_path / "again", **SMALL))
    names = sorted(p.relative_to(demo).as_posix() for p in demo.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(again).as_posix() for p in again.rglob("*") if p.is_file())
    for name in names:
        assert (demo / name).read_bytes() == (again / name).read_bytes(), name
    stamp = (again / "transforms.json").stat().st_mtime_ns
    generate_demo_scene(DemoSceneConfig(output=tmp_path / "again", **SMALL))  # up to date: nothing rewritten
    assert (again / "transforms.json").stat().st_mtime_ns == stamp
    other = DemoSceneConfig(output=tmp_path / "again", **{**SMALL, "seed": 1})
    assert not is_up_to_date(tmp_path / "again", other)
    generate_demo_scene(other)  # a different config replaces the folder
    assert is_up_to_date(tmp_path / "again", other)
    assert (again / "images/frame_00001.png").read_bytes() != (demo / "images/frame_00001.png").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left behind


def test_loads_with_split_and_orbit(demo):
    scene = load_dataset(demo)
    meta = json.loads((demo / "transforms.json").read_text())
    assert meta["camera_model"] in ("OPENCV", "PINHOLE") and meta["ply_file_path"] == "points3D.ply"
    assert [v.name for v in scene.test_views] == ["images/frame_00000.png", "images/frame_00008.png"]
    assert len(scene.train_views) == 7
    cam = scene.train_views[0].camera
    assert (cam.width, cam.height) == (64, 48)
    assert cam.fx == pytest.approx(0.5 * 64 / math.tan(math.radians(60) / 2))
    radius = DemoSceneConfig().radius
    for v in scene.train_views + scene.test_views:
        assert np.linalg.norm(v.camera.center.numpy() - TARGET) == pytest.approx(radius, rel=1e-4)
        # the look-at target projects to the image centre
        w2c = v.camera.world_to_camera.double().numpy()
        pc = w2c[:3, :3] @ TARGET + w2c[:3, 3]
        uv = (v.camera.K.double().numpy() @ pc)[:2] / pc[2]
        np.testing.assert_allclose(uv, [32, 24], atol=1e-3)
    assert scene.points.shape == (600, 3) and scene.point_colors.shape == (600, 3)


def test_images_are_rich(demo):
    for i in (0, 4):
        rgba = iio.imread(demo / f"images/frame_{i:05d}.png")
        assert rgba.shape == (48, 64, 4)
        alpha = rgba[..., 3] > 0
        assert 0.3 < alpha.mean() < 0.995  # objects and ground, plus some sky
        rgb = rgba[..., :3][alpha].astype(float) / 255
        assert rgb.std(axis=0).min() > 0.08
        assert len(np.unique(rgba[..., :3][alpha] // 32, axis=0)) > 20  # many distinct colours
        hsv = cv2.cvtColor(rgba[..., :3][alpha][None], cv2.COLOR_RGB2HSV_FULL)[0]  # hue in 0..255
        hues = hsv[hsv[:, 1] > 60, 0] // 43  # six hue sectors among the saturated pixels
        counts = np.bincount(hues, minlength=6) / len(rgb)
        assert (counts > 0.005).sum() >= 4, counts  # colourful objects visible, not just the ground


def test_seed_points_project_inside_alpha(demo):
    scene = load_nerfstudio(demo)
    pts = scene.points
    for view in scene.train_views[:4] + scene.test_views:
        alpha = iio.imread(demo / view.name)[..., 3] > 0
        w2c = view.camera.world_to_camera.double().numpy()
        pc = pts @ w2c[:3, :3].T + w2c[:3, 3]
        assert (pc[:, 2] > 0).all()
        uv = pc @ view.camera.K.double().numpy().T
        uv = uv[:, :2] / uv[:, 2:3]
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < 64) & (uv[:, 1] >= 0) & (uv[:, 1] < 48)
        assert inside.mean() > 0.5
        px = np.floor(uv[inside]).astype(int)
        hit = alpha[px[:, 1], px[:, 0]]
        assert hit.mean() > 0.9, hit.mean()  # misses only at silhouettes (one ray per pixel)
        grown = cv2.dilate(alpha.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert grown[px[:, 1], px[:, 0]].mean() > 0.99
        # and a point's colour matches the rendered pixel for most points (same texture, same poses)
        img = view.image.numpy()[px[:, 1], px[:, 0]]
        close = np.abs(img - scene.point_colors[inside]).max(axis=1) < 0.35
        assert close.mean() > 0.5, close.mean()


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="num_views"):
        generate_demo_scene(replace(DemoSceneConfig(output=tmp_path / "x"), num_views=0))
