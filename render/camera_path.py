"""Keyframed camera paths: spline interpolation and nerfstudio `camera_path.json` files.

Keyframes are stored in splatforge's convention: an OpenCV camera-to-world pose (rotation as a unit quaternion
wxyz, plus the camera centre), the same pose viser uses, with a vertical field of view in radians. OpenGL
(nerfstudio) matrices and degrees appear only when reading and writing files.

Interpolation uses uniform knots (keyframe i sits at path time i * seconds / (N - 1), or i * seconds / N for a
loop). Positions, fov and scene time follow a Kochanek-Bartels (tension-only) Hermite spline; rotations follow
the same spline on the unit quaternion sphere (spherical cubic Bezier by repeated slerp, tangents in the log
map), which takes the short way and is C1 at the keyframes. `smoothness` = 1 - tension: 0 stops at every
keyframe, 0.5 is Catmull-Rom.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from scenes.atomic import atomic_path

from .camera import Camera
from .conventions import rotation_matrix_to_wxyz, wxyz_to_rotation_matrix

# Flip y and z of the camera frame: OpenGL camera axes <-> OpenCV camera axes (self-inverse).
_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


# ----- quaternions (w, x, y, z) ---------------------------------------------------------------------------
def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ]
    )


def quat_conj(q: np.ndarray) -> np.ndarray:
    return np.array([q[0], -q[1], -q[2], -q[3]])


def quat_log(q: np.ndarray) -> np.ndarray:
    """Unit quaternion -> rotation vector / 2 (3,), taking the short way (q and -q give the same result)."""
    q = q if q[0] >= 0 else -q
    v = q[1:]
    s = np.linalg.norm(v)
    if s < 1e-12:
        return v.copy()
    return v / s * math.atan2(s, q[0])


def quat_exp(v: np.ndarray) -> np.ndarray:
    """Inverse of `quat_log`."""
    theta = np.linalg.norm(v)
    if theta < 1e-12:
        return np.array([1.0, *v]) / math.sqrt(1.0 + theta * theta)
    return np.array([math.cos(theta), *(v / theta * math.sin(theta))])


def quat_slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation from a to b along the shorter arc."""
    return quat_mul(a, quat_exp(t * quat_log(quat_mul(quat_conj(a), b))))


