"""Reader (and writer) for COLMAP sparse models: `sparse/0/` or `sparse/`, binary (.bin) or text (.txt).

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

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

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
from .dataset import SceneData, View
from .normalize import normalize_scene

# model id -> (name, number of parameters), as in COLMAP's src/colmap/sensor/models.h
CAMERA_MODELS: Dict[int, Tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
MODEL_IDS = {name: (mid, n) for mid, (name, n) in CAMERA_MODELS.items()}
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
TEST_EVERY = 8
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG")


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # float64, as COLMAP orders them for the model


@dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray  # (4,) w, x, y, z: world-to-camera rotation
    tvec: np.ndarray  # (3,)
    camera_id: int
    name: str
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (K, 2) keypoints
    point3d_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))  # (K,), -1 = none

    def world_to_camera(self) -> np.ndarray:
        """4x4 OpenCV world-to-camera."""
        out = np.eye(4)
        out[:3, :3] = qvec_to_rotation(self.qvec)
        out[:3, 3] = self.tvec
        return out


@dataclass
class ColmapPoints:
    ids: np.ndarray  # (M,) int64
    xyz: np.ndarray  # (M, 3) float64
    rgb: np.ndarray  # (M, 3) uint8
    error: np.ndarray  # (M,) float64
    tracks: List[np.ndarray] = field(default_factory=list)  # per point (L, 2) int: image_id, point2D_idx

    @staticmethod
    def empty() -> "ColmapPoints":
        return ColmapPoints(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0), [])


@dataclass
class ColmapModel:
    cameras: Dict[int, ColmapCamera]
    images: Dict[int, ColmapImage]
    points: ColmapPoints
    folder: Path
    ext: str  # ".bin" or ".txt"


def qvec_to_rotation(q: Sequence[float]) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> 3x3 rotation (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


# ---------------------------------------------------------------------------------------------- binary


class _Bin:
    """A bounds-checked little-endian reader: running past the end names the file, offset and record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def read(self, fmt: str, what: str) -> Tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise ValueError(
                f"{self.path}: file truncated at byte {len(self.data)} while reading {what} "
                f"(needs {size} bytes at offset {self.pos})"
            )
        out = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return out

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        dt = np.dtype(dtype).newbyteorder("<")
        size = dt.itemsize * count
        if count < 0 or self.pos + size > len(self.data):
            raise ValueError(f"{self.path}: file truncated at byte {len(self.data)} while reading {what} ({count} items)")
        out = np.frombuffer(self.data, dtype=dt, count=count, offset=self.pos)
        self.pos += size
        return out

    def cstring(self, what: str) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ValueError(f"{self.path}: file truncated while reading {what} (no terminating NUL)")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{self.path}: {what} is not UTF-8 text") from None

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise ValueError(f"{self.path}: {len(self.data) - self.pos} unexpected trailing bytes after the last record")


def _model(model_id: int, path: Path, where: str) -> Tuple[str, int]:
    if model_id not in CAMERA_MODELS:
        raise ValueError(f"{path}: {where} has unknown camera model id {model_id}")
    return CAMERA_MODELS[model_id]


def read_cameras_binary(path: Path) -> Dict[int, ColmapCamera]:
    """cameras.bin -> {camera_id: ColmapCamera}."""
    f = _Bin(Path(path))
    (count,) = f.read("Q", "the camera count")
    cameras = {}
    for i in range(count):
        cam_id, model_id, width, height = f.read("iiQQ", f"camera record {i}")
        name, n = _model(model_id, f.path, f"camera {cam_id}")
        params = f.array("f8", n, f"the {name} parameters of camera {cam_id}").astype(np.float64)
        cameras[cam_id] = ColmapCamera(cam_id, name, int(width), int(height), params)
    f.finish()
    return cameras


def read_images_binary(path: Path) -> Dict[int, ColmapImage]:
    """images.bin -> {image_id: ColmapImage}."""
    f = _Bin(Path(path))
    (count,) = f.read("Q", "the image count")
    images = {}
    for i in range(count):
        rec = f.read("i7di", f"image record {i}")
        name = f.cstring(f"the name of image {rec[0]}")
        (k,) = f.read("Q", f"the keypoint count of image {name!r}")
        pts = f.array("u1", k * 24, f"the keypoints of image {name!r}")
        kp = np.frombuffer(pts.tobytes(), dtype=np.dtype([("xy", "<f8", 2), ("id", "<i8")]))
        images[rec[0]] = ColmapImage(
            rec[0], np.array(rec[1:5]), np.array(rec[5:8]), rec[8], name, kp["xy"].copy(), kp["id"].copy()
        )
    f.finish()
    return images


