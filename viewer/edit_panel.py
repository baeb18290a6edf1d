"""The "Edit" GUI folder: select splats (rectangle, click, attribute ranges, crop box), then delete / hide /
separate / move them, undo / redo, and save a PLY. One panel per client over one shared `SplatEditor` per scene.

Every edit holds `server.scene_lock` and ends with `server.notify_scene_changed()`. Selected splats are tinted
in the render through the editor's `scene.render_hook`.
"""

from __future__ import annotations

import logging
import math
import weakref
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from render import render
from scenes.editing import SplatEditor
from scenes.selection import (
    MODES,
    dc_rgb,
    max_scales,
    pick,
    select_box,
    select_color,
    select_opacity,
    select_rect,
    select_scale,
)

from .camera_bridge import camera_from_client

log = logging.getLogger(__name__)

PICK_RESOLUTION = 320  # depth buffer size (longer side) used for visible-only selection and click picking
_EDITORS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def editor_for(scene) -> Optional[SplatEditor]:
    """The shared editor of `scene` (created on first use), or None for scenes that are not GaussianScenes."""
    if not hasattr(scene, "params") or "means" not in getattr(scene, "params", {}):
        return None
    editor = _EDITORS.get(scene)
    if editor is None:
        editor = _EDITORS[scene] = SplatEditor(scene)
    return editor


def mode_for(modifier: Optional[str], default: str) -> str:
    """Selection combine mode from viser's key modifier: shift adds, cmd/ctrl subtracts, none uses `default`."""
    if modifier is None:
        return default
    if "cmd/ctrl" in modifier:
        return "subtract"
    if "shift" in modifier:
        return "add"
    return default


