"""Training configuration (a dataclass that tyro turns into the sf-train CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Tuple, Union

import tyro
from typing_extensions import Annotated

from .driving_losses import DrivingConfig
from .field_config import FieldTrainConfig
from .gabor_schedule import GaborTrainingConfig
from .motion_rigidity import RigidityConfig, check_rigidity_config
from .strategies import DefaultStrategy, FixedStrategy, MCMCStrategy

# A port option whose default (None) means 8080, or the next free port if 8080 is busy; an explicit port must be
# free, 0 picks any free one.
DefaultablePort = Annotated[
    Optional[int], tyro.conf.arg(metavar="INT", help_behavior_hint="(default: 8080, or the next free port if busy)")
]

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
    # Gabor scenes only (GaborScene's terms):
    gabor_nu: float = 2e-3
    """Term frequencies in the primitive frame (cycles per sigma)."""
    gabor_raw_weights: float = 1e-2
    """Raw term weights u (effective w = u / (1 + sum |u|), so |w| moves at most about this much per step)."""
    gabor_phases: float = 1e-2
    """Term phases (radians)."""


@dataclass
class TrainConfig:
    """Train a Gaussian scene on a posed image dataset."""

    data: Path = Path("outputs/demo_scene")
    """Dataset folder, format auto-detected: nerfstudio transforms.json, Blender / D-NeRF transforms_*.json,
    COLMAP (sparse/0 or sparse/ with cameras/images/points3D .bin or .txt), LLFF poses_bounds.npy, multi-view
    video as Panoptic / Dynamic3D train_meta.json or N3DV poses_bounds.npy + camNN.mp4, driving logs as a KITTI
    raw root / date / drive folder or a canonical driving log (driving_log.json)."""
    skip_missing_frames: bool = False
    """Skip frames whose images are missing, reporting how many; default: a missing image is a clear error."""
    output_dir: Path = Path("outputs/runs")
    """Each run writes into output_dir/<run_name>."""
    run_name: Optional[str] = None
    """Folder name of this run (default: a timestamp)."""
    model: Literal["auto", "gaussian", "gaussian4d", "gabor", "nerf"] = "auto"
    """Scene model: gaussian (static 3D), gaussian4d (4D Gaussians sliced at each view's time), gabor (static 3D
    Gabor primitives: Gaussians modulated by K cosine waves, switched on where texture needs them; --gabor.*), nerf (a
    hash-grid radiance field, settings under --nerf.*), or auto (gaussian4d when the dataset's training views carry
    times, as D-NeRF's do; said so in the log)."""
    gabor: GaborTrainingConfig = field(default_factory=GaborTrainingConfig)
    """--model gabor only: terms per primitive, weight sparsity (L1) and the frequency-adaptive schedule."""
    nerf: FieldTrainConfig = field(default_factory=FieldTrainConfig)
    """--model nerf only: the radiance field and its training."""
    init_time_scale: float = 0.25
    """4D only: initial temporal scale as a fraction of the time span."""
    split_in_time: Literal["auto", "always", "never"] = "auto"
    """4D only: how densification splits a primitive: in time (children sampled along all four axes of its frame,
    shorter-lived) or in space (the three spatial axes, duration kept). auto: in time where it moves farther than
    its own size during its life, in space elsewhere."""
    time_filter_frames: Optional[float] = None
    """4D only: every primitive's temporal extent is widened (in quadrature) by this many spacings of the training
    views' times, so that no primitive lives for a single training photograph. Default: 2 for monocular captures
    (one view per time, e.g. D-NeRF), 0.5 for multi-view video; 0 turns it off. Stored with the scene."""
    static_fraction: float = 0.0
    """4D only: the fraction of the initial primitives that start as static 3D Gaussians (Gaussian4DScene's static
    rows, held static through training and inherited by their densification children), so the still parts of a
    capture are fitted by every view; the rest start time-varying for what moves. 0 (default): every row
    time-varying. 0.5 gained 0.65 dB test PSNR on the procedural demo and 0.1 dB on D-NeRF lego, but lost 0.6 dB on
    D-NeRF lego's fixed-camera val split (BENCHMARKS.md, "Static rows"), so it is not on by default."""
    rigidity: RigidityConfig = field(default_factory=RigidityConfig)
    """4D only: the velocity-rigidity prior (neighbouring primitives alive at the same time move alike)."""
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
    `depth_file_path`; driving logs: the LiDAR mesh depth, in metres); 0 disables it."""
    driving: DrivingConfig = field(default_factory=DrivingConfig)
    """Driving logs only: LiDAR depth / mesh depth weights, sky, exposure, camera-only baseline."""
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
    batch_size: int = 1
    """Training views rendered per step by each process; their losses are averaged. Under torchrun the global batch
    is batch_size x world size (1 process x 2 views trains like 2 processes x 1 view)."""
    distributed: bool = False
    """Data-parallel training over torch.distributed; start under torchrun (torchrun --nproc-per-node N -m
    scripts.train --distributed ...). torchrun with more than one process turns it on by itself."""
    dist_timeout_s: float = 600.0
    """Process-group timeout: a rank that hangs makes the others stop with an error after this (a crashed rank is
    noticed at once). Rank 0's mid-run evaluations and checkpoints must fit in it: the others wait for them."""
    scale_schedule_with_batch: bool = True
    """With a global batch B > 1: divide step schedules (max_steps, SH interval, refine/reset steps) by B and multiply
    learning rates by sqrt(B); the log lists every change."""
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
    viewer_port: DefaultablePort = None
    """Port of the --viewer (must be free when given); 0 picks a free one. The real port is printed."""

    def __post_init__(self) -> None:
        validate_train_config(self)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_range(name: str, value, low=None, high=None, low_open: bool = False, high_open: bool = False) -> None:
    """Raise ValueError naming the CLI option (`--max-steps must be > 0, got 0`) when `value` is out of range."""
    if value is None:
        return
    if isinstance(value, float) and value != value:
        raise ValueError(f"{_option(name)} must be a number, got nan")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{_option(name)} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{_option(name)} must be {'<' if high_open else '<='} {high}, got {value}")


