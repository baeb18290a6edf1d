"""The radiance-field layer in the viewer: show / hide the field and the splats, crop by a box, erase a box (density
zeroed), place (translate / rotate / scale: aligning a field with a splat scene of the same capture), undo / redo
and save. `FieldLayer` holds the logic (usable without a browser); `FieldPanel` is its per-client GUI folder."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from scenes.atomic import atomic_path
from scenes.hybrid import HybridScene


def placement_matrix(translation: Sequence[float], euler_deg: Sequence[float], scale: float) -> np.ndarray:
    """4x4 world-from-field: scale, then rotations about x, y, z (degrees), then translation."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"field scale must be a positive number, got {scale}")
    rx, ry, rz = (math.radians(float(a)) for a in euler_deg)
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    rot = (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
           @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))
    m = np.eye(4)
    m[:3, :3] = rot * float(scale)
    m[:3, 3] = np.asarray(translation, dtype=np.float64)
    return m


class FieldLayer:
    """Edits of the server's field (a RadianceField alone or inside a HybridScene) under the scene lock."""

    def __init__(self, server):
        self.server = server

    @property
    def scene(self):
        return self.server.scene

    @property
    def field(self):
        scene = self.scene
        return scene if hasattr(scene, "render_rays") else getattr(scene, "field", None)

    def _edit(self, fn) -> None:
        with self.server.scene_lock:
            fn()
        self.server.notify_scene_changed()

    def set_visible(self, field: Optional[bool] = None, splats: Optional[bool] = None) -> None:
        scene = self.scene
        if not isinstance(scene, HybridScene):
            raise ValueError("show / hide needs a splat scene and a field loaded together (sf-view --field)")

        def apply():
            if field is not None:
                scene.show_field = bool(field)
            if splats is not None:
                scene.show_splats = bool(splats)
        self._edit(apply)

    def crop(self, lo, hi) -> None:
        self._edit(lambda: self.field.edits.set_crop(lo, hi))

    def clear_crop(self) -> None:
        self._edit(self.field.edits.clear_crop)

    def erase(self, lo, hi) -> None:
        self._edit(lambda: self.field.edits.erase(lo, hi))

    def place(self, translation=(0.0, 0.0, 0.0), euler_deg=(0.0, 0.0, 0.0), scale: float = 1.0) -> None:
        m = placement_matrix(translation, euler_deg, scale)
        self._edit(lambda: self.field.edits.set_transform(m))

    def align(self, world_from_field) -> None:
        """Place the field with a 4x4 matrix (e.g. from registering it to the splat scene); singular is an error."""
        self._edit(lambda: self.field.edits.set_transform(world_from_field))

    def undo(self) -> bool:
        done = []
        self._edit(lambda: done.append(self.field.edits.undo()))
        return done[0]

    def redo(self) -> bool:
        done = []
        self._edit(lambda: done.append(self.field.edits.redo()))
        return done[0]

    def save(self, path) -> Path:
        """Write the edited field (weights + edits) as a field .pt, atomically."""
        path = Path(path)
        with self.server.scene_lock:
            state = self.field.state()
        with atomic_path(path) as tmp:
            torch.save({"scene": state}, tmp)
        return path


class FieldPanel:
    """Per-client "Field" GUI folder bound to a `FieldLayer`."""

    def __init__(self, layer: FieldLayer, client, save_path: Path):
        self.layer = layer
        gui = client.gui
        with gui.add_folder("Field"):
            self.status = gui.add_markdown("")
            if isinstance(layer.scene, HybridScene):
                show_field = gui.add_checkbox("Show field", initial_value=True)
                show_splats = gui.add_checkbox("Show splats", initial_value=True)
                show_field.on_update(lambda _e: self._run(lambda: layer.set_visible(field=show_field.value)))
                show_splats.on_update(lambda _e: self._run(lambda: layer.set_visible(splats=show_splats.value)))
            lo = gui.add_vector3("Box min", initial_value=(-1.0, -1.0, -1.0), step=0.05)
            hi = gui.add_vector3("Box max", initial_value=(1.0, 1.0, 1.0), step=0.05)
            gui.add_button("Crop to box").on_click(lambda _e: self._run(lambda: layer.crop(lo.value, hi.value)))
            gui.add_button("Erase box").on_click(lambda _e: self._run(lambda: layer.erase(lo.value, hi.value)))
            gui.add_button("Clear crop").on_click(lambda _e: self._run(layer.clear_crop))
            move = gui.add_vector3("Translate", initial_value=(0.0, 0.0, 0.0), step=0.05)
            turn = gui.add_vector3("Rotate (deg)", initial_value=(0.0, 0.0, 0.0), step=1.0)
            scale = gui.add_number("Scale", initial_value=1.0, step=0.01)
            gui.add_button("Place field").on_click(lambda _e: self._run(lambda: layer.place(move.value, turn.value, scale.value)))
            gui.add_button("Undo").on_click(lambda _e: self._run(layer.undo))
            gui.add_button("Redo").on_click(lambda _e: self._run(layer.redo))
            gui.add_button("Save field").on_click(lambda _e: self._run(lambda: self._say(f"saved {layer.save(save_path)}")))

    def close(self) -> None:
        """Nothing to release (the GUI goes with the client)."""

    def _say(self, text: str) -> None:
        self.status.content = text

    def _run(self, fn) -> None:
        try:
            fn()
        except (ValueError, OSError) as exc:  # bad boxes, singular transforms, unwritable paths: say so
            self._say(f"**error:** {exc}")
