"""A tiny synthetic driving log shared by the driving tests (generated once per test session into a temp folder)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from trainers.data.synthetic_street import SyntheticStreetConfig, generate_synthetic_street

TINY = dict(num_frames=20, width=124, height=38, lidar_azimuths=720, supersample=1)
_ROOT = Path(tempfile.gettempdir()) / f"splatforge_test_street_{os.getuid()}"


def tiny_street(**overrides) -> Path:
    """The generated log's folder (kitti/, canonical/, ground_truth/); regenerated only when its config changes."""
    config = SyntheticStreetConfig(output=_ROOT / ("tiny" if not overrides else "custom"), **{**TINY, **overrides})
    return generate_synthetic_street(config)
