"""Meshes in the viewer: a server-wide `MeshLayer` (meshes under transform gizmos, lights, shadow pass) and a
per-client "Meshes" GUI folder (upload, list with delete, light direction / strength, estimate from scene).

viser draws the meshes in the browser and composites them against the splat depth image each frame carries;
the server darkens splat pixels in the meshes' shadow before sending a frame (`MeshLayer.shadow_frame`), and a
radiance field's density shadows the meshes through per-vertex light baked into their GLBs (mesh_field_shading).
"""

from __future__ import annotations

import io
import json
import logging
import math
import struct
import threading
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from render import Camera
from render.composite import Light, angles_to_direction, direction_to_angles, shadow_splats
from render.shadows import ShadowMap, build_shadow_map
from scenes.meshes import MAX_BYTES, MESH_SUFFIXES, MeshAsset, MeshLoadError, load_mesh_bytes

from .mesh_field_shading import FieldMeshShading

log = logging.getLogger(__name__)

UPLOAD_HINT = "GLB/GLTF/OBJ/PLY up to 50 MB. An OBJ upload arrives without its .mtl/texture: use GLB for textured meshes."
SHADOW_RESOLUTION = 384


def glb_bytes(mesh: MeshAsset, shade: Optional[np.ndarray] = None) -> bytes:
    """The mesh (local frame) as GLB with a matte, double-sided, non-metallic material on every primitive.

    (glTF's default material is fully metallic, which renders near-black without an environment map.)
    `shade` (V,) is baked lighting: it scales the vertex colours, or for a textured mesh becomes its COLOR_0 (glTF
    multiplies the base colour texture by it).
    """
    buf = io.BytesIO()
    mesh.to_trimesh(shade if mesh.texture is None else None).export(buf, file_type="glb")
    data = buf.getvalue()
    json_len = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + json_len])
    rest = data[20 + json_len :]
    if shade is not None and mesh.texture is not None:
        rest = _add_vertex_shade(doc, rest, np.asarray(shade, dtype=np.float32), len(mesh.vertices))
    materials = doc.setdefault("materials", [])
    for mat in materials:
        pbr = mat.setdefault("pbrMetallicRoughness", {})
        pbr.update(metallicFactor=0.0, roughnessFactor=1.0)
        mat["doubleSided"] = True
    default = None
    for m in doc.get("meshes", []):
        for prim in m.get("primitives", []):
            if "material" not in prim:
                if default is None:
                    materials.append(
                        {"pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0, "roughnessFactor": 1.0}, "doubleSided": True}
                    )
                    default = len(materials) - 1
                prim["material"] = default
    chunk = json.dumps(doc, separators=(",", ":")).encode()
    chunk += b" " * (-len(chunk) % 4)
    body = struct.pack("<II", len(chunk), 0x4E4F534A) + chunk + rest
    return struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body


def _add_vertex_shade(doc: dict, bin_chunk: bytes, shade: np.ndarray, vertex_count: int) -> bytes:
    """Append `shade` as a float RGB COLOR_0 accessor to the GLB's binary chunk and to every primitive with
    `vertex_count` vertices (trimesh exports vertices as given); returns the new binary chunk (header included)."""
    bin_len = struct.unpack_from("<I", bin_chunk, 0)[0]
    payload = bytearray(bin_chunk[8 : 8 + bin_len])
    offset = len(payload)
    colors = np.repeat(shade.reshape(-1, 1), 3, axis=1).astype("<f4").tobytes()
    payload += colors
    payload += b"\0" * (-len(payload) % 4)
    doc["buffers"][0]["byteLength"] = len(payload)
    views = doc.setdefault("bufferViews", [])
    views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(colors), "target": 34962})
    accessors = doc.setdefault("accessors", [])
    accessors.append({"bufferView": len(views) - 1, "componentType": 5126, "count": int(len(shade)), "type": "VEC3"})
    for m in doc.get("meshes", []):
        for prim in m.get("primitives", []):
            position = prim.get("attributes", {}).get("POSITION")
            if position is not None and accessors[position]["count"] == vertex_count:
                prim["attributes"]["COLOR_0"] = len(accessors) - 1
    return struct.pack("<II", len(payload), 0x004E4942) + bytes(payload)


