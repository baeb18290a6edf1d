"""Shared test helpers: random Gaussian scenes and the location of the shared datasets."""

from __future__ import annotations

import os
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


# A folder of demo scenes generated elsewhere, for machines without open3d (the generator's ray caster), e.g. a lent
# GPU machine. Made from the repository root with
# `python -c "import sys; sys.path.insert(0, 'tests'); import conftest; conftest.write_demo_scenes(DIR)"`.
DEMO_SCENES_ENV = "SPLATFORGE_DEMO_SCENES"
DEMO_SIZES = {"gpu-training": dict(width=64, height=48, num_views=16, num_points=1000),
              "gpu-field": dict(width=48, height=36, num_views=12, num_points=500)}


def demo_scene(tmp_path_factory, size: str) -> Path:
    """The procedural demo scene of DEMO_SIZES[size]: from $SPLATFORGE_DEMO_SCENES/<size> when that is set, else
    generated now."""
    from trainers.data import DemoSceneConfig, generate_demo_scene

    prebuilt = os.environ.get(DEMO_SCENES_ENV)
    if prebuilt:
        folder = Path(prebuilt) / size
        if not (folder / "demo_scene.json").is_file():
            raise FileNotFoundError(f"${DEMO_SCENES_ENV} is set but {folder} holds no demo scene")
        return folder
    config = DemoSceneConfig(output=tmp_path_factory.mktemp("demo") / "scene", **DEMO_SIZES[size])
    return generate_demo_scene(config)


def write_demo_scenes(folder) -> None:
    """Generate every DEMO_SIZES scene under `folder` (for $SPLATFORGE_DEMO_SCENES on another machine)."""
    from trainers.data import DemoSceneConfig, generate_demo_scene

    for size, dims in DEMO_SIZES.items():
        generate_demo_scene(DemoSceneConfig(output=Path(folder) / size, **dims))


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
