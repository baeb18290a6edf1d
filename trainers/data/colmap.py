"""COLMAP dataset reader: a sparse model (`sparse/0/` or `sparse/`, .bin or .txt) and its images -> SceneData.

The model files themselves are read (and written) by colmap_model.py.

Conventions (see DESIGN.md section 6):
- images.* hold world-to-camera poses (qvec w, x, y, z; tvec) in OpenCV camera axes, used as they are.
- COLMAP pixel coordinates put the centre of the top-left pixel at (0.5, 0.5), as splatforge's Camera does.
- Supported camera models: SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV; others are refused with an
  error naming cameras.* and the model. Images of cameras with non-zero distortion are undistorted with cv2 onto
  a pinhole camera with the SAME K (focal and principal point kept); pixels that sample outside the source image
  are marked invalid in View.mask.
- `images_N` downscales: `downscale=N` loads `images_N/` when it exists, else the nearest larger `images_k/` with k
  dividing N resized by N/k (noted), else resizes `images/` by N (INTER_AREA).
  Intrinsics are scaled per axis from the COLMAP camera size to the size actually loaded (sx = W_loaded / W_colmap).
  Files are found by the COLMAP image name (also with another image suffix); only when NO name matches and the
  folder holds exactly one file per image are files matched in sorted-name order (noted). Some names missing is an
  error listing them, or with `skip_missing_frames=True` those images are skipped (noted).
- Seed points: points3D xyz and rgb / 255 (none: a note says training starts from random points).
  Split: every `test_every`-th image of the sorted names is a test view.
- World normalisation (normalize.py) is applied by default, as gsplat's COLMAP parser does; see SceneData.notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from render import Camera

from ._io import (
    check_downscale,
    downscaled_size,
    load_image,
    name_list,
    parallel_map,
    parse_background,
    resize,
    to_rgb,
)
from .colmap_model import ColmapCamera, ColmapImage, find_sparse_dir, read_colmap_model
from .dataset import SceneData, View
from .normalize import normalize_scene

SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
TEST_EVERY = 8
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG")


# ---------------------------------------------------------------------------------------- intrinsics


def pinhole_and_distortion(cam: ColmapCamera, where: str) -> Tuple[float, float, float, float, np.ndarray]:
    """(fx, fy, cx, cy, OpenCV distortion (k1, k2, p1, p2)) at the COLMAP size; unsupported models -> error."""
    p = cam.params
    dist = np.zeros(4)
    if cam.model == "SIMPLE_PINHOLE":
        fx = fy = p[0]
        cx, cy = p[1], p[2]
    elif cam.model == "PINHOLE":
        fx, fy, cx, cy = p[:4]
    elif cam.model == "SIMPLE_RADIAL":
        fx = fy = p[0]
        cx, cy, dist[0] = p[1], p[2], p[3]
    elif cam.model == "RADIAL":
        fx = fy = p[0]
        cx, cy, dist[0], dist[1] = p[1], p[2], p[3], p[4]
    elif cam.model == "OPENCV":
        fx, fy, cx, cy = p[:4]
        dist[:] = p[4:8]
    else:
        raise ValueError(
            f"{where}: camera {cam.id} uses camera model {cam.model}, which is not supported "
            f"(supported: {', '.join(SUPPORTED_MODELS)}; undistort the images with COLMAP's image_undistorter first)"
        )
    if not (np.isfinite(p).all() and fx > 0 and fy > 0):
        raise ValueError(f"{where}: camera {cam.id} ({cam.model}) has invalid parameters {p.tolist()}")
    return float(fx), float(fy), float(cx), float(cy), dist


def undistort_image(
    rgb: np.ndarray, fx: float, fy: float, cx: float, cy: float, dist: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """Undistort onto a pinhole camera with the same K; returns (rgb, valid (H, W, 1) bool).

    K uses splatforge's pixel-centre-at-0.5 convention; cv2's maps use centres at integers, hence the 0.5 shift.
    """
    h, w = rgb.shape[:2]
    k = np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]], dtype=np.float64)
    map_x, map_y = cv2.initUndistortRectifyMap(k, np.asarray(dist, np.float64), None, k, (w, h), cv2.CV_32FC1)
    out = cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    valid = (map_x >= -0.5) & (map_x <= w - 0.5) & (map_y >= -0.5) & (map_y <= h - 0.5)
    return out.reshape(rgb.shape), valid[..., None]


# ------------------------------------------------------------------------------------------- images


def pick_image_folder(root: Path, downscale: int, images_folder: Optional[str]) -> Tuple[Path, int, Optional[str]]:
    """(folder to read, extra resize factor, note or None): `images_folder` as given, else images_N, else the
    nearest larger images_k with k dividing N (resized by N/k), else images resized by N."""
    root = Path(root)
    if images_folder is not None:
        folder = root / images_folder
        if not folder.is_dir():
            raise FileNotFoundError(f"{root}: images folder {folder} does not exist")
        return folder, 1, None
    if downscale > 1 and (root / f"images_{downscale}").is_dir():
        return root / f"images_{downscale}", 1, None
    for k in range(downscale - 1, 1, -1):
        if downscale % k == 0 and (root / f"images_{k}").is_dir():
            by = downscale // k
            note = f"downscale {downscale}: no images_{downscale}/, so images_{k}/ resized by 1/{by}"
            return root / f"images_{k}", by, note
    if (root / "images").is_dir():
        return root / "images", downscale, None
    have = sorted(p.name for p in root.glob("images_*") if p.is_dir())
    raise FileNotFoundError(
        f"{root}: no images folder for downscale={downscale} (looked for "
        f"{'images_' + str(downscale) + ' and ' if downscale > 1 else ''}images; present: {have or 'none'})"
    )


def list_images(folder: Path) -> List[Path]:
    """Image files of a folder, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def _find_image(folder: Path, name: str) -> Optional[Path]:
    path = folder / name
    if path.is_file():
        return path
    stem = path.with_suffix("")
    return next((p for p in (stem.with_name(stem.name + s) for s in IMAGE_SUFFIXES) if p.is_file()), None)