class MeshLayer:
    """Meshes + one directional light shared by every client of a `ViewerServer`."""

    def __init__(self, server):
        self.server = server
        self.scene_api = server.viser.scene
        self.meshes: Dict[str, MeshAsset] = {}
        self.light = Light()
        self._handles: Dict[str, tuple] = {}
        self._lock = threading.RLock()
        self._panels: List["MeshPanel"] = []
        self._shadow_key = None
        self._shadow_map: Optional[ShadowMap] = None
        self.field_shading = FieldMeshShading(self)
        self.scene_api.configure_default_lights(enabled=False, cast_shadow=False)
        self.scene_api.configure_environment_map(hdri=None)
        self._ambient = self.scene_api.add_light_ambient("/sf_lights/ambient")
        self._sun = self.scene_api.add_light_directional("/sf_lights/sun", cast_shadow=False)
        self._apply_light()

    # ----- meshes ---------------------------------------------------------------------------------------
    def add(self, mesh: MeshAsset) -> str:
        """Show `mesh` (at its `transform`) under a transform gizmo; returns its unique name."""
        with self._lock:
            name = _unique(mesh.name, self.meshes)
            mesh.name = name
            wxyz, position, scale = mesh.pose()
            radius = float(np.linalg.norm(np.ptp(mesh.vertices, axis=0))) * scale
            gizmo = self.scene_api.add_transform_controls(
                f"/meshes/{name}", scale=max(radius * 0.6, 0.05), wxyz=wxyz, position=position
            )
            node = self.scene_api.add_glb(f"/meshes/{name}/mesh", glb_data=glb_bytes(mesh), scale=scale, cast_shadow=False, receive_shadow=False)
            self.meshes[name] = mesh
            self._handles[name] = (gizmo, node)
            gizmo.on_update(lambda event, n=name: self._gizmo_moved(n, event.target))
        self._changed(list_changed=True)
        return name

    def replace_glb(self, name: str, mesh: MeshAsset, shade: Optional[np.ndarray]) -> bool:
        """Re-send mesh `name`'s GLB with baked per-vertex light `shade` (None: unshaded); False if it is gone."""
        with self._lock:
            if self.meshes.get(name) is not mesh:
                return False
            gizmo, _ = self._handles[name]
            node = self.scene_api.add_glb(
                f"/meshes/{name}/mesh", glb_data=glb_bytes(mesh, shade), scale=mesh.pose()[2], cast_shadow=False,
                receive_shadow=False,
            )
            self._handles[name] = (gizmo, node)
            return True

    def remove(self, name: str) -> None:
        with self._lock:
            mesh = self.meshes.pop(name, None)
            handles = self._handles.pop(name, None)
        if mesh is None:
            return
        for handle in reversed(handles):
            handle.remove()
        self._changed(list_changed=True)

    def move(self, name: str, wxyz, position) -> None:
        """Set a mesh's pose (keeps its scale) and its gizmo."""
        with self._lock:
            mesh = self.meshes[name]
            gizmo = self._handles[name][0]
            gizmo.wxyz, gizmo.position = np.asarray(wxyz, float), np.asarray(position, float)
        self._set_pose(mesh, wxyz, position)

    def _gizmo_moved(self, name: str, gizmo) -> None:
        mesh = self.meshes.get(name)
        if mesh is not None:
            self._set_pose(mesh, gizmo.wxyz, gizmo.position)

    def _set_pose(self, mesh: MeshAsset, wxyz, position) -> None:
        scale = mesh.pose()[2]
        with self._lock:
            mesh.set_pose(wxyz, position, scale)
        self._changed()

    def snapshot(self) -> List[MeshAsset]:
        with self._lock:
            return list(self.meshes.values())

    # ----- light ----------------------------------------------------------------------------------------
    def set_light(self, light: Light) -> None:
        with self._lock:
            self.light = light
        self._apply_light()
        self._changed()

    def _apply_light(self) -> None:
        """viser's lights follow `self.light`; three.js Lambert divides by pi, so intensities are scaled by pi."""
        light = self.light
        self._sun.position = tuple(light.unit_direction * 100.0)  # three.js aims a directional light at the origin
        self._sun.intensity = math.pi * light.intensity
        self._ambient.intensity = math.pi * light.ambient

    def estimate_light(self, position=None, backend: Optional[str] = None) -> Light:
        """Estimate the light from the splats around the meshes' centre (or `position`) and apply it."""
        from render.light_estimation import estimate_light

        if position is None:
            meshes = self.snapshot()
            if meshes:
                bounds = np.stack([m.world_bounds() for m in meshes])
                position = (bounds[:, 0].min(axis=0) + bounds[:, 1].max(axis=0)) / 2
            else:
                position = np.asarray(self.server.viser.initial_camera.look_at, dtype=float)
        scene, lock = self.server._render_context()
        with lock:
            est = estimate_light(scene, position, backend=backend or self.server.backend)
        light = Light(
            direction=est.direction,
            intensity=float(np.clip(est.intensity - est.ambient, 0.2, 1.5)),
            ambient=float(np.clip(est.ambient, 0.1, 0.8)),
            shadow_strength=self.light.shadow_strength,
        )
        self.set_light(light)
        return light

    # ----- frames ---------------------------------------------------------------------------------------
    def shadow_map(self) -> Optional[ShadowMap]:
        """The meshes' shadow map for the current light (cached until a mesh or the light changes)."""
        with self._lock:
            meshes, light = list(self.meshes.values()), self.light
            if not meshes or light.shadow_strength <= 0:
                return None
            key = (tuple((m.name, m.transform.tobytes()) for m in meshes), tuple(light.unit_direction))
            if key != self._shadow_key:
                self._shadow_map = build_shadow_map(meshes, light.unit_direction, SHADOW_RESOLUTION)
                self._shadow_key = key
            return self._shadow_map

    def shadow_frame(self, camera: Camera, rgb: np.ndarray, alpha: np.ndarray, depth: np.ndarray, background) -> np.ndarray:
        """`render_frame` post-process: darken the splat pixels in the meshes' shadow (meshes are drawn by viser).

        Also lets the field-shading baker check that the meshes' baked field shadows are current (field edits
        reach the meshes this way)."""
        if self.meshes:
            self.field_shading.request()
        smap = self.shadow_map()
        if smap is None:
            return rgb
        out, _ = shadow_splats(rgb, alpha, depth, camera, smap, self.light.shadow_strength, background)
        return out.astype(np.float32)

    # ----- panels ---------------------------------------------------------------------------------------
    def _changed(self, list_changed: bool = False) -> None:
        self.field_shading.request()
        if list_changed:
            live = getattr(self.server, "sessions", None)
            if live is not None:  # drop panels of clients that left
                self._panels[:] = [p for p in self._panels if p.client.client_id in live]
            for panel in list(self._panels):
                panel.refresh_list()
        self.server.notify_scene_changed()


