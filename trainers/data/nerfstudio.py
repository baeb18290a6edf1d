"""Reader for nerfstudio `transforms.json` folders (the format `ns-process-data` writes).

Conventions (see DESIGN.md section 6):
- `transform_matrix` is an OpenGL camera-to-world (+y up, looking down -z); converted once to OpenCV world-to-camera.
- `applied_transform` (3x4) is the transform nerfstudio ALREADY applied to the saved poses and to the `ply_file_path`
  points (original data coordinates -> saved coordinates). We therefore use poses and points as saved; with
  `original_coordinates=True` we undo it (apply its inverse) to get back to e.g. the COLMAP frame.
- Intrinsics `fl_x, fl_y, cx, cy, w, h` (and distortion `k1, k2, p1, p2`) are global, per frame, or both (the
  frame wins). `camera_model` PINHOLE or OPENCV; OPENCV images with distortion are undistorted with cv2.
- Split: `train_filenames` / `test_filenames` (or `val_filenames` when no test list); without lists every 8th
  frame of the file names sorted is a test view.
- Depth: per-frame `depth_file_path` (relative to the json's folder) -> View.depth, (H, W, 1) float32 camera-axis
  z in scene units, 0 = no measurement. Single-channel 8/16/32-bit PNG/TIFF (cv2, unchanged) or `.npy` (H, W) /
  (H, W, 1). Values are multiplied by the top-level `depth_unit_scale_factor` (default 1e-3: millimetre PNGs to
  metres); float `.npy` files are taken as already in scene units unless the json gives the factor explicitly.
  Depth maps must be the image's full size; they go through the same undistortion maps as the image (nearest
  neighbour, 0 outside) and are downscaled with a validity-aware area mean (see `_io.resize_depth`). Rigid
  `applied_transform`s leave z-depth unchanged; a scaled one with `original_coordinates=True` is refused when
  depth is present (the cameras would no longer be rigid, so "scene units" would be ambiguous).
- Frames naming missing images: an error listing them, or skipped (noted) with `skip_missing_frames=True`.
- Not read: `applied_scale` (poses, points and depth are used as saved; nerfstudio folds it only into its own
  dataparser scale) and a per-frame `depth_unit_scale_factor` (only the top-level key is read).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from render import Camera
from render.conventions import opengl_c2w_to_opencv_w2c

from ._io import (
    as_float,
    as_matrix,
    as_pose,
    check_downscale,
    check_size,
    downscaled_size,
    load_image,
    missing_frames,
    parallel_map,
    parse_background,
    read_json,
    read_ply_points,
    require,
    resize,
    resize_depth,
    resolve_file,
    skip_or_raise_missing,
    to_rgb,
)
from .dataset import SceneData, View

SUPPORTED_CAMERA_MODELS = ("PINHOLE", "OPENCV")
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
_DISTORTION_KEYS = ("k1", "k2", "p1", "p2")
TEST_EVERY = 8


@dataclass
class _Frame:
    """One parsed frame, before its image is loaded."""

    name: str
    image_path: Path
    mask_path: Optional[Path]
    c2w_gl: np.ndarray  # (4, 4)
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion: np.ndarray  # (4,) k1, k2, p1, p2
    time: Optional[float]
    where: str
    depth_path: Optional[Path] = None


def _json_path(path: Path) -> Path:
    path = Path(path)
    return path / "transforms.json" if path.is_dir() or path.suffix != ".json" else path


def _norm_name(name: str) -> str:
    return os.path.normpath(name).replace(os.sep, "/")


def _parse_frame(meta: Dict[str, Any], frame: Any, index: int, json_path: Path) -> _Frame:
    where = f"{json_path}: frames[{index}]"
    if not isinstance(frame, dict):
        raise ValueError(f"{where}: must be a JSON object")
    file_path = require(frame, "file_path", where)
    image_path = resolve_file(json_path.parent, file_path, where, "file_path")
    where = f"{json_path}: frames[{index}] ({file_path})"
    c2w = as_pose(require(frame, "transform_matrix", where), where, "transform_matrix")

    def field(key: str) -> Any:
        if key in frame:
            return frame[key]
        if key in meta:
            return meta[key]
        raise ValueError(f"{where}: missing required field '{key}' (neither in the frame nor at the top level)")

    model = frame.get("camera_model", meta.get("camera_model", "PINHOLE"))
    if model not in SUPPORTED_CAMERA_MODELS:
        raise ValueError(f"{where}: field 'camera_model' is {model!r}; supported: {', '.join(SUPPORTED_CAMERA_MODELS)}")
    fx = as_float(field("fl_x"), where, "fl_x", positive=True)
    fy = as_float(field("fl_y"), where, "fl_y", positive=True)
    cx = as_float(field("cx"), where, "cx")
    cy = as_float(field("cy"), where, "cy")
    width = as_float(field("w"), where, "w", positive=True)
    height = as_float(field("h"), where, "h", positive=True)
    dist = np.zeros(4)
    if model == "OPENCV":
        dist = np.array([as_float(frame.get(k, meta.get(k, 0.0)), where, k) for k in _DISTORTION_KEYS])
    mask_path = None
    if "mask_path" in frame:
        mask_path = resolve_file(json_path.parent, frame["mask_path"], where, "mask_path")
    time = as_float(frame["time"], where, "time") if "time" in frame else None
    depth_path = None
    if "depth_file_path" in frame:
        depth_path = resolve_file(json_path.parent, frame["depth_file_path"], where, "depth_file_path")
    return _Frame(
        _norm_name(file_path), image_path, mask_path, c2w, fx, fy, cx, cy, int(width), int(height), dist, time, where,
        depth_path=depth_path,
    )


def _split(
    frames: List[_Frame], meta: Dict[str, Any], json_path: Path, skipped: Sequence[str] = ()
) -> Tuple[List[_Frame], List[_Frame], str]:
    """(train, test, description) from the explicit lists (names in `skipped` dropped), else every 8th sorted frame."""
    by_name = {f.name: f for f in frames}

    def named(key: str) -> Optional[List[_Frame]]:
        if key not in meta:
            return None
        names = meta[key]
        if not isinstance(names, list):
            raise ValueError(f"{json_path}: field '{key}' must be a list of file names")
        out = []
        for name in names:
            norm = _norm_name(str(name))
            if norm in skipped:
                continue
            if norm not in by_name:
                raise ValueError(f"{json_path}: field '{key}' names {name!r}, which is no frame's file_path")
            out.append(by_name[norm])
        return out

    train, val, test = named("train_filenames"), named("val_filenames"), named("test_filenames")
    if test is None:
        test = val
    if train is None and test is None:
        ordered = sorted(frames, key=lambda f: f.name)
        if len(ordered) < 2:
            return ordered, [], "single frame, no test view"
        test = ordered[::TEST_EVERY]
        train = [f for i, f in enumerate(ordered) if i % TEST_EVERY]
        return train, test, f"every {TEST_EVERY}th frame (sorted by name) is test"
    held = {f.name for f in (test or []) + (val or [])}
    if train is None:
        train = [f for f in sorted(frames, key=lambda f: f.name) if f.name not in held]
    if test is None:
        used = {f.name for f in train}
        test = [f for f in sorted(frames, key=lambda f: f.name) if f.name not in used]
    return train, test, "explicit split lists from transforms.json"


def _undistort_maps(fr: _Frame) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(map_x, map_y, new K) undistorting an OPENCV frame (shared by the image, mask and depth)."""
    size = (fr.width, fr.height)
    K = np.array([[fr.fx, 0, fr.cx], [0, fr.fy, fr.cy], [0, 0, 1]], dtype=np.float64)
    new_k, _ = cv2.getOptimalNewCameraMatrix(K, fr.distortion, size, 0, size)
    map_x, map_y = cv2.initUndistortRectifyMap(K, fr.distortion, None, new_k, size, cv2.CV_32FC1)
    return map_x, map_y, new_k


