"""Training-step benchmark: steps per second on fixed workloads, with a per-stage breakdown and peak memory.

Run: python scripts/bench_training.py [--workloads fern lego400 lego200-default] [--out bench_training.json]
Workloads (the datasets come from ../shared/data; a missing one is reported and skipped):
- fern: LLFF fern images_8 (504x378), its SfM points as the initial Gaussians, no densification, full resolution.
- lego400: NeRF-synthetic lego at 400x400, 100k random initial Gaussians (seeded), no densification.
- lego400-1m (not in the defaults): lego400 with 1,000,000 random Gaussians, the primitive count of a real capture,
  where the per-primitive stages and memory traffic weigh more than the pixels.
- lego400-gabor (not in the defaults): lego400 trained as 4-term Gabor primitives (`--model gabor`; the weights start at
  0, so the image is the Gaussian one, but every term is evaluated): the Gabor kernels' share of a training step.
- lego200-default: lego at 200x200 with the default 3DGS densification, `--default-steps` steps from the start.
- dnerf400 (not in the defaults): D-NeRF lego at 400x400 as a 4D scene (`--model gaussian4d`), 100k random initial
  4D Gaussians (seeded), no densification, the monocular defaults (temporal filter, velocity rigidity): the 4D
  training step (slice and its VJP, temporal cull, rigidity term) on top of the 3D one.
- host-overhead (not in the defaults): the procedural demo scene at 64x48 with 1,000 Gaussians, fixed: the rasterizer
  has almost nothing to do, so the step time is the trainer's per-step host work (Python, autograd, optimiser
  calls), the floor that bounds training steps per second on a GPU.
Each workload prints steps/s, mean ms per stage (render forward, loss, backward, strategy, optimiser, checks) and the
peak RSS reached in each stage, and the host-speed probe is taken at the start and end (this VM's speed drifts).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from render import prepare_renderer  # noqa: E402
from scripts.bench_rasterizer import host_speed_gflops, write_results  # noqa: E402
from trainers.config import TrainConfig  # noqa: E402
from trainers.data import load_dataset  # noqa: E402
from trainers.stage_timer import StageTimer  # noqa: E402
from trainers.strategies import DefaultStrategy, FixedStrategy  # noqa: E402
from trainers.trainer import Trainer, peak_memory_mb  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass
class BenchTrainingConfig:
    workloads: Tuple[str, ...] = ("fern", "lego400", "lego200-default")
    data_root: Path = SHARED
    """Folder holding llff_fern, nerf_synthetic_lego_400 and dnerf_lego."""
    threads: int = 2
    warmup_steps: int = 20
    timed_steps: int = 60
    default_steps: int = 500
    """Steps of the lego200-default workload (timed from the first step: densification changes the cost)."""
    device: str = "cpu"
    baseline_torch_loss: bool = True
    """Also run each fixed workload with the PyTorch L1 + SSIM graph instead of the fused native loss (the
    baseline of the same run), and report the ratio."""
    out: Optional[Path] = None
    """Also write the results as JSON here."""


def make_workload(name: str, cfg: BenchTrainingConfig, out_dir: Path):
    """(dataset, TrainConfig, steps to time, warm-up steps) of a named workload."""
    common = dict(output_dir=out_dir, run_name=name, progress=False, video=False, device=cfg.device)
    if name == "fern":
        data = load_dataset(cfg.data_root / "llff_fern", downscale=8)
        train = TrainConfig(data=cfg.data_root / "llff_fern", downscale=8, strategy=FixedStrategy(),
                            max_steps=10**6, **common)
        return data, train, cfg.timed_steps, cfg.warmup_steps
    if name == "lego400":
        data = load_dataset(cfg.data_root / "nerf_synthetic_lego_400")
        train = TrainConfig(data=cfg.data_root / "nerf_synthetic_lego_400", strategy=FixedStrategy(),
                            init_random_points=100_000, max_steps=10**6, **common)
        return data, train, cfg.timed_steps, cfg.warmup_steps
    if name == "lego400-1m":  # lego400 at the primitive count of a real capture (1M random Gaussians)
        data = load_dataset(cfg.data_root / "nerf_synthetic_lego_400")
        train = TrainConfig(data=cfg.data_root / "nerf_synthetic_lego_400", strategy=FixedStrategy(),
                            init_random_points=1_000_000, max_init_points=1_000_000, max_steps=10**6, **common)
        return data, train, cfg.timed_steps, cfg.warmup_steps
    if name == "lego400-gabor":  # lego400 as 4-term Gabor primitives (issue 12's model; weights start at 0)
        data = load_dataset(cfg.data_root / "nerf_synthetic_lego_400")
        train = TrainConfig(data=cfg.data_root / "nerf_synthetic_lego_400", model="gabor", strategy=FixedStrategy(),
                            init_random_points=100_000, max_steps=10**6, **common)
        return data, train, cfg.timed_steps, cfg.warmup_steps
    if name == "lego200-default":
        data = load_dataset(cfg.data_root / "nerf_synthetic_lego_400", downscale=2)
        train = TrainConfig(data=cfg.data_root / "nerf_synthetic_lego_400", downscale=2, strategy=DefaultStrategy(),
                            max_steps=cfg.default_steps, **common)
        return data, train, cfg.default_steps, 0
    if name == "dnerf400":
        data = load_dataset(cfg.data_root / "dnerf_lego", downscale=2)
        train = TrainConfig(data=cfg.data_root / "dnerf_lego", downscale=2, model="gaussian4d", strategy=FixedStrategy(),
                            init_random_points=100_000, max_steps=10**6, **common)
        return data, train, cfg.timed_steps, cfg.warmup_steps
    if name == "host-overhead":
        from trainers.data import DemoSceneConfig, generate_demo_scene

        folder = generate_demo_scene(DemoSceneConfig(output=out_dir / "tiny_demo", width=64, height=48, num_views=16,
                                                     num_points=1000))
        data = load_dataset(folder)
        train = TrainConfig(data=folder, strategy=FixedStrategy(), max_steps=10**6, **common)
        return data, train, 10 * cfg.timed_steps, cfg.warmup_steps
    raise ValueError(f"unknown workload {name!r}; choose from fern, lego400, lego400-1m, lego400-gabor, lego200-default, dnerf400, "
                     "host-overhead")


def _torch_loss_trainer():
    """A context in which training steps build the PyTorch L1 + SSIM graph instead of the fused native loss."""
    import contextlib
    import functools

    import trainers.trainer as trainer_module

    @contextlib.contextmanager
    def patched():
        original = trainer_module.photometric_loss_and_mse
        trainer_module.photometric_loss_and_mse = functools.partial(original, native=False)
        try:
            yield
        finally:
            trainer_module.photometric_loss_and_mse = original

    return patched()


def run_workload(name: str, cfg: BenchTrainingConfig, out_dir: Path, torch_loss: bool = False) -> Dict[str, object]:
    if torch_loss:
        with _torch_loss_trainer():
            result = run_workload(name, cfg, out_dir)
        result["workload"] = f"{name} (PyTorch loss baseline)"
        return result
    data, train_cfg, steps, warmup = make_workload(name, cfg, out_dir)
    trainer = Trainer(train_cfg, data)
    prepare_renderer(train_cfg.backend, trainer.device)
    for _ in range(warmup):
        trainer.train_step()
    trainer.stages = StageTimer(enabled=True, device=trainer.device, memory=True)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    seconds = time.perf_counter() - start
    stages = trainer.stages.summary_ms()
    return {
        "workload": name,
        "image_size": [data.train_views[0].camera.width, data.train_views[0].camera.height],
        "gaussians_start_end": [None if warmup == 0 else len(trainer.scene), len(trainer.scene)],
        "steps": steps,
        "seconds_per_step": seconds / steps,
        "steps_per_second": steps / seconds,
        "stage_ms": {k: round(v, 3) for k, v in stages.items()},
        "stage_ms_sum": round(sum(stages.values()), 3),
        "stage_peak_rss_mb": {k: round(v, 1) for k, v in trainer.stages.peak_mb.items()},
        "process_peak_rss_mb": round(peak_memory_mb(), 1),
    }


def main(cfg: BenchTrainingConfig) -> Dict[str, object]:
    import tempfile

    torch.set_num_threads(cfg.threads)
    results: Dict[str, object] = {
        "machine": {"cores": os.cpu_count(), "threads": cfg.threads, "torch": torch.__version__,
                    "loadavg_at_start": os.getloadavg(), "host_gflops_at_start": host_speed_gflops()},
        "workloads": {},
    }
    with tempfile.TemporaryDirectory(prefix="sf-bench-training-") as tmp:
        for name in cfg.workloads:
            try:
                result = run_workload(name, cfg, Path(tmp))
            except FileNotFoundError as exc:
                print(f"{name}: skipped ({exc})", flush=True)
                continue
            results["workloads"][name] = result
            print(json.dumps(result), flush=True)
            if cfg.baseline_torch_loss and name in ("fern", "lego400"):
                base = run_workload(name, cfg, Path(tmp), torch_loss=True)
                results["workloads"][f"{name}-torch-loss"] = base
                print(json.dumps(base), flush=True)
                print(f"{name}: fused loss step {1000 * result['seconds_per_step']:.1f} ms vs PyTorch loss "
                      f"{1000 * base['seconds_per_step']:.1f} ms ({base['seconds_per_step'] / result['seconds_per_step']:.2f}x)",
                      flush=True)
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    results["machine"]["host_gflops_at_end"] = host_speed_gflops()
    print("host speed (1-thread matmul GFLOP/s): start %.1f, end %.1f"
          % (results["machine"]["host_gflops_at_start"], results["machine"]["host_gflops_at_end"]), flush=True)
    if cfg.out:
        write_results(cfg.out, results)
    return results


if __name__ == "__main__":
    main(tyro.cli(BenchTrainingConfig))