def _unique(name: str, taken) -> str:
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in (name or "mesh")) or "mesh"
    candidate, i = base, 1
    while candidate in taken:
        i += 1
        candidate = f"{base}_{i}"
    return candidate


class MeshPanel:
    """One client's "Meshes" folder."""

    def __init__(self, layer: MeshLayer, client):
        self.layer = layer
        self.client = client
        gui = client.gui
        self._list_handles: list = []
        light = layer.light
        az, el = direction_to_angles(light.direction)
        with gui.add_folder("Meshes", expand_by_default=False) as folder:
            self.folder = folder
            self.upload = gui.add_upload_button("Upload mesh", hint=UPLOAD_HINT, mime_type=",".join(MESH_SUFFIXES))
            self.azimuth = gui.add_slider("Light azimuth", min=-180.0, max=180.0, step=1.0, initial_value=round(az))
            self.elevation = gui.add_slider("Light elevation", min=-90.0, max=90.0, step=1.0, initial_value=round(el))
            self.intensity = gui.add_slider("Light intensity", min=0.0, max=2.0, step=0.05, initial_value=light.intensity)
            self.ambient = gui.add_slider("Ambient", min=0.0, max=1.0, step=0.05, initial_value=light.ambient)
            self.shadow = gui.add_slider("Shadow strength", min=0.0, max=1.0, step=0.05, initial_value=light.shadow_strength)
            self.estimate = gui.add_button("Estimate light from scene")
            self.list_folder = gui.add_folder("Loaded meshes")
        self.upload.on_upload(lambda _e: self._on_upload())
        for handle in (self.azimuth, self.elevation, self.intensity, self.ambient, self.shadow):
            handle.on_update(lambda _e: self._on_light())
        self.estimate.on_click(lambda _e: self._on_estimate())
        layer._panels.append(self)
        self.refresh_list()

    def _notify(self, title: str, body: str, error: bool = False) -> None:
        try:
            self.client.add_notification(title, body, color="red" if error else None, auto_close_seconds=8.0)
        except Exception:  # the client may have gone
            pass

    def _on_upload(self) -> None:
        upload = self.upload.value
        name, content = upload.name, upload.content
        try:
            if len(content) > MAX_BYTES:
                raise MeshLoadError(f"{name} is {len(content) / 1e6:.1f} MB, over the {MAX_BYTES // 2**20} MB limit")
            mesh = load_mesh_bytes(content, name)
        except MeshLoadError as exc:
            self._notify("Mesh upload failed", f"{exc}. {UPLOAD_HINT}", error=True)
            return
        # centre the mesh on its bounding box and put it where the camera looks
        centre = (mesh.vertices.min(axis=0) + mesh.vertices.max(axis=0)) / 2
        mesh.vertices = mesh.vertices - centre
        try:
            target = self.client.camera.look_at
        except Exception:
            target = self.layer.server.viser.initial_camera.look_at
        mesh.transform[:3, 3] = np.asarray(target, dtype=float)
        added = self.layer.add(mesh)
        note = " (OBJ uploads carry no texture: use GLB)" if Path(name).suffix.lower() == ".obj" else ""
        self._notify("Mesh added", f"{added}: {len(mesh.faces):,} faces{note}")

    def _on_light(self) -> None:
        self.layer.set_light(
            Light(
                direction=angles_to_direction(float(self.azimuth.value), float(self.elevation.value)),
                intensity=float(self.intensity.value),
                ambient=float(self.ambient.value),
                shadow_strength=float(self.shadow.value),
            )
        )

    def _on_estimate(self) -> None:
        try:
            light = self.layer.estimate_light()
        except Exception as exc:
            self._notify("Light estimation failed", str(exc), error=True)
            return
        az, el = direction_to_angles(light.direction)
        # setting the sliders re-applies the same light through _on_light
        self.intensity.value, self.ambient.value = round(light.intensity, 2), round(light.ambient, 2)
        self.azimuth.value, self.elevation.value = round(az), round(el)

    def refresh_list(self) -> None:
        for handle in self._list_handles:
            try:
                handle.remove()
            except Exception:
                pass
        self._list_handles = []
        try:
            with self.list_folder:
                names = list(self.layer.meshes)
                if not names:
                    self._list_handles.append(self.client.gui.add_markdown("no meshes"))
                for name in names:
                    button = self.client.gui.add_button(f"Delete {name}", color="red")
                    button.on_click(lambda _e, n=name: self.layer.remove(n))
                    self._list_handles.append(button)
        except Exception as exc:  # a client that left
            log.debug("mesh list refresh failed: %s", exc)

    def close(self) -> None:
        if self in self.layer._panels:
            self.layer._panels.remove(self)


def mesh_layer(server) -> MeshLayer:
    """The server's `MeshLayer`, created on first use."""
    layer = getattr(server, "_mesh_layer", None)
    if layer is None:
        layer = server._mesh_layer = MeshLayer(server)
    return layer


def attach_mesh_panel(server, client, loop) -> MeshPanel:
    """Give a new client the Meshes folder and make its render loop apply the mesh shadows."""
    layer = mesh_layer(server)
    loop.post_process = layer.shadow_frame
    return MeshPanel(layer, client)
