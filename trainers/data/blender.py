"""Reader for Blender / NeRF-synthetic and D-NeRF folders (`transforms_{train,val,test}.json`).

- `camera_angle_x` gives f = 0.5 W / tan(angle / 2) with W the width of the image actually loaded (copies of the
  dataset are often downsampled while the JSON is the original); fx = fy, principal point at the image centre.
- `file_path` may lack the `.png` suffix and may start with './'.
- RGBA is composited on white by default. D-NeRF's per-frame `time` is kept on `Camera.time`.
- Split: train = transforms_train, test = transforms_test (val is not used). No seed points unless a
  `points3d.ply` lies beside the JSON files.
- Every image must have the same size; frames naming missing images are an error, or skipped (with a note) when
  `skip_missing_frames=True`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from render import Camera
from render.conventions import opengl_c2w_to_opencv_w2c

from ._io import (
    as_float,
    as_pose,
    check_downscale,
    downscaled_size,
    load_image,
    missing_frames,
    parallel_map,
    parse_background,
    read_json,
    read_ply_points,
    require,
    resize,
    resolve_file,
    skip_or_raise_missing,
    to_rgb,
)
from .dataset import SceneData, View

SPLIT_FILES = {"train": "transforms_train.json", "val": "transforms_val.json", "test": "transforms_test.json"}
POINTS_FILES = ("points3d.ply", "points3D.ply")


def _load_frame(
    folder: Path, json_path: Path, angle_x: float, frame: Any, index: int, bg: Tuple[float, float, float], downscale: int
) -> Tuple[View, Tuple[int, int], str]:
    """(view, (width, height) of the image as stored, where) for one frame."""
    where = f"{json_path}: frames[{index}]"
    if not isinstance(frame, dict):
        raise ValueError(f"{where}: must be a JSON object")
    file_path = require(frame, "file_path", where)
    image_path = resolve_file(folder, file_path, where, "file_path", suffixes=(".png",))
    where = f"{json_path}: frames[{index}] ({file_path})"
    c2w = as_pose(require(frame, "transform_matrix", where), where, "transform_matrix")
    time = as_float(frame["time"], where, "time") if "time" in frame else None
    if time is not None and not 0.0 <= time <= 1.0:
        raise ValueError(f"{where}: field 'time' must be in [0, 1] (D-NeRF convention), got {time}")

    img = load_image(image_path, where, "file_path")
    rgb, alpha = to_rgb(img, bg)
    height, width = rgb.shape[:2]
    stored = (width, height)
    focal = 0.5 * width / math.tan(0.5 * angle_x)
    if downscale > 1:
        new_w, new_h = downscaled_size(width, height, downscale)
        rgb = resize(rgb, (new_w, new_h))
        alpha = None if alpha is None else resize(alpha, (new_w, new_h)).reshape(new_h, new_w, 1)
        focal *= new_w / width
        width, height = new_w, new_h
    camera = Camera(
        opengl_c2w_to_opencv_w2c(c2w), focal, focal, width / 2.0, height / 2.0, width, height, time=time
    )
    image = torch.from_numpy(np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), dtype=np.float32))
    name = os.path.relpath(image_path, folder).replace(os.sep, "/")
    alpha_t = None if alpha is None else torch.from_numpy(np.ascontiguousarray(np.clip(alpha, 0.0, 1.0), dtype=np.float32))
    return View(camera=camera, image=image, name=name, alpha=alpha_t), stored, where


def _load_split(
    folder: Path, split: str, bg: Tuple[float, float, float], downscale: int, limit: Optional[int] = None,
    skip_missing: bool = False, notes: Optional[List[str]] = None,
) -> List[Tuple[View, Tuple[int, int], str]]:
    json_path = folder / SPLIT_FILES[split]
    meta: Dict[str, Any] = read_json(json_path)
    angle_x = as_float(require(meta, "camera_angle_x", str(json_path)), str(json_path), "camera_angle_x", positive=True)
    if not angle_x < math.pi:
        raise ValueError(f"{json_path}: field 'camera_angle_x' must be below pi radians, got {angle_x}")
    frames = require(meta, "frames", str(json_path))
    if not isinstance(frames, list):
        raise ValueError(f"{json_path}: field 'frames' must be a list")
    if limit is not None:
        frames = frames[:limit]
    missing = missing_frames(frames, folder, suffixes=(".png",))
    note = skip_or_raise_missing(json_path, frames, missing, skip_missing)
    if note is not None and notes is not None:
        notes.append(note)
    skip = set(missing)
    items = [(i, f) for i, f in enumerate(frames) if i not in skip]
    loaded = parallel_map(lambda item: _load_frame(folder, json_path, angle_x, item[1], item[0], bg, downscale), items)
    timed = [i for i, (v, _, _) in enumerate(loaded) if v.camera.time is not None]
    if timed and len(timed) != len(loaded):
        first = next(i for i, (v, _, _) in enumerate(loaded) if v.camera.time is None)
        raise ValueError(f"{json_path}: frames[{first}] has no field 'time' while {len(timed)} other frames have one")
    return loaded


def _check_sizes(loaded: List[Tuple[View, Tuple[int, int], str]]) -> None:
    """Raise naming the first frame whose stored image size differs from the most common one."""
    sizes = [size for _, size, _ in loaded]
    expected = max(set(sizes), key=sizes.count)
    for view, size, where in loaded:
        if size != expected:
            raise ValueError(
                f"{where}: image {view.name} is {size[0]}x{size[1]} (width x height) but expected "
                f"{expected[0]}x{expected[1]} like {sizes.count(expected)} of the {len(sizes)} frames; "
                f"all images of a Blender dataset must have the same size "
                f"(resize or remove this frame)"
            )


def check_times(views: List[View], json_path: Path) -> Optional[Tuple[float, float]]:
    """(min, max) of the training views' times, None when untimed; all-equal times are an error (nothing to
    learn about motion from one instant)."""
    times = [v.camera.time for v in views if v.camera.time is not None]
    if not times:
        return None
    lo, hi = min(times), max(times)
    if hi <= lo:
        raise ValueError(f"{json_path}: field 'time' is {lo} on every frame; a dynamic dataset needs at least two times")
    return lo, hi


def load_blender(
    path: Path,
    downscale: int = 1,
    background: Optional[Sequence[float]] = None,
    limit: Optional[int] = None,
    skip_missing_frames: bool = False,
    val: bool = False,
) -> SceneData:
    """Read a Blender / D-NeRF folder into a SceneData (train = transforms_train, test = transforms_test; with
    `val`, transforms_val too, as `extra_splits['val']`).

    `limit` keeps only the first `limit` frames of each split (quick previews and smoke tests).
    `skip_missing_frames` skips frames whose image file is missing (noted) instead of failing. D-NeRF times
    must lie in [0, 1] (the D-NeRF convention, used as is) and differ across the training frames.
    """
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    downscale = check_downscale(downscale)
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: dataset folder not found")
    bg = parse_background(background, (1.0, 1.0, 1.0))
    skipped: List[str] = []
    split_files = {"train": True, "test": (folder / SPLIT_FILES["test"]).exists(),
                   "val": val and (folder / SPLIT_FILES["val"]).exists()}
    loaded = {split: _load_split(folder, split, bg, downscale, limit, skip_missing_frames, skipped)
              for split, present in split_files.items() if present}
    _check_sizes(sum(loaded.values(), []))
    views = {split: [v for v, _, _ in items] for split, items in loaded.items()}
    train, test = views["train"], views.get("test", [])
    extra = {"val": views["val"]} if "val" in views else {}
    notes = [f"blender dataset {folder}", f"split: {len(train)} train / {len(test)} test (transforms_test.json)"]
    notes += skipped
    time_range = check_times(train, folder / SPLIT_FILES["train"])
    if time_range is not None:
        distinct = len({v.camera.time for v in train})
        notes.append(f"D-NeRF: per-frame time kept on Camera.time; training times span [{time_range[0]:g}, "
                     f"{time_range[1]:g}] ({distinct} distinct)")
        if any(v.camera.time is None for v in test + sum(extra.values(), [])):
            raise ValueError(f"{folder}: the training frames carry 'time' but a test/val split does not")
    if downscale > 1:
        notes.append(f"images downscaled by {downscale} (INTER_AREA), focal scaled")
    if limit is not None:
        notes.append(f"only the first {limit} frames of each split were loaded")
    points = colors = point_times = None
    for name in POINTS_FILES:
        if (folder / name).is_file():
            points, colors = read_ply_points(folder / name, str(folder), name)
            point_times = read_point_times(folder / name, len(points)) if time_range is not None else None
            timed = f" with times in [{point_times.min():g}, {point_times.max():g}]" if point_times is not None else ""
            notes.append(f"{len(points)} seed points from {name}{timed}")
            break
    return SceneData(train, test, folder, points=points, point_colors=colors, background=bg, notes=notes, extra_splits=extra,
                     point_times=point_times)


def read_point_times(path: Path, count: int) -> Optional[np.ndarray]:
    """The seed points' float property `t` (time in [0, 1]) when the PLY has one, else None."""
    from plyfile import PlyData

    vertex = PlyData.read(str(path))["vertex"]
    if "t" not in (vertex.data.dtype.names or ()):
        return None
    times = np.asarray(vertex["t"], dtype=np.float64)
    if len(times) != count or not np.isfinite(times).all() or times.min() < 0 or times.max() > 1:
        raise ValueError(f"{path}: vertex property 't' must be {count} finite times in [0, 1]")
    return times
