"""Depth supervision: nerfstudio `depth_file_path` maps read into View.depth, and the depth_l1 loss."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from render import Camera
from trainers.data import load_nerfstudio
from trainers.data.dataset import View
from trainers.losses import depth_l1

# The nerfstudio fixture of the reader tests: frame i (24x16 by default) sees a known world point at pixel (u0, v0)
# at camera-axis depth 2 + i. tests/ is on sys.path (as for conftest's own helper imports).
from test_datasets import _edit_json, _make_nerfstudio

W, H = 24, 16


def _views(scene) -> dict:
    return {v.name: v for v in scene.train_views + scene.test_views}


def _add_depth(root: Path, frame: int, array: np.ndarray, name: str) -> None:
    """Write `array` as depth file `name` (PNG/TIFF via cv2, .npy via numpy) and point frame `frame` at it."""
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".npy"):
        np.save(path, array)
    else:
        assert cv2.imwrite(str(path), array)
    _edit_json(root / "transforms.json", lambda m: m["frames"][frame].update(depth_file_path=name))


def _camera_z(view, x: np.ndarray) -> float:
    w2c = view.camera.world_to_camera.double().numpy()
    return float((w2c[:3, :3] @ x + w2c[:3, 3])[2])


# ------------------------------------------------------------------------------------------------ reading


def test_png16_millimetres_read_as_metres_and_match_pose_geometry(tmp_path):
    fx = _make_nerfstudio(tmp_path, n=2, splits=False)
    rng = np.random.default_rng(0)
    mm = rng.integers(1, 8000, size=(H, W)).astype(np.uint16)  # <= 8 m keeps float32 exact to < 1e-3 mm
    mm[rng.random((H, W)) < 0.2] = 0  # holes
    x, u0, v0 = fx["marks"][0]
    mm[v0, u0] = 2000  # frame 0's mark point is at camera-axis depth 2.0 (scene units) at that pixel
    _add_depth(tmp_path, 0, mm, "depth/d0.png")
    assert cv2.imread(str(tmp_path / "depth/d0.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16

    view = _views(load_nerfstudio(tmp_path))["images/img_00.png"]
    assert view.depth is not None and view.depth.dtype == torch.float32 and tuple(view.depth.shape) == (H, W, 1)
    got = view.depth[..., 0].double().numpy()
    np.testing.assert_allclose(got, mm.astype(np.float64) * 1e-3, rtol=0, atol=1e-6)  # 1e-6 m = 1e-3 mm
    assert (got[mm == 0] == 0).all()
    # the depth is camera-axis z in the units of the poses: it agrees with the loaded camera
    assert got[v0, u0] == pytest.approx(_camera_z(view, x), abs=1e-5)


def test_depth_unit_scale_factor_is_applied(tmp_path):
    _make_nerfstudio(tmp_path, n=2, splits=False)
    cm = np.full((H, W), 250, np.uint16)
    cm[3, 4] = 0
    _add_depth(tmp_path, 0, cm, "d0.png")
    _add_depth(tmp_path, 1, np.full((H, W), 7.0, np.float32), "d1.npy")
    _edit_json(tmp_path / "transforms.json", lambda m: m.update(depth_unit_scale_factor=0.01))
    views = _views(load_nerfstudio(tmp_path))
    d0 = views["images/img_00.png"].depth[..., 0].numpy()
    assert d0[0, 0] == pytest.approx(2.5, abs=1e-6) and d0[3, 4] == 0
    # an explicit factor applies to float .npy as well
    np.testing.assert_allclose(views["images/img_01.png"].depth.numpy(), 0.07, atol=1e-7)


def test_npy_depth_float_as_saved_integer_in_millimetres(tmp_path):
    _make_nerfstudio(tmp_path, n=2, splits=False)
    metres = np.random.default_rng(1).uniform(0.5, 9.0, size=(H, W, 1)).astype(np.float32)
    metres[0, 0, 0] = 0.0
    _add_depth(tmp_path, 0, metres, "d0.npy")  # (H, W, 1) float: scene units as saved
    _add_depth(tmp_path, 1, np.full((H, W), 1234, np.uint16), "d1.npy")  # integer: default 1e-3 applies
    views = _views(load_nerfstudio(tmp_path))
    np.testing.assert_array_equal(views["images/img_00.png"].depth.numpy(), metres)
    np.testing.assert_allclose(views["images/img_01.png"].depth.numpy(), 1.234, atol=1e-6)


def test_float32_tiff_depth(tmp_path):
    _make_nerfstudio(tmp_path, n=2, splits=False)
    mm = np.linspace(100.0, 5000.0, H * W, dtype=np.float32).reshape(H, W)
    _add_depth(tmp_path, 1, mm, "d1.tiff")
    view = _views(load_nerfstudio(tmp_path))["images/img_01.png"]
    np.testing.assert_allclose(view.depth[..., 0].numpy(), mm * 1e-3, rtol=1e-6)


def test_frames_without_depth_get_none(tmp_path):
    _make_nerfstudio(tmp_path, n=3, splits=False)
    assert all(v.depth is None for v in _views(load_nerfstudio(tmp_path)).values())
    _add_depth(tmp_path, 2, np.full((H, W), 1000, np.uint16), "d2.png")
    views = _views(load_nerfstudio(tmp_path))
    assert views["images/img_00.png"].depth is None and views["images/img_01.png"].depth is None
    assert views["images/img_02.png"].depth is not None


# ------------------------------------------------------------------------------------------- resampling


def test_downscale_keeps_constant_plane_and_ignores_holes(tmp_path):
    _make_nerfstudio(tmp_path, n=2, splits=False)
    depth = np.full((H, W), 2.5, np.float32)
    rng = np.random.default_rng(2)
    depth[rng.random((H, W)) < 0.4] = 0.0  # scattered holes
    depth[0:2, 0:2] = 0.0  # one output pixel (0, 0) with no measurement at all
    depth[2:4, 0:2] = [[1.0, 2.0], [3.0, 0.0]]  # output pixel (1, 0): mean of the measured three is 2.0
    depth[4:6, 0:2] = [[0.0, 0.0], [0.0, 4.0]]  # output pixel (2, 0): a single measurement
    _add_depth(tmp_path, 0, depth, "d0.npy")
    view = _views(load_nerfstudio(tmp_path, downscale=2))["images/img_00.png"]
    got = view.depth[..., 0].numpy()
    assert got.shape == (H // 2, W // 2) == (view.camera.height, view.camera.width)
    assert got[0, 0] == 0.0
    assert got[1, 0] == pytest.approx(2.0, abs=1e-6)
    assert got[2, 0] == pytest.approx(4.0, abs=1e-6)
    blocks = depth.reshape(H // 2, 2, W // 2, 2).transpose(0, 2, 1, 3).reshape(H // 2, W // 2, 4)
    plane = np.ones((H // 2, W // 2), bool)
    plane[:3, 0] = False
    has = (blocks > 0).any(-1)
    np.testing.assert_allclose(got[plane & has], 2.5, atol=1e-6)
    assert (got[plane & ~has] == 0).all()


def test_downscale_non_divisible_size_keeps_plane(tmp_path):
    _make_nerfstudio(tmp_path, n=2, size=(25, 17), splits=False)
    depth = np.full((17, 25), 3000, np.uint16)
    depth[::3, ::2] = 0
    _add_depth(tmp_path, 1, depth, "d1.png")
    view = _views(load_nerfstudio(tmp_path, downscale=2))["images/img_01.png"]
    assert tuple(view.depth.shape) == (8, 12, 1)
    np.testing.assert_allclose(view.depth.numpy(), 3.0, atol=1e-6)


def test_undistortion_resamples_depth_through_the_image_maps_with_nearest(tmp_path):
    _make_nerfstudio(tmp_path, n=2, splits=False)
    ids = (np.arange(H * W).reshape(H, W) + 1).astype(np.uint16)  # pixel id + 1, in mm: every source pixel unique
    _add_depth(tmp_path, 1, ids, "d1.png")
    dist = np.array([-0.4, 0.08, 0.01, -0.01])
    _edit_json(
        tmp_path / "transforms.json",
        lambda m: m["frames"][1].update(camera_model="OPENCV", k1=dist[0], k2=dist[1], p1=dist[2], p2=dist[3]),
    )
    view = _views(load_nerfstudio(tmp_path))["images/img_01.png"]
    cam = view.camera
    assert cam.fx != pytest.approx(22.0)  # undistorted: new intrinsics
    # Where each undistorted pixel comes from (OpenCV pixel-centre convention, as cv2's maps): back-project with
    # the new K, distort and project with the frame's K (fx 22, fy 23, cx 12.5, cy 7.75 for frame 1).
    jj, ii = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    rays = np.stack([(jj - cam.cx) / cam.fx, (ii - cam.cy) / cam.fy, np.ones_like(jj)], -1).reshape(-1, 1, 3)
    k = np.array([[22.0, 0, 12.5], [0, 23.0, 7.75], [0, 0, 1]])
    src = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), k, dist)[0].reshape(H, W, 2)
    assert np.abs(src - np.stack([jj, ii], -1)).max() > 1.0  # the distortion moves pixels by more than 1 px

    mm = view.depth[..., 0].double().numpy() * 1000.0
    got = np.rint(mm)
    np.testing.assert_allclose(mm, got, atol=1e-3)  # nearest: only source values, no blends
    inside = (src[..., 0] > -0.5) & (src[..., 0] < W - 0.5) & (src[..., 1] > -0.5) & (src[..., 1] < H - 0.5)
    ok = got > 0
    assert ok.sum() > 0.5 * H * W
    col, row = (got[ok] - 1) % W, (got[ok] - 1) // W
    assert np.abs(col - src[..., 0][ok]).max() <= 0.5 + 1e-3 and np.abs(row - src[..., 1][ok]).max() <= 0.5 + 1e-3
    edge = np.minimum(np.abs(src[..., 0] + 0.5), np.abs(src[..., 0] - (W - 0.5)))
    edge = np.minimum(edge, np.minimum(np.abs(src[..., 1] + 0.5), np.abs(src[..., 1] - (H - 0.5))))
    clear = edge > 1e-3
    np.testing.assert_array_equal(ok[clear], inside[clear])  # 0 (no measurement) where it maps outside the image
    if view.mask is not None:
        np.testing.assert_array_equal(ok, view.mask[..., 0].numpy())


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "array, name, words",
    [
        (np.full((H // 2, W // 2), 1000, np.uint16), "small.png", ["small.png", "12x8", "24x16"]),
        (np.full((H, W, 3), 1000, np.uint16), "rgb.png", ["rgb.png", "single-channel"]),
        (np.full((H, W), np.nan, np.float32), "nan.npy", ["nan.npy", "NaN"]),
        (np.full((H, W), -1.0, np.float32), "neg.npy", ["neg.npy", "negative"]),
        (np.zeros((H, W + 1), np.float32), "wide.npy", ["wide.npy", "25x16"]),
    ],
)
def test_bad_depth_names_file_and_field(tmp_path, array, name, words):
    _make_nerfstudio(tmp_path, n=2, splits=False)
    _add_depth(tmp_path, 0, array, name)
    with pytest.raises(ValueError) as err:
        load_nerfstudio(tmp_path)
    msg = str(err.value)
    assert "depth_file_path" in msg and "frames[0]" in msg, msg
    for word in words:
        assert word in msg, msg


def test_missing_depth_file_names_file_and_field(tmp_path):
    _make_nerfstudio(tmp_path, n=2, splits=False)
    _edit_json(tmp_path / "transforms.json", lambda m: m["frames"][1].update(depth_file_path="depth/gone.png"))
    with pytest.raises(FileNotFoundError, match=r"frames\[1\].*depth_file_path.*gone\.png"):
        load_nerfstudio(tmp_path)


def test_bad_unit_scale_and_unreadable_depth(tmp_path):
    _make_nerfstudio(tmp_path, n=2, splits=False)
    _add_depth(tmp_path, 0, np.full((H, W), 1000, np.uint16), "d0.png")
    _edit_json(tmp_path / "transforms.json", lambda m: m.update(depth_unit_scale_factor=-1))
    with pytest.raises(ValueError, match="depth_unit_scale_factor"):
        load_nerfstudio(tmp_path)
    _edit_json(tmp_path / "transforms.json", lambda m: m.pop("depth_unit_scale_factor"))
    (tmp_path / "d0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"depth_file_path.*d0\.png"):
        load_nerfstudio(tmp_path)


def test_rigid_applied_transform_keeps_depth_scaled_one_is_refused(tmp_path):
    rigid = np.array([[0.0, 1.0, 0.0, 0.5], [1.0, 0.0, 0.0, -1.0], [0.0, 0.0, -1.0, 2.0]])
    fx = _make_nerfstudio(tmp_path, n=2, splits=False, applied=rigid)
    x, u0, v0 = fx["marks"][0]
    depth = np.zeros((H, W), np.uint16)
    depth[v0, u0] = 2000
    _add_depth(tmp_path, 0, depth, "d0.png")
    original = load_nerfstudio(tmp_path, original_coordinates=True)
    view = _views(original)["images/img_00.png"]
    x_orig = original.points[0]
    assert float(view.depth[v0, u0, 0]) == pytest.approx(_camera_z(view, x_orig), abs=1e-5)
    _edit_json(tmp_path / "transforms.json", lambda m: m.update(applied_transform=(2.0 * np.eye(4)[:3]).tolist()))
    load_nerfstudio(tmp_path)  # poses used as saved: no transform, nothing to refuse
    with pytest.raises(ValueError, match="applied_transform.*depth"):
        load_nerfstudio(tmp_path, original_coordinates=True)


def test_view_validates_depth_shape():
    cam = Camera(torch.eye(4), 10.0, 10.0, 4.0, 3.0, 8, 6)
    View(camera=cam, image=torch.zeros(6, 8, 3), name="ok", depth=torch.ones(6, 8, 1))
    with pytest.raises(ValueError, match=r"'bad'.*depth shape \(6, 8\)"):
        View(camera=cam, image=torch.zeros(6, 8, 3), name="bad", depth=torch.ones(6, 8))


# ----------------------------------------------------------------------------------------------- depth_l1


def test_depth_l1_values_and_ignored_pixels():
    target = torch.tensor([[1.0, 2.0], [0.0, 4.0]])[..., None]
    alpha = torch.ones_like(target)
    assert float(depth_l1(target.clone(), alpha, target)) == 0.0
    rendered = torch.tensor([[1.5, 1.0], [7.0, 4.0]])[..., None]
    loss = depth_l1(rendered, alpha, target)
    assert loss.dim() == 0 and float(loss) == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    rendered2 = rendered.clone()
    rendered2[1, 0] = -100.0  # the target==0 pixel does not count
    assert float(depth_l1(rendered2, alpha, target)) == pytest.approx(float(loss))
    # alpha does not weight the error (an empty render where depth was measured still costs)
    assert float(depth_l1(rendered, torch.zeros_like(alpha), target)) == pytest.approx(float(loss))
    none = depth_l1(rendered.requires_grad_(), alpha, torch.zeros_like(target))
    assert float(none.detach()) == 0.0
    none.backward()
    assert rendered.grad is not None and float(rendered.grad.abs().sum()) == 0.0
    with pytest.raises(ValueError, match="shapes"):
        depth_l1(rendered.detach(), alpha, target[..., 0])


def test_depth_l1_gradient_on_tensor():
    target = torch.tensor([[1.0, 2.0], [0.0, 4.0]])[..., None]
    rendered = torch.tensor([[1.5, 1.0], [7.0, 4.5]])[..., None].requires_grad_()
    depth_l1(rendered, torch.ones_like(target), target).backward()
    expected = torch.tensor([[1.0, -1.0], [0.0, 1.0]])[..., None] / 3
    torch.testing.assert_close(rendered.grad, expected)


def test_depth_l1_gradient_moves_gaussians_towards_target_depth():
    """Through the reference renderer: Gaussians rendered behind the measured depth get pulled forward."""
    from render import render
    from scenes import GaussianScene

    pts = np.array([[0.0, 0.0, 3.0], [0.3, 0.1, 3.2], [-0.2, 0.2, 2.9], [0.1, -0.3, 3.1]])
    scene = GaussianScene.from_points(pts, sh_degree=0, initial_opacity=0.8)
    cam = Camera(torch.eye(4), 14.0, 14.0, 8.0, 6.0, 16, 12)
    out = render(scene, cam, backend="reference")
    assert float(out.alpha.detach().max()) > 0.5
    target = torch.full((12, 16, 1), 2.0)
    target[:, :4] = 0.0  # part without measurement
    loss = depth_l1(out.depth, out.alpha, target)
    assert float(loss.detach()) > 0.5
    loss.backward()
    grad_z = scene.params["means"].grad[:, 2]
    assert (grad_z > 0).all(), grad_z  # decreasing z (towards the 2.0 target) decreases the loss
    with torch.no_grad():
        scene.params["means"][:, 2] -= 0.2
        moved = depth_l1(render(scene, cam, backend="reference").depth, out.alpha.detach(), target)
    assert float(moved) < float(loss.detach())
