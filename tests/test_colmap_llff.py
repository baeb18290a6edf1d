"""COLMAP and LLFF readers and world normalisation: fixtures written here (bin and txt), bad input, shared fern."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import pytest

from trainers.data import (
    apply_similarity,
    detect_format,
    load_colmap,
    load_dataset,
    load_llff,
    normalize_scene,
    read_colmap_model,
    similarity_from_cameras,
    write_colmap_model,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FULL = (128, 96)  # COLMAP camera size (W, H); images_2 holds 64x48 copies


# --------------------------------------------------------------------------------------------- helpers


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _quat(r: np.ndarray) -> np.ndarray:
    """Rotation -> (w, x, y, z), written independently of the reader (Shepperd via the largest component)."""
    m = r
    t = np.trace(m)
    cands = [1 + t, 1 + 2 * m[0, 0] - t, 1 + 2 * m[1, 1] - t, 1 + 2 * m[2, 2] - t]
    k = int(np.argmax(cands))
    s = np.sqrt(cands[k]) * 2
    if k == 0:
        q = [s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif k == 1:
        q = [(m[2, 1] - m[1, 2]) / s, s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif k == 2:
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s]
    else:
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4]
    return np.array(q)


def _project(view, x: np.ndarray) -> np.ndarray:
    w2c = view.camera.world_to_camera.double().numpy()
    k = view.camera.K.double().numpy()
    pc = np.atleast_2d(x) @ w2c[:3, :3].T + w2c[:3, 3]
    assert (pc[:, 2] > 0).all(), "point behind the camera"
    uv = pc @ k.T
    return uv[:, :2] / uv[:, 2:3]


def _distort(model: str, params, x: float, y: float):
    """COLMAP's distortion of normalised coordinates (from the COLMAP camera-model definitions)."""
    if model in ("SIMPLE_PINHOLE", "PINHOLE"):
        return x, y
    r2 = x * x + y * y
    if model == "SIMPLE_RADIAL":
        f = 1 + params[3] * r2
        return x * f, y * f
    if model == "RADIAL":
        f = 1 + params[3] * r2 + params[4] * r2 * r2
        return x * f, y * f
    k1, k2, p1, p2 = params[4:8]
    f = 1 + k1 * r2 + k2 * r2 * r2
    return x * f + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * f + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y


def _pinhole(model: str, p):
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        return p[0], p[0], p[1], p[2]
    return p[0], p[1], p[2], p[3]


def _blob(w: int, h: int, u: float, v: float, sigma: float) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    return np.exp(-((xs - u) ** 2 + (ys - v) ** 2) / (2 * sigma**2))