def check_background(name: str, background) -> None:
    if background is not None and not all(0.0 <= float(c) <= 1.0 for c in background):
        raise ValueError(f"{_option(name)} must be RGB values in [0, 1], got {tuple(background)}")


def check_port(name: str, port) -> None:
    check_range(name, port, 0, 65535)


MAX_SH_DEGREE = 3  # cuda_rasterizer.constants.MAX_SH_DEGREE (config stays importable without the extension)


def validate_train_config(cfg: "TrainConfig") -> None:
    """Reject impossible numeric options when the config is built (at CLI parse time)."""
    check_range("max_steps", cfg.max_steps, 0, low_open=True)
    check_rigidity_config(cfg.rigidity)
    check_range("max_seconds", cfg.max_seconds, 0, low_open=True)
    check_range("downscale", cfg.downscale, 1)
    check_background("background", cfg.background)
    check_range("sh_degree", cfg.sh_degree, 0, MAX_SH_DEGREE)
    check_range("sh_degree_interval", cfg.sh_degree_interval, 0, low_open=True)
    check_range("ssim_weight", cfg.ssim_weight, 0, 1)
    check_range("depth_weight", cfg.depth_weight, 0)
    for name in ("lidar_depth_weight", "mesh_depth_weight", "sky_opacity_weight", "lr_sky", "lr_exposure"):
        check_range(f"driving.{name}", getattr(cfg.driving, name), 0)
    check_range("driving.max_depth", cfg.driving.max_depth, 0, low_open=True)
    for step in cfg.coarse_to_fine:
        check_range("coarse_to_fine", step, 0, low_open=True)
    if list(cfg.coarse_to_fine) != sorted(set(cfg.coarse_to_fine)):
        raise ValueError(f"--coarse-to-fine steps must be increasing, got {' '.join(map(str, cfg.coarse_to_fine))}")
    check_range("init_opacity", cfg.init_opacity, 0, 1, low_open=True, high_open=True)
    check_range("static_fraction", cfg.static_fraction, 0, 1)
    check_range("init_random_points", cfg.init_random_points, 0, low_open=True)
    check_range("init_random_extent", cfg.init_random_extent, 0, low_open=True)
    check_range("max_init_points", cfg.max_init_points, 0, low_open=True)
    for name in ("means", "means_final_ratio", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest",
                 "gabor_nu", "gabor_raw_weights", "gabor_phases"):
        check_range(f"lr.{name}", getattr(cfg.lr, name), 0)
    check_range("eval_every", cfg.eval_every, 0)
    for step in cfg.eval_steps:
        check_range("eval_steps", step, 0, low_open=True)
    for seconds in cfg.eval_at_seconds:
        check_range("eval_at_seconds", seconds, 0, low_open=True)
    check_range("checkpoint_every", cfg.checkpoint_every, 0)
    check_range("num_test_renders", cfg.num_test_renders, 0)
    check_port("viewer_port", cfg.viewer_port)
