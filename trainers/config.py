"""Training configuration (a dataclass that tyro turns into the sf-train CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Tuple, Union

import tyro
from typing_extensions import Annotated

from .strategies import DefaultStrategy, FixedStrategy, MCMCStrategy

StrategyConfig = Union[
    Annotated[DefaultStrategy, tyro.conf.subcommand("default")],
    Annotated[MCMCStrategy, tyro.conf.subcommand("mcmc")],
    Annotated[FixedStrategy, tyro.conf.subcommand("fixed")],
]


@dataclass
class LearningRates:
    """Adam learning rates per parameter group (3DGS / gsplat defaults)."""

    means: float = 1.6e-4  # multiplied by the scene scale, decays to `means_final_ratio` of itself
    means_final_ratio: float = 0.01
    log_scales: float = 5e-3
    quats: float = 1e-3
    opacity_logits: float = 5e-2
    sh_dc: float = 2.5e-3
    sh_rest: float = 2.5e-3 / 20
    # 4D Gaussians only (Gaussian4DScene's extra parameters):
    times: float = 1.6e-4
    """Mean times: multiplied by the dataset's time span and decayed like the means (the same relative step
    in time as the means take in space)."""
    log_scale_t: float = 5e-3
    """Temporal log-scale: as the spatial log-scales."""
    quats_r: float = 1e-3
    """Right quaternion of the 4D rotation: as the (left) quaternions."""


@dataclass
class TrainConfig:
    """Train a Gaussian scene on a posed image dataset."""

    data: Path = Path("outputs/demo_scene")
    """Dataset folder (nerfstudio transforms.json or Blender transforms_*.json)."""
    output_dir: Path = Path("outputs/runs")
    """Each run writes into output_dir/<run_name>."""
    run_name: Optional[str] = None
    """Folder name of this run (default: a timestamp)."""
    model: Literal["auto", "gaussian", "gaussian4d"] = "auto"
    """Scene model: gaussian (static 3D), gaussian4d (4D Gaussians sliced at each view's time), or auto
    (gaussian4d when the dataset's training views carry times, as D-NeRF's do; said so in the log)."""
    init_time_scale: float = 0.25
    """4D only: initial temporal scale as a fraction of the time span."""
    max_steps: int = 3000
    max_seconds: Optional[float] = None
    """Also stop once training has run this long (wall clock, evaluation excluded)."""
    downscale: int = 1
    """Load images downscaled by this integer factor."""
    background: Optional[Tuple[float, float, float]] = None
    """Render background; default: the dataset's (white for RGBA data)."""
    random_background: bool = False
    """Train against a random background colour each step (RGBA data only): discourages background-coloured floaters."""
    sh_degree: int = 3
    sh_degree_interval: int = 1000
    """Raise the active SH degree by one every this many steps."""
    ssim_weight: float = 0.2
    depth_weight: float = 0.0
    """Weight of an L1 loss between rendered and measured depth, on views that carry depth maps (nerfstudio
    `depth_file_path`); 0 disables it."""
    coarse_to_fine: Tuple[int, ...] = ()
    """Steps at which the training resolution doubles: with k steps, training starts at 1/2^k resolution
    (e.g. `--coarse-to-fine 500 1500`: 1/4 until step 500, 1/2 until 1500, then full). Empty: full resolution."""
    init_opacity: float = 0.1
    init_random_points: int = 100_000
    """Used when the dataset has no seed points: random points around the cameras' focus point."""
    init_random_extent: float = 0.33
    """Half-size of that random cube, as a fraction of the cameras' mean distance to the focus point."""
    max_init_points: int = 100_000
    """Subsample seed point clouds larger than this."""
    lr: LearningRates = field(default_factory=LearningRates)
    strategy: StrategyConfig = field(default_factory=DefaultStrategy)
    """Densification: default (3DGS adaptive density control), mcmc, or fixed (no densification)."""
    resume: Optional[Path] = None
    """Continue from this checkpoint (same config and seed give the same result as an uninterrupted run)."""
    backend: str = "auto"
    device: str = "auto"
    """Where the scene trains: "auto" = cuda when torch.cuda.is_available() else cpu; or "cpu" / "cuda" /
    "cuda:1". Checkpoints are written with CPU tensors, so one trained on a GPU resumes or loads anywhere."""
    seed: int = 0
    eval_every: int = 0
    """Evaluate on the test views every this many steps (0: only at the end)."""
    eval_steps: Tuple[int, ...] = ()
    """Also evaluate at these steps."""
    eval_at_seconds: Tuple[float, ...] = ()
    """Also evaluate once the training wall time (evaluation excluded) first passes each of these, e.g. 1800 to
    report a 30-minute result from a longer run. Results go to evaluations.json in the run folder."""
    checkpoint_every: int = 0
    """Write a checkpoint every this many steps (0: only at the end)."""
    num_test_renders: int = 8
    """How many test views to save as PNGs."""
    video: bool = True
    """Render an orbit MP4 of the result."""
    progress: bool = True
    viewer: bool = False
    """Serve the scene in the browser viewer while it trains (sf-train only)."""
    viewer_host: str = "127.0.0.1"
    viewer_port: int = 8080
