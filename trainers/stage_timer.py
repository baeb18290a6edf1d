"""Per-stage wall time and peak memory of training steps (render forward, loss, backward, optimiser, strategy).

Disabled (the default in training) it costs one attribute check per stage. Enabled, it synchronises the GPU around
each stage so that asynchronous kernels are charged to the stage that launched them, and on Linux it resets the
process's peak-RSS mark (/proc/self/clear_refs) before each stage so that each stage's own peak is recorded.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterator, Optional

import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        _CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _peak_rss_mb() -> Optional[float]:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class StageTimer:
    """Accumulates seconds (and the highest peak RSS) per named stage while `enabled`."""

    def __init__(self, enabled: bool = False, device: Optional[torch.device] = None, memory: bool = False):
        self.enabled = enabled
        self.device = device
        self.memory = memory
        self.seconds: Dict[str, float] = defaultdict(float)
        self.calls: Dict[str, int] = defaultdict(int)
        self.peak_mb: Dict[str, float] = {}

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._sync()
        track = self.memory and _reset_peak_rss()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1
            peak = _peak_rss_mb() if track else None
            if peak is not None:
                self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), peak)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.peak_mb.clear()

    def summary_ms(self) -> Dict[str, float]:
        """Mean milliseconds per call of each stage."""
        return {name: 1000.0 * total / max(self.calls[name], 1) for name, total in self.seconds.items()}
