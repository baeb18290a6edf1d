"""Dataset readers on a new user's bad input (issue 10): each case gives a clear error or the right result."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from trainers.data import detect_format, load_blender, load_colmap, load_dataset, load_llff, load_nerfstudio
from trainers.data.colmap_model import ColmapCamera, ColmapImage, ColmapPoints, write_colmap_model
from trainers.initialise import initial_scene

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CAM = (128, 96, 100.0, 104.0, 63.0, 49.0)  # COLMAP camera: W, H, fx, fy, cx, cy


# --------------------------------------------------------------------------------------------- helpers


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _quat(r: np.ndarray) -> np.ndarray:
    """Rotation -> (w, x, y, z) (well-conditioned branch chosen per matrix)."""
    t = np.trace(r)
    if t > 0:
        s = 2 * math.sqrt(1 + t)
        return np.array([s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s])
    k = int(np.argmax(np.diag(r)))
    i, j, l = k, (k + 1) % 3, (k + 2) % 3
    s = 2 * math.sqrt(1 + r[i, i] - r[j, j] - r[l, l])
    q = np.zeros(4)
    q[0] = (r[l, j] - r[j, l]) / s
    q[1 + i] = s / 4
    q[1 + j] = (r[j, i] + r[i, j]) / s
    q[1 + l] = (r[l, i] + r[i, l]) / s
    return q


def _blob_image(w: int, h: int, u: float, v: float, sigma: float) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    blob = np.exp(-((xs - u) ** 2 + (ys - v) ** 2) / (2 * sigma**2))
    return (np.stack([blob] * 3, -1) * 255).round().astype(np.uint8)


def _centroid(img: np.ndarray) -> np.ndarray:
    a = img[..., 0].astype(np.float64)
    a = np.where(a > 0.05 * a.max(), a, 0.0)
    ys, xs = np.nonzero(a)
    wts = a[ys, xs]
    return np.array([(wts * (xs + 0.5)).sum() / wts.sum(), (wts * (ys + 0.5)).sum() / wts.sum()])


def _project(view, x: np.ndarray) -> np.ndarray:
    w2c = view.camera.world_to_camera.double().numpy()
    pc = w2c[:3, :3] @ x + w2c[:3, 3]
    uv = view.camera.K.double().numpy() @ pc
    return uv[:2] / uv[2]


def _make_colmap(root: Path, n: int = 9, folders=("images",), points: bool = True) -> list:
    """A PINHOLE COLMAP model; image i shows a blob where its known world point projects. Returns (name, x, uv)."""
    w, h, fx, fy, cx, cy = CAM
    cams = {1: ColmapCamera(1, "PINHOLE", w, h, np.array([fx, fy, cx, cy]))}
    images, marks = {}, []
    for i in range(n):
        r, t = _rotation(i), np.random.default_rng(50 + i).normal(size=3)
        u, v = 20.0 + (37.3 * i) % 88, 16.0 + (23.1 * i) % 64
        depth = 2.0 + 0.3 * i
        x = r.T @ (np.array([(u - cx) / fx * depth, (v - cy) / fy * depth, depth]) - t)
        name = f"img_{i:02d}.png"
        images[i + 1] = ColmapImage(i + 1, _quat(r), t, 1, name)
        marks.append((name, x, (u, v)))
        for folder in folders:
            s = 1 if folder == "images" else int(folder.split("_")[1])
            (root / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / folder / name), _blob_image(w // s, h // s, u / s, v / s, 2.5 / s))
    pts = ColmapPoints.empty()
    if points:
        xyz = np.stack([m[1] for m in marks])
        pts = ColmapPoints(np.arange(1, n + 1), xyz, np.full((n, 3), 200, np.uint8), np.zeros(n), [])
    write_colmap_model(root / "sparse" / "0", cams, images, pts)
    return marks


def _gl_pose(seed: int) -> np.ndarray:
    c2w = np.eye(4)
    c2w[:3, :3] = _rotation(seed)
    c2w[:3, 3] = np.random.default_rng(seed + 100).normal(size=3) * 3
    return c2w


def _make_nerfstudio(root: Path, n: int = 8, missing=()) -> Path:
    """n frames of 24x16; the frames whose index is in `missing` name images that are not written."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(n):
        name = f"images/f_{i:02d}.png"
        if i not in missing:
            cv2.imwrite(str(root / name), np.full((16, 24, 3), 10 * i, np.uint8))
        frames.append({"file_path": name, "transform_matrix": _gl_pose(i).tolist()})
    meta = {"fl_x": 20.0, "fl_y": 20.0, "cx": 12.0, "cy": 8.0, "w": 24, "h": 16, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root / "transforms.json"


def _make_blender(root: Path, n: int = 4, sizes=None, missing=()) -> None:
    """transforms_train/test.json with `n` frames each; `sizes[i]` (W, H) overrides train frame i's image size."""
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for i in range(n):
            w, h = (sizes or {}).get(i, (24, 16)) if split == "train" else (24, 16)
            if not (split == "train" and i in missing):
                cv2.imwrite(str(root / split / f"r_{i}.png"), np.full((h, w, 3), 20 * i, np.uint8))
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": _gl_pose(i).tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": frames}))


