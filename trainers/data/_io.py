"""Small, strict helpers shared by the dataset readers: every error names the file and the field at fault."""

from __future__ import annotations

import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import imageio.v3 as iio
import numpy as np


def read_json(path: Path) -> Dict[str, Any]:
    """Read a JSON object; missing file or malformed JSON -> error naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a JSON object, got {type(data).__name__}")
    return data


def require(mapping: Dict[str, Any], key: str, where: str) -> Any:
    """mapping[key], or a KeyError-like ValueError naming `where` (file + context) and the key."""
    if not isinstance(mapping, dict) or key not in mapping:
        raise ValueError(f"{where}: missing required field '{key}'")
    return mapping[key]


def as_float(value: Any, where: str, field: str, positive: bool = False) -> float:
    """A finite float (optionally > 0) or an error naming the field."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field '{field}' must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{where}: field '{field}' is not finite ({out})")
    if positive and out <= 0:
        raise ValueError(f"{where}: field '{field}' must be positive, got {out}")
    return out


def as_matrix(value: Any, where: str, field: str, shapes: Sequence[Tuple[int, int]] = ((4, 4), (3, 4))) -> np.ndarray:
    """A finite float64 matrix of one of `shapes`, promoted to 4x4 when it is 3x4."""
    try:
        mat = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field '{field}' is not a numeric matrix") from None
    if mat.shape not in tuple(tuple(s) for s in shapes):
        raise ValueError(f"{where}: field '{field}' has shape {mat.shape}, expected one of {list(shapes)}")
    if not np.isfinite(mat).all():
        raise ValueError(f"{where}: field '{field}' contains NaN or Inf")
    if mat.shape == (3, 4):
        mat = np.vstack([mat, [0.0, 0.0, 0.0, 1.0]])
    return mat


def check_rotation(rot: Any, where: str, field: str, tol: float = 1e-2) -> None:
    """Raise unless `rot` (3x3) is a proper rotation, possibly uniformly scaled (some datasets store scaled poses)."""
    rot = np.asarray(rot, dtype=np.float64)
    sv = np.linalg.svd(rot, compute_uv=False) if np.isfinite(rot).all() else np.zeros(3)
    if sv[0] <= 0 or sv[2] <= 1e-9 * sv[0]:
        what = "all zeros" if not np.any(rot) else f"singular values {', '.join(f'{v:.3g}' for v in sv)}"
        raise ValueError(
            f"{where}: field '{field}' is singular: its rotation part (upper-left 3x3) is not invertible ({what}); "
            f"it must be a camera-to-world pose with a rotation"
        )
    if sv[2] < (1.0 - tol) * sv[0]:
        raise ValueError(
            f"{where}: field '{field}' is not a rotation: its upper-left 3x3 scales the axes unequally "
            f"(singular values {', '.join(f'{v:.4g}' for v in sv)}); fix or remove this pose"
        )
    if np.linalg.det(rot) < 0:
        raise ValueError(f"{where}: field '{field}' is a reflection (determinant < 0), not a rotation; fix this pose")


