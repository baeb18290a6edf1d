"""The embedded procedural demo scene: a small textured still-life rendered on the CPU with open3d ray casting.

Written as a nerfstudio dataset folder:
- `transforms.json`: camera_model OPENCV (zero distortion), fl_x/fl_y/cx/cy/w/h, frames with
  `images/frame_NNNNN.png` and OpenGL camera-to-world `transform_matrix`, `ply_file_path`, and explicit
  `train_filenames` / `test_filenames` (every `test_every`-th view is test).
- `images/*.png`: RGBA, 8 bit. RGB is the shaded colour (straight alpha), alpha is the ray-hit coverage of the pixel
  (supersampled, so edges are anti-aliased). Readers composite on any background; splatforge's default is white.
- `points3D.ply`: seed points sampled on the visible-side surfaces with their (lit) texture colours, plus noise.
- `demo_scene.json`: the config and its hash; `generate_demo_scene` skips work when the hash matches.

World axes: z up, ground top at z = 0, objects around the origin. Everything is seeded and deterministic.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import imageio.v3 as iio
import numpy as np

from scenes.atomic import atomic_folder
from render.conventions import look_at_w2c, opencv_w2c_to_opengl_c2w
from render.system_libs import import_open3d

GENERATOR_VERSION = 1
MARKER_FILE = "demo_scene.json"
LIGHT_DIR = np.array([0.45, -0.35, 0.82]) / np.linalg.norm([0.45, -0.35, 0.82])
AMBIENT = 0.32
TARGET = np.array([0.0, 0.0, 0.25])


@dataclass
class DemoSceneConfig:
    """Procedural demo scene settings."""

    output: Path = Path("outputs/demo_scene")
    """Folder the dataset is written to (replaced atomically; skipped when already up to date)."""
    num_views: int = 40
    """Number of cameras on the orbit."""
    width: int = 160
    """Image width in pixels."""
    height: int = 120
    """Image height in pixels."""
    seed: int = 0
    """Seed for the noise textures, camera jitter and seed points."""
    num_points: int = 4000
    """Number of seed points in points3D.ply."""
    fov_x_deg: float = 60.0
    """Horizontal field of view in degrees."""
    radius: float = 3.0
    """Distance of the cameras from the look-at target."""
    supersample: int = 2
    """Rays per pixel along each axis (2 -> 4 rays per pixel, anti-aliased edges)."""
    shadows: bool = True
    """Cast a hard shadow ray towards the light."""
    test_every: int = 8
    """Every n-th view (starting at 0) goes to test_filenames."""
    point_noise: float = 0.005
    """Standard deviation of the Gaussian noise added to the seed points (world units)."""

    def digest(self) -> str:
        """Hash of everything that changes the output (not the output folder)."""
        fields = {k: v for k, v in asdict(self).items() if k != "output"}
        fields["generator_version"] = GENERATOR_VERSION
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    def validate(self) -> None:
        for name in ("num_views", "width", "height", "num_points", "supersample", "test_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DemoSceneConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 1.0 < self.fov_x_deg < 170.0:
            raise ValueError(f"DemoSceneConfig.fov_x_deg must be in (1, 170), got {self.fov_x_deg}")
        if self.radius <= 1.0:
            raise ValueError(f"DemoSceneConfig.radius must be > 1 (outside the objects), got {self.radius}")


# ----------------------------------------------------------------------------------------------- textures


class _ValueNoise:
    """Periodic 3D value noise on a seeded lattice, smooth-step interpolated; fbm sums octaves."""

    def __init__(self, rng: np.random.Generator, size: int = 32) -> None:
        self.size = size
        self.grid = rng.random((size, size, size))

    def __call__(self, p: np.ndarray, freq: float) -> np.ndarray:
        q = p * freq
        i0 = np.floor(q).astype(np.int64)
        f = q - i0
        f = f * f * (3.0 - 2.0 * f)
        out = np.zeros(len(p))
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    idx = (i0 + [dx, dy, dz]) % self.size
                    w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) * (f[:, 2] if dz else 1 - f[:, 2])
                    out += w * self.grid[idx[:, 0], idx[:, 1], idx[:, 2]]
        return out

    def fbm(self, p: np.ndarray, freq: float, octaves: int = 3) -> np.ndarray:
        total, amp, norm = np.zeros(len(p)), 1.0, 0.0
        for o in range(octaves):
            total += amp * self(p + 17.0 * o, freq * 2**o)
            norm += amp
            amp *= 0.5
        return total / norm


def _hsv(h: np.ndarray, s: float | np.ndarray, v: float | np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, h in [0, 1)."""
    h = np.mod(h, 1.0)[:, None]
    k = np.mod(np.array([5.0, 3.0, 1.0]) + h * 6.0, 6.0)
    s = np.broadcast_to(np.asarray(s, dtype=np.float64), h[:, 0].shape)[:, None]
    v = np.broadcast_to(np.asarray(v, dtype=np.float64), h[:, 0].shape)[:, None]
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _mix(a, b, t: np.ndarray) -> np.ndarray:
    return np.asarray(a)[None] * (1 - t[:, None]) + np.asarray(b)[None] * t[:, None]