def histogram_figure(values: np.ndarray, title: str, bins: int = 40, log_x: bool = False):
    """A compact plotly bar chart of `values` (binned here so the figure stays small), or None without plotly."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        return None
    vals = np.asarray(values, dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    if log_x:
        vals = np.log10(np.clip(vals, 1e-12, None))
    counts, edges = np.histogram(vals, bins=bins) if vals.size else (np.zeros(bins), np.linspace(0, 1, bins + 1))
    fig = go.Figure(go.Bar(x=0.5 * (edges[:-1] + edges[1:]), y=counts, marker_color="#4c78a8"))
    fig.update_layout(
        title=dict(text=title, font=dict(size=11)),
        margin=dict(l=30, r=10, t=28, b=24),
        height=160,
        bargap=0.0,
        xaxis_title="log10 " if log_x else None,
    )
    return fig


class EditPanel:
    """The per-client "Edit" folder and its scene gizmos; the edit state itself is shared per scene."""

    def __init__(self, server, client):
        self.server = server
        self.client = client
        gui = client.gui
        self._rect_cbs: list = []
        self._click_cbs: list = []
        self._move_start: Optional[np.ndarray] = None
        self.move_gizmo = None
        self.crop_gizmo = None
        self.crop_box = None
        self.last_separated = None
        self.last_message = ""
        with gui.add_folder("Edit", expand_by_default=False):
            self.status = gui.add_markdown("")
            with gui.add_folder("Select"):
                self.mode = gui.add_dropdown("Mode", MODES, initial_value="replace",
                                             hint="Without a modifier key; shift adds, ctrl/cmd subtracts")
                self.visible_only = gui.add_checkbox("Visible only", initial_value=True,
                                                     hint="Rect select skips splats hidden behind others")
                self.rect_mode = gui.add_checkbox("Rect select (drag)", initial_value=False)
                self.click_mode = gui.add_checkbox("Click pick", initial_value=False)
                self.select_all_btn = gui.add_button("Select all")
                self.clear_btn = gui.add_button("Clear selection")
                self.invert_btn = gui.add_button("Invert selection")
                self.highlight = gui.add_checkbox("Highlight selection", initial_value=True)
            with gui.add_folder("Filters", expand_by_default=False):
                self.hist_attr = gui.add_dropdown("Histogram", ("opacity", "max scale", "colour distance"),
                                                  initial_value="opacity")
                fig = histogram_figure(np.zeros(0), "opacity")
                self.histogram = gui.add_plotly(fig, aspect=1.8) if fig is not None else gui.add_markdown("")
                self.opacity_range = gui.add_multi_slider("Opacity", min=0.0, max=1.0, step=0.01,
                                                          initial_value=(0.0, 0.1))
                self.select_opacity_btn = gui.add_button("Select by opacity")
                self.scale_range = gui.add_multi_slider("log10 max scale", min=-6.0, max=3.0, step=0.05,
                                                        initial_value=(-1.0, 3.0))
                self.select_scale_btn = gui.add_button("Select by scale")
                self.colour = gui.add_rgb("Colour", (255, 255, 255))
                self.colour_threshold = gui.add_slider("Colour distance", min=0.0, max=1.8, step=0.01,
                                                       initial_value=0.2)
                self.select_colour_btn = gui.add_button("Select by colour")
            with gui.add_folder("Crop box", expand_by_default=False):
                self.crop_show = gui.add_checkbox("Show crop box", initial_value=False)
                self.crop_size = gui.add_vector3("Box size", initial_value=(1.0, 1.0, 1.0), step=0.05)
                self.crop_inside_btn = gui.add_button("Select inside")
                self.crop_outside_btn = gui.add_button("Select outside")
            with gui.add_folder("Operations"):
                self.delete_btn = gui.add_button("Delete", color="red")
                self.hide_btn = gui.add_button("Hide")
                self.unhide_btn = gui.add_button("Unhide all")
                self.separate_path = gui.add_text("Separate to", "separated.ply")
                self.separate_btn = gui.add_button("Separate")
                self.undo_btn = gui.add_button("Undo")
                self.redo_btn = gui.add_button("Redo")
            with gui.add_folder("Transform", expand_by_default=False):
                self.move_show = gui.add_checkbox("Move gizmo", initial_value=False,
                                                  hint="Drag the gizmo; the selection moves on release")
                self.scale_factor = gui.add_number("Scale factor", initial_value=1.0, min=0.01, max=100.0, step=0.01)
                self.scale_btn = gui.add_button("Scale selection")
            with gui.add_folder("Save"):
                self.save_path = gui.add_text("PLY path", "edited.ply")
                self.save_hidden = gui.add_checkbox("Include hidden", initial_value=True)
                self.save_btn = gui.add_button("Save PLY")
        self._wire()
        self._guard(self.update_histogram)
        self.refresh()

    # ----- plumbing ------------------------------------------------------------------------------------
    def _wire(self) -> None:
        on = lambda handle, fn: handle.on_click(lambda _e: self._guard(fn)) if hasattr(handle, "on_click") else None
        upd = lambda handle, fn: handle.on_update(lambda _e: self._guard(fn))
        on(self.select_all_btn, lambda: self.edit(lambda ed: ed.select_all(), "select all"))
        on(self.clear_btn, lambda: self.edit(lambda ed: ed.clear_selection(), "clear"))
        on(self.invert_btn, lambda: self.edit(lambda ed: ed.invert_selection(), "invert"))
        on(self.select_opacity_btn, self.select_by_opacity)
        on(self.select_scale_btn, self.select_by_scale)
        on(self.select_colour_btn, self.select_by_colour)
        on(self.crop_inside_btn, lambda: self.select_by_box(True))
        on(self.crop_outside_btn, lambda: self.select_by_box(False))
        on(self.delete_btn, lambda: self.edit(lambda ed: ed.delete(), "deleted"))
        on(self.hide_btn, lambda: self.edit(lambda ed: ed.hide(), "hidden"))
        on(self.unhide_btn, lambda: self.edit(lambda ed: ed.unhide_all(), "unhidden"))
        on(self.separate_btn, self.separate)
        on(self.undo_btn, lambda: self.edit(lambda ed: ed.undo(), "undo"))
        on(self.redo_btn, lambda: self.edit(lambda ed: ed.redo(), "redo"))
        on(self.scale_btn, self.scale_selection)
        on(self.save_btn, self.save)
        upd(self.rect_mode, self._sync_pointer_modes)
        upd(self.click_mode, self._sync_pointer_modes)
        upd(self.highlight, self._set_highlight)
        upd(self.hist_attr, self.update_histogram)
        upd(self.crop_show, self._sync_crop_box)
        upd(self.crop_size, self._sync_crop_box)
        upd(self.move_show, self._sync_move_gizmo)

    def _guard(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:  # a failed edit is reported in the panel, never kills viser's callback thread
            log.warning("edit panel: %s", exc)
            self.last_message = f"error: {exc}"
            self.refresh()

    @property
    def editor(self) -> Optional[SplatEditor]:
        return editor_for(self.server.scene)

    def edit(self, op: Callable[[SplatEditor], object], label: str = "") -> object:
        """Run `op(editor)` under the scene lock, then re-render every client and refresh every panel."""
        with self.server.scene_lock:
            ed = self.editor
            if ed is None:
                self.last_message = "editing needs a GaussianScene"
                self.refresh()
                return None
            ed.sync()
            result = op(ed)
        self.last_message = f"{label}: {result}" if label and result is not None else label
        self.server.notify_scene_changed()
        if self.histogram is not None and label not in ("", "picked", "rect select"):
            self.update_histogram()
        for panel in list(getattr(self.server, "edit_panels", {}).values()):
            panel.refresh()
        if self not in getattr(self.server, "edit_panels", {}).values():
            self.refresh()
        return result

    def refresh(self) -> None:
        """Update the status line (and the move gizmo's position)."""
        ed = self.editor
        if ed is None:
            self.status.content = "Editing needs a GaussianScene."
            return
        with self.server.scene_lock:
            ed.sync()
            n, k, h = len(ed.scene), ed.num_selected, int(ed.hidden.sum())
            undo, redo = len(ed.history_labels()), len(ed._redo)
        text = f"**{n:,}** splats · **{k:,}** selected · {h:,} hidden  \nundo {undo} · redo {redo}"
        if self.last_message:
            text += f"  \n_{self.last_message}_"
        self.status.content = text
        if self.move_gizmo is not None and self._move_start is None:
            self._place_move_gizmo()

    # ----- selection -------------------------------------------------------------------------------------
    def _camera(self):
        return camera_from_client(self.client.camera, PICK_RESOLUTION)

    def _depth(self, camera) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Rendered depth and alpha for the client's view (hidden splats excluded), under the scene lock."""
        with self.server.scene_lock:
            out = render(self.server.scene, camera, backend=self.server.backend)
        return out.depth.detach().cpu(), out.alpha.detach().cpu()

    def select_rect(self, screen_min: Sequence[float], screen_max: Sequence[float], modifier: Optional[str] = None) -> int:
        """Select splats in a screen rectangle given in viser's normalised image coordinates (0..1)."""
        camera = self._camera()
        if camera is None:
            return 0
        rect = (screen_min[0] * camera.width, screen_min[1] * camera.height,
                screen_max[0] * camera.width, screen_max[1] * camera.height)
        depth, alpha = self._depth(camera) if self.visible_only.value else (None, None)
        mode = mode_for(modifier, self.mode.value)
        return self.edit(lambda ed: ed.select(select_rect(ed.scene, camera, rect, depth, alpha), mode), "rect select")

    def select_click(self, screen_pos: Sequence[float], modifier: Optional[str] = None) -> int:
        """Pick the splat under a click (normalised image coordinates); returns its index or -1."""
        camera = self._camera()
        if camera is None:
            return -1
        x, y = screen_pos[0] * camera.width, screen_pos[1] * camera.height
        depth, _alpha = self._depth(camera)
        mode = mode_for(modifier, self.mode.value)

        def op(ed: SplatEditor) -> int:
            idx = pick(ed.scene, camera, x, y, depth=depth, candidates=~ed.hidden)
            ed.select_indices([idx] if idx >= 0 else [], mode)
            return idx

        return self.edit(op, "picked")

    def _sync_pointer_modes(self) -> None:
        scene_api = self.client.scene
        for cb in self._rect_cbs:
            scene_api.remove_rect_select_callback(cb)
        for cb in self._click_cbs:
            scene_api.remove_click_callback(cb)
        self._rect_cbs, self._click_cbs = [], []
        for modifier in (None, "shift", "cmd/ctrl"):
            if self.rect_mode.value:
                cb = lambda e: self._guard(lambda: self.select_rect(e.screen_min, e.screen_max, e.modifier))
                scene_api.on_rect_select(modifier=modifier)(cb)
                self._rect_cbs.append(cb)
            if self.click_mode.value:
                cb = lambda e: self._guard(lambda: self.select_click(e.screen_pos, e.modifier))
                scene_api.on_click(modifier=modifier)(cb)
                self._click_cbs.append(cb)

    def select_by_opacity(self) -> int:
        lo, hi = self.opacity_range.value
        return self.edit(lambda ed: ed.select(select_opacity(ed.scene, lo, hi), self.mode.value), "opacity")

    def select_by_scale(self) -> int:
        lo, hi = (10.0 ** v for v in self.scale_range.value)
        return self.edit(lambda ed: ed.select(select_scale(ed.scene, lo, hi), self.mode.value), "scale")

    def select_by_colour(self) -> int:
        rgb = [c / 255.0 for c in self.colour.value]
        thr = float(self.colour_threshold.value)
        return self.edit(lambda ed: ed.select(select_color(ed.scene, rgb, thr), self.mode.value), "colour")

    def update_histogram(self) -> None:
        """Redraw the histogram of the chosen attribute over visible splats."""
        ed = self.editor
        if ed is None:
            return
        attr = self.hist_attr.value
        with self.server.scene_lock:
            vis = ed.visible
            if attr == "opacity":
                vals = ed.scene.opacities.detach().cpu()[vis].numpy()
            elif attr == "max scale":
                vals = max_scales(ed.scene).cpu()[vis].numpy()
            else:
                ref = torch.tensor([c / 255.0 for c in self.colour.value])
                vals = (dc_rgb(ed.scene).cpu() - ref).norm(dim=1)[vis].numpy()
        fig = histogram_figure(vals, attr, log_x=attr == "max scale")
        if fig is not None:
            self.histogram.figure = fig
        else:
            counts, edges = np.histogram(vals, bins=10)
            self.histogram.content = "  \n".join(f"{a:.3g}: {c}" for a, c in zip(edges[:-1], counts))

    def _set_highlight(self) -> None:
        self.edit(lambda ed: setattr(ed, "highlight", bool(self.highlight.value)))

    # ----- crop box ----------------------------------------------------------------------------------------
    def _sync_crop_box(self) -> None:
        scene_api = self.client.scene
        if not self.crop_show.value:
            for handle in (self.crop_box, self.crop_gizmo):
                if handle is not None:
                    handle.remove()
            self.crop_box = self.crop_gizmo = None
            return
        size = tuple(float(v) for v in self.crop_size.value)
        if self.crop_gizmo is None:
            centre = self._selection_centre(default_all=True)
            self.crop_gizmo = scene_api.add_transform_controls("/edit/crop", scale=max(size) * 0.6, position=centre)
        if self.crop_box is not None:
            self.crop_box.remove()
        self.crop_box = scene_api.add_box("/edit/crop/box", color=(255, 200, 0), dimensions=size, wireframe=True)

    def crop_box_pose(self) -> np.ndarray:
        """Box-to-world 4x4 of the crop gizmo (identity at the origin before it was shown)."""
        m = np.eye(4)
        if self.crop_gizmo is not None:
            m[:3, :3] = _quat_to_matrix(self.crop_gizmo.wxyz)
            m[:3, 3] = self.crop_gizmo.position
        return m

    def select_by_box(self, inside: bool) -> int:
        pose = self.crop_box_pose()
        half = [0.5 * float(v) for v in self.crop_size.value]
        return self.edit(lambda ed: ed.select(select_box(ed.scene, pose, half, inside), self.mode.value),
                         "inside box" if inside else "outside box")

    # ----- operations --------------------------------------------------------------------------------------
    def separate(self) -> int:
        path = Path(self.separate_path.value).expanduser()

        def op(ed: SplatEditor) -> int:
            part = ed.separate()
            if part is None:
                return 0
            part.save_ply(path)
            self.last_separated = part
            return len(part)

        return self.edit(op, f"separated to {path}")

    def save(self) -> int:
        path = Path(self.save_path.value).expanduser()
        return self.edit(lambda ed: ed.save_ply(path, include_hidden=bool(self.save_hidden.value)), f"saved {path}")

    def _selection_centre(self, default_all: bool = False) -> Tuple[float, float, float]:
        ed = self.editor
        if ed is None or len(ed.scene) == 0:
            return (0.0, 0.0, 0.0)
        with self.server.scene_lock:
            ed.sync()
            mask = ed.selection if ed.selection.any() or not default_all else ~ed.hidden
            if not mask.any():
                return (0.0, 0.0, 0.0)
            c = ed.scene.means.detach().cpu()[mask].double().mean(dim=0)
        return tuple(float(v) for v in c)

    def scale_selection(self) -> int:
        """Uniformly scale the selection about its centre by `Scale factor`."""
        s = float(self.scale_factor.value)
        c = np.asarray(self._selection_centre())
        m = np.eye(4)
        m[:3, 3] = c - c * s  # x -> s x + (c - s c)
        return self.edit(lambda ed: ed.transform(m, scale=s), "scaled")

    def _place_move_gizmo(self) -> None:
        self.move_gizmo.position = self._selection_centre()
        self.move_gizmo.wxyz = (1.0, 0.0, 0.0, 0.0)

    def _sync_move_gizmo(self) -> None:
        if not self.move_show.value:
            if self.move_gizmo is not None:
                self.move_gizmo.remove()
            self.move_gizmo = None
            return
        if self.move_gizmo is None:
            self.move_gizmo = self.client.scene.add_transform_controls("/edit/move", scale=0.5,
                                                                       position=self._selection_centre())
            self.move_gizmo.on_update(lambda e: self._guard(lambda: self._on_move(e.phase)))

    def _gizmo_pose(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = _quat_to_matrix(self.move_gizmo.wxyz)
        m[:3, 3] = self.move_gizmo.position
        return m

    def _on_move(self, phase: str) -> None:
        if phase == "start":
            self._move_start = self._gizmo_pose()
        elif phase == "end" and self._move_start is not None:
            delta = self._gizmo_pose() @ np.linalg.inv(self._move_start)
            self._move_start = None
            self.apply_transform(delta)

    def apply_transform(self, matrix: np.ndarray) -> int:
        """Move the selection by a world-space 4x4 (rigid, optionally uniformly scaled)."""
        return self.edit(lambda ed: ed.transform(matrix), "moved")

    def close(self) -> None:
        """Forget the client's callbacks and gizmos (called on disconnect: viser drops its side with the client)."""
        self._rect_cbs, self._click_cbs = [], []
        self.move_gizmo = self.crop_gizmo = self.crop_box = None


def _quat_to_matrix(wxyz) -> np.ndarray:
    w, x, y, z = (float(v) for v in wxyz)
    norm = math.sqrt(w * w + x * x + y * y + z * z) or 1.0
    w, x, y, z = w / norm, x / norm, y / norm, z / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])