def _edit_json(path: Path, fn) -> None:
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


# ---------------------------------------------------------------------- 1. COLMAP names vs files on disk


def test_colmap_one_missing_name_is_an_error_not_a_sorted_order_pairing(tmp_path):
    _make_colmap(tmp_path)
    (tmp_path / "images" / "img_03.png").rename(tmp_path / "images" / "other.png")  # same count, one name off
    with pytest.raises(FileNotFoundError) as err:
        load_colmap(tmp_path)
    msg = str(err.value)
    for word in ("images.bin", "1 of 9 images not found", "'img_03.png'", "skip_missing_frames"):
        assert word in msg, msg


def test_colmap_many_missing_names_are_listed_capped_with_the_count(tmp_path):
    _make_colmap(tmp_path, n=14)
    for i in range(2, 14):
        (tmp_path / "images" / f"img_{i:02d}.png").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_colmap(tmp_path)
    msg = str(err.value)
    assert "12 of 14 images not found" in msg and "'img_02.png'" in msg and "(and 2 more)" in msg, msg
    assert "'img_13.png'" not in msg, msg


def test_colmap_skip_missing_frames_keeps_the_right_image_for_each_pose(tmp_path):
    marks = _make_colmap(tmp_path)
    (tmp_path / "images" / "img_03.png").unlink()
    scene = load_colmap(tmp_path, normalize=False, skip_missing_frames=True, test_every=0)
    assert sorted(v.name for v in scene.train_views) == sorted(m[0] for m in marks if m[0] != "img_03.png")
    assert any("skipped 1 of 9 images" in n and "img_03.png" in n for n in scene.notes), scene.notes
    by_name = {v.name: v for v in scene.train_views}
    for name, x, uv in marks:
        if name in by_name:
            np.testing.assert_allclose(_project(by_name[name], x), uv, atol=1e-6)
            np.testing.assert_allclose(_centroid(by_name[name].image.numpy()), uv, atol=0.2)


def test_colmap_sorted_order_only_when_no_name_matches(tmp_path):
    marks = _make_colmap(tmp_path)
    for name, _, _ in marks:  # every file renamed, order kept: pairing by sorted order is still allowed
        (tmp_path / "images" / name).rename(tmp_path / "images" / name.replace("img_", "frame_"))
    scene = load_colmap(tmp_path, normalize=False, test_every=0)
    assert any("by sorted order" in n for n in scene.notes), scene.notes
    (tmp_path / "images" / "frame_00.png").unlink()  # none match and counts differ
    with pytest.raises(FileNotFoundError, match=r"images\.bin: none of the 9 image names"):
        load_colmap(tmp_path)


# ------------------------------------------------------------------------- 2. singular / invalid poses


BAD_POSES = [
    (np.zeros((4, 4)), ["singular", "all zeros"]),
    (np.diag([1.0, 1.0, 0.0, 1.0]), ["singular"]),
    (np.diag([1.0, 2.0, 1.0, 1.0]), ["not a rotation"]),
    (np.diag([1.0, 1.0, -1.0, 1.0]), ["reflection"]),
    (np.vstack([np.eye(4)[:3], [[0.0, 0.0, 1.0, 1.0]]]), ["bottom row"]),
]


@pytest.mark.parametrize("matrix, words", BAD_POSES)
def test_nerfstudio_bad_transform_matrix_names_file_frame_and_path(tmp_path, matrix, words):
    path = _make_nerfstudio(tmp_path)
    _edit_json(path, lambda m: m["frames"][2].update(transform_matrix=matrix.tolist()))
    with pytest.raises(ValueError) as err:
        load_nerfstudio(tmp_path)
    msg = str(err.value)
    for word in [str(path), "frames[2] (images/f_02.png)", "transform_matrix"] + words:
        assert word in msg, msg