def match_image_files(
    folder: Path, names: Sequence[str], where: str, skip_missing: bool = False
) -> Tuple[List[Optional[Path]], str]:
    """Files for COLMAP image names: same name or same stem with another suffix; sorted order only when NO name
    matches and the counts agree. Some names missing -> error listing them, or None for them when `skip_missing`."""
    out = [_find_image(folder, name) for name in names]
    missing = [name for name, p in zip(names, out) if p is None]
    if not missing:
        return out, "by name"
    files = list_images(folder)
    if len(missing) == len(names):
        if len(files) == len(names):
            order = np.argsort(np.array(names, dtype=object))
            matched: List[Optional[Path]] = [None] * len(names)
            for rank, idx in enumerate(order):
                matched[idx] = files[rank]
            return matched, f"by sorted order ({folder.name} uses other file names)"
        raise FileNotFoundError(
            f"{where}: none of the {len(names)} image names is in {folder} ({len(files)} image files there, so they "
            f"cannot be paired by order either); point images_folder at the folder the model was built from"
        )
    if skip_missing:
        return out, f"by name ({len(missing)} missing skipped)"
    raise FileNotFoundError(
        f"{where}: {len(missing)} of {len(names)} images not found in {folder}: "
        f"{name_list([repr(n) for n in missing])}; "
        f"restore them, or pass skip_missing_frames=True (sf-train --skip-missing-frames) to train on the others"
    )


def check_image_poses(images: Sequence[ColmapImage], where: str) -> None:
    """Raise naming the first image whose quaternion is zero / not finite or whose translation is not finite."""
    for im in images:
        q, t = np.asarray(im.qvec, np.float64), np.asarray(im.tvec, np.float64)
        if not (np.isfinite(q).all() and np.isfinite(t).all()) or np.linalg.norm(q) < 1e-9:
            raise ValueError(
                f"{where}: image {im.name!r} (id {im.id}) has an invalid pose: quaternion QW QX QY QZ = {q.tolist()} "
                f"(must be finite and non-zero), translation {t.tolist()} (must be finite); re-run or fix the model"
            )


@dataclass
class _Job:
    name: str
    path: Path
    w2c: np.ndarray
    cam: ColmapCamera
    where: str


def _load_view(job: _Job, bg: Tuple[float, float, float], resize_by: int) -> View:
    fx, fy, cx, cy, dist = pinhole_and_distortion(job.cam, job.where)
    img = load_image(job.path, job.where, f"image {job.name!r}")
    rgb, _ = to_rgb(img, bg)
    if resize_by > 1:
        h, w = rgb.shape[:2]
        rgb = resize(rgb, downscaled_size(w, h, resize_by))
    height, width = rgb.shape[:2]
    sx, sy = width / job.cam.width, height / job.cam.height
    fx, fy, cx, cy = fx * sx, fy * sy, cx * sx, cy * sy
    mask = None
    if np.any(dist != 0):
        rgb, valid = undistort_image(rgb, fx, fy, cx, cy, dist)
        if not valid.all():
            mask = torch.from_numpy(np.ascontiguousarray(valid))
    camera = Camera(job.w2c, fx, fy, cx, cy, width, height)
    image = torch.from_numpy(np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), dtype=np.float32))
    return View(camera=camera, image=image, name=job.name, mask=mask)