Texture = Callable[[np.ndarray, np.ndarray, _ValueNoise], np.ndarray]


def _tex_ground(q: np.ndarray, n: np.ndarray, noise: _ValueNoise) -> np.ndarray:
    checker = (np.floor(q[:, 0] / 0.25) + np.floor(q[:, 1] / 0.25)) % 2
    base = _mix([0.88, 0.76, 0.52], [0.22, 0.46, 0.52], checker)
    base *= (0.7 + 0.3 * noise.fbm(q, 6.0))[:, None]
    line = np.minimum(np.abs(np.mod(q[:, 0] + 0.25, 0.5) - 0.25), np.abs(np.mod(q[:, 1] + 0.25, 0.5) - 0.25)) < 0.012
    base[line] = [0.12, 0.1, 0.1]
    return base


def _tex_sphere(q: np.ndarray, n: np.ndarray, noise: _ValueNoise) -> np.ndarray:
    d = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-9)
    lon = np.arctan2(d[:, 1], d[:, 0]) / (2 * np.pi)
    lat = np.arcsin(np.clip(d[:, 2], -1, 1))
    rgb = _hsv(np.floor(lon * 12) / 12, 0.75, 0.95)
    band = np.abs(np.sin(lat * 9.0)) > 0.93
    rgb[band] = [0.97, 0.97, 0.92]
    return rgb * (0.8 + 0.2 * noise(q, 20.0))[:, None]


def _tex_torus(q: np.ndarray, n: np.ndarray, noise: _ValueNoise) -> np.ndarray:
    phi = np.arctan2(q[:, 1], q[:, 0]) / (2 * np.pi)
    theta = np.arctan2(q[:, 2], np.hypot(q[:, 0], q[:, 1]) - 0.3) / (2 * np.pi)
    checker = (np.floor(phi * 16) + np.floor(theta * 6)) % 2
    rgb = _mix([0.9, 0.15, 0.55], [0.98, 0.85, 0.1], checker)
    return rgb * (0.75 + 0.25 * noise.fbm(q, 10.0))[:, None]


def _tex_box(q: np.ndarray, n: np.ndarray, noise: _ValueNoise) -> np.ndarray:
    axis = np.argmax(np.abs(n), axis=1)
    face = axis * 2 + (np.take_along_axis(n, axis[:, None], 1)[:, 0] > 0)
    uv = np.stack([q[np.arange(len(q)), (axis + 1) % 3], q[np.arange(len(q)), (axis + 2) % 3]], axis=1)
    checker = (np.floor(uv[:, 0] / 0.075) + np.floor(uv[:, 1] / 0.075)) % 2
    rgb = _hsv(face / 6.0 + 0.05, 0.55 + 0.35 * checker, 0.6 + 0.35 * checker)
    return rgb * (0.85 + 0.15 * noise(q, 25.0))[:, None]


def _tex_cone(q: np.ndarray, n: np.ndarray, noise: _ValueNoise) -> np.ndarray:
    t = np.clip(q[:, 2] / 0.6, 0, 1)
    base = _mix([0.85, 0.2, 0.12], [0.15, 0.3, 0.9], t)
    phi = np.arctan2(q[:, 1], q[:, 0])
    stripe = np.sin(phi * 4 + q[:, 2] * 30.0) > 0.3
    base[stripe] = base[stripe] * 0.35 + 0.6
    return base


def _tex_pillar(q: np.ndarray, n: np.ndarray, noise: _ValueNoise) -> np.ndarray:
    m = noise.fbm(q * [1.0, 1.0, 0.4], 9.0, octaves=4)
    veins = np.abs(np.sin((q[:, 2] * 6.0 + m * 8.0) * np.pi))
    return _mix([0.2, 0.55, 0.25], [0.92, 0.95, 0.85], veins**0.5)


# ------------------------------------------------------------------------------------------------ geometry