def read_points3d_binary(path: Path) -> ColmapPoints:
    """points3D.bin -> ColmapPoints."""
    f = _Bin(Path(path))
    (count,) = f.read("Q", "the point count")
    ids = np.zeros(count, np.int64)
    xyz = np.zeros((count, 3))
    rgb = np.zeros((count, 3), np.uint8)
    err = np.zeros(count)
    tracks = []
    for i in range(count):
        rec = f.read("Q3d3BdQ", f"point record {i}")
        ids[i], xyz[i], rgb[i], err[i] = rec[0], rec[1:4], rec[4:7], rec[7]
        tracks.append(f.array("i4", 2 * rec[8], f"the track of point {rec[0]}").reshape(-1, 2).astype(np.int64))
    f.finish()
    return ColmapPoints(ids, xyz, rgb, err, tracks)


# ------------------------------------------------------------------------------------------------ text


def _text_lines(path: Path) -> List[Tuple[int, str]]:
    """(line number, text) of the non-comment lines; empty lines kept (images.txt uses them)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from None
    return [(i + 1, ln.strip()) for i, ln in enumerate(lines) if not ln.lstrip().startswith("#")]


def _numbers(tokens: Sequence[str], kind, path: Path, lineno: int, what: str) -> List:
    try:
        return [kind(t) for t in tokens]
    except ValueError:
        raise ValueError(f"{path}: line {lineno}: {what} must be numbers, got {' '.join(tokens)!r}") from None


def read_cameras_text(path: Path) -> Dict[int, ColmapCamera]:
    """cameras.txt -> {camera_id: ColmapCamera}."""
    path = Path(path)
    cameras = {}
    for lineno, line in _text_lines(path):
        if not line:
            continue
        tok = line.split()
        if len(tok) < 4:
            raise ValueError(f"{path}: line {lineno}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[], got {line!r}")
        cam_id, width, height = _numbers([tok[0], tok[2], tok[3]], int, path, lineno, "CAMERA_ID, WIDTH, HEIGHT")
        if tok[1] not in MODEL_IDS:
            raise ValueError(f"{path}: line {lineno}: camera {cam_id} has unknown camera model {tok[1]!r}")
        n = MODEL_IDS[tok[1]][1]
        params = _numbers(tok[4:], float, path, lineno, "PARAMS")
        if len(params) != n:
            raise ValueError(f"{path}: line {lineno}: model {tok[1]} needs {n} parameters, got {len(params)}")
        cameras[cam_id] = ColmapCamera(cam_id, tok[1], width, height, np.array(params, dtype=np.float64))
    return cameras


def read_images_text(path: Path) -> Dict[int, ColmapImage]:
    """images.txt (two lines per image: pose + name, then keypoints) -> {image_id: ColmapImage}."""
    path = Path(path)
    lines = _text_lines(path)
    images = {}
    i = 0
    while i < len(lines):
        lineno, line = lines[i]
        if not line:
            i += 1
            continue
        tok = line.split(maxsplit=9)
        if len(tok) < 10:
            raise ValueError(f"{path}: line {lineno}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, got {line!r}")
        image_id, cam_id = _numbers([tok[0], tok[8]], int, path, lineno, "IMAGE_ID, CAMERA_ID")
        pose = np.array(_numbers(tok[1:8], float, path, lineno, "QW..TZ"))
        pts_line = lines[i + 1][1] if i + 1 < len(lines) else ""
        vals = pts_line.split()
        if len(vals) % 3:
            raise ValueError(f"{path}: line {lineno + 1}: POINTS2D of image {tok[9]!r} must be (X, Y, POINT3D_ID) triples")
        arr = np.array(_numbers(vals, float, path, lineno + 1, "POINTS2D"), dtype=np.float64).reshape(-1, 3)
        images[image_id] = ColmapImage(image_id, pose[:4], pose[4:], cam_id, tok[9], arr[:, :2], arr[:, 2].astype(np.int64))
        i += 2
    return images


def read_points3d_text(path: Path) -> ColmapPoints:
    """points3D.txt -> ColmapPoints."""
    path = Path(path)
    ids, xyz, rgb, err, tracks = [], [], [], [], []
    for lineno, line in _text_lines(path):
        if not line:
            continue
        tok = line.split()
        if len(tok) < 8 or (len(tok) - 8) % 2:
            raise ValueError(f"{path}: line {lineno}: expected POINT3D_ID X Y Z R G B ERROR TRACK[] (pairs), got {line!r}")
        ids.append(_numbers(tok[:1], int, path, lineno, "POINT3D_ID")[0])
        xyz.append(_numbers(tok[1:4], float, path, lineno, "X Y Z"))
        rgb.append(_numbers(tok[4:7], int, path, lineno, "R G B"))
        err.append(_numbers(tok[7:8], float, path, lineno, "ERROR")[0])
        tracks.append(np.array(_numbers(tok[8:], int, path, lineno, "TRACK"), dtype=np.int64).reshape(-1, 2))
    if not ids:
        return ColmapPoints.empty()
    return ColmapPoints(
        np.array(ids, np.int64), np.array(xyz, np.float64), np.clip(rgb, 0, 255).astype(np.uint8), np.array(err), tracks
    )


# ------------------------------------------------------------------------------------------ model I/O


def find_sparse_dir(root: Path) -> Optional[Path]:
    """The model folder under a dataset root (`sparse/0`, then `sparse`), or `root` itself if it is one."""
    root = Path(root)
    for cand in (root / "sparse" / "0", root / "sparse", root):
        if any((cand / f"cameras{ext}").is_file() for ext in (".bin", ".txt")):
            return cand
    return None


def read_colmap_model(folder: Path, ext: Optional[str] = None) -> ColmapModel:
    """Read cameras, images and points3D from one model folder (.bin preferred when both exist)."""
    folder = Path(folder)
    if ext is None:
        ext = ".bin" if (folder / "cameras.bin").is_file() else ".txt"
    if ext not in (".bin", ".txt"):
        raise ValueError(f"ext must be '.bin' or '.txt', got {ext!r}")
    for name in ("cameras", "images"):
        if not (folder / f"{name}{ext}").is_file():
            raise FileNotFoundError(f"{folder / (name + ext)}: file not found (COLMAP model in {folder})")
    binary = ext == ".bin"
    cameras = (read_cameras_binary if binary else read_cameras_text)(folder / f"cameras{ext}")
    images = (read_images_binary if binary else read_images_text)(folder / f"images{ext}")
    pts_path = folder / f"points3D{ext}"
    points = (read_points3d_binary if binary else read_points3d_text)(pts_path) if pts_path.is_file() else ColmapPoints.empty()
    for img in images.values():
        if img.camera_id not in cameras:
            raise ValueError(f"{folder / ('images' + ext)}: image {img.name!r} refers to camera {img.camera_id}, absent from cameras{ext}")
    return ColmapModel(cameras, images, points, folder, ext)


def _fmt(x: float) -> str:
    return repr(float(x))


def write_colmap_model(
    folder: Path,
    cameras: Dict[int, ColmapCamera],
    images: Dict[int, ColmapImage],
    points: Optional[ColmapPoints] = None,
    binary: bool = True,
) -> None:
    """Write cameras, images and points3D (.bin or .txt) into `folder` (created); text floats round-trip exactly."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    points = ColmapPoints.empty() if points is None else points
    tracks = points.tracks if len(points.tracks) == len(points.ids) else [np.zeros((0, 2), np.int64)] * len(points.ids)
    if binary:
        out = [struct.pack("<Q", len(cameras))]
        for c in cameras.values():
            mid, n = MODEL_IDS[c.model]
            if len(c.params) != n:
                raise ValueError(f"camera {c.id}: model {c.model} needs {n} parameters, got {len(c.params)}")
            out.append(struct.pack(f"<iiQQ{n}d", c.id, mid, c.width, c.height, *c.params))
        (folder / "cameras.bin").write_bytes(b"".join(out))
        out = [struct.pack("<Q", len(images))]
        for im in images.values():
            out.append(struct.pack("<i7di", im.id, *im.qvec, *im.tvec, im.camera_id) + im.name.encode() + b"\0")
            out.append(struct.pack("<Q", len(im.xys)))
            for (x, y), pid in zip(im.xys, im.point3d_ids):
                out.append(struct.pack("<ddq", x, y, pid))
        (folder / "images.bin").write_bytes(b"".join(out))
        out = [struct.pack("<Q", len(points.ids))]
        for pid, p, c, e, tr in zip(points.ids, points.xyz, points.rgb, points.error, tracks):
            out.append(struct.pack("<Q3d3BdQ", pid, *p, *c, e, len(tr)) + np.asarray(tr, "<i4").tobytes())
        (folder / "points3D.bin").write_bytes(b"".join(out))
        return
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    lines += [" ".join([str(c.id), c.model, str(c.width), str(c.height)] + [_fmt(p) for p in c.params]) for c in cameras.values()]
    (folder / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "# POINTS2D[] as (X, Y, POINT3D_ID)"]
    for im in images.values():
        lines.append(" ".join([str(im.id)] + [_fmt(v) for v in (*im.qvec, *im.tvec)] + [str(im.camera_id), im.name]))
        lines.append(" ".join(f"{_fmt(x)} {_fmt(y)} {int(pid)}" for (x, y), pid in zip(im.xys, im.point3d_ids)))
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    lines = ["# POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    for pid, p, c, e, tr in zip(points.ids, points.xyz, points.rgb, points.error, tracks):
        track = " ".join(str(int(v)) for v in np.asarray(tr).reshape(-1))
        lines.append(" ".join([str(int(pid))] + [_fmt(v) for v in p] + [str(int(v)) for v in c] + [_fmt(e)] + ([track] if track else [])))
    (folder / "points3D.txt").write_text("\n".join(lines) + "\n")


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
