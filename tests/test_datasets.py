"""Dataset readers: nerfstudio and Blender/D-NeRF on fixtures written here, bad input, and the shared real data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from trainers.data import detect_format, load_blender, load_dataset, load_nerfstudio

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# --------------------------------------------------------------------------------------------- helpers


def _rotation(seed: int) -> np.ndarray:
    """A random proper rotation (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _gl_pose(seed: int) -> np.ndarray:
    c2w = np.eye(4)
    c2w[:3, :3] = _rotation(seed)
    c2w[:3, 3] = np.random.default_rng(seed + 100).normal(size=3) * 3
    return c2w


def _point_at_pixel(c2w_gl: np.ndarray, fx, fy, cx, cy, u: float, v: float, depth: float) -> np.ndarray:
    """World point seen at pixel position (u, v) (pixel units, centres at +0.5), derived from the OpenGL pose alone."""
    p_gl = np.array([(u - cx) / fx * depth, -(v - cy) / fy * depth, -depth])
    return c2w_gl[:3, :3] @ p_gl + c2w_gl[:3, 3]


def _project(view, x: np.ndarray) -> np.ndarray:
    """Pixel position of world points (N, 3) in a loaded view (OpenCV world-to-camera + K)."""
    w2c = view.camera.world_to_camera.double().numpy()
    k = view.camera.K.double().numpy()
    pc = np.atleast_2d(x) @ w2c[:3, :3].T + w2c[:3, 3]
    assert (pc[:, 2] > 0).all(), "point behind the camera"
    uv = pc @ k.T
    return uv[:, :2] / uv[:, 2:3]


def _write_ply(path: Path, pts: np.ndarray, colors: np.ndarray | None = None) -> None:
    from plyfile import PlyData, PlyElement

    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")] + ([("red", "u1"), ("green", "u1"), ("blue", "u1")] if colors is not None else [])
    data = np.empty(len(pts), dtype=fields)
    for i, k in enumerate("xyz"):
        data[k] = pts[:, i]
    if colors is not None:
        for i, k in enumerate(("red", "green", "blue")):
            data[k] = colors[:, i]
    PlyData([PlyElement.describe(data, "vertex")]).write(str(path))


def _make_nerfstudio(root: Path, n: int = 6, size=(24, 16), per_frame=True, applied=None, splits=True) -> dict:
    """A nerfstudio folder whose frame i shows one bright pixel where a known world point projects."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    w, h = size
    frames, marks = [], []
    for i in range(n):
        fx, fy = 20.0 + 2 * i, 22.0 + i
        cx, cy = w / 2 + 0.5 * i, h / 2 - 0.25 * i
        c2w = _gl_pose(i)
        u0, v0 = 3 + (2 * i) % 18, 2 + i % 12  # the pixel (column, row) that gets the mark
        x = _point_at_pixel(c2w, fx, fy, cx, cy, u0 + 0.5, v0 + 0.5, depth=2.0 + i)
        img = np.full((h, w, 3), 40, np.uint8)
        img[v0, u0] = [250, 200, 10]
        name = f"images/img_{i:02d}.png"
        iio.imwrite(root / name, img)
        frame = {"file_path": name, "transform_matrix": c2w.tolist()}
        if per_frame:
            frame.update(fl_x=fx, fl_y=fy, cx=cx, cy=cy, w=w, h=h)
        frames.append(frame)
        marks.append((x, u0, v0))
    meta: dict = {"camera_model": "PINHOLE", "frames": frames}
    if not per_frame:
        meta.update(fl_x=20.0, fl_y=22.0, cx=w / 2, cy=h / 2, w=w, h=h)
    if splits:
        meta["train_filenames"] = [f["file_path"] for i, f in enumerate(frames) if i not in (1, 4)]
        meta["test_filenames"] = ["./" + frames[1]["file_path"], frames[4]["file_path"]]
    if applied is not None:
        meta["applied_transform"] = applied.tolist()
    pts = np.stack([m[0] for m in marks])
    _write_ply(root / "points3D.ply", pts, np.tile([[255, 0, 128]], (len(pts), 1)))
    meta["ply_file_path"] = "points3D.ply"
    (root / "transforms.json").write_text(json.dumps(meta))
    return {"meta": meta, "marks": marks}


def _edit_json(path: Path, fn) -> None:
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


# ------------------------------------------------------------------------------------------ nerfstudio


def test_nerfstudio_projection_per_frame_intrinsics_and_split(tmp_path):
    fx = _make_nerfstudio(tmp_path)
    scene = load_nerfstudio(tmp_path)
    assert [v.name for v in scene.test_views] == ["images/img_01.png", "images/img_04.png"]
    assert len(scene.train_views) == 4
    views = {v.name: v for v in scene.train_views + scene.test_views}
    for i, (x, u0, v0) in enumerate(fx["marks"]):
        view = views[f"images/img_{i:02d}.png"]
        assert view.camera.fx == pytest.approx(20.0 + 2 * i)
        uv = _project(view, x)[0]
        np.testing.assert_allclose(uv, [u0 + 0.5, v0 + 0.5], atol=1e-3)
        img = view.image.numpy()
        assert np.argmax(img.sum(-1)) == v0 * img.shape[1] + u0  # the mark is where the point projects
    np.testing.assert_allclose(scene.points, np.stack([m[0] for m in fx["marks"]]), atol=1e-5)
    np.testing.assert_allclose(scene.point_colors[0], [1.0, 0.0, 128 / 255], atol=1e-6)


def test_nerfstudio_global_intrinsics_and_every_8th_split(tmp_path):
    _make_nerfstudio(tmp_path, n=17, per_frame=False, splits=False)
    scene = load_nerfstudio(tmp_path / "transforms.json")
    assert [v.name for v in scene.test_views] == ["images/img_00.png", "images/img_08.png", "images/img_16.png"]
    assert len(scene.train_views) == 14
    assert all(v.camera.fx == 20.0 and v.camera.fy == 22.0 for v in scene.train_views)


def test_nerfstudio_val_list_is_test_when_no_test_list(tmp_path):
    _make_nerfstudio(tmp_path)
    _edit_json(tmp_path / "transforms.json", lambda m: m.update(val_filenames=m.pop("test_filenames")))
    scene = load_nerfstudio(tmp_path)
    assert [v.name for v in scene.test_views] == ["images/img_01.png", "images/img_04.png"]
    _edit_json(tmp_path / "transforms.json", lambda m: m.pop("train_filenames"))
    assert len(load_nerfstudio(tmp_path).train_views) == 4  # train = everything not held out


def test_nerfstudio_downscale_scales_intrinsics(tmp_path):
    fx = _make_nerfstudio(tmp_path, size=(24, 16))
    full = load_nerfstudio(tmp_path)
    half = load_nerfstudio(tmp_path, downscale=2)
    for a, b in zip(full.train_views, half.train_views):
        assert (b.camera.width, b.camera.height) == (12, 8)
        assert tuple(b.image.shape) == (8, 12, 3)
        assert b.camera.fx == pytest.approx(a.camera.fx / 2) and b.camera.cy == pytest.approx(a.camera.cy / 2)
    x, u0, v0 = fx["marks"][0]
    np.testing.assert_allclose(_project(half.train_views[0], x)[0], [(u0 + 0.5) / 2, (v0 + 0.5) / 2], atol=1e-3)


def test_nerfstudio_applied_transform_direction(tmp_path):
    """Poses and ply are saved already transformed; undoing applied_transform moves both back consistently."""
    applied = np.array([[0.0, 1.0, 0.0, 0.5], [1.0, 0.0, 0.0, -1.0], [0.0, 0.0, -1.0, 2.0]])
    fx = _make_nerfstudio(tmp_path, applied=applied)
    saved = load_nerfstudio(tmp_path)
    original = load_nerfstudio(tmp_path, original_coordinates=True)
    a4 = np.vstack([applied, [0, 0, 0, 1]])
    for s, o in zip(saved.train_views, original.train_views):
        c_saved, c_orig = s.camera.center.double().numpy(), o.camera.center.double().numpy()
        np.testing.assert_allclose(a4[:3, :3] @ c_orig + a4[:3, 3], c_saved, atol=1e-4)
    np.testing.assert_allclose(saved.points, np.stack([m[0] for m in fx["marks"]]), atol=1e-5)
    np.testing.assert_allclose(original.points @ a4[:3, :3].T + a4[:3, 3], saved.points, atol=1e-4)
    x, u0, v0 = fx["marks"][0]
    np.testing.assert_allclose(_project(original.train_views[0], original.points[0])[0], [u0 + 0.5, v0 + 0.5], atol=1e-3)


def test_nerfstudio_rgba_mask_and_opencv_distortion(tmp_path):
    _make_nerfstudio(tmp_path, n=2, splits=False)
    rgba = np.zeros((16, 24, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[..., 3] = 64
    iio.imwrite(tmp_path / "images/img_00.png", rgba)
    mask = np.zeros((16, 24), np.uint8)
    mask[:, :12] = 255
    iio.imwrite(tmp_path / "mask0.png", mask)

    def edit(meta):
        meta["frames"][0]["mask_path"] = "mask0.png"
        meta["frames"][1].update(camera_model="OPENCV", k1=-0.2, k2=0.05)

    _edit_json(tmp_path / "transforms.json", edit)
    scene = load_nerfstudio(tmp_path, background=(0.0, 0.0, 1.0))
    v0 = scene.test_views[0]
    np.testing.assert_allclose(v0.image[0, 0].numpy(), [0.0, 64 / 255, 1 - 64 / 255], atol=1e-5)
    assert v0.mask[:, :12].all() and not v0.mask[:, 12:].any()
    v1 = scene.train_views[0]
    assert v1.camera.fx != pytest.approx(22.0) and v1.mask is not None  # undistorted: new K and valid-pixel mask
    assert scene.background == (0.0, 0.0, 1.0)


# --------------------------------------------------------------------------------------------- Blender


def _make_blender(root: Path, size: int = 20, angle: float = 0.8, times: bool = False) -> None:
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for i in range(3):
            img = np.zeros((size, size, 4), np.uint8)
            img[..., 0] = 255
            img[..., 3] = 128
            img[0, 0] = [0, 0, 255, 255]
            iio.imwrite(root / split / f"r_{i}.png", img)
            frame = {"file_path": f"./{split}/r_{i}" if i % 2 == 0 else f"{split}/r_{i}.png",
                     "transform_matrix": _gl_pose(i + (10 if split == "test" else 0)).tolist()}
            if times:
                frame["time"] = i / 2
            frames.append(frame)
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))


def test_blender_suffixes_focal_and_white_compositing(tmp_path):
    _make_blender(tmp_path, size=20, angle=0.8)
    scene = load_blender(tmp_path)
    assert detect_format(tmp_path) == "blender"
    assert len(scene.train_views) == 3 and len(scene.test_views) == 3
    assert [v.name for v in scene.train_views] == ["train/r_0.png", "train/r_1.png", "train/r_2.png"]
    cam = scene.train_views[0].camera
    assert cam.fx == pytest.approx(0.5 * 20 / math.tan(0.4)) and cam.cx == 10.0 and cam.time is None
    img = scene.train_views[0].image.numpy()
    a = 128 / 255
    np.testing.assert_allclose(img[5, 5], [1.0, 1 - a, 1 - a], atol=1e-6)  # red at half alpha over white
    np.testing.assert_allclose(img[0, 0], [0.0, 0.0, 1.0], atol=1e-6)
    black = load_blender(tmp_path, background=(0, 0, 0))
    np.testing.assert_allclose(black.train_views[0].image[5, 5].numpy(), [a, 0, 0], atol=1e-6)
    assert scene.background == (1.0, 1.0, 1.0) and scene.points is None


def test_blender_projection_and_downscale(tmp_path):
    _make_blender(tmp_path, size=20, angle=0.8)
    f = 0.5 * 20 / math.tan(0.4)
    c2w = _gl_pose(0)
    x = _point_at_pixel(c2w, f, f, 10, 10, 4.5, 7.5, 3.0)
    scene = load_blender(tmp_path)
    np.testing.assert_allclose(_project(scene.train_views[0], x)[0], [4.5, 7.5], atol=1e-3)
    half = load_dataset(tmp_path, downscale=2)
    cam = half.train_views[0].camera
    assert (cam.width, cam.height) == (10, 10) and cam.fx == pytest.approx(f / 2)
    np.testing.assert_allclose(_project(half.train_views[0], x)[0], [2.25, 3.75], atol=1e-3)


def test_blender_limit(tmp_path):
    _make_blender(tmp_path)
    scene = load_blender(tmp_path, limit=2)
    assert len(scene.train_views) == 2 and len(scene.test_views) == 2
    with pytest.raises(ValueError, match="limit"):
        load_blender(tmp_path, limit=0)


def test_dnerf_time_and_points(tmp_path):
    _make_blender(tmp_path, times=True)
    _write_ply(tmp_path / "points3d.ply", np.arange(12, dtype=float).reshape(4, 3))
    scene = load_dataset(tmp_path)
    assert [v.camera.time for v in scene.train_views] == [0.0, 0.5, 1.0]
    assert scene.points.shape == (4, 3) and scene.point_colors is None


# ------------------------------------------------------------------------------------------- bad input


def _ns(tmp_path) -> Path:
    _make_nerfstudio(tmp_path, n=2, splits=False)
    return tmp_path / "transforms.json"


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda m: m["frames"][0].pop("transform_matrix"), ["frames[0]", "transform_matrix"]),
        (lambda m: [f.pop("fl_x") for f in m["frames"]], ["frames[0]", "fl_x"]),
        (lambda m: m["frames"][1].update(transform_matrix=np.eye(3).tolist()), ["frames[1]", "transform_matrix", "shape"]),
        (lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(1, float("nan")), ["transform_matrix", "NaN"]),
        (lambda m: m["frames"][0].update(fl_y=0.0), ["fl_y", "positive"]),
        (lambda m: m["frames"][0].update(fl_x=-3.0), ["fl_x", "positive"]),
        (lambda m: m["frames"][0].update(w=30), ["img_00.png", "'w'/'h'", "24x16"]),
        (lambda m: m["frames"][0].update(file_path="images/nope.png"), ["file_path", "nope.png"]),
        (lambda m: m["frames"][0].update(camera_model="OPENCV_FISHEYE"), ["camera_model", "OPENCV_FISHEYE"]),
        (lambda m: m.update(train_filenames=["images/ghost.png"]), ["train_filenames", "ghost.png"]),
        (lambda m: m.update(applied_transform=[[1, 0, 0]]), ["applied_transform", "shape"]),
        (lambda m: m.update(ply_file_path="missing.ply"), ["ply_file_path", "missing.ply"]),
        (lambda m: m.pop("frames"), ["'frames'"]),
    ],
)
def test_nerfstudio_bad_input_names_file_and_field(tmp_path, edit, words):
    path = _ns(tmp_path)
    _edit_json(path, edit)
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        load_nerfstudio(tmp_path)
    msg = str(err.value)
    assert str(path) in msg or "img_00.png" in msg, msg
    for word in words:
        assert word in msg, msg


def test_bad_json_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="transforms.json"):
        load_nerfstudio(tmp_path)
    (tmp_path / "transforms.json").write_text('{\n  "frames": [\n    {"file_path": "a.png",,}\n  ]\n}')
    with pytest.raises(ValueError, match=r"transforms\.json: malformed JSON at line 3"):
        load_dataset(tmp_path)


def test_unreadable_image_names_file(tmp_path):
    _ns(tmp_path)
    (tmp_path / "images/img_01.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"frames\[1\].*file_path.*cannot read image .*img_01\.png"):
        load_nerfstudio(tmp_path)


def test_blender_bad_input(tmp_path):
    _make_blender(tmp_path)
    path = tmp_path / "transforms_train.json"
    _edit_json(path, lambda m: m.update(camera_angle_x=0.0))
    with pytest.raises(ValueError, match=r"transforms_train\.json.*camera_angle_x.*positive"):
        load_blender(tmp_path)
    _edit_json(path, lambda m: m.pop("camera_angle_x"))
    with pytest.raises(ValueError, match=r"transforms_train\.json.*camera_angle_x"):
        load_blender(tmp_path)
    _edit_json(path, lambda m: m.update(camera_angle_x=0.8, frames=[{"file_path": "./train/r_9", "transform_matrix": np.eye(4).tolist()}]))
    with pytest.raises(FileNotFoundError, match=r"transforms_train\.json.*file_path.*r_9"):
        load_blender(tmp_path)


def test_unknown_folder_is_named(tmp_path):
    (tmp_path / "stuff.txt").write_text("x")
    with pytest.raises(ValueError, match=str(tmp_path)):
        load_dataset(tmp_path)
    with pytest.raises(ValueError, match="downscale"):
        load_nerfstudio(tmp_path, downscale=0)


# ----------------------------------------------------------------------------------------- shared data


def _shared(name: str) -> Path:
    path = SHARED / name
    if not (path / "transforms_train.json").is_file():
        pytest.skip(f"shared dataset {path} not present")
    return path


def test_nerf_synthetic_lego_400():
    path = _shared("nerf_synthetic_lego_400")
    angle = json.loads((path / "transforms_train.json").read_text())["camera_angle_x"]
    f = 0.5 * 400 / math.tan(angle / 2)
    full = load_dataset(path)  # every view at full resolution
    assert len(full.train_views) == 100 and len(full.test_views) == 200
    cam = full.test_views[-1].camera
    assert (cam.width, cam.height) == (400, 400) and cam.fx == pytest.approx(f, rel=1e-6)
    img = full.train_views[0].image
    assert img.min() >= 0.0 and img.max() <= 1.0 and (img == 1.0).all(-1).float().mean() > 0.3  # white background
    # the object sits at the origin: it must project near the image centre of every camera
    for v in full.train_views[::10]:
        u, w = _project(v, np.zeros((1, 3)))[0]
        assert abs(u - 200) < 60 and abs(w - 200) < 60
    half = load_blender(path, downscale=2, limit=5)
    for v_half, v_full in zip(half.train_views + half.test_views, full.train_views[:5] + full.test_views[:5]):
        assert (v_half.camera.width, v_half.camera.height) == (200, 200)
        assert v_half.camera.fx == pytest.approx(f / 2, rel=1e-6) and v_half.camera.cx == 100.0
        assert v_half.name == v_full.name
        expected = v_full.image.numpy().reshape(200, 2, 200, 2, 3).mean(axis=(1, 3))  # area filter
        np.testing.assert_allclose(v_half.image.numpy(), expected, atol=2e-3)


def test_dnerf_lego():
    path = _shared("dnerf_lego")
    scene = load_dataset(path, downscale=4)
    assert len(scene.train_views) == 50 and len(scene.test_views) == 20
    times = [v.camera.time for v in scene.train_views + scene.test_views]
    assert all(t is not None and 0.0 <= t <= 1.0 for t in times) and len(set(times)) > 10
    cam = scene.train_views[0].camera
    angle = json.loads((path / "transforms_train.json").read_text())["camera_angle_x"]
    assert (cam.width, cam.height) == (200, 200)
    assert cam.fx == pytest.approx(0.5 * 800 / math.tan(angle / 2) / 4, rel=1e-6)
