"""Multi-view video readers: Dynamic 3D Gaussians / CMU Panoptic and Neural 3D Video, on tiny fixtures written here."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import pytest

from trainers.data import detect_format, load_dataset, load_n3dv, load_panoptic


# --------------------------------------------------------------------------------------------- helpers


def _rotation(seed: int) -> np.ndarray:
    """A small random proper rotation (cameras keep looking roughly down +z)."""
    axis = np.random.default_rng(seed).normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = 0.15 + 0.05 * seed
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _w2c(seed: int) -> np.ndarray:
    """OpenCV world-to-camera of a camera about 4 units in front of the origin, looking at it."""
    c2w = np.eye(4)
    c2w[:3, :3] = _rotation(seed)
    c2w[:3, 3] = c2w[:3, :3] @ np.array([0.0, 0.0, -4.0]) + 0.1 * seed
    return np.linalg.inv(c2w)


def _project(w2c: np.ndarray, fx, fy, cx, cy, point: np.ndarray) -> tuple:
    x = w2c[:3, :3] @ point + w2c[:3, 3]
    return fx * x[0] / x[2] + cx, fy * x[1] / x[2] + cy


def _point(t: int) -> np.ndarray:
    """The fixture's moving 3D point at timestep / frame t."""
    return np.array([-0.3 + 0.25 * t, 0.2 - 0.1 * t, 0.1 * t])


def _dot_image(w: int, h: int, u: float, v: float, half: int = 1) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    px, py = int(np.floor(u)), int(np.floor(v))
    assert half <= px < w - half and half <= py < h - half, "fixture point must land inside the image"
    img[py - half: py + half + 1, px - half: px + half + 1] = 255
    return img


def _dot_centre(image) -> tuple:
    """Brightness-weighted centre (pixel units, centres at +0.5) of the drawn dot."""
    grey = np.asarray(image).mean(axis=2)
    weight = np.where(grey > 0.25 * grey.max(), grey, 0.0)
    ys, xs = np.mgrid[: grey.shape[0], : grey.shape[1]] + 0.5
    return float((xs * weight).sum() / weight.sum()), float((ys * weight).sum() / weight.sum())


# --------------------------------------------------------------------------------------------- panoptic fixture

PW, PH = 40, 32
TRAIN_CAMS, TEST_CAMS, STEPS = [0, 1, 2], [3], 3


def _k(cam: int) -> np.ndarray:
    return np.array([[30.0 + cam, 0, 19.3 + 0.5 * cam], [0, 28.0 + cam, 15.6 - 0.4 * cam], [0, 0, 1]])


