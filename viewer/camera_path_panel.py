"""Per-client "Camera path" panel: keyframes from the current view, frustums in the scene, preview, save/load.

The path itself lives in `render.camera_path` (no viser there); this module only wires it to one viser client.
Files are nerfstudio camera_path.json, so `sf-render --mode camera-path` and nerfstudio both render them.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np

from render.camera_path import CameraPath, Keyframe, load_camera_path, save_camera_path

log = logging.getLogger(__name__)

FRUSTUM_COLOR = (200, 120, 20)
SELECTED_COLOR = (40, 200, 255)
SPLINE_COLOR = (220, 160, 40)


class CameraPathPanel:
    """GUI folder "Camera path" for one viser client.

    `client` needs `.gui`, `.scene`, `.camera` and `.atomic()` (a viser `ClientHandle`). `time_slider`, when the
    scene is time-aware, is read for a new keyframe's time and set during "Go to" and preview.
    """

    def __init__(self, client, time_slider=None, default_file: str = "camera_path.json"):
        self.client = client
        self.time_slider = time_slider
        self._lock = threading.RLock()
        self._ids = itertools.count()
        self._entries: List[Tuple[int, Keyframe]] = []
        self._frustums = {}
        self._spline = None
        self._selected: Optional[int] = None
        self._frustum_scale = 0.1
        self._preview_stop = threading.Event()
        self._preview_thread: Optional[threading.Thread] = None
        gui = client.gui
        with gui.add_folder("Camera path", expand_by_default=False):
            self.add_button = gui.add_button("Add keyframe", icon=None)
            self.info = gui.add_markdown("0 keyframes")
            self.selected_info = gui.add_markdown("Selected: none (click a frustum)")
            self.goto_button = gui.add_button("Go to", disabled=True)
            self.delete_button = gui.add_button("Delete", disabled=True)
            self.seconds = gui.add_slider("Duration (s)", min=0.5, max=120.0, step=0.5, initial_value=4.0)
            self.fps = gui.add_slider("FPS", min=1, max=60, step=1, initial_value=30)
            self.smoothness = gui.add_slider("Smoothness", min=0.0, max=1.0, step=0.05, initial_value=0.5)
            self.loop = gui.add_checkbox("Loop", initial_value=False)
            self.width = gui.add_number("Render width", initial_value=640, min=16, max=8192, step=1)
            self.height = gui.add_number("Render height", initial_value=480, min=16, max=8192, step=1)
            self.scrub = gui.add_slider("Scrub", min=0.0, max=1.0, step=0.001, initial_value=0.0)
            self.preview_button = gui.add_button("Preview")
            self.file = gui.add_text("Path file", initial_value=default_file)
            self.save_button = gui.add_button("Save")
            self.load_button = gui.add_button("Load")
            self.status = gui.add_markdown("")
        self.add_button.on_click(lambda _e: self._guard(self.add_keyframe_from_view))
        self.goto_button.on_click(lambda _e: self._guard(self.go_to_selected))
        self.delete_button.on_click(lambda _e: self._guard(self.delete_selected))
        self.preview_button.on_click(lambda _e: self._guard(self.toggle_preview))
        self.save_button.on_click(lambda _e: self._guard(lambda: self.save(self.file.value)))
        self.load_button.on_click(lambda _e: self._guard(lambda: self.load(self.file.value)))
        self.scrub.on_update(lambda _e: self._guard(self._on_scrub))
        for handle in (self.smoothness, self.loop):
            handle.on_update(lambda _e: self._guard(self._redraw_spline))

    # ----- model --------------------------------------------------------------------------------------
    @property
    def keyframes(self) -> List[Keyframe]:
        with self._lock:
            return [k for _, k in self._entries]

    @property
    def path(self) -> CameraPath:
        """The path as the GUI describes it right now."""
        return CameraPath(
            self.keyframes,
            fps=float(self.fps.value),
            seconds=float(self.seconds.value),
            loop=bool(self.loop.value),
            smoothness=float(self.smoothness.value),
            width=int(self.width.value),
            height=int(self.height.value),
        )

    def add_keyframe(self, keyframe: Keyframe) -> int:
        """Append a keyframe; returns its id."""
        with self._lock:
            kid = next(self._ids)
            self._entries.append((kid, keyframe))
            self._draw_frustum(kid, keyframe)
            self._refresh()
        return kid

    def add_keyframe_from_view(self) -> Keyframe:
        """A keyframe at the client's current pose, fov (and time, for time-aware scenes)."""
        cam = self.client.camera
        time_value = None if self.time_slider is None else float(self.time_slider.value)
        keyframe = Keyframe(tuple(cam.wxyz), tuple(cam.position), float(cam.fov), time_value)
        distance = float(np.linalg.norm(np.asarray(cam.look_at) - np.asarray(cam.position)))
        if not self._entries and distance > 0:
            self._frustum_scale = max(0.02, 0.08 * distance)
        self.add_keyframe(keyframe)
        self._set_status(f"added keyframe {len(self._entries)}")
        return keyframe

    def select(self, kid: Optional[int]) -> None:
        with self._lock:
            self._selected = kid if kid in dict(self._entries) else None
            for other, handle in self._frustums.items():
                handle.color = SELECTED_COLOR if other == self._selected else FRUSTUM_COLOR
            index = self._index(self._selected)
            self.selected_info.content = "Selected: none (click a frustum)" if index is None else f"Selected: keyframe {index + 1}"
            self.goto_button.disabled = self.delete_button.disabled = index is None

    def delete_selected(self) -> None:
        with self._lock:
            index = self._index(self._selected)
            if index is None:
                return
            kid, _ = self._entries.pop(index)
            handle = self._frustums.pop(kid, None)
            if handle is not None:
                handle.remove()
            self.select(None)
            self._refresh()

    def go_to_selected(self) -> None:
        with self._lock:
            index = self._index(self._selected)
            if index is None:
                return
            keyframe = self._entries[index][1]
        self.move_camera(keyframe)

    def clear(self) -> None:
        with self._lock:
            for handle in self._frustums.values():
                handle.remove()
            self._frustums.clear()
            self._entries.clear()
            self.select(None)
            self._refresh()

    # ----- camera -------------------------------------------------------------------------------------
    def move_camera(self, keyframe: Keyframe) -> None:
        """Put the client's camera (and time slider) at `keyframe`."""
        cam = self.client.camera
        rot = keyframe.opencv_c2w[:3, :3]
        with self.client.atomic():
            cam.wxyz = np.asarray(keyframe.wxyz)
            cam.position = np.asarray(keyframe.position)
            cam.up_direction = -rot[:, 1]  # keep the keyframe's roll
            cam.fov = keyframe.fov_y
        if self.time_slider is not None and keyframe.time is not None:
            self.time_slider.value = keyframe.time

    def _on_scrub(self) -> None:
        if len(self._entries) == 0 or self.previewing:
            return
        path = self.path
        self.move_camera(path.sample(float(self.scrub.value) * path.seconds).keyframe())

    @property
    def previewing(self) -> bool:
        return self._preview_thread is not None and self._preview_thread.is_alive()

    def toggle_preview(self) -> None:
        if self.previewing:
            self.stop_preview()
        else:
            self.start_preview()

    def start_preview(self) -> None:
        """Move the client's camera along the path in real time (until the end, or until stopped for a loop)."""
        if len(self._entries) == 0:
            self._set_status("add a keyframe first")
            return
        self.stop_preview()
        self._preview_stop.clear()
        path = self.path
        self._preview_thread = threading.Thread(target=self._play, args=(path,), name="sf-camera-path-preview", daemon=True)
        self._preview_thread.start()
        self.preview_button.label = "Stop preview"

    def stop_preview(self) -> None:
        self._preview_stop.set()
        thread = self._preview_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        self._preview_thread = None
        self.preview_button.label = "Preview"

    def _play(self, path: CameraPath) -> None:
        start = time.monotonic()
        step = max(1.0 / path.fps, 1.0 / 30.0)
        try:
            while not self._preview_stop.is_set():
                t = time.monotonic() - start
                if t > path.seconds and not path.loop:
                    t = path.seconds
                self.move_camera(path.sample(t).keyframe())
                if t >= path.seconds and not path.loop:
                    break
                self._preview_stop.wait(step)
        except Exception as exc:  # the client went away mid-preview
            log.debug("camera path preview stopped: %s", exc)
        finally:
            try:
                self.preview_button.label = "Preview"
            except Exception:
                pass

    # ----- files --------------------------------------------------------------------------------------
    def save(self, filename: str) -> Path:
        """Write the path (keyframes and sampled frames) as nerfstudio camera_path.json."""
        if len(self._entries) == 0:
            raise ValueError("no keyframes to save")
        written = save_camera_path(Path(filename).expanduser(), self.path)
        self._set_status(f"saved {self.path.num_frames} frames to `{written}`")
        return written

    def load(self, filename: str) -> CameraPath:
        """Replace the keyframes and settings with a camera_path.json's."""
        path = load_camera_path(Path(filename).expanduser())
        self.clear()
        self.seconds.value = min(max(path.seconds, 0.5), 120.0)
        self.fps.value = min(max(int(round(path.fps)), 1), 60)
        self.smoothness.value = path.smoothness
        self.loop.value = path.loop
        self.width.value, self.height.value = path.width, path.height
        for keyframe in path.keyframes:
            self.add_keyframe(keyframe)
        self._set_status(f"loaded {len(path.keyframes)} keyframes from `{filename}`")
        return path

    # ----- drawing ------------------------------------------------------------------------------------
    def _index(self, kid: Optional[int]) -> Optional[int]:
        for i, (other, _) in enumerate(self._entries):
            if other == kid:
                return i
        return None

    def _draw_frustum(self, kid: int, keyframe: Keyframe) -> None:
        aspect = float(self.width.value) / float(self.height.value)
        handle = self.client.scene.add_camera_frustum(
            f"/camera_path/keyframe_{kid}",
            fov=keyframe.fov_y,
            aspect=aspect,
            scale=self._frustum_scale,
            thickness=2.0,
            thickness_units="screen",
            color=FRUSTUM_COLOR,
            wxyz=keyframe.wxyz,
            position=keyframe.position,
        )
        handle.on_click(lambda _event, kid=kid: self._guard(lambda: self.select(kid)))
        self._frustums[kid] = handle

    def _redraw_spline(self) -> None:
        with self._lock:
            if self._spline is not None:
                self._spline.remove()
                self._spline = None
            if len(self._entries) < 2:
                return
            path = self.path
            segments = len(self._entries) if path.loop else len(self._entries) - 1
            ts = np.linspace(0.0, path.seconds, 16 * segments + 1)
            points = np.stack([path.sample(t).position for t in ts])
            self._spline = self.client.scene.add_spline_catmull_rom(
                "/camera_path/spline",
                points=points,
                curve_type="catmullrom",
                closed=False,
                thickness=3.0,
                thickness_units="screen",
                color=SPLINE_COLOR,
            )

    def _refresh(self) -> None:
        n = len(self._entries)
        self.info.content = f"{n} keyframe{'s' if n != 1 else ''}"
        self._redraw_spline()

    def _set_status(self, text: str) -> None:
        self.status.content = text

    def _guard(self, action: Callable[[], object]) -> None:
        """Run a GUI action; errors become a status line (and a log line) instead of a dead callback."""
        try:
            action()
        except Exception as exc:
            log.warning("camera path: %s", exc)
            self._set_status(f"**error:** {exc}")

    def close(self) -> None:
        """Stop any preview (call when the client disconnects)."""
        self._preview_stop.set()