def split_every(names: Sequence[str], test_every: int) -> Tuple[List[int], List[int]]:
    """(train indices, test indices) into `names`: every `test_every`-th of the sorted names is test (0: none)."""
    if isinstance(test_every, bool) or int(test_every) != test_every or test_every < 0 or test_every == 1:
        raise ValueError(f"test_every must be 0 (no test views) or an integer >= 2, got {test_every!r}")
    order = sorted(range(len(names)), key=lambda i: names[i])
    if test_every == 0 or len(order) < 2:
        return order, []
    return [i for r, i in enumerate(order) if r % test_every], [i for r, i in enumerate(order) if r % test_every == 0]


def load_colmap(
    path: Path,
    downscale: int = 1,
    background: Optional[Sequence[float]] = None,
    images_folder: Optional[str] = None,
    test_every: int = TEST_EVERY,
    normalize: bool = True,
    align_axes: bool = False,
    skip_missing_frames: bool = False,
) -> SceneData:
    """Read a COLMAP dataset (root with `images*/` and `sparse/0` or `sparse/`) into a SceneData.

    `images_folder` overrides the folder choice (relative to the root); `downscale=N` prefers `images_N/`.
    RGBA images are composited on `background` (default black). `normalize` applies normalize.normalize_scene
    (with `align_axes`) and records the transform in notes. `skip_missing_frames` skips images whose file is
    missing (noted) instead of failing.
    """
    downscale = check_downscale(downscale)
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    sparse = find_sparse_dir(root)
    if sparse is None:
        raise FileNotFoundError(f"{root}: no COLMAP model (cameras.bin/.txt in sparse/0, sparse or the folder)")
    if sparse == root:
        root = root.parent.parent if root.parent.name == "sparse" else root.parent if root.name == "sparse" else root
    model = read_colmap_model(sparse)
    if not model.images:
        raise ValueError(f"{sparse / ('images' + model.ext)}: the model has no registered images")
    cam_file = str(sparse / f"cameras{model.ext}")
    for cam in model.cameras.values():
        if cam.model not in SUPPORTED_MODELS:
            pinhole_and_distortion(cam, cam_file)  # raises, naming the file and model
    folder, resize_by, folder_note = pick_image_folder(root, downscale, images_folder)
    img_file = str(sparse / f"images{model.ext}")
    imgs = sorted(model.images.values(), key=lambda im: im.name)
    check_image_poses(imgs, img_file)
    files, how_matched = match_image_files(folder, [im.name for im in imgs], img_file, skip_missing_frames)
    skipped = [im.name for im, f in zip(imgs, files) if f is None]
    jobs = [
        _Job(im.name, f, im.world_to_camera(), model.cameras[im.camera_id], cam_file)
        for im, f in zip(imgs, files)
        if f is not None
    ]
    bg = parse_background(background, (0.0, 0.0, 0.0))
    train_idx, test_idx = split_every([j.name for j in jobs], test_every)
    train = parallel_map(lambda j: _load_view(j, bg, resize_by), [jobs[i] for i in train_idx])
    test = parallel_map(lambda j: _load_view(j, bg, resize_by), [jobs[i] for i in test_idx])

    models = sorted({c.model for c in model.cameras.values()})
    notes = [
        f"colmap dataset {root} (model {sparse.relative_to(root) if sparse != root else '.'}, {model.ext}; cameras: {', '.join(models)})",
        f"split: {len(train)} train / {len(test)} test (every {test_every}th image of the sorted names is test)"
        if test_every else f"split: {len(train)} train / 0 test (test_every=0)",
        f"images from {folder.name}/ matched {how_matched}"
        + (f", resized by 1/{resize_by} (INTER_AREA)" if resize_by > 1 else "")
        + "; intrinsics scaled per axis from the COLMAP camera size to the loaded size",
    ]
    if folder_note:
        notes.append(folder_note)
    if skipped:
        notes.append(
            f"skipped {len(skipped)} of {len(imgs)} images of {Path(img_file).name} whose files are missing from "
            f"{folder.name}/: {name_list(skipped)}"
        )
    if any(np.any(pinhole_and_distortion(c, cam_file)[4] != 0) for c in model.cameras.values()):
        notes.append("distorted cameras undistorted with cv2 onto the same K; invalid border pixels masked")
    points = colors = None
    if len(model.points.ids):
        points, colors = model.points.xyz.copy(), model.points.rgb.astype(np.float64) / 255.0
        notes.append(f"{len(points)} seed points from points3D{model.ext}")
    else:
        state = "is empty" if (sparse / f"points3D{model.ext}").is_file() else "is absent"
        notes.append(
            f"the COLMAP model has no 3D points (points3D{model.ext} {state}): training starts from random "
            f"points around the cameras (random initialisation) unless a starting scene is given"
        )
    scene = SceneData(train, test, root, points=points, point_colors=colors, background=bg, notes=notes)
    if normalize:
        scene, _ = normalize_scene(scene, align_axes=align_axes)
    return scene
