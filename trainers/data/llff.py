"""Reader for LLFF folders (`poses_bounds.npy` + `images*/`), e.g. the NeRF real forward-facing scenes.

- poses_bounds.npy is N x 17: a 3x5 [R | t | (H, W, f)] camera-to-world per image, then near, far. The rotation
  columns are the camera's [down, right, back] axes in world coordinates; OpenCV's [right, down, forward] are
  therefore columns (1, 0, -2). Row i belongs to the i-th image file in name order.
- Intrinsics: f scaled by W_loaded / W_pose (fy by H_loaded / H_pose), principal point at the image centre.
- `downscale=N` loads `images_N/` when present, else the nearest larger `images_k/` (k dividing N) resized by N/k,
  else resizes `images/`; `images_folder` overrides the choice.
- Rows have no file names, so `skip_missing_frames` is accepted (as by every reader) but cannot pair a shorter
  folder with the rows: a count mismatch stays an error.
- Seed points: none in the npy. When a COLMAP model lies beside it (sparse/0 or sparse) its points3D are used:
  LLFF poses are COLMAP's poses with the camera axes permuted, so both share the world frame.
- Split: every `test_every`-th image of the sorted names is a test view. World normalisation on by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from render import Camera

from ._io import (
    check_downscale,
    check_rotation,
    downscaled_size,
    load_image,
    parallel_map,
    parse_background,
    resize,
    to_rgb,
)
from .colmap import TEST_EVERY, list_images, pick_image_folder, split_every
from .colmap_model import find_sparse_dir, read_points3d_binary, read_points3d_text
from .dataset import SceneData, View
from .normalize import normalize_scene


def llff_to_opencv_c2w(pose: np.ndarray) -> np.ndarray:
    """LLFF 3x4 (or 3x5) camera-to-world with columns [down, right, back | t] -> OpenCV 4x4 camera-to-world."""
    pose = np.asarray(pose, dtype=np.float64)
    out = np.eye(4)
    out[:3, 0] = pose[:3, 1]  # right
    out[:3, 1] = pose[:3, 0]  # down
    out[:3, 2] = -pose[:3, 2]  # forward = -back
    out[:3, 3] = pose[:3, 3]
    return out


def read_poses_bounds(path: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3, 5) LLFF poses, (N, 3) [H, W, f], (N, 2) near/far bounds; shape/finite errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as a .npy array ({type(exc).__name__}: {exc})") from None
    if arr.ndim != 2 or arr.shape[1] != 17 or len(arr) == 0:
        raise ValueError(f"{path}: expected an N x 17 array (3x5 pose + near/far per image), got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: contains NaN or Inf")
    poses = arr[:, :15].reshape(-1, 3, 5)
    hwf = poses[:, :, 4]
    if (hwf <= 0).any():
        raise ValueError(f"{path}: the (H, W, f) column must be positive")
    for i, pose in enumerate(poses):
        check_rotation(llff_to_opencv_c2w(pose)[:3, :3], f"{path}: row {i}", "pose rotation (columns 0-2 of the 3x5)")
    return poses, hwf, arr[:, 15:17]


def _load_view(path: Path, c2w: np.ndarray, hwf: np.ndarray, bg, resize_by: int, where: str) -> View:
    img = load_image(path, where, f"image {path.name}")
    rgb, _ = to_rgb(img, bg)
    if resize_by > 1:
        h, w = rgb.shape[:2]
        rgb = resize(rgb, downscaled_size(w, h, resize_by))
    height, width = rgb.shape[:2]
    h_pose, w_pose, f = hwf
    fx, fy = float(f * width / w_pose), float(f * height / h_pose)
    camera = Camera(np.linalg.inv(c2w), fx, fy, width / 2.0, height / 2.0, width, height)
    image = torch.from_numpy(np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), dtype=np.float32))
    return View(camera=camera, image=image, name=path.name)


def load_llff(
    path: Path,
    downscale: int = 1,
    background: Optional[Sequence[float]] = None,
    images_folder: Optional[str] = None,
    test_every: int = TEST_EVERY,
    normalize: bool = True,
    align_axes: bool = False,
    colmap_points: bool = True,
    skip_missing_frames: bool = False,
) -> SceneData:
    """Read an LLFF folder into a SceneData (see the module docstring for conventions and options)."""
    del skip_missing_frames  # rows carry no file names: a missing file shows as a count mismatch (an error)
    downscale = check_downscale(downscale)
    root = Path(path)
    if root.is_file() and root.name == "poses_bounds.npy":
        root = root.parent
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    npy = root / "poses_bounds.npy"
    poses, hwf, bounds = read_poses_bounds(npy)
    folder, resize_by, folder_note = pick_image_folder(root, downscale, images_folder)
    files = list_images(folder)
    if len(files) != len(poses):
        raise ValueError(
            f"{npy}: {len(poses)} poses but {len(files)} images in {folder} (rows pair with the sorted files, so "
            f"every image must be present; skip_missing_frames cannot help here)"
        )
    bg = parse_background(background, (0.0, 0.0, 0.0))
    train_idx, test_idx = split_every([f.name for f in files], test_every)

    def load(i: int) -> View:
        return _load_view(files[i], llff_to_opencv_c2w(poses[i]), hwf[i], bg, resize_by, f"{npy}: row {i}")

    train, test = parallel_map(load, train_idx), parallel_map(load, test_idx)
    notes = [
        f"llff dataset {root} ({len(poses)} poses; near/far {bounds.min():.4g}..{bounds.max():.4g})",
        f"split: {len(train)} train / {len(test)} test (every {test_every}th image of the sorted names is test)"
        if test_every else f"split: {len(train)} train / 0 test (test_every=0)",
        f"images from {folder.name}/" + (f" resized by 1/{resize_by} (INTER_AREA)" if resize_by > 1 else "")
        + "; focal scaled by W_loaded / W_pose, principal point at the image centre",
    ] + ([folder_note] if folder_note else [])
    points = colors = None
    sparse = find_sparse_dir(root) if colmap_points else None
    if sparse is not None and sparse != root:
        for ext, reader in ((".bin", read_points3d_binary), (".txt", read_points3d_text)):
            if (sparse / f"points3D{ext}").is_file():
                pts = reader(sparse / f"points3D{ext}")
                if len(pts.ids):
                    points, colors = pts.xyz.copy(), pts.rgb.astype(np.float64) / 255.0
                    notes.append(f"{len(points)} seed points from the COLMAP model {sparse / ('points3D' + ext)}")
                break
    if points is None:
        notes.append("no seed points (poses_bounds.npy has none and no COLMAP points3D lies beside it)")
    scene = SceneData(train, test, root, points=points, point_colors=colors, background=bg, notes=notes)
    if normalize:
        scene, _ = normalize_scene(scene, align_axes=align_axes)
    return scene
