"""Triangle meshes placed in a splat scene: `MeshAsset` and loaders for GLB/GLTF/OBJ/PLY (no viewer, no render)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
MAX_FACES = 2_000_000
MAX_BYTES = 50 * 1024 * 1024
DEFAULT_COLOR = (0.7, 0.7, 0.7)


class MeshLoadError(ValueError):
    """A mesh file could not be used (missing, unsupported type, empty, too large)."""


@dataclass
class MeshAsset:
    """A triangle mesh in its local frame plus a 4x4 local-to-world `transform`.

    Colour comes from, in order: `texture` (H, W, 3 uint8) sampled at per-vertex `uv` (V, 2, OpenGL convention:
    v = 0 at the bottom row), `vertex_colors` (V, 3 floats in [0, 1]), or the flat `color`.
    """

    name: str
    vertices: np.ndarray  # (V, 3) float64, local frame
    faces: np.ndarray  # (F, 3) int64
    vertex_colors: Optional[np.ndarray] = None
    uv: Optional[np.ndarray] = None
    texture: Optional[np.ndarray] = None
    color: Tuple[float, float, float] = DEFAULT_COLOR
    transform: np.ndarray = field(default_factory=lambda: np.eye(4))

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float64).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int64).reshape(-1, 3)
        self.transform = np.asarray(self.transform, dtype=np.float64).reshape(4, 4).copy()
        if len(self.vertices) == 0 or len(self.faces) == 0:
            raise MeshLoadError(f"mesh {self.name!r} is empty ({len(self.vertices)} vertices, {len(self.faces)} faces)")
        if not np.isfinite(self.vertices).all():
            raise MeshLoadError(f"mesh {self.name!r} has NaN or Inf vertices")
        if self.faces.min() < 0 or self.faces.max() >= len(self.vertices):
            raise MeshLoadError(f"mesh {self.name!r} has face indices outside its {len(self.vertices)} vertices")
        if self.vertex_colors is not None:
            vc = np.asarray(self.vertex_colors, dtype=np.float64)[:, :3]
            self.vertex_colors = vc / 255.0 if vc.max() > 1.0 else vc
        if (self.uv is None) != (self.texture is None):
            self.uv, self.texture = None, None
        if self.texture is not None:
            self.texture = np.ascontiguousarray(_as_rgb8(self.texture))
            self.uv = np.asarray(self.uv, dtype=np.float64).reshape(-1, 2)

    # ----- geometry -------------------------------------------------------------------------------------
    def world_vertices(self) -> np.ndarray:
        """(V, 3) vertices in world coordinates."""
        return self.vertices @ self.transform[:3, :3].T + self.transform[:3, 3]

    def world_bounds(self) -> np.ndarray:
        """(2, 3) min and max corner of the world-space vertices."""
        w = self.world_vertices()
        return np.stack([w.min(axis=0), w.max(axis=0)])

    def set_pose(self, wxyz, position, scale: float = 1.0) -> None:
        """Set `transform` from a rotation quaternion (w, x, y, z), a translation and a uniform scale."""
        self.transform = pose_matrix(wxyz, position, scale)

    def pose(self) -> Tuple[np.ndarray, np.ndarray, float]:
        """`transform` as (wxyz, position, uniform scale); rejects shear / non-uniform scale."""
        m = self.transform[:3, :3]
        scales = np.linalg.norm(m, axis=0)
        if not np.allclose(scales, scales[0], rtol=1e-4):
            raise ValueError(f"mesh {self.name!r}: transform has non-uniform scale {scales}")
        return _matrix_to_wxyz(m / scales[0]), self.transform[:3, 3].copy(), float(scales[0])

    def vertex_rgb(self) -> np.ndarray:
        """(V, 3) per-vertex colours in [0, 1] for renderers without texture support."""
        if self.vertex_colors is not None:
            return self.vertex_colors
        if self.texture is not None:
            return sample_texture(self.texture, self.uv)
        return np.tile(np.asarray(self.color, dtype=np.float64), (len(self.vertices), 1))

    # ----- interop --------------------------------------------------------------------------------------
    def to_trimesh(self, shade: Optional[np.ndarray] = None):
        """A local-frame `trimesh.Trimesh` keeping the texture or vertex colours (for viser's add_mesh_trimesh).

        `shade` (V,) multiplies the vertex colours of an untextured mesh (baked lighting; textured meshes take it
        as a glTF COLOR_0 attribute instead, see viewer.mesh_panel.glb_bytes)."""
        import trimesh
        from PIL import Image

        mesh = trimesh.Trimesh(self.vertices.copy(), self.faces.copy(), process=False)
        if self.texture is not None:
            material = trimesh.visual.material.PBRMaterial(
                baseColorTexture=Image.fromarray(self.texture), baseColorFactor=[255, 255, 255, 255],
                metallicFactor=0.0, roughnessFactor=1.0, doubleSided=True,
            )
            mesh.visual = trimesh.visual.TextureVisuals(uv=self.uv.copy(), material=material)
        else:
            rgb = self.vertex_rgb()
            if shade is not None:
                rgb = np.clip(rgb * np.asarray(shade, dtype=np.float64).reshape(-1, 1), 0.0, 1.0)
            rgba = np.concatenate([rgb, np.ones((len(rgb), 1))], axis=1)
            mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=(rgba * 255 + 0.5).astype(np.uint8))
        return mesh

    @staticmethod
    def box(name: str = "box", size=(1.0, 1.0, 1.0), center=(0.0, 0.0, 0.0), color=DEFAULT_COLOR) -> "MeshAsset":
        """An axis-aligned box (12 outward-facing triangles) with a flat colour."""
        import trimesh

        box = trimesh.creation.box(extents=np.asarray(size, dtype=np.float64))
        transform = np.eye(4)
        transform[:3, 3] = center
        return MeshAsset(name, box.vertices, box.faces, color=tuple(color), transform=transform)


def pose_matrix(wxyz, position, scale: float = 1.0) -> np.ndarray:
    """4x4 from a quaternion (w, x, y, z), translation and uniform scale."""
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    rot = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
    m = np.eye(4)
    m[:3, :3] = rot * float(scale)
    m[:3, 3] = np.asarray(position, dtype=np.float64)
    return m


def _matrix_to_wxyz(r: np.ndarray) -> np.ndarray:
    trace = np.trace(r)
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + r[i, i] - r[j, j] - r[k, k], 1e-12))
        q = [0.0] * 4
        q[0] = (r[k, j] - r[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + k] = (r[k, i] + r[i, k]) / s
    q = np.asarray(q) / np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def _as_rgb8(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return arr


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of (H, W, 3) uint8 `texture` at (N, 2) OpenGL uvs (wrapping), as floats in [0, 1]."""
    h, w = texture.shape[:2]
    u = np.mod(uv[:, 0], 1.0) * w - 0.5
    v = (1.0 - np.mod(uv[:, 1], 1.0)) * h - 0.5
    x0, y0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fx, fy = (u - x0)[:, None], (v - y0)[:, None]
    tex = texture.astype(np.float32) / 255.0

    def at(x, y):
        return tex[np.mod(y, h), np.mod(x, w)]

    top = at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx
    bottom = at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float64)


