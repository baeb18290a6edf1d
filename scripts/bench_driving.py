"""LiDAR-camera vs camera-only on a driving log: same views, same steps, held-out every 10th frame.

    python -m scripts.bench_driving                       # the synthetic street (generated, canonical layout)
    python -m scripts.bench_driving --data ../shared/data/kitti_raw_2011_09_26_snippet --downscale 4

Prints a table of held-out PSNR / SSIM and depth AbsRel / RMSE / delta1 against LiDAR, and writes it as JSON.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from trainers.config import TrainConfig
from trainers.data import load_dataset
from trainers.data.synthetic_street import SyntheticStreetConfig, canonical_root, generate_synthetic_street
from trainers.driving_losses import DrivingConfig
from trainers.strategies import DefaultStrategy
from trainers.trainer import Trainer, write_json

from ._cli import parse_config, run_cli


@dataclass
class BenchDrivingConfig:
    """Train LiDAR-camera and camera-only on one driving log and compare them on its held-out frames."""

    data: Optional[Path] = None
    """Driving log (KITTI raw folder or canonical layout); default: the synthetic street (canonical layout)."""
    synthetic: SyntheticStreetConfig = field(default_factory=SyntheticStreetConfig)
    downscale: int = 1
    max_steps: int = 2000
    max_gaussians: int = 150_000
    sh_degree: int = 1
    output_dir: Path = Path("outputs/bench_driving")
    seed: int = 0
    driving: DrivingConfig = field(default_factory=DrivingConfig)
    """The LiDAR-camera run's driving settings (camera-only: the same with --driving.no-use-lidar)."""
    modes: Tuple[str, ...] = ("lidar-camera", "camera-only")
    """Which runs to make (the difference line needs both)."""


def _train(name: str, data, cfg: BenchDrivingConfig, driving: DrivingConfig) -> Dict[str, object]:
    train_cfg = TrainConfig(
        data=Path(str(data.source)), run_name=name, output_dir=cfg.output_dir, max_steps=cfg.max_steps,
        sh_degree=cfg.sh_degree, seed=cfg.seed, video=False, progress=False, num_test_renders=3,
        driving=driving,
        strategy=DefaultStrategy(refine_stop=int(cfg.max_steps * 0.8), max_gaussians=cfg.max_gaussians),
    )
    started = time.perf_counter()
    metrics = Trainer(train_cfg, copy.deepcopy(data)).train()
    metrics["wall_seconds"] = time.perf_counter() - started
    return metrics


def run_bench(cfg: BenchDrivingConfig) -> List[Dict[str, object]]:
    path = cfg.data if cfg.data is not None else canonical_root(generate_synthetic_street(cfg.synthetic))
    data = load_dataset(path, downscale=cfg.downscale)
    for note in data.notes:
        print(f"[data] {note}")
    rows = []
    runs = {"lidar-camera": dataclasses.replace(cfg.driving, use_lidar=True),
            "camera-only": dataclasses.replace(cfg.driving, use_lidar=False)}
    for name in cfg.modes:
        if name not in runs:
            raise ValueError(f"--modes: unknown mode {name!r} (lidar-camera, camera-only)")
        driving = runs[name]
        m = _train(name, data, cfg, driving)
        rows.append({"mode": name, **{k: m.get(k) for k in ("psnr", "ssim", "depth_abs_rel", "depth_rmse",
                                                            "depth_delta1", "num_gaussians", "train_seconds")}})
        print(f"[bench] {name}: PSNR {m['psnr']:.2f} dB, AbsRel {m['depth_abs_rel']:.3f}", flush=True)
    header = f"{'mode':<14}{'PSNR':>8}{'SSIM':>8}{'AbsRel':>8}{'RMSE m':>8}{'d<1.25':>8}{'splats':>9}{'train s':>9}"
    print(f"\n{path}, {len(data.train_views)} train / {len(data.test_views)} held-out views, {cfg.max_steps} steps")
    print(header)
    for r in rows:
        print(f"{r['mode']:<14}{r['psnr']:>8.2f}{r['ssim']:>8.4f}{r['depth_abs_rel']:>8.3f}{r['depth_rmse']:>8.2f}"
              f"{r['depth_delta1']:>8.3f}{int(r['num_gaussians']):>9}{r['train_seconds']:>9.0f}")
    if len(rows) == 2:
        print(f"LiDAR-camera - camera-only: {rows[0]['psnr'] - rows[1]['psnr']:+.2f} dB PSNR")
    write_json(Path(cfg.output_dir) / f"bench_driving_{'_'.join(cfg.modes)}.json",
               {"data": str(path), "config": dataclasses.asdict(cfg), "rows": rows})
    return rows


def entrypoint() -> None:
    run_cli(lambda: run_bench(parse_config(BenchDrivingConfig)))


if __name__ == "__main__":
    entrypoint()
