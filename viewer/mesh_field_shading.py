"""The radiance field's shadows on the viewer's meshes.

viser draws the meshes in the browser with its own lights, so the field's density cannot darken them at render time
as sf-render does per pixel (`render.field_meshes.shade_mesh_by_field`). Instead each mesh's GLB carries the same
factor per vertex (`field_vertex_shading`: direct light times the field's transmittance towards the light), baked
by a background thread whenever a mesh moves, the light changes or the field is edited, shown or hidden.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Dict, Optional

import numpy as np

from render.field_meshes import field_vertex_shading

if TYPE_CHECKING:  # pragma: no cover
    from .mesh_panel import MeshLayer

log = logging.getLogger(__name__)


def visible_field(scene) -> Optional[object]:
    """The radiance field a scene shows (a field alone, a hybrid scene's visible field), or None."""
    if hasattr(scene, "render_rays"):
        return scene
    return getattr(scene, "visible_field", None)


class FieldMeshShading:
    """Keeps every mesh's GLB shaded by the current field and light; `request()` is cheap and may be called often."""

    def __init__(self, layer: "MeshLayer"):
        self.layer = layer
        self._baked: Dict[str, object] = {}  # mesh name -> the state its GLB was baked for
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._bake_lock = threading.Lock()
        self.background = True
        """False: `request()` does nothing and the owner calls `bake()` itself (tests, scripted use)."""

    def request(self) -> None:
        """Wake the baker (started on first use): it re-sends the meshes whose baked state is out of date."""
        if not self.background:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sf-mesh-field-shading", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.bake()
            except Exception:  # a failed bake must not kill the viewer; the next request retries
                log.exception("baking the field's shadows into the meshes failed")

    @staticmethod
    def _state(mesh, light, field) -> object:
        if field is None:
            return None  # plain GLB
        edits = getattr(field, "edits", None)
        return (mesh.transform.tobytes(), repr(light), id(field), repr(edits.state()) if edits is not None else None)

    def bake(self) -> Dict[str, Optional[np.ndarray]]:
        """Bring every mesh's GLB up to date now; returns the shade sent per re-sent mesh (None: unshaded)."""
        with self._bake_lock:
            return self._bake()

    def _bake(self) -> Dict[str, Optional[np.ndarray]]:
        scene, scene_lock = self.layer.server._render_context()
        field = visible_field(scene)
        light = self.layer.light
        sent: Dict[str, Optional[np.ndarray]] = {}
        meshes = {mesh.name: mesh for mesh in self.layer.snapshot()}
        for name in list(self._baked):
            if name not in meshes:
                del self._baked[name]
        for name, mesh in meshes.items():
            state = self._state(mesh, light, field)
            if name not in self._baked and state is None:
                self._baked[name] = None  # MeshLayer.add sent it unshaded
                continue
            if name in self._baked and self._baked[name] == state:
                continue
            shade = None
            if field is not None:
                with scene_lock:
                    shade = field_vertex_shading(mesh, field, light)
            if self.layer.replace_glb(name, mesh, shade):
                self._baked[name] = state
                sent[name] = shade
        return sent