def _centroid(img: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre (pixel units, centres at +0.5) of the bright blob in channel 0."""
    a = img[..., 0].astype(np.float64)
    a = np.where(a > 0.05 * a.max(), a, 0.0)
    ys, xs = np.nonzero(a)
    wts = a[ys, xs]
    return np.array([(wts * (xs + 0.5)).sum() / wts.sum(), (wts * (ys + 0.5)).sum() / wts.sum()])


CAMERAS = [
    ("PINHOLE", [100.0, 104.0, 63.0, 49.0]),
    ("SIMPLE_PINHOLE", [110.0, 64.0, 48.0]),
    ("SIMPLE_RADIAL", [95.0, 64.5, 47.5, 0.12]),
    ("OPENCV", [105.0, 102.0, 65.0, 47.0, -0.25, 0.05, 0.004, -0.006]),
]
MODEL_ID = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "RADIAL": 3, "OPENCV": 4, "OPENCV_FISHEYE": 5,
            "THIN_PRISM_FISHEYE": 10}


def _fixture_values(n_images: int = 9):
    """Cameras, images (pose + the known point and the undistorted pixel it projects to) and points."""
    cams = [(i + 1, model, FULL[0], FULL[1], params) for i, (model, params) in enumerate(CAMERAS)]
    images, points = [], []
    for i in range(n_images):
        cam = cams[i % len(cams)]
        r = _rotation(i)
        t = np.random.default_rng(50 + i).normal(size=3)
        u, v = 16.0 + (37.3 * i) % 96, 13.0 + (23.1 * i) % 70  # undistorted pixel of the image's point, near edges too
        fx, fy, cx, cy = _pinhole(cam[1], cam[4])
        depth = 2.0 + 0.3 * i
        pc = np.array([(u - cx) / fx * depth, (v - cy) / fy * depth, depth])
        x = r.T @ (pc - t)  # world point: w2c maps it to pc
        # ids deliberately not in name order; names sorted: img_00 .. img_08
        images.append(dict(id=20 - i, q=_quat(r), t=t, cam=cam[0], name=f"img_{i:02d}.png", x=x, uv=(u, v)))
        points.append((100 + i, x, (200, 10 * i, 255 - 20 * i), 0.25 * i, [(20 - i, 0)]))
    return cams, images, points


def _write_bin_by_hand(folder: Path, cams, images, points) -> None:
    """COLMAP's binary layout, spelled out independently of the reader/writer under test."""
    folder.mkdir(parents=True, exist_ok=True)
    b = struct.pack("<Q", len(cams))
    for cid, model, w, h, p in cams:
        b += struct.pack("<iiQQ", cid, MODEL_ID[model], w, h) + struct.pack(f"<{len(p)}d", *p)
    (folder / "cameras.bin").write_bytes(b)
    b = struct.pack("<Q", len(images))
    for im in images:
        b += struct.pack("<i", im["id"]) + struct.pack("<4d", *im["q"]) + struct.pack("<3d", *im["t"])
        b += struct.pack("<i", im["cam"]) + im["name"].encode() + b"\x00"
        b += struct.pack("<Q", 1) + struct.pack("<ddq", *im["uv"], 100)
    (folder / "images.bin").write_bytes(b)
    b = struct.pack("<Q", len(points))
    for pid, x, rgb, err, track in points:
        b += struct.pack("<Q3d3Bd", pid, *x, *rgb, err) + struct.pack("<Q", len(track))
        b += b"".join(struct.pack("<ii", *t) for t in track)
    (folder / "points3D.bin").write_bytes(b)


def _write_txt_by_hand(folder: Path, cams, images, points) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    r = repr
    lines = ["# Camera list with one line of data per camera:"]
    lines += [f"{cid} {model} {w} {h} " + " ".join(r(float(v)) for v in p) for cid, model, w, h, p in cams]
    (folder / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# Image list with two lines of data per image:", "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME"]
    for k, im in enumerate(images):
        lines.append(" ".join([str(im["id"])] + [r(float(v)) for v in (*im["q"], *im["t"])] + [str(im["cam"]), im["name"]]))
        lines.append(f"{r(im['uv'][0])} {r(im['uv'][1])} 100" if k % 2 == 0 else "")  # some images: empty 2D line
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    lines = ["# 3D point list with one line of data per point:"]
    for pid, x, rgb, err, track in points:
        lines.append(" ".join([str(pid)] + [r(float(v)) for v in x] + [str(c) for c in rgb] + [r(float(err))]
                              + [f"{a} {b_}" for a, b_ in track]))
    (folder / "points3D.txt").write_text("\n".join(lines) + "\n")


def _write_images(root: Path, cams, images, folders=("images", "images_2")) -> None:
    """Each image shows a Gaussian blob where its known point lands, distorted by the camera model."""
    by_id = {c[0]: c for c in cams}
    for folder in folders:
        scale = 1 if folder == "images" else int(folder.split("_")[1])
        (root / folder).mkdir(parents=True, exist_ok=True)
        for im in images:
            _, model, w, h, p = by_id[im["cam"]]
            fx, fy, cx, cy = _pinhole(model, p)
            xd, yd = _distort(model, p, (im["uv"][0] - cx) / fx, (im["uv"][1] - cy) / fy)
            ud, vd = fx * xd + cx, fy * yd + cy
            blob = _blob(w // scale, h // scale, ud / scale, vd / scale, 2.0 / scale)
            img = np.stack([blob, 0.5 * blob, 0.2 * blob], axis=-1)
            cv2.imwrite(str(root / folder / im["name"]), (img[..., ::-1] * 65535).round().astype(np.uint16))


def _make_colmap(root: Path, binary: bool = True, sub: str = "sparse/0", folders=("images", "images_2")):
    cams, images, points = _fixture_values()
    (_write_bin_by_hand if binary else _write_txt_by_hand)(root / sub, cams, images, points)
    _write_images(root, cams, images, folders)
    return cams, images, points


# ------------------------------------------------------------------------------------------ COLMAP parse


def test_bin_and_txt_parse_to_identical_values_and_writer_round_trips(tmp_path):
    cams, images, points = _fixture_values()
    _write_bin_by_hand(tmp_path / "b", cams, images, points)
    _write_txt_by_hand(tmp_path / "t", cams, images, points)
    mb, mt = read_colmap_model(tmp_path / "b"), read_colmap_model(tmp_path / "t")
    assert mb.ext == ".bin" and mt.ext == ".txt"
    assert sorted(mb.cameras) == sorted(mt.cameras) == [1, 2, 3, 4]
    for cid, model, w, h, p in cams:
        for m in (mb, mt):
            c = m.cameras[cid]
            assert (c.model, c.width, c.height) == (model, w, h)
            np.testing.assert_array_equal(c.params, p)
    assert sorted(mb.images) == sorted(mt.images) == sorted(im["id"] for im in images)
    for im in images:
        for m in (mb, mt):
            got = m.images[im["id"]]
            assert got.name == im["name"] and got.camera_id == im["cam"]
            np.testing.assert_array_equal(got.qvec, im["q"])
            np.testing.assert_array_equal(got.tvec, im["t"])
            np.testing.assert_allclose(got.world_to_camera()[:3, :3], _rotation(images.index(im)), atol=1e-12)
        np.testing.assert_array_equal(mb.images[im["id"]].xys, [im["uv"]])
    np.testing.assert_array_equal(mb.points.xyz, mt.points.xyz)
    np.testing.assert_array_equal(mb.points.xyz, np.stack([p[1] for p in points]))
    np.testing.assert_array_equal(mb.points.rgb, mt.points.rgb)
    np.testing.assert_array_equal(mb.points.rgb, np.array([p[2] for p in points]))
    np.testing.assert_array_equal(mb.points.error, mt.points.error)
    np.testing.assert_array_equal(mb.points.tracks[3], [[17, 0]])
    # our writer reproduces COLMAP's binary layout byte for byte, and its text parses back identically
    write_colmap_model(tmp_path / "w", mb.cameras, mb.images, mb.points, binary=True)
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        assert (tmp_path / "w" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    write_colmap_model(tmp_path / "wt", mb.cameras, mb.images, mb.points, binary=False)
    mw = read_colmap_model(tmp_path / "wt")
    for cid in mb.cameras:
        np.testing.assert_array_equal(mw.cameras[cid].params, mb.cameras[cid].params)
    for iid in mb.images:
        np.testing.assert_array_equal(mw.images[iid].tvec, mb.images[iid].tvec)
        np.testing.assert_array_equal(mw.images[iid].xys, mb.images[iid].xys)
    np.testing.assert_array_equal(mw.points.xyz, mb.points.xyz)


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_known_points_project_where_the_fixture_put_them(tmp_path, binary):
    cams, images, points = _make_colmap(tmp_path, binary=binary)
    scene = load_colmap(tmp_path, normalize=False)
    assert [v.name for v in scene.test_views] == ["img_00.png", "img_08.png"]  # every 8th of the sorted names
    assert len(scene.train_views) == 7
    assert any("every 8th" in n for n in scene.notes)
    views = {v.name: v for v in scene.train_views + scene.test_views}
    for im in images:
        view = views[im["name"]]
        assert (view.camera.width, view.camera.height) == FULL
        np.testing.assert_allclose(_project(view, im["x"])[0], im["uv"], atol=1e-6)
        # the blob drawn at the distorted pixel lands at the projection after undistortion
        np.testing.assert_allclose(_centroid(view.image.numpy()), im["uv"], atol=0.15)
    np.testing.assert_allclose(scene.points, np.stack([p[1] for p in points]))
    np.testing.assert_allclose(scene.point_colors[1], [200 / 255, 10 / 255, 235 / 255])
    # positive radial distortion samples outside the source near the corners: those pixels are masked
    sr = views["img_02.png"]
    assert sr.mask is not None and not sr.mask[0, 0, 0] and sr.mask[48, 64, 0]
    assert views["img_00.png"].mask is None


@pytest.mark.parametrize("from_images_n", [True, False])
def test_colmap_downscale_scales_intrinsics_to_loaded_size(tmp_path, from_images_n):
    folders = ("images", "images_2") if from_images_n else ("images",)
    cams, images, _ = _make_colmap(tmp_path, folders=folders)
    full = load_colmap(tmp_path, normalize=False)
    half = load_colmap(tmp_path, downscale=2, normalize=False)
    assert any(("images_2/" if from_images_n else "resized by 1/2") in n for n in half.notes)
    by_name = {v.name: v for v in full.train_views + full.test_views}
    for view in half.train_views + half.test_views:
        ref = by_name[view.name].camera
        assert (view.camera.width, view.camera.height) == (64, 48)
        assert view.camera.fx == pytest.approx(ref.fx / 2) and view.camera.cy == pytest.approx(ref.cy / 2)
    for im in images:
        view = next(v for v in half.train_views + half.test_views if v.name == im["name"])
        uv = np.array(im["uv"]) / 2
        np.testing.assert_allclose(_project(view, im["x"])[0], uv, atol=1e-6)
        np.testing.assert_allclose(_centroid(view.image.numpy()), uv, atol=0.15)


def test_colmap_per_axis_scaling_and_images_folder_option(tmp_path):
    cams, images, _ = _make_colmap(tmp_path, folders=("images",))
    (tmp_path / "odd").mkdir()
    for im in images:  # anisotropic copies: 100 x 60 from 128 x 96
        img = cv2.imread(str(tmp_path / "images" / im["name"]), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(tmp_path / "odd" / im["name"]), cv2.resize(img, (100, 60), interpolation=cv2.INTER_AREA))
    scene = load_colmap(tmp_path, images_folder="odd", normalize=False)
    v = next(v for v in scene.train_views if v.name == "img_01.png")  # SIMPLE_PINHOLE f=110, c=(64, 48)
    assert (v.camera.width, v.camera.height) == (100, 60)
    assert v.camera.fx == pytest.approx(110 * 100 / 128) and v.camera.fy == pytest.approx(110 * 60 / 96)
    assert v.camera.cx == pytest.approx(64 * 100 / 128) and v.camera.cy == pytest.approx(48 * 60 / 96)


def test_colmap_sparse_without_0_and_detection(tmp_path):
    _make_colmap(tmp_path / "a", sub="sparse", binary=False, folders=("images",))
    assert detect_format(tmp_path / "a") == "colmap"
    scene = load_dataset(tmp_path / "a")  # normalised by default for COLMAP
    raw = load_dataset(tmp_path / "a", normalize=False)
    assert len(scene.train_views) == 7 and any("normalised" in n for n in scene.notes)
    assert not any("normalised" in n for n in raw.notes)
    c2w = np.stack([np.linalg.inv(v.camera.world_to_camera.double().numpy()) for v in scene.train_views])
    assert np.median(np.linalg.norm(c2w[:, :3, 3], axis=1)) == pytest.approx(1.0, abs=1e-4)
    assert np.median(np.linalg.norm(raw.camera_centers(), axis=1)) != pytest.approx(1.0, abs=1e-2)
    # the model folder itself can be passed; images are then looked up from the dataset root
    direct = load_colmap(tmp_path / "a" / "sparse", normalize=False)
    np.testing.assert_allclose(direct.camera_centers(), raw.camera_centers())


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("model, n", [("THIN_PRISM_FISHEYE", 12), ("OPENCV_FISHEYE", 8)])
def test_unsupported_model_names_file_and_model(tmp_path, binary, model, n):
    cams, images, points = _fixture_values(2)
    cams = [(1, model, 128, 96, [100.0] * n)] + cams[1:]
    (_write_bin_by_hand if binary else _write_txt_by_hand)(tmp_path / "sparse/0", cams, images, points)
    _write_images(tmp_path, _fixture_values(2)[0], images, ("images",))
    with pytest.raises(ValueError) as err:
        load_colmap(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "sparse/0" / ("cameras.bin" if binary else "cameras.txt")) in msg and model in msg, msg


@pytest.mark.parametrize("name", ["cameras.bin", "images.bin", "points3D.bin"])
def test_truncated_bin_names_the_file(tmp_path, name):
    _make_colmap(tmp_path, folders=("images",))
    path = tmp_path / "sparse/0" / name
    data = path.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 5):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError) as err:
            load_colmap(tmp_path)
        assert str(path) in str(err.value) and "truncated" in str(err.value), str(err.value)


def test_bad_text_names_file_and_line(tmp_path):
    _make_colmap(tmp_path, binary=False, folders=("images",))
    path = tmp_path / "sparse/0/cameras.txt"
    path.write_text(path.read_text().replace("PINHOLE 128 96 100.0", "PINHOLE 128 96 abc", 1))
    with pytest.raises(ValueError, match=r"cameras\.txt: line 2"):
        load_colmap(tmp_path)
    path.write_text("1 PINHOLE 128 96 100.0 100.0\n")
    with pytest.raises(ValueError, match=r"cameras\.txt: line 1: model PINHOLE needs 4 parameters, got 2"):
        load_colmap(tmp_path)


def test_missing_images_named(tmp_path):
    _make_colmap(tmp_path, folders=("images",))
    (tmp_path / "images" / "img_03.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"img_03\.png"):
        load_colmap(tmp_path)
    with pytest.raises(FileNotFoundError, match="images_4"):
        load_colmap(tmp_path, images_folder="images_4")


# ------------------------------------------------------------------------------------------------ LLFF


def _make_llff(root: Path, n: int = 9, size=(128, 96), focal=100.0, scales=(2,)):
    """poses_bounds.npy with random LLFF poses; each image shows a blob where a point at known camera offsets lies."""
    w, h = size
    rows, marks = [], []
    for i in range(n):
        q = _rotation(30 + i)
        down, right, back = q[:, 0], q[:, 1], q[:, 2]  # a right-handed [down, right, back] frame
        center = np.random.default_rng(i).normal(size=3)
        a, b, depth = 0.3 - 0.05 * i, -0.2 + 0.04 * i, 2.0 + 0.2 * i
        x = center + depth * (-back) + a * depth * right + b * depth * down  # ahead, a*depth right, b*depth down
        u, v = w / 2 + focal * a, h / 2 + focal * b  # where a pinhole camera must see it
        pose = np.column_stack([down, right, back, center, [h, w, focal]])
        rows.append(np.concatenate([pose.reshape(-1), [1.0 + i, 50.0]]))
        marks.append((x, u, v))
        for s in scales:
            (root / f"images_{s}").mkdir(parents=True, exist_ok=True)
            blob = _blob(w // s, h // s, u / s, v / s, 2.0 / s)
            iio.imwrite(root / f"images_{s}" / f"im_{i:03d}.png", (np.stack([blob] * 3, -1) * 255).round().astype(np.uint8))
    np.save(root / "poses_bounds.npy", np.array(rows))
    return marks


def test_llff_axis_conversion_with_a_synthetic_point(tmp_path):
    marks = _make_llff(tmp_path)
    assert detect_format(tmp_path) == "llff"
    scene = load_llff(tmp_path, downscale=2, normalize=False)
    assert [v.name for v in scene.test_views] == ["im_000.png", "im_008.png"]
    views = {v.name: v for v in scene.train_views + scene.test_views}
    for i, (x, u, v) in enumerate(marks):
        view = views[f"im_{i:03d}.png"]
        assert (view.camera.width, view.camera.height) == (64, 48)
        assert view.camera.fx == pytest.approx(50.0) and view.camera.cx == 32.0 and view.camera.cy == 24.0
        np.testing.assert_allclose(_project(view, x)[0], [u / 2, v / 2], atol=1e-6)
        np.testing.assert_allclose(_centroid(view.image.numpy()), [u / 2, v / 2], atol=0.3)
    assert scene.points is None and any("no seed points" in n for n in scene.notes)


def test_llff_bad_input(tmp_path):
    _make_llff(tmp_path, n=3)
    with pytest.raises(FileNotFoundError, match="images_2"):  # no images/ for downscale=1; the error lists images_2
        load_llff(tmp_path)
    arr = np.load(tmp_path / "poses_bounds.npy")
    np.save(tmp_path / "poses_bounds.npy", arr[:2])
    with pytest.raises(ValueError, match=r"poses_bounds\.npy: 2 poses but 3 images"):
        load_llff(tmp_path, downscale=2)
    np.save(tmp_path / "poses_bounds.npy", np.zeros((3, 15)))
    with pytest.raises(ValueError, match=r"poses_bounds\.npy: expected an N x 17"):
        load_llff(tmp_path, downscale=2)
    bad = arr.copy()
    bad[1, 4] = np.nan
    np.save(tmp_path / "poses_bounds.npy", bad)
    with pytest.raises(ValueError, match=r"poses_bounds\.npy: contains NaN"):
        load_llff(tmp_path, downscale=2)


def test_llff_with_colmap_beside_prefers_colmap_and_uses_its_points(tmp_path):
    cams, images, points = _make_colmap(tmp_path, folders=("images",))
    marks = _make_llff(tmp_path, scales=(2,))
    assert detect_format(tmp_path) == "colmap"
    ll = load_dataset(tmp_path, downscale=2, format="llff", normalize=False)
    assert any("points3D" in n for n in ll.notes)
    np.testing.assert_allclose(ll.points, np.stack([p[1] for p in points]))
    with pytest.raises(ValueError, match="format must be"):
        load_dataset(tmp_path, format="kitti")


# ---------------------------------------------------------------------------------------- normalisation


def _orbit_c2w(n: int, seed: int) -> np.ndarray:
    """Cameras on a tilted ring looking at a target, with a shared 'up' in a random world direction."""
    rng = np.random.default_rng(seed)
    world = _rotation(seed)
    target = rng.normal(size=3) * 5
    out = []
    for k in range(n):
        a = 2 * np.pi * k / n
        pos = np.array([np.cos(a) * 4, np.sin(a) * 4, 1.5 + 0.3 * rng.normal()])
        fwd = -pos / np.linalg.norm(pos)
        right = np.cross(fwd, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        c2w = np.eye(4)
        c2w[:3, :3] = world @ np.column_stack([right, down, fwd])
        c2w[:3, 3] = world @ pos * 3.0 + target
        out.append(c2w)
    return np.array(out)


def test_normalisation_up_z_unit_median_distance_and_unchanged_projections(tmp_path):
    cams, images, points = _make_colmap(tmp_path, folders=("images",))
    raw = load_colmap(tmp_path, normalize=False)
    # re-pose the views on an orbit with a random up direction (the fixture poses are random)
    c2w = _orbit_c2w(len(raw.train_views), 3)
    import dataclasses

    views = [dataclasses.replace(v, camera=dataclasses.replace(v.camera, world_to_camera=np.linalg.inv(m)))
             for v, m in zip(raw.train_views, c2w)]
    scene = dataclasses.replace(raw, train_views=views, points=c2w[:, :3, 3] + c2w[:, :3, 2] * 3.0)
    norm, t = normalize_scene(scene)
    new_c2w = np.stack([np.linalg.inv(v.camera.world_to_camera.double().numpy()) for v in norm.train_views])
    up = -new_c2w[:, :3, 1].mean(axis=0)
    np.testing.assert_allclose(up / np.linalg.norm(up), [0, 0, 1], atol=1e-5)
    assert np.median(np.linalg.norm(new_c2w[:, :3, 3], axis=1)) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(-c2w[:, :3, 1].mean(axis=0) / np.linalg.norm(c2w[:, :3, 1].mean(axis=0)), [0, 0, 1], atol=0.1)
    for old, new, x_old, x_new in zip(scene.train_views, norm.train_views, scene.points, norm.points):
        np.testing.assert_allclose(_project(new, x_new), _project(old, x_old), atol=1e-3)
    assert any("normalised" in n and "T = " in n for n in norm.notes)
    np.testing.assert_allclose(t, similarity_from_cameras(c2w), atol=1e-5)
    # on the loaded fixture too: the blobs' points still project to the same pixels after normalisation
    auto = load_colmap(tmp_path)
    for v_raw, v_auto in zip(raw.train_views, auto.train_views):
        i = int(v_raw.name[4:6])
        np.testing.assert_allclose(_project(v_auto, auto.points[i]), _project(v_raw, raw.points[i]), atol=1e-3)
        np.testing.assert_allclose(_project(v_auto, auto.points[i])[0], images[i]["uv"], atol=1e-3)


def test_apply_similarity_rejects_non_similarity_and_keeps_scene_scale_meaning(tmp_path):
    _make_colmap(tmp_path, folders=("images",))
    raw = load_colmap(tmp_path, normalize=False)
    with pytest.raises(ValueError, match="similarity"):
        apply_similarity(raw, np.diag([1.0, 2.0, 1.0, 1.0]))
    t = np.eye(4)
    t[:3, :3] = 2.5 * _rotation(7)
    t[:3, 3] = [1, -2, 3]
    moved = apply_similarity(raw, t)
    assert moved.scene_scale == pytest.approx(2.5 * raw.scene_scale, rel=1e-5)
    np.testing.assert_allclose(moved.camera_centers(), raw.camera_centers() @ t[:3, :3].T + t[:3, 3], atol=1e-4)


def test_normalize_option_for_blender_is_off_by_default(tmp_path):
    (tmp_path / "train").mkdir()
    frames = []
    for i, c2w in enumerate(_orbit_c2w(4, 5)):
        iio.imwrite(tmp_path / "train" / f"r_{i}.png", np.zeros((8, 8, 3), np.uint8))
        gl = c2w @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV -> OpenGL camera axes
        frames.append({"file_path": f"train/r_{i}", "transform_matrix": gl.tolist()})
    (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": frames}))
    plain = load_dataset(tmp_path)
    np.testing.assert_allclose(plain.camera_centers(), _orbit_c2w(4, 5)[:, :3, 3], atol=1e-4)
    norm = load_dataset(tmp_path, normalize=True)
    assert any("normalised" in n for n in norm.notes) and not any("normalised" in n for n in plain.notes)
    assert np.median(np.linalg.norm(norm.camera_centers(), axis=1)) == pytest.approx(1.0, abs=1e-4)


# ----------------------------------------------------------------------------------------- shared fern


def _fern() -> Path:
    path = SHARED / "llff_fern"
    if not (path / "poses_bounds.npy").is_file() or not (path / "sparse" / "0" / "images.bin").is_file():
        pytest.skip(f"shared dataset {path} not present")
    return path


def test_fern_colmap_and_llff_agree():
    path = _fern()
    arr = np.load(path / "poses_bounds.npy")
    f_llff = arr[0, 14] * 504 / arr[0, 9]
    col = load_dataset(path, downscale=8)
    assert detect_format(path) == "colmap"
    ll = load_llff(path, downscale=8)
    for scene in (col, ll):
        views = scene.train_views + scene.test_views
        assert len(views) == 20 and len(scene.test_views) == 3
        assert all((v.camera.width, v.camera.height) == (504, 378) for v in views)
        assert all(v.camera.fx == pytest.approx(f_llff, rel=0.01) for v in views)
        assert scene.points is not None and len(scene.points) > 1000
    assert [v.name for v in col.test_views] == ["IMG_4026.JPG", "IMG_4034.JPG", "IMG_4042.JPG"]
    assert [v.name for v in ll.test_views] == ["image000.png", "image008.png", "image016.png"]
    for a, b in ((col.train_views, ll.train_views), (col.test_views, ll.test_views)):
        ca = np.stack([v.camera.center.numpy() for v in a])
        cb = np.stack([v.camera.center.numpy() for v in b])
        np.testing.assert_allclose(ca, cb, atol=1e-4)
        for va, vb in zip(a, b):
            np.testing.assert_allclose(va.camera.world_to_camera.numpy(), vb.camera.world_to_camera.numpy(), atol=1e-4)
    # the raw (unnormalised) poses agree as well, and the COLMAP points lie in front of the LLFF cameras
    raw_c, raw_l = load_colmap(path, downscale=8, normalize=False), load_llff(path, downscale=8, normalize=False)
    np.testing.assert_allclose(raw_c.camera_centers(), raw_l.camera_centers(), rtol=1e-5, atol=1e-4)
    for v in raw_l.train_views[::4]:
        w2c = v.camera.world_to_camera.double().numpy()
        z = raw_l.points @ w2c[2, :3] + w2c[2, 3]
        assert (z > 0).mean() > 0.95
    # normalised fern: median camera distance 1 from the focus point, mean up +z
    c2w = np.stack([np.linalg.inv(v.camera.world_to_camera.double().numpy()) for v in col.train_views])
    assert np.median(np.linalg.norm(c2w[:, :3, 3], axis=1)) == pytest.approx(1.0, abs=1e-4)
    up = -c2w[:, :3, 1].mean(axis=0)
    np.testing.assert_allclose(up / np.linalg.norm(up), [0, 0, 1], atol=1e-4)


def test_fern_images_16_matched_by_stem():
    path = _fern()
    scene = load_colmap(path, images_folder="images_16", normalize=False)
    assert any("by name" in n for n in scene.notes)
    cam = scene.train_views[0].camera
    assert (cam.width, cam.height) == (252, 189) and cam.fx == pytest.approx(3260.53 * 252 / 4032, rel=1e-3)
    assert scene.train_views[0].mask is not None  # SIMPLE_RADIAL k > 0: undistortion leaves invalid corners