def _write_panoptic(root: Path, seg: bool = True, points: bool = True) -> Path:
    for name, cams in (("train_meta.json", TRAIN_CAMS), ("test_meta.json", TEST_CAMS)):
        meta = {"w": PW, "h": PH, "k": [], "w2c": [], "fn": [], "cam_id": []}
        for t in range(STEPS):
            meta["k"].append([_k(c).tolist() for c in cams])
            meta["w2c"].append([_w2c(c).tolist() for c in cams])
            meta["fn"].append([f"{c}/{t:06d}.jpg" for c in cams])
            meta["cam_id"].append(list(cams))
            for c in cams:
                k = _k(c)
                u, v = _project(_w2c(c), k[0, 0], k[1, 1], k[0, 2], k[1, 2], _point(t))
                img = _dot_image(PW, PH, u, v)
                (root / "ims" / str(c)).mkdir(parents=True, exist_ok=True)
                iio.imwrite(root / "ims" / str(c) / f"{t:06d}.jpg", img, extension=".jpg", quality=95)
                if seg:
                    (root / "seg" / str(c)).mkdir(parents=True, exist_ok=True)
                    mask = np.zeros((PH, PW), np.uint8)
                    mask[: PH // 2] = 255  # top half is "foreground"
                    mask[int(v) - 2: int(v) + 3, int(u) - 2: int(u) + 3] = 255
                    iio.imwrite(root / "seg" / str(c) / f"{t:06d}.png", mask)
        (root / name).write_text(json.dumps(meta))
    if points:
        data = np.concatenate([np.random.default_rng(0).normal(size=(20, 3)),
                               np.full((20, 3), 0.5), np.ones((20, 1))], axis=1)
        np.savez(root / "init_pt_cld.npz", data=data)
    return root


def _edit_meta(root: Path, fn) -> None:
    path = root / "train_meta.json"
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def panoptic(tmp_path_factory) -> Path:
    return _write_panoptic(tmp_path_factory.mktemp("panoptic"))


def test_panoptic_cameras_project_the_drawn_point(panoptic):
    for downscale in (1, 2):
        scene = load_panoptic(panoptic, downscale=downscale, segmentation="ignore")
        assert len(scene.train_views) == len(TRAIN_CAMS) * STEPS and len(scene.test_views) == len(TEST_CAMS) * STEPS
        for view in scene.train_views + scene.test_views:
            cam = view.camera
            t = int(view.name.split("/")[1].split(".")[0])
            u, v = _project(cam.world_to_camera.double().numpy(), cam.fx, cam.fy, cam.cx, cam.cy, _point(t))
            px, py = _dot_centre(view.image)
            assert abs(px - u) <= 0.75 and abs(py - v) <= 0.75, (view.name, downscale, (u, v), (px, py))
            assert (cam.width, cam.height) == (PW // downscale, PH // downscale)


def test_panoptic_times_splits_points_and_notes(panoptic):
    scene = load_panoptic(panoptic)
    times = sorted({v.camera.time for v in scene.train_views})
    assert times == [0.0, 0.5, 1.0] and scene.time_range == (0.0, 1.0)
    assert sorted({v.camera.time for v in scene.test_views}) == [0.0, 0.5, 1.0]
    assert {v.name.split("/")[0] for v in scene.test_views} == {"3"}
    assert scene.points.shape == (20, 3) and np.allclose(scene.point_colors, 0.5)
    assert any("3 timesteps" in n for n in scene.notes)
    assert load_panoptic(panoptic, max_timesteps=2).time_range == (0.0, 1.0)
    assert len(load_panoptic(panoptic, max_timesteps=2).train_views) == 2 * len(TRAIN_CAMS)


def test_panoptic_segmentation_as_alpha_and_mask(panoptic):
    scene = load_panoptic(panoptic, background=(0.0, 0.0, 1.0))
    view = scene.train_views[0]
    assert view.alpha is not None and view.mask is None
    assert view.alpha[0, 0, 0] == 1.0 and view.alpha[-1, 0, 0] == 0.0
    assert np.allclose(view.image[-1, 0].numpy(), [0.0, 0.0, 1.0])  # background pixel composited on blue
    masked = load_panoptic(panoptic, segmentation="mask").train_views[0]
    assert masked.alpha is None and masked.mask.dtype.is_floating_point is False
    assert bool(masked.mask[0, 0, 0]) and not bool(masked.mask[-1, 0, 0])


def test_panoptic_without_seg_or_points(tmp_path):
    scene = load_panoptic(_write_panoptic(tmp_path, seg=False, points=False))
    assert scene.points is None and all(v.alpha is None for v in scene.train_views)
    assert any("no seed points" in n for n in scene.notes)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.pop("w2c"), "missing required field 'w2c'"),
        (lambda m: m["k"].pop(), "unequal lengths"),
        (lambda m: [m[key][1].pop() for key in ("k", "w2c", "fn", "cam_id")], "timestep 1: field 'cam_id' differs"),
        (lambda m: m["fn"][2].pop(), "timestep 2: per-camera lists have unequal lengths"),
        (lambda m: m["w2c"][0].__setitem__(1, [[1, 0], [0, 1]]), "field 'w2c' has shape"),
        (lambda m: m.__setitem__("w", 41), "fields 'w'/'h' say 41x32"),
    ],
)
def test_panoptic_bad_meta(tmp_path, edit, message):
    root = _write_panoptic(tmp_path, seg=False, points=False)
    _edit_meta(root, edit)
    with pytest.raises(ValueError) as info:
        load_panoptic(root)
    assert "train_meta.json" in str(info.value) and message in str(info.value)
    if "differs" in message:
        assert "camera(s) 2 missing" in str(info.value)


