"""COLMAP sparse-model files: the model dataclasses, binary (.bin) and text (.txt) readers and a writer.

File format only: cameras.*, images.* and points3D.* of one model folder (`sparse/0/`, `sparse/` or the folder
itself), as COLMAP writes them. No images, undistortion or dataset split here: colmap.py turns a model into a
SceneData, and llff.py reads its seed points through these readers. Kept apart from colmap.py so the file
format stands on its own (e.g. for scripts that only read poses).

- images.* hold world-to-camera poses (qvec w, x, y, z; tvec) in OpenCV camera axes, read as they are.
- Every COLMAP camera model is read (unknown model ids / names are errors naming the file); which models a
  dataset may use is decided by colmap.py.
- Binary reads are bounds-checked: a truncated file or trailing bytes is an error naming the file and record.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

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