# ----- loading ------------------------------------------------------------------------------------------
def _check_suffix(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise MeshLoadError(
            f"unsupported mesh type {suffix or '(none)'!r} for {Path(filename).name!r}: use one of {', '.join(MESH_SUFFIXES)}"
        )
    return suffix


def load_mesh(path: Union[str, Path], name: Optional[str] = None, max_faces: int = MAX_FACES, max_bytes: int = MAX_BYTES) -> MeshAsset:
    """Load a GLB/GLTF/OBJ/PLY file (an OBJ keeps the texture named by its .mtl) as a `MeshAsset`."""
    path = Path(path)
    _check_suffix(path.name)
    if not path.is_file():
        raise MeshLoadError(f"mesh file not found: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise MeshLoadError(f"mesh file {path.name} is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit")
    import trimesh

    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for malformed files
        raise MeshLoadError(f"cannot read mesh {path.name}: {exc}") from exc
    return _from_trimesh(loaded, name or path.stem, max_faces)


def load_mesh_bytes(data: bytes, filename: str, name: Optional[str] = None, max_faces: int = MAX_FACES, max_bytes: int = MAX_BYTES) -> MeshAsset:
    """Load a mesh from file contents (an upload). OBJ arrives without its .mtl/texture: use GLB for textures."""
    suffix = _check_suffix(filename)
    if len(data) == 0:
        raise MeshLoadError(f"uploaded file {filename!r} is empty")
    if len(data) > max_bytes:
        raise MeshLoadError(f"{filename} is {len(data) / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit")
    import trimesh

    try:
        loaded = trimesh.load(io.BytesIO(data), file_type=suffix[1:], force="mesh", process=False)
    except Exception as exc:
        raise MeshLoadError(f"cannot read mesh {filename}: {exc}") from exc
    return _from_trimesh(loaded, name or Path(filename).stem, max_faces)


def _from_trimesh(mesh, name: str, max_faces: int) -> MeshAsset:
    import trimesh

    if isinstance(mesh, trimesh.Scene):  # force="mesh" of an empty scene
        mesh = mesh.to_geometry() if len(mesh.geometry) else None
    if not isinstance(mesh, trimesh.Trimesh) or len(getattr(mesh, "faces", ())) == 0:
        raise MeshLoadError(f"mesh {name!r} has no triangles (a point cloud or an empty file?)")
    if len(mesh.faces) > max_faces:
        raise MeshLoadError(f"mesh {name!r} has {len(mesh.faces):,} faces, over the limit of {max_faces:,}")
    kwargs = {}
    visual = mesh.visual
    if visual.kind == "texture" and getattr(visual, "uv", None) is not None:
        material = visual.material
        image = getattr(material, "image", None)
        if image is None and hasattr(material, "baseColorTexture"):
            image = material.baseColorTexture
        if image is not None and len(visual.uv) == len(mesh.vertices):
            kwargs.update(uv=np.asarray(visual.uv), texture=np.asarray(image.convert("RGB")))
        else:
            color = _material_color(material)
            if color is not None:
                kwargs["color"] = color
    elif visual.kind == "vertex":
        kwargs["vertex_colors"] = np.asarray(visual.vertex_colors)[:, :3] / 255.0
    elif visual.kind == "face":
        fc = np.asarray(visual.face_colors)[:, :3].astype(np.float64) / 255.0
        vc = np.zeros((len(mesh.vertices), 3))
        np.add.at(vc, mesh.faces.reshape(-1), np.repeat(fc, 3, axis=0))
        counts = np.bincount(mesh.faces.reshape(-1), minlength=len(mesh.vertices))[:, None]
        kwargs["vertex_colors"] = np.where(counts > 0, vc / np.maximum(counts, 1), DEFAULT_COLOR)
    return MeshAsset(name, np.asarray(mesh.vertices), np.asarray(mesh.faces), **kwargs)


def _material_color(material) -> Optional[Tuple[float, float, float]]:
    for attr in ("baseColorFactor", "diffuse", "main_color"):
        value = getattr(material, attr, None)
        if value is not None:
            c = np.asarray(value, dtype=np.float64)[:3]
            return tuple(float(x) for x in (c / 255.0 if c.max() > 1.0 else c))
    return None


def load_mesh_layout(path: Union[str, Path]) -> Tuple[list, dict]:
    """Read a scene-edit JSON: `{"meshes": [{"path", "position"?, "wxyz"?, "scale"?, "name"?}], "light"?: {...}}`.

    Mesh paths are relative to the JSON file. Returns (list of MeshAsset, light dict as written, possibly empty).
    """
    import json

    path = Path(path)
    if not path.is_file():
        raise MeshLoadError(f"mesh layout file not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MeshLoadError(f"cannot read mesh layout {path}: {exc}") from exc
    entries = doc.get("meshes") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise MeshLoadError(f"{path}: expected an object with a 'meshes' list")
    meshes = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "path" not in entry:
            raise MeshLoadError(f"{path}: meshes[{i}] needs a 'path'")
        mesh = load_mesh(path.parent / entry["path"], name=entry.get("name"))
        try:
            mesh.set_pose(entry.get("wxyz", (1, 0, 0, 0)), entry.get("position", (0, 0, 0)), float(entry.get("scale", 1.0)))
        except (TypeError, ValueError) as exc:
            raise MeshLoadError(f"{path}: meshes[{i}] has a bad pose: {exc}") from exc
        meshes.append(mesh)
    light = doc.get("light", {})
    if not isinstance(light, dict):
        raise MeshLoadError(f"{path}: 'light' must be an object")
    return meshes, light