def sign_continuous(quats: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Flip quaternions so each has a non-negative dot product with its predecessor."""
    out: List[np.ndarray] = []
    for q in quats:
        q = np.asarray(q, dtype=np.float64)
        q = q / np.linalg.norm(q)
        out.append(-q if out and np.dot(out[-1], q) < 0 else q)
    return out


# ----- keyframes ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Keyframe:
    """One camera pose: OpenCV camera-to-world rotation (wxyz) and centre, vertical fov (radians), scene time."""

    wxyz: Tuple[float, float, float, float]
    position: Tuple[float, float, float]
    fov_y: float
    time: Optional[float] = None

    def __post_init__(self) -> None:
        q = np.asarray(self.wxyz, dtype=np.float64)
        p = np.asarray(self.position, dtype=np.float64)
        if q.shape != (4,) or p.shape != (3,):
            raise ValueError(f"Keyframe needs wxyz (4,) and position (3,), got {q.shape} and {p.shape}")
        if not (np.isfinite(q).all() and np.isfinite(p).all()) or np.linalg.norm(q) < 1e-9:
            raise ValueError("Keyframe pose contains NaN, Inf or a zero quaternion")
        if not (math.isfinite(self.fov_y) and 0.0 < self.fov_y < math.pi):
            raise ValueError(f"Keyframe fov_y must be in (0, pi) radians, got {self.fov_y}")
        if self.time is not None and not math.isfinite(self.time):
            raise ValueError(f"Keyframe time must be finite, got {self.time}")
        object.__setattr__(self, "wxyz", tuple(float(x) for x in q / np.linalg.norm(q)))
        object.__setattr__(self, "position", tuple(float(x) for x in p))
        object.__setattr__(self, "fov_y", float(self.fov_y))

    @staticmethod
    def from_opencv_c2w(c2w, fov_y: float, time: Optional[float] = None) -> "Keyframe":
        m = np.asarray(c2w, dtype=np.float64)
        return Keyframe(tuple(rotation_matrix_to_wxyz(_orthonormal(m[:3, :3]))), tuple(m[:3, 3]), fov_y, time)

    @staticmethod
    def from_opengl_c2w(c2w, fov_y: float, time: Optional[float] = None) -> "Keyframe":
        """From an OpenGL / nerfstudio camera-to-world (camera looks down -z, +y up)."""
        m = np.asarray(c2w, dtype=np.float64)
        if m.shape == (3, 4):
            m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
        return Keyframe.from_opencv_c2w(m @ _FLIP, fov_y, time)

    @staticmethod
    def from_camera(camera: Camera) -> "Keyframe":
        return Keyframe.from_opencv_c2w(camera.camera_to_world.double().numpy(), camera.fov_y, camera.time)

    @property
    def opencv_c2w(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = wxyz_to_rotation_matrix(self.wxyz)
        m[:3, 3] = self.position
        return m

    @property
    def opengl_c2w(self) -> np.ndarray:
        return self.opencv_c2w @ _FLIP

    @property
    def world_to_camera(self) -> torch.Tensor:
        """OpenCV world-to-camera as a float32 4x4 tensor (what `Camera` takes)."""
        return torch.from_numpy(np.linalg.inv(self.opencv_c2w)).float()

    def camera(self, width: int, height: int) -> Camera:
        return Camera.from_fov(self.world_to_camera, self.fov_y, int(width), int(height), time=self.time)


def _orthonormal(r: np.ndarray) -> np.ndarray:
    """The nearest rotation to an almost-orthonormal 3x3; rejects scaled, sheared or singular ones."""
    if np.abs(r.T @ r - np.eye(3)).max() > 1e-2:
        raise ValueError("camera rotation is not orthonormal (scaled, sheared or singular)")
    u, _, vt = np.linalg.svd(r)
    out = u @ vt
    if np.linalg.det(out) < 0:
        raise ValueError("camera rotation is a reflection (determinant < 0)")
    return out


# ----- splines --------------------------------------------------------------------------------------------
def _hermite(p0, p1, m0, m1, s: float):
    s2, s3 = s * s, s * s * s
    return (2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * m0 + (-2 * s3 + 3 * s2) * p1 + (s3 - s2) * m1


def _neighbours(n: int, i: int, loop: bool) -> Tuple[Optional[int], Optional[int]]:
    prev = (i - 1) % n if loop else (i - 1 if i > 0 else None)
    nxt = (i + 1) % n if loop else (i + 1 if i < n - 1 else None)
    return prev, nxt


def _vector_tangents(values: np.ndarray, tension: float, loop: bool) -> np.ndarray:
    """Kochanek-Bartels tangents (per unit knot) for values (N, D); open ends mirror their neighbour."""
    n = len(values)
    tangents = np.zeros_like(values)
    for i in range(n):
        prev, nxt = _neighbours(n, i, loop)
        before = values[prev] if prev is not None else 2 * values[i] - values[nxt]
        after = values[nxt] if nxt is not None else 2 * values[i] - values[prev]
        tangents[i] = 0.5 * (1.0 - tension) * (after - before)
    return tangents


def _quat_tangents(quats: List[np.ndarray], tension: float, loop: bool) -> List[np.ndarray]:
    """Body-frame angular tangents (log map, per unit knot) at each keyframe, KB style."""
    n = len(quats)
    out = []
    for i in range(n):
        prev, nxt = _neighbours(n, i, loop)
        inv = quat_conj(quats[i])
        fwd = quat_log(quat_mul(inv, quats[nxt])) if nxt is not None else None
        back = -quat_log(quat_mul(inv, quats[prev])) if prev is not None else None
        fwd = back if fwd is None else fwd
        back = fwd if back is None else back
        out.append(0.5 * (1.0 - tension) * (fwd + back))
    return out


@dataclass(frozen=True)
class PathSample:
    """An interpolated pose (same conventions as `Keyframe`)."""

    wxyz: np.ndarray
    position: np.ndarray
    fov_y: float
    time: Optional[float]

    def keyframe(self) -> Keyframe:
        return Keyframe(tuple(self.wxyz), tuple(self.position), self.fov_y, self.time)


# ----- camera paths ---------------------------------------------------------------------------------------
@dataclass
class CameraPath:
    """Keyframes plus timing and output size. `frames`, when set (a loaded nerfstudio file's sampled
    `camera_path`), is rendered as-is instead of interpolating the keyframes."""

    keyframes: List[Keyframe]
    fps: float = 30.0
    seconds: float = 4.0
    loop: bool = False
    smoothness: float = 0.5
    width: int = 640
    height: int = 480
    frames: Optional[List[Keyframe]] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.keyframes = list(self.keyframes)
        for name in ("fps", "seconds"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"CameraPath.{name} must be positive, got {value}")
        if not (0.0 <= self.smoothness <= 1.0):
            raise ValueError(f"CameraPath.smoothness must be in [0, 1], got {self.smoothness}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"CameraPath resolution must be positive, got {self.width}x{self.height}")
        timed = [k.time is not None for k in self.keyframes]
        if any(timed) and not all(timed):
            raise ValueError("CameraPath keyframes must all have a time or none")

    @property
    def num_frames(self) -> int:
        if self.frames is not None:
            return len(self.frames)
        return max(1, int(round(self.fps * self.seconds)))

    @property
    def tension(self) -> float:
        return 1.0 - float(self.smoothness)

    def keyframe_times(self) -> List[float]:
        """Path time (seconds) at which each keyframe is reached."""
        n = len(self.keyframes)
        if n <= 1:
            return [0.0] * n
        segments = n if self.loop else n - 1
        return [i * self.seconds / segments for i in range(n)]

    def with_keyframes(self, keyframes: Sequence[Keyframe]) -> "CameraPath":
        """A copy with other keyframes (drops any loaded `frames`)."""
        return replace(self, keyframes=list(keyframes), frames=None)

    def sample(self, t: float) -> PathSample:
        """Pose at path time `t` seconds (clamped to [0, seconds]; wrapped for a loop)."""
        n = len(self.keyframes)
        if n == 0:
            raise ValueError("camera path has no keyframes")
        if n == 1:
            k = self.keyframes[0]
            return PathSample(np.array(k.wxyz), np.array(k.position), k.fov_y, k.time)
        segments = n if self.loop else n - 1
        u = float(t) / self.seconds * segments
        u = u % segments if self.loop else min(max(u, 0.0), float(segments))
        i = min(int(math.floor(u)), segments - 1)
        return self._evaluate(i, u - i)

    def _evaluate(self, i: int, s: float) -> PathSample:
        n = len(self.keyframes)
        j = (i + 1) % n
        scalars = np.array(
            [[*k.position, k.fov_y, 0.0 if k.time is None else k.time] for k in self.keyframes], dtype=np.float64
        )
        tangents = _vector_tangents(scalars, self.tension, self.loop)
        values = _hermite(scalars[i], scalars[j], tangents[i], tangents[j], s)
        quats = sign_continuous([k.wxyz for k in self.keyframes])
        qt = _quat_tangents(quats, self.tension, self.loop)
        # spherical cubic Bezier with control points from the Hermite tangents (de Casteljau by slerp)
        b0, b3 = quats[i], quats[j]
        b1 = quat_mul(b0, quat_exp(qt[i] / 3.0))
        b2 = quat_mul(b3, quat_exp(-qt[j] / 3.0))
        q01, q12, q23 = quat_slerp(b0, b1, s), quat_slerp(b1, b2, s), quat_slerp(b2, b3, s)
        q = quat_slerp(quat_slerp(q01, q12, s), quat_slerp(q12, q23, s), s)
        q = q / np.linalg.norm(q)
        fov = float(min(max(values[3], 1e-4), math.pi - 1e-4))
        time = None if self.keyframes[0].time is None else float(values[4])
        return PathSample(q if q[0] >= 0 else -q, values[:3].copy(), fov, time)

    def sample_times(self) -> List[float]:
        """Path time of every output frame: first and last frame on the end keyframes (a loop skips the repeat)."""
        f = self.num_frames
        if self.loop:
            return [k * self.seconds / f for k in range(f)]
        return [k * self.seconds / (f - 1) if f > 1 else 0.0 for k in range(f)]

    def samples(self) -> List[Keyframe]:
        """Every output frame's pose (the loaded `frames` if any)."""
        if self.frames is not None:
            return list(self.frames)
        return [self.sample(t).keyframe() for t in self.sample_times()]

    def cameras(self, width: Optional[int] = None, height: Optional[int] = None) -> List[Camera]:
        """One `Camera` per output frame at `width` x `height` (default: the path's resolution)."""
        w = int(self.width if width is None else width)
        h = int(self.height if height is None else height)
        return [k.camera(w, h) for k in self.samples()]


# ----- nerfstudio camera_path.json -------------------------------------------------------------------------
def camera_path_to_json(camera_path: CameraPath) -> Dict[str, Any]:
    """nerfstudio's camera_path.json dict: keyframes and the sampled `camera_path` (OpenGL c2w, fov in degrees)."""
    aspect = camera_path.width / camera_path.height

    def entry(k: Keyframe, matrix_key: str) -> Dict[str, Any]:
        d: Dict[str, Any] = {
            matrix_key: [float(x) for x in k.opengl_c2w.reshape(-1)],
            "fov": math.degrees(k.fov_y),
            "aspect": aspect,
        }
        if k.time is not None:
            d["time"] = k.time
        return d

    samples = camera_path.samples()
    data: Dict[str, Any] = {
        "camera_type": "perspective",
        "render_height": int(camera_path.height),
        "render_width": int(camera_path.width),
        "fps": camera_path.fps,
        "seconds": camera_path.seconds,
        "smoothness_value": camera_path.smoothness,
        "is_cycle": bool(camera_path.loop),
        "default_fov": math.degrees(camera_path.keyframes[0].fov_y) if camera_path.keyframes else 75.0,
        "keyframes": [entry(k, "matrix") for k in camera_path.keyframes],
        "camera_path": [entry(k, "camera_to_world") for k in samples],
    }
    if samples and samples[0].time is not None:
        data["times"] = [k.time for k in samples]
    return data


def save_camera_path(path: Union[str, Path], camera_path: CameraPath) -> Path:
    """Write `camera_path` as nerfstudio camera_path.json (atomically)."""
    path = Path(path)
    text = json.dumps(camera_path_to_json(camera_path), indent=2)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


class CameraPathError(ValueError):
    """A camera_path.json that cannot be read; the message names the file and the field."""


def _number(data: Dict[str, Any], key: str, where: str, positive: bool = False, default=None) -> float:
    if key not in data:
        if default is not None:
            return default
        raise CameraPathError(f"{where}: missing key '{key}'")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CameraPathError(f"{where}: '{key}' must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise CameraPathError(f"{where}: '{key}' is {value}")
    if positive and value <= 0:
        raise CameraPathError(f"{where}: '{key}' must be positive, got {value}")
    return value


def _matrix(entry: Dict[str, Any], key: str, where: str) -> np.ndarray:
    if key not in entry:
        raise CameraPathError(f"{where}: missing key '{key}'")
    raw = entry[key]
    if isinstance(raw, str):  # nerfstudio's three.js viewer stored the matrix as a JSON string
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CameraPathError(f"{where}.{key}: not a list of numbers ({exc})") from None
    try:
        m = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise CameraPathError(f"{where}.{key}: not a list of numbers") from None
    if m.size not in (12, 16):
        raise CameraPathError(f"{where}.{key}: expected 16 numbers (a flattened 4x4), got {m.size}")
    if not np.isfinite(m).all():
        raise CameraPathError(f"{where}.{key}: contains NaN or Inf")
    if m.size == 12:
        return np.vstack([m.reshape(3, 4), [0.0, 0.0, 0.0, 1.0]])
    m = m.reshape(4, 4)
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6) and np.allclose(m[:, 3], [0, 0, 0, 1], atol=1e-6):
        m = m.T  # column-major (three.js `elements`)
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        raise CameraPathError(f"{where}.{key}: last row must be 0 0 0 1, got {m[3].tolist()}")
    return m


def _keyframe(entry: Any, matrix_key: str, where: str, default_fov: Optional[float]) -> Keyframe:
    if not isinstance(entry, dict):
        raise CameraPathError(f"{where}: expected an object, got {type(entry).__name__}")
    m = _matrix(entry, matrix_key, where)
    fov = _number(entry, "fov", where, positive=True, default=default_fov)
    if fov >= 180.0:
        raise CameraPathError(f"{where}: 'fov' must be below 180 degrees, got {fov}")
    time = _number(entry, "time", where) if "time" in entry else None
    try:
        return Keyframe.from_opengl_c2w(m, math.radians(fov), time)
    except ValueError as exc:
        raise CameraPathError(f"{where}.{matrix_key}: {exc}") from None


def camera_path_from_json(data: Any, source: str = "camera path") -> CameraPath:
    """Parse a nerfstudio camera_path.json dict; errors name `source` and the field."""
    if not isinstance(data, dict):
        raise CameraPathError(f"{source}: top level must be a JSON object")
    camera_type = data.get("camera_type", "perspective")
    if camera_type != "perspective":
        raise CameraPathError(f"{source}: camera_type '{camera_type}' is not supported (only 'perspective')")
    height = _number(data, "render_height", source, positive=True)
    width = _number(data, "render_width", source, positive=True)
    fps = _number(data, "fps", source, positive=True)
    default_fov = _number(data, "default_fov", source, positive=True) if "default_fov" in data else None
    keyframes_raw = data.get("keyframes", [])
    frames_raw = data.get("camera_path")
    for key, value in (("keyframes", keyframes_raw), ("camera_path", frames_raw)):
        if value is not None and not isinstance(value, list):
            raise CameraPathError(f"{source}: '{key}' must be a list")
    if not keyframes_raw and not frames_raw:
        raise CameraPathError(f"{source}: needs a non-empty 'keyframes' or 'camera_path' list")
    keyframes = [_keyframe(e, "matrix", f"{source}: keyframes[{i}]", default_fov) for i, e in enumerate(keyframes_raw)]
    frames = None
    if frames_raw:
        frames = [_keyframe(e, "camera_to_world", f"{source}: camera_path[{i}]", default_fov) for i, e in enumerate(frames_raw)]
        times = data.get("times")
        if isinstance(times, list) and len(times) == len(frames) and all(f.time is None for f in frames):
            frames = [replace(f, time=float(t)) for f, t in zip(frames, times)]
        if not keyframes:
            keyframes = list(frames)
    if "seconds" in data:
        seconds = _number(data, "seconds", source, positive=True)
    elif frames is not None:
        seconds = len(frames) / fps
    else:
        raise CameraPathError(f"{source}: missing key 'seconds'")
    smoothness = _number(data, "smoothness_value", source, default=0.5)
    try:
        return CameraPath(
            keyframes,
            fps=fps,
            seconds=seconds,
            loop=bool(data.get("is_cycle", False)),
            smoothness=min(max(smoothness, 0.0), 1.0),
            width=int(round(width)),
            height=int(round(height)),
            frames=frames,
        )
    except ValueError as exc:
        raise CameraPathError(f"{source}: {exc}") from None


def load_camera_path(path: Union[str, Path]) -> CameraPath:
    """Read a nerfstudio camera_path.json. Its sampled `camera_path` list is used as-is when present."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"camera path file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CameraPathError(f"{path}: not valid JSON ({exc})") from None
    return camera_path_from_json(data, str(path))