@pytest.mark.parametrize("matrix, words", BAD_POSES[:2])
def test_blender_bad_transform_matrix_names_file_frame_and_path(tmp_path, matrix, words):
    _make_blender(tmp_path)
    _edit_json(tmp_path / "transforms_test.json", lambda m: m["frames"][1].update(transform_matrix=matrix.tolist()))
    with pytest.raises(ValueError) as err:
        load_blender(tmp_path)
    msg = str(err.value)
    for word in ["transforms_test.json", "frames[1] (./test/r_1)", "transform_matrix"] + words:
        assert word in msg, msg


def test_scaled_rotation_and_3x4_poses_are_accepted(tmp_path):
    path = _make_nerfstudio(tmp_path)
    scaled = _gl_pose(3)
    scaled[:3, :3] *= 2.5  # some datasets store uniformly scaled rotations
    _edit_json(path, lambda m: (m["frames"][3].update(transform_matrix=scaled.tolist()),
                                m["frames"][4].update(transform_matrix=_gl_pose(4)[:3].tolist())))
    scene = load_nerfstudio(tmp_path)
    assert len(scene.train_views) + len(scene.test_views) == 8


@pytest.mark.parametrize("qvec", [[0.0, 0.0, 0.0, 0.0], [float("nan"), 0.0, 0.0, 1.0]])
def test_colmap_zero_or_nan_quaternion_names_file_and_image(tmp_path, qvec):
    _make_colmap(tmp_path)
    from trainers.data import read_colmap_model

    model = read_colmap_model(tmp_path / "sparse" / "0")
    model.images[5].qvec = np.array(qvec)
    shutil.rmtree(tmp_path / "sparse")
    write_colmap_model(tmp_path / "sparse" / "0", model.cameras, model.images, model.points, binary=False)
    with pytest.raises(ValueError) as err:
        load_colmap(tmp_path)
    msg = str(err.value)
    assert "images.txt" in msg and "'img_04.png'" in msg and "quaternion" in msg, msg


def test_llff_singular_rotation_row_is_named(tmp_path):
    (tmp_path / "images").mkdir()
    rows = []
    for i in range(3):
        pose = np.column_stack([_rotation(i), np.zeros(3), [16, 24, 20.0]])
        if i == 1:
            pose[:, :3] = 0.0
        rows.append(np.concatenate([pose.reshape(-1), [1.0, 10.0]]))
        cv2.imwrite(str(tmp_path / "images" / f"im_{i}.png"), np.zeros((16, 24, 3), np.uint8))
    np.save(tmp_path / "poses_bounds.npy", np.array(rows))
    with pytest.raises(ValueError, match=r"poses_bounds\.npy: row 1: field 'pose rotation.*singular"):
        load_llff(tmp_path)


# ------------------------------------------------------------------- 3. Blender frames of another size


@pytest.mark.parametrize("size", [(16, 16), (12, 8)])  # other aspect ratio; same aspect but another size
def test_blender_frame_of_another_size_is_named(tmp_path, size):
    _make_blender(tmp_path, sizes={2: size})
    with pytest.raises(ValueError) as err:
        load_blender(tmp_path)
    msg = str(err.value)
    for word in ("transforms_train.json", "frames[2] (./train/r_2)", f"{size[0]}x{size[1]}", "expected 24x16"):
        assert word in msg, msg


# -------------------------------------------------------------------------------- 4. --data is a file


def test_data_pointing_at_a_non_dataset_file_or_nowhere(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"x")
    with pytest.raises(ValueError) as err:
        load_dataset(tmp_path / "photo.png")
    msg = str(err.value)
    assert "photo.png: is a file" in msg and "transforms*.json" in msg and "poses_bounds.npy" in msg, msg
    with pytest.raises(FileNotFoundError, match=r"nowhere: not found"):
        detect_format(tmp_path / "nowhere")


# ------------------------------------------------------------------------------- 5. COLMAP, no points


def test_colmap_without_points_notes_random_initialisation(tmp_path):
    _make_colmap(tmp_path, points=False)
    scene = load_colmap(tmp_path)
    assert scene.points is None
    assert any("no 3D points" in n and "points3D.bin is empty" in n and "random" in n for n in scene.notes), scene.notes
    init = initial_scene(scene, 0, 0.1, 37, 1000, seed=0)  # what the note promises: random points are used
    assert init.means.shape[0] == 37


# ----------------------------------------------------------------- 6. --downscale 8 with only images_4


