"""Adaptive preview resolution: pick an image size from the measured render throughput."""

from __future__ import annotations

import math
import threading
from typing import Optional, Tuple


class AdaptiveResolution:
    """Tracks render throughput (pixels per second, exponential moving average) and sizes preview frames.

    While the camera moves, frames are rendered at the largest scale of the full size whose pixel count the
    measured throughput can render within `frame_budget_s`, never below `min_side` pixels on the longer side.
    """

    def __init__(self, frame_budget_s: float = 0.1, min_side: int = 48, smoothing: float = 0.5):
        if frame_budget_s <= 0:
            raise ValueError("frame_budget_s must be positive")
        self.frame_budget_s = frame_budget_s
        self.min_side = min_side
        self.smoothing = smoothing
        self._throughput: Optional[float] = None  # pixels per second
        self._lock = threading.Lock()

    @property
    def throughput(self) -> Optional[float]:
        """Measured pixels per second, or None before the first measurement."""
        return self._throughput

    def record(self, pixels: int, seconds: float) -> None:
        """Add one measurement: `pixels` rendered in `seconds` (wall clock, including overheads)."""
        if pixels <= 0 or not math.isfinite(seconds):
            return
        rate = pixels / max(seconds, 1e-6)
        with self._lock:
            if self._throughput is None:
                self._throughput = rate
            else:
                self._throughput = self.smoothing * self._throughput + (1 - self.smoothing) * rate

    def preview_scale(self, full_width: int, full_height: int) -> float:
        """Scale factor in (0, 1] for a preview of a full_width x full_height frame."""
        full_pixels = full_width * full_height
        longest = max(full_width, full_height)
        min_scale = min(1.0, self.min_side / longest)
        if self._throughput is None:
            return max(min_scale, min(1.0, 128 / longest))  # first frame: small and cheap until measured
        affordable = self._throughput * self.frame_budget_s
        scale = math.sqrt(max(affordable, 0.0) / full_pixels)
        return max(min_scale, min(1.0, scale))

    def preview_size(self, full_width: int, full_height: int) -> Tuple[int, int]:
        """(width, height) of a preview frame for the given full size."""
        s = self.preview_scale(full_width, full_height)
        return max(1, int(round(full_width * s))), max(1, int(round(full_height * s)))
