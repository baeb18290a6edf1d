"""Live training in the viewer: pause/resume, the share of time spent training, and yielding to camera moves.

The training loop calls `before_step()` and `after_step(...)`; the viewer's GUI (one global "Training" folder)
and the clients' camera callbacks steer it. Renders and steps are serialised by the server's scene lock.
"""

from __future__ import annotations

import threading
import time
from typing import Dict


class TrainingControl:
    """Steers a training loop from the viewer.

    - Paused: `before_step` blocks until resumed (or `stop()`).
    - Share s in (0, 1]: after a step of t seconds the loop idles t (1 - s) / s, leaving the rest to rendering.
    - While any client moved its camera within `yield_s`, `before_step` waits (bounded by `max_yield_s`) so the
      renders that follow the camera get the CPU.
    - Clients are told the scene changed at most every `refresh_s` seconds, so they settle to full resolution.
    """

    def __init__(self, server, share: float = 0.8, yield_s: float = 0.3, max_yield_s: float = 2.0, refresh_s: float = 1.0):
        self.server = server
        self.yield_s = yield_s
        self.max_yield_s = max_yield_s
        self.refresh_s = refresh_s
        self._resume = threading.Event()
        self._resume.set()
        self._stopped = False
        self._last_interaction = 0.0
        self._last_refresh = 0.0
        self.yield_count = 0
        gui = server.viser.gui
        with gui.add_folder("Training"):
            self._pause = gui.add_checkbox("Pause training", initial_value=False)
            self._share = gui.add_slider("Training share", min=0.1, max=1.0, step=0.05, initial_value=float(share))
            self._status = gui.add_markdown("starting…")
        self._pause.on_update(lambda _event: self.set_paused(self._pause.value))
        server.viser.on_client_connect(self._watch_client)

    # ----- steering -----------------------------------------------------------------------------------
    def _watch_client(self, client) -> None:
        client.camera.on_update(lambda _camera: self.mark_interaction())

    def mark_interaction(self) -> None:
        """A user moved a camera: training steps aside for `yield_s`."""
        self._last_interaction = time.monotonic()

    def set_paused(self, paused: bool) -> None:
        if paused:
            self._resume.clear()
        else:
            self._resume.set()
        if self._pause.value != paused:
            self._pause.value = paused

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    @property
    def share(self) -> float:
        return float(self._share.value)

    def stop(self) -> None:
        """Release a paused loop for good (the viewer is closing)."""
        self._stopped = True
        self._resume.set()

    # ----- the training loop's side -------------------------------------------------------------------
    def before_step(self) -> None:
        while not self._stopped and not self._resume.wait(timeout=0.2):
            continue
        deadline = time.monotonic() + self.max_yield_s
        while not self._stopped and time.monotonic() < deadline:
            quiet_for = time.monotonic() - self._last_interaction
            if quiet_for >= self.yield_s:
                break
            self.yield_count += 1
            time.sleep(min(self.yield_s - quiet_for, 0.05))

    def after_step(self, step: int, stats: Dict[str, float], step_seconds: float) -> None:
        now = time.monotonic()
        if now - self._last_refresh >= self.refresh_s:
            self._last_refresh = now
            self._status.content = (
                f"step **{step}** · loss {stats.get('loss', float('nan')):.4f} · "
                f"PSNR {stats.get('psnr', float('nan')):.2f} dB · {int(stats.get('num_gaussians', 0)):,} Gaussians"
            )
            self.server.notify_scene_changed()
        share = self.share
        if share < 1.0:
            time.sleep(step_seconds * (1.0 - share) / share)

    def finished(self, message: str) -> None:
        self._status.content = message
        self.server.notify_scene_changed()