def test_panoptic_missing_image_error_or_skip(tmp_path):
    root = _write_panoptic(tmp_path, seg=False, points=False)
    (root / "ims" / "1" / "000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"train_meta.json.*1 of 9 frames.*1/000002.jpg"):
        load_panoptic(root)
    scene = load_panoptic(root, skip_missing_frames=True)
    assert len(scene.train_views) == 8 and any("skipped 1 of 9" in n for n in scene.notes)


# --------------------------------------------------------------------------------------------- N3DV fixture

VW, VH, FOCAL, FRAMES = 64, 48, 50.0, 5


def _n3dv_c2w(cam: int) -> np.ndarray:
    return np.linalg.inv(_w2c(cam))


def _write_video(path: Path, frames) -> None:
    writer = imageio.get_writer(str(path), format="ffmpeg", fps=10, quality=10, macro_block_size=16)
    for frame in frames:
        writer.append_data(frame)
    writer.close()


def _write_n3dv(root: Path, cams: int = 3, lengths=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in range(cams):
        cv = _n3dv_c2w(c)  # OpenCV columns [right, down, forward]; LLFF wants [down, right, back]
        llff = np.stack([cv[:3, 1], cv[:3, 0], -cv[:3, 2], cv[:3, 3], [VH, VW, FOCAL]], axis=1)
        rows.append(np.concatenate([llff.reshape(-1), [1.0, 10.0]]))
        frames = []
        for t in range((lengths or {}).get(c, FRAMES)):
            u, v = _project(_w2c(c), FOCAL, FOCAL, VW / 2, VH / 2, _point(t))
            frames.append(_dot_image(VW, VH, u, v, half=2))
        _write_video(root / f"cam{c:02d}.mp4", frames)
    np.save(root / "poses_bounds.npy", np.array(rows))
    return root


@pytest.fixture(scope="module")
def n3dv(tmp_path_factory) -> Path:
    return _write_n3dv(tmp_path_factory.mktemp("n3dv"))


def test_n3dv_cameras_times_and_split(n3dv):
    for downscale in (1, 2):
        scene = load_n3dv(n3dv, downscale=downscale, normalize=False)
        assert len(scene.train_views) == 2 * FRAMES and len(scene.test_views) == FRAMES
        assert {v.name.split("/")[0] for v in scene.test_views} == {"cam00"}
        assert sorted({v.camera.time for v in scene.train_views}) == [0.0, 0.25, 0.5, 0.75, 1.0]
        for view in scene.train_views + scene.test_views:
            cam = view.camera
            assert (cam.width, cam.height) == (VW // downscale, VH // downscale)
            assert cam.fx == pytest.approx(FOCAL / downscale)
            frame = int(view.name.split("/")[1])
            u, v = _project(cam.world_to_camera.double().numpy(), cam.fx, cam.fy, cam.cx, cam.cy, _point(frame))
            px, py = _dot_centre(view.image)
            assert abs(px - u) <= 0.75 and abs(py - v) <= 0.75, (view.name, downscale, (u, v), (px, py))


def test_n3dv_stride_max_frames_and_load_dataset(n3dv):
    scene = load_n3dv(n3dv, downscale=2, frame_stride=2, normalize=False)
    assert sorted({v.name.split("/")[1] for v in scene.train_views}) == ["000000", "000002", "000004"]
    assert sorted({v.camera.time for v in scene.train_views}) == [0.0, 0.5, 1.0]
    short = load_n3dv(n3dv, downscale=2, max_frames=2, test_camera=None, normalize=False)
    assert len(short.train_views) == 3 * 2 and not short.test_views and short.time_range == (0.0, 1.0)
    assert detect_format(n3dv) == "n3dv" and detect_format(n3dv / "poses_bounds.npy") == "n3dv"
    loaded = load_dataset(n3dv, downscale=2, max_frames=3)  # normalised by default, times kept
    assert sorted({v.camera.time for v in loaded.train_views}) == [0.0, 0.5, 1.0]


def test_n3dv_trims_videos_to_shortest(tmp_path):
    root = _write_n3dv(tmp_path / "scene", lengths={2: 3})
    scene = load_n3dv(root, downscale=2, normalize=False)
    assert len(scene.train_views) == 2 * 3 and sorted({v.camera.time for v in scene.train_views}) == [0.0, 0.5, 1.0]
    note = next(n for n in scene.notes if "trimmed" in n)
    assert "cam02.mp4 3" in note and "cam00.mp4 5" in note and "3 frames" in note


def test_n3dv_bad_input(tmp_path):
    root = _write_n3dv(tmp_path / "scene", cams=2)
    (root / "cam01.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(ValueError, match=r"cam01\.mp4: cannot read video"):
        load_n3dv(root)
    (root / "cam01.mp4").unlink()
    with pytest.raises(ValueError, match=r"poses_bounds\.npy: 2 poses but 1 cam\*\.mp4"):
        load_n3dv(root)
    _write_video(root / "cam01.mp4", [np.zeros((VH, VW, 3), np.uint8)] * 2)
    with pytest.raises(ValueError, match=r"test camera cam07\.mp4 not found"):
        load_n3dv(root, test_camera="cam07")


def test_detect_format_tells_readers_apart(tmp_path, panoptic, n3dv):
    assert detect_format(panoptic) == "panoptic" and detect_format(panoptic / "train_meta.json") == "panoptic"
    llff = tmp_path / "llff"
    llff.mkdir()
    np.save(llff / "poses_bounds.npy", np.load(n3dv / "poses_bounds.npy"))
    assert detect_format(llff) == "llff" and detect_format(llff / "poses_bounds.npy") == "llff"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"train_meta\.json for Dynamic 3D Gaussians.*cam\*\.mp4"):
        detect_format(empty)
    with pytest.raises(ValueError, match=r"panoptic, n3dv"):
        load_dataset(panoptic, format="nope")
    assert load_dataset(panoptic).time_range == (0.0, 1.0)
