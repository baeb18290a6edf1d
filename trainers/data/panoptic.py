"""Reader for Dynamic 3D Gaussians / CMU Panoptic folders (`train_meta.json`, `test_meta.json`, `ims/`, `seg/`).

- Each meta file holds per-timestep lists: `k` (per camera 3x3 intrinsics), `w2c` (per camera 4x4 OpenCV
  world-to-camera), `fn` (image paths relative to `ims/`, e.g. "0/000000.jpg") and `cam_id`; `w` / `h` are the
  image size (one number, or one per timestep). Every timestep must list the same cameras.
- Time = timestep index / (T - 1), in [0, 1] over the sequence (one timestep: no time, a static scene).
- `seg/<cam>/<t>.png` (optional) is the foreground segmentation: with `segmentation="alpha"` (default) the image is
  composited on `background` with it and it becomes View.alpha; "mask" makes it View.mask (loss on the foreground
  only); "ignore" skips it.
- `init_pt_cld.npz` (key `data`: N x 7 = xyz, rgb, seg) gives seed points when present.
- Split: train = train_meta.json, test = test_meta.json (optional).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from render import Camera

from ._io import (
    as_matrix,
    check_downscale,
    check_rotation,
    check_size,
    downscaled_size,
    load_image,
    name_list,
    parallel_map,
    parse_background,
    read_json,
    require,
    resize,
    to_rgb,
)
from .dataset import SceneData, View

META_FILES = {"train": "train_meta.json", "test": "test_meta.json"}
PER_TIMESTEP = ("k", "w2c", "fn", "cam_id")
SEGMENTATION = ("alpha", "mask", "ignore")

# (timestep, camera index, where, intrinsics 3x3, w2c 4x4, relative file name, (w, h))
Frame = Tuple[int, int, str, np.ndarray, np.ndarray, str, Tuple[int, int]]


def _size(meta: Dict[str, Any], key: str, t: int, c: int, where: str) -> int:
    """`w` or `h` as one number, per timestep, or per timestep and camera."""
    value = require(meta, key, where)
    if isinstance(value, list):
        if t >= len(value):
            raise ValueError(f"{where}: field '{key}' has {len(value)} timesteps but 'fn' has more")
        value = value[t]
        if isinstance(value, list):
            if c >= len(value):
                raise ValueError(f"{where}: field '{key}' timestep {t} lists {len(value)} cameras, too few")
            value = value[c]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value <= 0:
        raise ValueError(f"{where}: field '{key}' must be a positive integer image size, got {value!r}")
    return int(value)


def read_meta(path: Path) -> Tuple[List[Frame], List[Any]]:
    """Validate a meta file and return its frames (timestep-major) and the camera ids of timestep 0."""
    meta = read_json(path)
    where = str(path)
    lists = {}
    for key in PER_TIMESTEP:
        value = require(meta, key, where)
        if not isinstance(value, list) or not value:
            raise ValueError(f"{where}: field '{key}' must be a non-empty list with one entry per timestep")
        lists[key] = value
    counts = {key: len(v) for key, v in lists.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"'{k}' {n}" for k, n in counts.items())
        raise ValueError(f"{where}: per-timestep lists have unequal lengths ({listed} timesteps)")
    first_ids: List[Any] = []
    frames: List[Frame] = []
    for t in range(counts["fn"]):
        at = f"{where}: timestep {t}"
        per_cam = {}
        for key in PER_TIMESTEP:
            if not isinstance(lists[key][t], list):
                raise ValueError(f"{at}: field '{key}' must be a list over cameras")
            per_cam[key] = lists[key][t]
        ncams = {key: len(v) for key, v in per_cam.items()}
        if len(set(ncams.values())) > 1:
            listed = ", ".join(f"'{k}' {n}" for k, n in ncams.items())
            raise ValueError(f"{at}: per-camera lists have unequal lengths ({listed} cameras)")
        ids = per_cam["cam_id"]
        if t == 0:
            first_ids = list(ids)
            if len(set(map(str, ids))) != len(ids):
                raise ValueError(f"{at}: field 'cam_id' lists a camera twice: {ids}")
        elif [str(i) for i in ids] != [str(i) for i in first_ids]:
            missing = [str(i) for i in first_ids if str(i) not in set(map(str, ids))]
            extra = [str(i) for i in ids if str(i) not in set(map(str, first_ids))]
            parts = ([f"camera(s) {name_list(missing)} missing"] if missing else []) + \
                    ([f"camera(s) {name_list(extra)} not at timestep 0"] if extra else [])
            detail = "; ".join(parts)
            raise ValueError(
                f"{at}: field 'cam_id' differs from timestep 0 ({detail or 'different order'}); "
                f"every timestep must list the same cameras in the same order"
            )
        for c in range(len(ids)):
            fwhere = f"{at}, camera {ids[c]}"
            k = as_matrix(per_cam["k"][c], fwhere, "k", shapes=((3, 3),))
            if k[0, 0] <= 0 or k[1, 1] <= 0:
                raise ValueError(f"{fwhere}: field 'k' must have positive focal lengths, got {k[0, 0]}, {k[1, 1]}")
            w2c = as_matrix(per_cam["w2c"][c], fwhere, "w2c")
            check_rotation(w2c[:3, :3], fwhere, "w2c")
            fn = per_cam["fn"][c]
            if not isinstance(fn, str) or not fn:
                raise ValueError(f"{fwhere}: field 'fn' must be a non-empty string, got {fn!r}")
            size = (_size(meta, "w", t, c, where), _size(meta, "h", t, c, where))
            frames.append((t, c, f"{fwhere} ({fn})", k, w2c, fn, size))
    return frames, first_ids


def _load_view(
    folder: Path, frame: Frame, ntimes: int, bg: Tuple[float, float, float], downscale: int, segmentation: str
) -> View:
    t, _, where, k, w2c, fn, (width, height) = frame
    img = load_image(folder / "ims" / fn, where, "fn")
    check_size(img, width, height, where, folder / "ims" / fn)
    rgb, alpha = to_rgb(img, bg)
    seg_path = (folder / "seg" / fn).with_suffix(".png")
    seg = None
    if segmentation != "ignore" and seg_path.is_file():
        seg = load_image(seg_path, where, "fn (segmentation seg/)")
        check_size(seg, width, height, where, seg_path)
        seg = seg[..., :1] if seg.shape[2] in (1, 3) else seg[..., 3:4]
        seg = (seg > 0.5).astype(np.float32) if segmentation == "mask" else seg
    if alpha is None and seg is not None and segmentation == "alpha":
        alpha = seg
        rgb = rgb * alpha + np.asarray(bg, dtype=np.float32).reshape(1, 1, 3) * (1.0 - alpha)
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    if downscale > 1:
        new_w, new_h = downscaled_size(width, height, downscale)
        sx, sy = new_w / width, new_h / height
        rgb = resize(rgb, (new_w, new_h))
        alpha = None if alpha is None else resize(alpha, (new_w, new_h))
        seg = None if seg is None else resize(seg, (new_w, new_h), nearest=True)
        fx, fy, cx, cy, width, height = fx * sx, fy * sy, cx * sx, cy * sy, new_w, new_h
    time = t / (ntimes - 1) if ntimes > 1 else None
    camera = Camera(w2c, float(fx), float(fy), float(cx), float(cy), width, height, time=time)

    def tensor(a: Optional[np.ndarray]) -> Optional[torch.Tensor]:
        return None if a is None else torch.from_numpy(np.ascontiguousarray(np.clip(a, 0.0, 1.0), dtype=np.float32))

    mask = torch.from_numpy(seg > 0.5) if seg is not None and segmentation == "mask" else None
    return View(camera=camera, image=tensor(rgb), name=fn, alpha=tensor(alpha), mask=mask)


def _read_points(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Seed xyz and rgb in [0, 1] from init_pt_cld.npz (key 'data', N x 7)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "data" not in npz:
                raise ValueError(f"{path}: missing required key 'data' (N x 7 = xyz, rgb, seg)")
            data = np.asarray(npz["data"], dtype=np.float64)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as a .npz archive ({type(exc).__name__}: {exc})") from None
    if data.ndim != 2 or data.shape[1] < 6 or not len(data):
        raise ValueError(f"{path}: key 'data' must be N x 7 (xyz, rgb, seg), got shape {data.shape}")
    if not np.isfinite(data[:, :6]).all():
        raise ValueError(f"{path}: key 'data' contains NaN or Inf")
    rgb = data[:, 3:6]
    if rgb.min() < 0 or rgb.max() > 255:
        raise ValueError(f"{path}: key 'data' columns 3-5 (rgb) must be in [0, 1] or [0, 255]")
    return data[:, :3].copy(), np.clip(rgb / (255.0 if rgb.max() > 1.0 else 1.0), 0.0, 1.0)


def load_panoptic(
    path: Path,
    downscale: int = 1,
    background: Optional[Sequence[float]] = None,
    skip_missing_frames: bool = False,
    segmentation: str = "alpha",
    max_timesteps: Optional[int] = None,
) -> SceneData:
    """Read a Dynamic 3D Gaussians / CMU Panoptic folder into a SceneData (see the module docstring).

    `skip_missing_frames` skips (with a note) frames whose image is missing instead of failing; `max_timesteps`
    keeps the first timesteps only (times are then normalised over those).
    """
    downscale = check_downscale(downscale)
    if segmentation not in SEGMENTATION:
        raise ValueError(f"segmentation must be one of {', '.join(SEGMENTATION)}, got {segmentation!r}")
    if max_timesteps is not None and int(max_timesteps) < 1:
        raise ValueError(f"max_timesteps must be >= 1, got {max_timesteps!r}")
    folder = Path(path)
    if folder.is_file() and folder.name in META_FILES.values():
        folder = folder.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: dataset folder not found")
    bg = parse_background(background, (0.0, 0.0, 0.0))
    metas = {split: read_meta(folder / name) for split, name in META_FILES.items()
             if split == "train" or (folder / name).is_file()}
    ntimes = {split: 1 + max(f[0] for f in frames) for split, (frames, _) in metas.items()}
    if len(set(ntimes.values())) > 1:
        raise ValueError(f"{folder / META_FILES['test']}: field 'fn' has {ntimes['test']} timesteps but "
                         f"{META_FILES['train']} has {ntimes['train']}; both must cover the same sequence")
    count = ntimes["train"] if max_timesteps is None else min(ntimes["train"], int(max_timesteps))
    notes = [f"panoptic dataset {folder}"]
    views: Dict[str, List[View]] = {}
    for split, (frames, cam_ids) in metas.items():
        frames = [f for f in frames if f[0] < count]
        missing = [f for f in frames if not (folder / "ims" / f[5]).is_file()]
        if missing:
            listed = name_list([f[2] for f in missing])
            head = (f"{folder / META_FILES[split]}: {len(missing)} of {len(frames)} frames name missing images "
                    f"under ims/")
            if not skip_missing_frames:
                raise FileNotFoundError(f"{head} (field 'fn'): {listed}; fix the files, or pass "
                                        f"skip_missing_frames=True")
            if len(missing) == len(frames):
                raise FileNotFoundError(f"{head}: no frame is left to load after skipping them")
            notes.append(f"skipped {len(missing)} of {len(frames)} frames of {META_FILES[split]} whose images are "
                         f"missing: {listed}")
            frames = [f for f in frames if (folder / "ims" / f[5]).is_file()]
        views[split] = parallel_map(lambda f: _load_view(folder, f, count, bg, downscale, segmentation), frames)
        notes.append(f"{split}: {len(views[split])} views from {len(cam_ids)} cameras x {count} timesteps "
                     f"({META_FILES[split]})")
    train, test = views["train"], views.get("test", [])
    if count > 1:
        notes.append(f"time = timestep / {count - 1}: {count} timesteps over [0, 1]")
    else:
        notes.append("one timestep only: static scene (no Camera.time)")
    if max_timesteps is not None and count < ntimes["train"]:
        notes.append(f"only the first {count} of {ntimes['train']} timesteps were loaded")
    with_seg = sum(v.alpha is not None or v.mask is not None for v in train)
    if segmentation != "ignore":
        notes.append(f"segmentation seg/ found for {with_seg} of {len(train)} training views, used as {segmentation}")
    if downscale > 1:
        notes.append(f"images downscaled by {downscale} (INTER_AREA), intrinsics scaled")
    points = colors = None
    npz = folder / "init_pt_cld.npz"
    if npz.is_file():
        points, colors = _read_points(npz)
        notes.append(f"{len(points)} seed points from init_pt_cld.npz")
    else:
        notes.append("no seed points (init_pt_cld.npz absent)")
    return SceneData(train, test, folder, points=points, point_colors=colors, background=bg, notes=notes)
