"""Shared test helpers: random Gaussian scenes and the location of the shared datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def random_gaussians(n: int, seed: int = 0, dtype=torch.float64, depth: float = 3.0, spread: float = 0.6):
    """Random Gaussians in front of an identity camera looking down +z (OpenCV)."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=gen, dtype=dtype) * spread + torch.tensor([0.0, 0.0, depth], dtype=dtype)
    quats = torch.randn(n, 4, generator=gen, dtype=dtype)
    scales = torch.rand(n, 3, generator=gen, dtype=dtype) * 0.12 + 0.02
    opacities = torch.rand(n, generator=gen, dtype=dtype) * 0.9 + 0.05
    colors = torch.rand(n, 3, generator=gen, dtype=dtype)
    return means, quats, scales, opacities, colors


def simple_K(width: int, height: int, focal: float = None, dtype=torch.float64) -> torch.Tensor:
    focal = focal if focal is not None else 0.9 * max(width, height)
    return torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=dtype)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium per test module (see browser_support.py)."""
    from browser_support import CHROMIUM, CHROMIUM_ARGS, browser_or_skip

    sync_playwright = browser_or_skip()
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