def test_colmap_downscale_8_uses_images_4_resized_by_2(tmp_path):
    marks = _make_colmap(tmp_path, folders=("images_4",))
    scene = load_colmap(tmp_path, downscale=8, normalize=False, test_every=0)
    assert any("images_4/ resized by 1/2" in n and "downscale 8" in n for n in scene.notes), scene.notes
    by_name = {v.name: v for v in scene.train_views}
    for name, x, (u, v) in marks:
        view = by_name[name]
        assert (view.camera.width, view.camera.height) == (16, 12) and tuple(view.image.shape) == (12, 16, 3)
        assert view.camera.fx == pytest.approx(CAM[2] / 8) and view.camera.cy == pytest.approx(CAM[5] / 8)
        np.testing.assert_allclose(_project(view, x), (u / 8, v / 8), atol=1e-6)
        np.testing.assert_allclose(_centroid(view.image.numpy()), (u / 8, v / 8), atol=0.25)


def test_colmap_downscale_without_a_dividing_folder_resizes_images(tmp_path):
    _make_colmap(tmp_path, folders=("images", "images_3"))
    scene = load_colmap(tmp_path, downscale=8, normalize=False)
    assert any("images/ matched by name, resized by 1/8" in n for n in scene.notes), scene.notes
    assert not any("images_3" in n for n in scene.notes)
    assert (scene.train_views[0].camera.width, scene.train_views[0].camera.height) == (16, 12)


@pytest.mark.skipif(not (SHARED / "llff_fern").is_dir(), reason="shared llff_fern not present")
def test_fern_llff_downscale_32_uses_images_16():
    scene = load_llff(SHARED / "llff_fern", downscale=32, normalize=False)
    assert any("images_16/ resized by 1/2" in n for n in scene.notes), scene.notes
    assert (scene.train_views[0].camera.width, scene.train_views[0].camera.height) == (126, 94)


# ------------------------------------------------------------------ 7. frames naming missing images


def test_nerfstudio_missing_images_are_counted_and_listed(tmp_path):
    path = _make_nerfstudio(tmp_path, missing=(2, 5, 6))
    with pytest.raises(FileNotFoundError) as err:
        load_nerfstudio(tmp_path)
    msg = str(err.value)
    for word in (str(path), "3 of 8 frames name missing images", "frames[2] (images/f_02.png)", "frames[6]",
                 "skip_missing_frames"):
        assert word in msg, msg


def test_nerfstudio_skip_missing_frames(tmp_path):
    path = _make_nerfstudio(tmp_path, missing=(2, 5, 6))
    _edit_json(path, lambda m: m.update(train_filenames=[f"images/f_{i:02d}.png" for i in (0, 1, 2, 3, 4)],
                                        test_filenames=["images/f_05.png", "images/f_07.png"]))
    scene = load_dataset(tmp_path, skip_missing_frames=True)
    assert sorted(v.name for v in scene.train_views) == [f"images/f_0{i}.png" for i in (0, 1, 3, 4)]
    assert [v.name for v in scene.test_views] == ["images/f_07.png"]
    assert any("skipped 3 of 8 frames" in n for n in scene.notes), scene.notes
    # the image kept for frame 7 is frame 7's (grey level 70), not a neighbour's
    assert float(scene.test_views[0].image.mean()) == pytest.approx(70 / 255, abs=1e-6)


def test_skip_missing_frames_errors_when_none_remain(tmp_path):
    _make_nerfstudio(tmp_path, n=3, missing=(0, 1, 2))
    with pytest.raises(FileNotFoundError, match="no frame is left"):
        load_nerfstudio(tmp_path, skip_missing_frames=True)


def test_blender_missing_frames_error_and_skip(tmp_path):
    _make_blender(tmp_path, missing=(1,))
    with pytest.raises(FileNotFoundError, match=r"transforms_train\.json: 1 of 4 frames name missing images.*r_1"):
        load_blender(tmp_path)
    scene = load_dataset(tmp_path, skip_missing_frames=True)
    assert sorted(v.name for v in scene.train_views) == ["train/r_0.png", "train/r_2.png", "train/r_3.png"]
    assert any("skipped 1 of 4 frames of transforms_train.json" in n for n in scene.notes), scene.notes


def test_every_format_accepts_skip_missing_frames(tmp_path):
    _make_colmap(tmp_path / "c")
    assert len(load_dataset(tmp_path / "c", skip_missing_frames=True).train_views) == 7
    (tmp_path / "l" / "images").mkdir(parents=True)
    rows = [np.concatenate([np.column_stack([_rotation(i), [i, 0, 0], [16, 24, 20.0]]).reshape(-1), [1.0, 9.0]])
            for i in range(3)]
    for i in range(3):
        cv2.imwrite(str(tmp_path / "l" / "images" / f"im_{i}.png"), np.zeros((16, 24, 3), np.uint8))
    np.save(tmp_path / "l" / "poses_bounds.npy", np.array(rows))
    assert len(load_dataset(tmp_path / "l", skip_missing_frames=True).train_views) == 2