def as_pose(value: Any, where: str, field: str) -> np.ndarray:
    """as_matrix (4x4 or 3x4 -> 4x4) plus pose checks: bottom row [0, 0, 0, 1] and a (scaled) rotation part."""
    mat = as_matrix(value, where, field)
    check_rotation(mat[:3, :3], where, field)
    if not np.allclose(mat[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise ValueError(f"{where}: field '{field}' has bottom row {mat[3].tolist()}, expected [0, 0, 0, 1]")
    return mat


def missing_frames(frames: Sequence[Any], base: Path, suffixes: Sequence[str] = ()) -> List[int]:
    """Indices of frames whose string 'file_path' names no file under `base` (also trying `suffixes`)."""
    out = []
    for i, frame in enumerate(frames):
        rel = frame.get("file_path") if isinstance(frame, dict) else None
        if isinstance(rel, str) and rel:
            path = base / rel
            if not (path.is_file() or any(path.with_name(path.name + s).is_file() for s in suffixes)):
                out.append(i)
    return out


def name_list(items: Sequence[str], cap: int = 10) -> str:
    """'a, b, c' with at most `cap` items, then '(and N more)'."""
    head = ", ".join(items[:cap])
    return head + (f" (and {len(items) - cap} more)" if len(items) > cap else "")


def skip_or_raise_missing(json_path: Path, frames: Sequence[Any], missing: Sequence[int], skip: bool) -> Optional[str]:
    """Error listing the frames whose images are missing, or (skip) a note; raises if skipping would leave none."""
    if not missing:
        return None
    listed = name_list([f"frames[{i}] ({frames[i]['file_path']})" for i in missing])
    head = f"{json_path}: {len(missing)} of {len(frames)} frames name missing images (field 'file_path')"
    if not skip:
        raise FileNotFoundError(
            f"{head}: {listed}; fix the paths, or pass skip_missing_frames=True (sf-train --skip-missing-frames) "
            f"to train on the other frames"
        )
    if len(missing) == len(frames):
        raise FileNotFoundError(f"{head}: no frame is left to load after skipping them: {listed}")
    return f"skipped {len(missing)} of {len(frames)} frames of {json_path.name} whose images are missing: {listed}"


def resolve_file(base: Path, rel: Any, where: str, field: str, suffixes: Sequence[str] = ()) -> Path:
    """`base / rel`, trying extra suffixes when the bare path does not exist; error names the field if missing."""
    if not isinstance(rel, str) or not rel:
        raise ValueError(f"{where}: field '{field}' must be a non-empty string, got {rel!r}")
    path = base / rel
    if path.is_file():
        return path
    for suffix in suffixes:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{where}: field '{field}' points to {path}, which does not exist")


def load_image(path: Path, where: str, field: str) -> np.ndarray:
    """Image as float32 (H, W, C) in [0, 1], C in {1, 3, 4}; unreadable files -> error naming the field."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # fast path (releases the GIL); BGR(A) order
    if img is not None and img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[..., [2, 1, 0, 3][: img.shape[2]]]
    if img is None:
        try:
            with warnings.catch_warnings():  # imageio's plugin probing warns about deprecated backends
                warnings.simplefilter("ignore")
                img = iio.imread(path)
        except Exception as exc:  # imageio raises many types for corrupt files
            raise ValueError(f"{where}: field '{field}': cannot read image {path} ({type(exc).__name__})") from None
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"{where}: field '{field}': image {path} has unsupported shape {img.shape}")
    if img.shape[2] == 2:  # grey + alpha
        img = np.concatenate([np.repeat(img[..., :1], 3, axis=2), img[..., 1:]], axis=2)
    if img.dtype == np.uint8:
        out = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        out = img.astype(np.float32) / 65535.0
    elif np.issubdtype(img.dtype, np.floating):
        out = img.astype(np.float32)
    else:
        raise ValueError(f"{where}: field '{field}': image {path} has unsupported dtype {img.dtype}")
    return out


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any]) -> List[Any]:
    """fn over items in a small thread pool (image decoding releases the GIL); order kept, first error raised."""
    if len(items) < 4:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
        return list(pool.map(fn, items))


def to_rgb(img: np.ndarray, background: Tuple[float, float, float]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(H, W, C) -> (RGB composited on `background`, alpha (H, W, 1) or None)."""
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2), None
    if img.shape[2] == 3:
        return img, None
    rgb, alpha = img[..., :3], img[..., 3:4]
    bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
    return rgb * alpha + bg * (1.0 - alpha), alpha


def check_size(img: np.ndarray, width: int, height: int, where: str, path: Path) -> None:
    """Raise if the loaded image is not width x height."""
    h, w = img.shape[:2]
    if (w, h) != (int(width), int(height)):
        raise ValueError(f"{where}: image {path} is {w}x{h} but the fields 'w'/'h' say {int(width)}x{int(height)}")


def downscaled_size(width: int, height: int, factor: int) -> Tuple[int, int]:
    """Image size after an integer downscale (floor, at least 1 pixel)."""
    return max(1, width // factor), max(1, height // factor)


def resize(img: np.ndarray, size: Tuple[int, int], nearest: bool = False) -> np.ndarray:
    """cv2 resize to (width, height): INTER_AREA for images, nearest for masks; keeps a trailing channel axis."""
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    out = cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)
    return out[..., None] if out.ndim == 2 else out


def resize_depth(depth: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Depth (H, W, 1) -> `size` (width, height): validity-aware area mean.

    Each output pixel is the mean of the measured (> 0) source depths in the same footprint INTER_AREA uses for
    the image (so depth and colour stay aligned, also when the size is not divisible by the factor); pixels whose
    footprint has no measurement stay 0. Holes therefore never pull a depth towards 0 (a plain area mean would)
    and, unlike nearest, every measurement contributes. At a depth edge the result is the mean of both sides,
    as the renderer's alpha-weighted expected depth of such a pixel also is.
    """
    d = depth[..., 0].astype(np.float64)
    valid = (d > 0).astype(np.float64)
    total = cv2.resize(d * valid, size, interpolation=cv2.INTER_AREA)
    weight = cv2.resize(valid, size, interpolation=cv2.INTER_AREA)
    out = np.where(weight > 1e-9, total / np.maximum(weight, 1e-12), 0.0)
    return out.astype(np.float32).reshape(size[1], size[0], 1)


def check_downscale(downscale: Any) -> int:
    """Validate an integer downscale factor >= 1."""
    if isinstance(downscale, bool) or int(downscale) != downscale or int(downscale) < 1:
        raise ValueError(f"downscale must be an integer >= 1, got {downscale!r}")
    return int(downscale)


def read_ply_points(path: Path, where: str, field: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(M, 3) float64 positions and optional (M, 3) colours in [0, 1] from a PLY vertex element."""
    from plyfile import PlyData

    if not Path(path).is_file():
        raise FileNotFoundError(f"{where}: field '{field}' points to {path}, which does not exist")
    try:
        ply = PlyData.read(str(path))
        vertex = ply["vertex"]
    except Exception as exc:
        raise ValueError(f"{where}: field '{field}': cannot read PLY {path} ({exc})") from None
    names = vertex.data.dtype.names or ()
    for key in ("x", "y", "z"):
        if key not in names:
            raise ValueError(f"{path}: PLY vertex element lacks property '{key}'")
    pts = np.stack([np.asarray(vertex[k], dtype=np.float64) for k in ("x", "y", "z")], axis=1)
    if not np.isfinite(pts).all():
        raise ValueError(f"{path}: PLY vertex positions contain NaN or Inf")
    colors = None
    if all(k in names for k in ("red", "green", "blue")):
        raw = np.stack([np.asarray(vertex[k]) for k in ("red", "green", "blue")], axis=1)
        scale = 255.0 if np.issubdtype(raw.dtype, np.integer) else 1.0
        colors = np.clip(raw.astype(np.float64) / scale, 0.0, 1.0)
    return pts, colors


def parse_background(background: Optional[Sequence[float]], default: Tuple[float, float, float]) -> Tuple[float, float, float]:
    """Validate an RGB background in [0, 1] (None -> default)."""
    if background is None:
        return default
    bg = tuple(float(c) for c in background)
    if len(bg) != 3 or not all(0.0 <= c <= 1.0 for c in bg):
        raise ValueError(f"background must be three values in [0, 1], got {background!r}")
    return bg  # type: ignore[return-value]