def _undistort(
    rgb: np.ndarray, mask: Optional[np.ndarray], fr: _Frame, depth: Optional[np.ndarray] = None
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Undistort an OPENCV image; returns (rgb, valid mask (H, W, 1) bool, new K, depth or None).

    Depth is resampled with nearest neighbour (no blending across depth edges) and is 0 (no measurement) where
    the undistorted pixel falls outside the source image. z-depth itself is unchanged by undistortion: the same
    3D point is just seen at another pixel.
    """
    map_x, map_y, new_k = _undistort_maps(fr)
    out = cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ones = np.ones(rgb.shape[:2], np.uint8) if mask is None else mask[..., 0].astype(np.uint8)
    valid = cv2.remap(ones, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if depth is not None:
        depth = cv2.remap(depth[..., 0], map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        depth = depth[..., None]
    return out, valid[..., None] > 0, new_k, depth


DEFAULT_DEPTH_UNIT_SCALE = 1e-3  # nerfstudio's default: millimetre depth images -> metres


def _load_depth(fr: _Frame, unit_scale: Optional[float]) -> np.ndarray:
    """Full-size depth (H, W, 1) float32 in scene units, 0 = no measurement; errors name the file and field.

    `unit_scale` is the explicit top-level `depth_unit_scale_factor` or None (then 1e-3, except float .npy: 1).
    """
    path = fr.depth_path
    assert path is not None
    where = f"{fr.where}: field 'depth_file_path'"
    if path.suffix.lower() == ".npy":
        try:
            raw = np.load(path, allow_pickle=False)
        except Exception as exc:  # numpy raises several types for corrupt files
            raise ValueError(f"{where}: cannot read depth array {path} ({type(exc).__name__}: {exc})") from None
        is_float_npy = np.issubdtype(raw.dtype, np.floating)
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise ValueError(f"{where}: cannot read depth image {path}")
        is_float_npy = False
    raw = np.asarray(raw)
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[..., 0]
    if raw.ndim != 2:
        raise ValueError(f"{where}: depth {path} must be single-channel (H, W), got shape {raw.shape}")
    if raw.dtype == np.bool_ or not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
        raise ValueError(f"{where}: depth {path} has unsupported dtype {raw.dtype}")
    h, w = raw.shape
    if (w, h) != (fr.width, fr.height):
        raise ValueError(
            f"{where}: depth {path} is {w}x{h} but the image is {fr.width}x{fr.height} (depth must be full image size)"
        )
    depth = raw.astype(np.float64)
    if not np.isfinite(depth).all():
        raise ValueError(f"{where}: depth {path} contains NaN or Inf (use 0 for pixels without a measurement)")
    if (depth < 0).any():
        raise ValueError(f"{where}: depth {path} has negative values (min {depth.min():g}; use 0 for no measurement)")
    scale = unit_scale if unit_scale is not None else (1.0 if is_float_npy else DEFAULT_DEPTH_UNIT_SCALE)
    return (depth * scale).astype(np.float32)[..., None]


def _load_view(
    fr: _Frame,
    background: Tuple[float, float, float],
    downscale: int,
    pose: np.ndarray,
    depth_unit_scale: Optional[float] = None,
) -> Tuple[View, bool]:
    """Load, composite, undistort and downscale one frame (and its depth map); returns (view, had_alpha)."""
    img = load_image(fr.image_path, fr.where, "file_path")
    check_size(img, fr.width, fr.height, fr.where, fr.image_path)
    depth = None if fr.depth_path is None else _load_depth(fr, depth_unit_scale)
    rgb, alpha = to_rgb(img, background)
    had_alpha = alpha is not None
    mask = None
    if fr.mask_path is not None:
        m = load_image(fr.mask_path, fr.where, "mask_path")
        if m.shape[:2] != rgb.shape[:2]:
            raise ValueError(f"{fr.where}: field 'mask_path': mask {fr.mask_path} is {m.shape[1]}x{m.shape[0]}, image is {fr.width}x{fr.height}")
        mask = m[..., :1] > 0.5
    fx, fy, cx, cy = fr.fx, fr.fy, fr.cx, fr.cy
    if np.any(fr.distortion != 0):
        rgb, valid, new_k, depth = _undistort(rgb, mask, fr, depth)
        mask = valid
        alpha = None  # coverage is not resampled through the undistortion: random backgrounds are off here
        fx, fy, cx, cy = new_k[0, 0], new_k[1, 1], new_k[0, 2], new_k[1, 2]
    width, height = fr.width, fr.height
    if downscale > 1:
        width, height = downscaled_size(fr.width, fr.height, downscale)
        sx, sy = width / fr.width, height / fr.height
        rgb = resize(rgb, (width, height))
        alpha = None if alpha is None else resize(alpha, (width, height)).reshape(height, width, 1)
        mask = None if mask is None else resize(mask.astype(np.uint8), (width, height), nearest=True) > 0
        depth = None if depth is None else resize_depth(depth, (width, height))
        fx, fy, cx, cy = fx * sx, fy * sy, cx * sx, cy * sy
    w2c = opengl_c2w_to_opencv_w2c(pose)
    camera = Camera(w2c, float(fx), float(fy), float(cx), float(cy), width, height, time=fr.time)
    image = torch.from_numpy(np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), dtype=np.float32))
    mask_t = None if mask is None else torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))
    alpha_t = None if alpha is None else torch.from_numpy(np.ascontiguousarray(np.clip(alpha, 0.0, 1.0), dtype=np.float32))
    depth_t = None if depth is None else torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))
    return View(camera=camera, image=image, name=fr.name, mask=mask_t, alpha=alpha_t, depth=depth_t), had_alpha


def load_nerfstudio(
    path: Path,
    downscale: int = 1,
    background: Optional[Sequence[float]] = None,
    original_coordinates: bool = False,
    skip_missing_frames: bool = False,
) -> SceneData:
    """Read a nerfstudio dataset (folder with transforms.json, or the json itself) into a SceneData.

    RGBA images are composited on `background` (default white); SceneData.background is that colour, or black
    when every image is RGB and no background was given. `downscale` is an integer factor (INTER_AREA from the
    full-size images, intrinsics scaled by the actual size ratio). `original_coordinates` undoes
    `applied_transform` on poses and points. Per-frame `depth_file_path` maps become View.depth (camera-axis z in
    scene units, 0 = no measurement; see the module docstring for formats, units and resampling); frames without
    one get None. `applied_scale` is not read. Frames naming missing images are an error listing them all, or
    with `skip_missing_frames` are skipped (noted; error if none remain).
    """
    downscale = check_downscale(downscale)
    json_path = _json_path(Path(path))
    meta = read_json(json_path)
    frames_raw = require(meta, "frames", str(json_path))
    if not isinstance(frames_raw, list) or not frames_raw:
        raise ValueError(f"{json_path}: field 'frames' must be a non-empty list")
    missing = missing_frames(frames_raw, json_path.parent)
    note = skip_or_raise_missing(json_path, frames_raw, missing, skip_missing_frames)
    skipped, skip_idx = {_norm_name(frames_raw[i]["file_path"]) for i in missing}, set(missing)
    frames = [_parse_frame(meta, f, i, json_path) for i, f in enumerate(frames_raw) if i not in skip_idx]
    notes: List[str] = [f"nerfstudio dataset {json_path}"] + ([note] if note else [])

    undo = np.eye(4)
    if "applied_transform" in meta:
        applied = as_matrix(meta["applied_transform"], str(json_path), "applied_transform")
        if original_coordinates:
            if abs(np.linalg.det(applied)) < 1e-12:
                raise ValueError(f"{json_path}: field 'applied_transform' is singular, so it cannot be undone")
            undo = np.linalg.inv(applied)
            notes.append("applied_transform undone: poses and points in the original data coordinates")
        else:
            notes.append("applied_transform present: poses and points used as saved (already transformed)")

    depth_frames = [f for f in frames if f.depth_path is not None]
    depth_unit_scale = None
    if "depth_unit_scale_factor" in meta:
        depth_unit_scale = as_float(
            meta["depth_unit_scale_factor"], str(json_path), "depth_unit_scale_factor", positive=True
        )
    if depth_frames:
        lin = undo[:3, :3]
        if not np.allclose(lin.T @ lin, np.eye(3), atol=1e-6):
            # Poses would carry a scale (non-rigid cameras): z measured by the renderer and "scene units" disagree.
            raise ValueError(
                f"{json_path}: field 'applied_transform' is not a rigid transform, so with original_coordinates=True "
                f"the depth maps ('depth_file_path') cannot be put in the same units as the poses; load with "
                f"original_coordinates=False"
            )
        if depth_unit_scale is not None:
            unit = f"x {depth_unit_scale:g} (depth_unit_scale_factor)"
        else:
            unit = f"x {DEFAULT_DEPTH_UNIT_SCALE:g} (default depth_unit_scale_factor; float .npy as saved)"
        notes.append(f"depth maps for {len(depth_frames)} of {len(frames)} frames (depth_file_path {unit})")

    train, test, how = _split(frames, meta, json_path, skipped)
    bg = parse_background(background, (1.0, 1.0, 1.0))
    train_views, test_views, any_alpha = [], [], False

    def load(fr: _Frame) -> Tuple[View, bool]:
        return _load_view(fr, bg, downscale, undo @ fr.c2w_gl, depth_unit_scale)

    for group, out in ((train, train_views), (test, test_views)):
        for view, had_alpha in parallel_map(load, group):
            any_alpha |= had_alpha
            out.append(view)
    notes.append(f"split: {len(train_views)} train / {len(test_views)} test ({how})")
    if downscale > 1:
        notes.append(f"images downscaled by {downscale} (INTER_AREA), intrinsics scaled")

    points = colors = None
    if "ply_file_path" in meta:
        ply = json_path.parent / str(meta["ply_file_path"])
        points, colors = read_ply_points(ply, str(json_path), "ply_file_path")
        points = points @ undo[:3, :3].T + undo[:3, 3]
        notes.append(f"{len(points)} seed points from {ply.name}")
    scene_bg = bg if (any_alpha or background is not None) else (0.0, 0.0, 0.0)
    return SceneData(
        train_views=train_views,
        test_views=test_views,
        source=json_path.parent,
        points=points,
        point_colors=colors,
        background=scene_bg,
        notes=notes,
    )
