"""Per-client viewer controls (render mode, background, SH degree, resolution cap, time) and a stats readout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

from .frames import RENDER_MODES

SH_CHOICES = ("auto", "0", "1", "2", "3")


@dataclass(frozen=True)
class ViewSettings:
    """Everything besides the camera that decides what a frame looks like."""

    mode: str = "RGB"
    background: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    sh_degree: Optional[int] = None  # None: the scene's active degree
    max_resolution: int = 1024
    time: Optional[float] = None


class ClientGui:
    """Controls in one client's GUI panel (viser `GuiApi`); `on_change()` is called whenever one changes."""

    def __init__(
        self,
        gui,
        defaults: ViewSettings,
        on_change: Callable[[], None],
        time_range: Optional[Sequence[float]] = None,
        max_sh_degree: int = 3,
    ):
        self._on_change = on_change
        with gui.add_folder("Render"):
            self.mode = gui.add_dropdown("Mode", RENDER_MODES, initial_value=defaults.mode)
            self.background = gui.add_rgb(
                "Background", tuple(int(round(c * 255)) for c in defaults.background)
            )
            choices = SH_CHOICES[: max(0, min(max_sh_degree, 3)) + 2]
            initial_sh = "auto" if defaults.sh_degree is None else str(min(defaults.sh_degree, max_sh_degree))
            self.sh_degree = gui.add_dropdown("Max SH degree", choices, initial_value=initial_sh)
            self.max_resolution = gui.add_slider(
                "Max resolution", min=64, max=4096, step=32, initial_value=int(defaults.max_resolution)
            )
        self.time_slider = None
        self.playing = None
        self.time_range: Optional[Tuple[float, float]] = None
        if time_range is not None:
            t0, t1 = float(time_range[0]), float(time_range[1])
            self.time_range = (t0, t1)
            with gui.add_folder("Time"):
                initial = t0 if defaults.time is None else min(max(defaults.time, t0), t1)
                self.time_slider = gui.add_slider("Time", min=t0, max=t1, step=(t1 - t0) / 1000 or 1e-3, initial_value=initial)
                self.playing = gui.add_checkbox("Play", initial_value=False)
                self.speed = gui.add_number("Loop seconds", initial_value=5.0, min=0.1, max=600.0, step=0.1)
        with gui.add_folder("Stats"):
            self.readout = gui.add_markdown("waiting for the first frame")
        for handle in (self.mode, self.background, self.sh_degree, self.max_resolution, self.time_slider, self.playing):
            if handle is not None:
                handle.on_update(lambda _event: self._on_change())

    def settings(self) -> ViewSettings:
        """The current control values."""
        sh = self.sh_degree.value
        return ViewSettings(
            mode=str(self.mode.value),
            background=tuple(float(c) / 255.0 for c in self.background.value),
            sh_degree=None if sh == "auto" else int(sh),
            max_resolution=int(self.max_resolution.value),
            time=None if self.time_slider is None else float(self.time_slider.value),
        )

    @property
    def is_playing(self) -> bool:
        return self.playing is not None and bool(self.playing.value)

    def advance_time(self, dt: float) -> None:
        """Move the time slider forward by `dt` seconds of playback (looping over the range in `Loop seconds`)."""
        if self.time_slider is None or self.time_range is None:
            return
        t0, t1 = self.time_range
        span = t1 - t0
        if span <= 0:
            return
        period = max(float(self.speed.value), 0.1)
        t = self.time_slider.value + dt * span / period
        if t > t1:
            t = t0 + (t - t0) % span
        self.time_slider.value = t

    def show_stats(self, width: int, height: int, frame_ms: float, primitives: int, full_res: bool) -> None:
        """Update the readout."""
        kind = "full" if full_res else "preview"
        self.readout.content = (
            f"**{width}x{height}** ({kind})  \n{frame_ms:.1f} ms / frame  \n{primitives:,} Gaussians"
        )
