"""One render thread per connected client: preview frames while the view changes, one full frame when it settles."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable, Optional

from render import Camera

from .adaptive import AdaptiveResolution
from .camera_bridge import camera_from_client
from .frames import FrameAborted, FrameRecord, render_frame, summarize
from .gui import ViewSettings

log = logging.getLogger(__name__)


class ClientRenderLoop:
    """Renders for one viser client on its own daemon thread.

    Every change (camera move, control change, scene update) bumps a version. The loop renders a preview for
    a new version at once, sized by `AdaptiveResolution` to fit `frame_budget_s`; once nothing changed for
    `settle_s` it renders that version at full resolution. A full render is done in strips and abandoned as
    soon as a newer version arrives, and a finished full frame whose version is already stale is dropped.
    Previews are always sent: they are the freshest image available. A failed render is counted and skipped
    (the next change retries); any error while sending (the client disconnected mid-frame) ends this loop only.

    `client` needs `.client_id`, `.camera` (viser CameraHandle-like) and `.scene.set_background_image`.
    `render_context()` returns (scene, lock) to render under; `on_frame(client_id, record)` is told of every
    frame sent.
    """

    def __init__(
        self,
        client,
        settings: Callable[[], ViewSettings],
        render_context: Callable[[], tuple],
        on_frame: Callable[[int, FrameRecord], None],
        backend: str = "auto",
        settle_s: float = 0.2,
        frame_budget_s: float = 0.1,
        preview_quality: int = 60,
        full_quality: int = 90,
        gui=None,
        on_closed: Optional[Callable[[int], None]] = None,
    ):
        self.client = client
        self.client_id: int = client.client_id
        self._settings = settings
        self._render_context = render_context
        self._on_frame = on_frame
        self._on_closed = on_closed
        self.gui = gui
        self.backend = backend
        self.settle_s = settle_s
        self.preview_quality = preview_quality
        self.full_quality = full_quality
        self.adaptive = AdaptiveResolution(frame_budget_s=frame_budget_s)
        self._cond = threading.Condition()
        self._version = 0
        self._last_change = time.monotonic()
        self._stopped = False
        self._seq = 0
        self._play_tick: Optional[float] = None
        self.frames_dropped = 0
        self.render_errors = 0
        self.last_render_error: Optional[BaseException] = None
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=f"sf-view-client-{self.client_id}", daemon=True)

    # ----- control ------------------------------------------------------------------------------------
    def start(self) -> "ClientRenderLoop":
        self._thread.start()
        return self

    def stop(self, join_timeout: Optional[float] = None) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if join_timeout is not None and threading.current_thread() is not self._thread:
            self._thread.join(join_timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def notify(self) -> None:
        """Something that affects the image changed: render a preview now and a full frame once settled."""
        with self._cond:
            self._version += 1
            self._last_change = time.monotonic()
            self._cond.notify_all()

    # ----- loop ---------------------------------------------------------------------------------------
    def _superseded(self, version: int) -> Callable[[], bool]:
        return lambda: self._stopped or self._version != version

    def _next_job(self, previewed: int, full: int) -> Optional[tuple]:
        """Block until there is work; returns (version, full_res) or None when stopped."""
        with self._cond:
            while True:
                if self._stopped:
                    return None
                now = time.monotonic()
                if self._version != previewed:
                    return self._version, False
                waited = now - self._last_change
                if full != self._version and waited >= self.settle_s:
                    return self._version, True
                timeout = self.settle_s - waited if full != self._version else None
                playing = self.gui is not None and self.gui.is_playing
                if not playing:
                    self._play_tick = None
                else:
                    timeout = 1 / 30 if timeout is None else min(timeout, 1 / 30)
                    if self._play_tick is None:
                        self._play_tick = now
                    elif now - self._play_tick >= 1 / 30:  # render time counts: playback follows the wall clock
                        dt, self._play_tick = now - self._play_tick, now
                        self._cond.release()
                        try:
                            self.gui.advance_time(dt)  # triggers notify() through the slider
                        finally:
                            self._cond.acquire()
                        continue
                self._cond.wait(timeout if timeout is None else max(timeout, 1e-3))

    def _run(self) -> None:
        previewed, full = -1, -1
        try:
            while True:
                job = self._next_job(previewed, full)
                if job is None:
                    return
                version, full_res = job
                previewed = version
                sent = self._render_and_send(version, full_res)
                if sent in ("full", "no-camera", "failed"):
                    full = version
        except Exception as exc:  # a dead client ends this client's loop, never the server
            self.error = exc
            log.warning("viewer client %s: render loop stopped: %s", self.client_id, exc)
        finally:
            with self._cond:
                self._stopped = True
            if self._on_closed is not None:
                self._on_closed(self.client_id)

    def _render_and_send(self, version: int, full_res: bool) -> Optional[str]:
        settings = self._settings()
        camera = camera_from_client(self.client.camera, settings.max_resolution, time=settings.time)
        if camera is None:
            return "no-camera"  # the client's next camera message calls notify()
        if not full_res:
            w, h = self.adaptive.preview_size(camera.width, camera.height)
            if (w, h) == (camera.width, camera.height):
                full_res = True  # the preview already is the full frame
            else:
                camera = camera.scaled(w / camera.width)
        strips = 1
        if full_res and self.adaptive.throughput:
            expected_s = camera.width * camera.height / self.adaptive.throughput
            strips = max(1, min(16, math.ceil(expected_s / 0.1)))
        scene, lock = self._render_context()
        try:
            frame = render_frame(
                scene,
                camera,
                mode=settings.mode,
                background=settings.background,
                backend=self.backend,
                sh_degree=settings.sh_degree,
                strips=strips,
                should_abort=self._superseded(version) if full_res else None,
                lock=lock,
                post_process=getattr(self, "post_process", None),  # set by viewer.mesh_panel
            )
            primitives = len(scene) if hasattr(scene, "__len__") else 0  # a radiance field has no primitives
        except FrameAborted:
            self.frames_dropped += 1
            return None
        except Exception as exc:  # a scene mid-update (e.g. NaNs from a trainer) must not end the loop
            self.render_errors += 1
            self.last_render_error = exc
            if self.render_errors == 1 or self.render_errors % 100 == 0:
                log.warning("viewer client %s: render failed (%d so far): %s", self.client_id, self.render_errors, exc)
            return "failed"
        self.adaptive.record(camera.width * camera.height, frame.render_s)
        if self._stopped:
            return None  # the client left while this frame rendered
        if full_res and self._superseded(version)():
            self.frames_dropped += 1  # stale: the view changed while this full frame rendered
            return None
        self._send(camera, frame, settings, full_res, primitives)
        return "full" if full_res else "preview"

    def _send(self, camera: Camera, frame, settings: ViewSettings, full_res: bool, primitives: int) -> None:
        quality = self.full_quality if full_res else self.preview_quality
        self.client.scene.set_background_image(frame.image, format="jpeg", jpeg_quality=quality, depth=frame.depth)
        mean, std, mean_rgb = summarize(frame.image)
        self._seq += 1
        record = FrameRecord(
            seq=self._seq,
            width=camera.width,
            height=camera.height,
            full_res=full_res,
            timestamp=time.time(),
            render_ms=frame.render_s * 1000.0,
            mode=settings.mode,
            scene_time=camera.time,
            mean=mean,
            std=std,
            mean_rgb=mean_rgb,
            jpeg_quality=quality,
        )
        self._on_frame(self.client_id, record)
        if self.gui is not None:
            self.gui.show_stats(camera.width, camera.height, record.render_ms, primitives, full_res)