@dataclass
class _Object:
    name: str
    vertices: np.ndarray  # (V, 3) world
    triangles: np.ndarray  # (T, 3)
    rotation: np.ndarray  # local -> world rotation
    center: np.ndarray  # local origin in world
    texture: Texture
    normal_fn: Optional[Callable[[np.ndarray], np.ndarray]] = None  # analytic local normal from local point

    def to_local(self, p: np.ndarray) -> np.ndarray:
        return (p - self.center) @ self.rotation

    def face_normals(self) -> np.ndarray:
        v = self.vertices[self.triangles]
        n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _rot_z(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def _rot_x(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def _torus_normal(q: np.ndarray) -> np.ndarray:
    ring = np.concatenate([q[:, :2], np.zeros((len(q), 1))], axis=1)
    ring = 0.3 * ring / np.maximum(np.linalg.norm(ring, axis=1, keepdims=True), 1e-9)
    return q - ring


def _build_objects() -> List[_Object]:
    """The still-life: ground slab, sphere, standing torus, rotated box, cone and a marble pillar."""
    o3d = import_open3d()

    G = o3d.geometry.TriangleMesh
    slab = G.create_box(3.0, 3.0, 0.1).translate((-1.5, -1.5, -0.1))
    box = G.create_box(0.45, 0.45, 0.45).translate((-0.225, -0.225, -0.225))
    specs = [
        ("ground", slab, np.eye(3), np.zeros(3), _tex_ground, None),
        ("sphere", G.create_sphere(0.35, resolution=30), np.eye(3), np.array([-0.5, 0.4, 0.35]), _tex_sphere, lambda q: q),
        ("torus", G.create_torus(0.3, 0.1, 40, 20), _rot_z(35) @ _rot_x(90), np.array([0.5, 0.45, 0.4]), _tex_torus, _torus_normal),
        ("box", box, _rot_z(25), np.array([0.5, -0.45, 0.225]), _tex_box, None),
        ("cone", G.create_cone(0.22, 0.6, 48), np.eye(3), np.array([-0.5, -0.45, 0.0]), _tex_cone, None),
        ("pillar", G.create_cylinder(0.12, 0.7, 48), np.eye(3), np.array([0.0, 0.0, 0.35]), _tex_pillar, None),
    ]
    objects = []
    for name, mesh, rot, center, tex, nfn in specs:
        v_local = np.asarray(mesh.vertices, dtype=np.float64)
        objects.append(
            _Object(name, v_local @ rot.T + center, np.asarray(mesh.triangles, dtype=np.int64), rot, center, tex, nfn)
        )
    return objects


def _shade_hits(
    objects: List[_Object], gid: np.ndarray, pid: np.ndarray, points: np.ndarray, noise: _ValueNoise
) -> Tuple[np.ndarray, np.ndarray]:
    """Albedo and world normal for hit points given geometry and primitive ids."""
    albedo = np.zeros((len(points), 3))
    normal = np.zeros((len(points), 3))
    for k, obj in enumerate(objects):
        sel = gid == k
        if not sel.any():
            continue
        q = obj.to_local(points[sel])
        n_local = obj.face_normals()[pid[sel]] @ obj.rotation
        if obj.normal_fn is not None:
            n_local = obj.normal_fn(q)
            n_local /= np.maximum(np.linalg.norm(n_local, axis=1, keepdims=True), 1e-12)
        albedo[sel] = obj.texture(q, n_local, noise)
        normal[sel] = n_local @ obj.rotation.T
    return np.clip(albedo, 0.0, 1.0), normal


def _lambert(albedo: np.ndarray, normal: np.ndarray, visible: np.ndarray) -> np.ndarray:
    diffuse = np.clip(normal @ LIGHT_DIR, 0.0, None) * visible
    return np.clip(albedo * (AMBIENT + (1 - AMBIENT) * diffuse)[:, None], 0.0, 1.0)


# ----------------------------------------------------------------------------------------------- cameras


def _camera_poses(config: DemoSceneConfig, rng: np.random.Generator) -> List[np.ndarray]:
    """OpenCV world-to-camera matrices on a wavy orbit (elevation 15..50 degrees) looking at the target."""
    poses = []
    jitter = rng.uniform(-0.5, 0.5, size=(config.num_views, 2))
    for i in range(config.num_views):
        az = 2 * math.pi * (i + 0.3 * jitter[i, 0]) / config.num_views
        el = math.radians(32.5 + 17.5 * math.sin(2 * math.pi * 3 * i / config.num_views) + 2.0 * jitter[i, 1])
        eye = TARGET + config.radius * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        poses.append(look_at_w2c(eye, TARGET, up=(0.0, 0.0, 1.0)).double().numpy())
    return poses


def _intrinsics(config: DemoSceneConfig) -> Tuple[float, float, float]:
    focal = 0.5 * config.width / math.tan(0.5 * math.radians(config.fov_x_deg))
    return focal, config.width / 2.0, config.height / 2.0


# --------------------------------------------------------------------------------------------- rendering


def _render_view(scene, objects, noise, w2c: np.ndarray, config: DemoSceneConfig) -> np.ndarray:
    """RGBA float image (straight alpha = coverage) for one OpenCV world-to-camera."""
    o3d = import_open3d()

    focal, cx, cy = _intrinsics(config)
    s, w, h = config.supersample, config.width, config.height
    offsets = (np.arange(s) + 0.5) / s
    u = (np.arange(w)[:, None] + offsets[None]).reshape(-1)  # (w*s,)
    v = (np.arange(h)[:, None] + offsets[None]).reshape(-1)  # (h*s,)
    uu, vv = np.meshgrid(u, v)  # (h*s, w*s)
    d_cam = np.stack([(uu - cx) / focal, (vv - cy) / focal, np.ones_like(uu)], axis=-1).reshape(-1, 3)
    c2w = np.linalg.inv(w2c)
    d_world = d_cam @ c2w[:3, :3].T
    d_world /= np.linalg.norm(d_world, axis=1, keepdims=True)
    origin = np.broadcast_to(c2w[:3, 3], d_world.shape)
    rays = o3d.core.Tensor(np.concatenate([origin, d_world], axis=1).astype(np.float32))
    hit = scene.cast_rays(rays)
    t = hit["t_hit"].numpy().astype(np.float64)
    gid = hit["geometry_ids"].numpy().astype(np.int64)
    pid = hit["primitive_ids"].numpy().astype(np.int64)
    valid = np.isfinite(t) & (gid < len(objects))
    rgb = np.ones((len(t), 3))
    if valid.any():
        pts = origin[valid] + d_world[valid] * t[valid, None]
        albedo, normal = _shade_hits(objects, gid[valid], pid[valid], pts, noise)
        facing = np.sum(normal * d_world[valid], axis=1) > 0
        normal[facing] *= -1.0
        visible = np.ones(len(pts))
        if config.shadows:
            shadow_rays = np.concatenate([pts + normal * 2e-3, np.broadcast_to(LIGHT_DIR, pts.shape)], axis=1)
            occluded = scene.test_occlusions(o3d.core.Tensor(shadow_rays.astype(np.float32))).numpy()
            visible = 1.0 - occluded.astype(np.float64)
        rgb[valid] = _lambert(albedo, normal, visible)
    alpha = valid.astype(np.float64).reshape(h, s, w, s).mean(axis=(1, 3))
    weighted = (rgb * valid[:, None]).reshape(h, s, w, s, 3).sum(axis=(1, 3))
    count = valid.reshape(h, s, w, s).sum(axis=(1, 3))[..., None]
    color = np.where(count > 0, weighted / np.maximum(count, 1), 1.0)
    return np.concatenate([color, alpha[..., None]], axis=-1)


def _sample_points(objects: List[_Object], noise: _ValueNoise, config: DemoSceneConfig, rng: np.random.Generator):
    """Seed points on upward/sideways faces, area-weighted (ground capped at 35%), with lit texture colours."""
    areas, tri_sets = [], []
    for obj in objects:
        fn = obj.face_normals()
        keep = np.nonzero(fn[:, 2] > -0.5)[0]  # bottoms resting on the ground are never seen
        v = obj.vertices[obj.triangles[keep]]
        a = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
        areas.append(a)
        tri_sets.append(keep)
    totals = np.array([a.sum() for a in areas])
    share = totals / totals[1:].sum() * 0.65
    share[0] = 0.35
    counts = np.floor(share / share.sum() * config.num_points).astype(int)
    counts[0] += config.num_points - counts.sum()
    all_pts, all_rgb = [], []
    for k, obj in enumerate(objects):
        tri = rng.choice(tri_sets[k], size=counts[k], p=areas[k] / areas[k].sum())
        r1, r2 = rng.random(counts[k]), rng.random(counts[k])
        flip = r1 + r2 > 1
        r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
        v = obj.vertices[obj.triangles[tri]]
        pts = v[:, 0] + r1[:, None] * (v[:, 1] - v[:, 0]) + r2[:, None] * (v[:, 2] - v[:, 0])
        albedo, normal = _shade_hits([obj], np.zeros(len(pts), np.int64), tri, pts, noise)
        all_rgb.append(_lambert(albedo, normal, np.ones(len(pts))))
        all_pts.append(pts)
    pts = np.concatenate(all_pts) + rng.normal(0.0, config.point_noise, size=(config.num_points, 3))
    return pts, np.concatenate(all_rgb)


def _write_ply(path: Path, points: np.ndarray, colors: np.ndarray, times: Optional[np.ndarray] = None) -> None:
    """Seed points with 8-bit colours (and, for dynamic scenes, a float time `t` per point)."""
    from plyfile import PlyData, PlyElement

    fields = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    data = np.empty(len(points), dtype=fields + ([("t", "f4")] if times is not None else []))
    if times is not None:
        data["t"] = times
    for i, key in enumerate("xyz"):
        data[key] = points[:, i]
    rgb8 = np.round(np.clip(colors, 0, 1) * 255).astype(np.uint8)
    for i, key in enumerate(("red", "green", "blue")):
        data[key] = rgb8[:, i]
    PlyData([PlyElement.describe(data, "vertex")]).write(str(path))


def _raycasting_scene(objects: List[_Object]):
    """An open3d ray-casting scene of the objects (geometry ids 0..n-1 in list order)."""
    o3d = import_open3d()

    scene = o3d.t.geometry.RaycastingScene()
    for obj in objects:
        mesh = o3d.t.geometry.TriangleMesh()
        mesh.vertex.positions = o3d.core.Tensor(obj.vertices.astype(np.float32))
        mesh.triangle.indices = o3d.core.Tensor(obj.triangles.astype(np.int32))
        scene.add_triangles(mesh)
    return scene


def _write_marker(folder: Path, config: DemoSceneConfig) -> None:
    marker = {"config_hash": config.digest(), "config": {k: v for k, v in asdict(config).items() if k != "output"},
              "images": "RGBA, straight alpha = ray-hit coverage; composite on the background you train with"}
    (folder / MARKER_FILE).write_text(json.dumps(marker, indent=2, default=str))


def _write_dataset(folder: Path, config: DemoSceneConfig) -> None:
    """Render every view and write transforms.json, images/, points3D.ply and the marker into `folder`."""

    rng = np.random.default_rng(config.seed)
    noise = _ValueNoise(rng)
    objects = _build_objects()
    scene = _raycasting_scene(objects)
    poses = _camera_poses(config, rng)
    (folder / "images").mkdir(parents=True)
    frames, train, test = [], [], []
    for i, w2c in enumerate(poses):
        rgba = _render_view(scene, objects, noise, w2c, config)
        name = f"images/frame_{i:05d}.png"
        iio.imwrite(folder / name, np.round(rgba * 255).astype(np.uint8))
        frames.append({"file_path": name, "transform_matrix": opencv_w2c_to_opengl_c2w(w2c).double().numpy().tolist()})
        (test if i % config.test_every == 0 else train).append(name)
    points, colors = _sample_points(objects, noise, config, rng)
    _write_ply(folder / "points3D.ply", points, colors)
    focal, cx, cy = _intrinsics(config)
    meta = {
        "camera_model": "OPENCV",
        "fl_x": focal, "fl_y": focal, "cx": cx, "cy": cy, "w": config.width, "h": config.height,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "ply_file_path": "points3D.ply",
        "train_filenames": train,
        "test_filenames": test,
        "frames": frames,
    }
    (folder / "transforms.json").write_text(json.dumps(meta, indent=2))
    _write_marker(folder, config)


def is_up_to_date(folder: Path, config: DemoSceneConfig) -> bool:
    """True when `folder` holds a complete demo scene generated from an equivalent config."""
    marker = Path(folder) / MARKER_FILE
    if not marker.is_file() or not (Path(folder) / "transforms.json").is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("config_hash") == config.digest()
    except (OSError, json.JSONDecodeError):
        return False


def generate_demo_scene(config: Optional[DemoSceneConfig] = None) -> Path:
    """Write the demo scene to `config.output` (temp folder + rename) unless an up-to-date copy exists there."""
    return generate_folder(config or DemoSceneConfig(), _write_dataset)


def generate_folder(config: DemoSceneConfig, writer: Callable[[Path, DemoSceneConfig], None]) -> Path:
    """Run `writer(folder, config)` into a temp folder renamed onto `config.output`, unless an up-to-date copy
    (same config hash) is already there (shared by the static and the dynamic demo scenes)."""
    config.validate()
    out = Path(config.output)
    if is_up_to_date(out, config):
        return out
    # a concurrent generator that finished first keeps its folder
    with atomic_folder(out, keep_existing=lambda: is_up_to_date(out, config)) as tmp:
        writer(tmp, config)
    return out


def main() -> None:
    """CLI: `python -m trainers.data.demo_scene --output outputs/demo_scene`."""
    import tyro

    print(generate_demo_scene(tyro.cli(DemoSceneConfig)))


if __name__ == "__main__":
    main()
