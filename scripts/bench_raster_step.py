"""The CPU rasterizer on one real training step's inputs: forward and backward times, A/B-able across checkouts.

`bench_training` times whole steps, where the rasterizer is ~70% and everything else adds noise; the B1-B4 cases
of `bench_rasterizer` are synthetic. This takes the rasterizer's inputs and the loss gradient of one step of a
`bench_training` workload (after `--warmup-steps` steps) and times `rasterize_to_pixels` forward and backward on
them, median of `--repeats` after 5 untimed. With `--save` the step is written to a file; `--load` times a saved step
instead, and with `--code-root` another checkout's rasterizer (its `cuda_rasterizer` built and imported from there),
so two versions can be compared, alternately, on the same inputs and host:

    python -m scripts.bench_raster_step --workload lego400 --save /tmp/lego400_step.pt
    python scripts/bench_raster_step.py --load /tmp/lego400_step.pt --code-root /tmp/baseline_checkout

`SPLATFORGE_PROFILE=1` adds the native phase times (binning, blend, backward tiles and per-primitive sums).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch
import tyro

HERE = Path(__file__).resolve().parents[1]
SHARED = HERE.parent / "shared" / "data"
_ARG_NAMES = ("means2d", "conics", "colors", "opacities", "depths", "radii", "width", "height", "background")


@dataclass
class RasterStepConfig:
    workload: str = "lego400"
    """A fixed bench_training workload (fern, lego400, dnerf400)."""
    data_root: Path = SHARED
    warmup_steps: int = 20
    repeats: int = 20
    threads: int = 2
    save: Optional[Path] = None
    """Write the captured step here (torch.save)."""
    load: Optional[Path] = None
    """Time a saved step instead of capturing one (no dataset or trainer needed)."""
    code_root: Optional[Path] = None
    """With --load: the checkout whose cuda_rasterizer is timed (default: this one)."""


def capture_step(cfg: RasterStepConfig) -> Dict[str, object]:
    """The rasterizer's arguments and the loss gradient of its colour output, at step warmup_steps + 1."""
    sys.path.insert(0, str(HERE))
    import cuda_rasterizer.cpu_backend as backend
    from render import prepare_renderer
    from scripts.bench_training import BenchTrainingConfig, make_workload
    from trainers.trainer import Trainer

    bench = BenchTrainingConfig(data_root=cfg.data_root, threads=cfg.threads)
    data, train_cfg, _, _ = make_workload(cfg.workload, bench, Path(tempfile.mkdtemp(prefix="sf_raster_step_")))
    trainer = Trainer(train_cfg, data)
    prepare_renderer(train_cfg.backend, trainer.device)
    for _ in range(cfg.warmup_steps):
        trainer.train_step()
    captured: Dict[str, object] = {}
    original = backend.rasterize_to_pixels

    def recording(*args, **kwargs):
        comp = original(*args, **kwargs)
        named = dict(zip(_ARG_NAMES, args), **kwargs)
        captured["args"] = {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in named.items()}
        if comp.colors.requires_grad:
            comp.colors.register_hook(lambda g: captured.__setitem__("v_colors", g.detach().clone()))
        return comp

    backend.rasterize_to_pixels = recording
    try:
        trainer.train_step()
    finally:
        backend.rasterize_to_pixels = original
    if "v_colors" not in captured:
        raise RuntimeError(f"workload {cfg.workload}: the step's colour output received no gradient")
    captured["workload"] = cfg.workload
    return captured


def time_step(step: Dict[str, object], repeats: int, threads: int) -> Dict[str, float]:
    """Median forward and backward ms of rasterize_to_pixels on a captured step (this process's cuda_rasterizer)."""
    import cuda_rasterizer.cpu_backend as backend

    torch.set_num_threads(threads)
    backend.set_num_threads(threads)
    a = dict(step["args"])
    leaves = {k: a[k].clone().requires_grad_(True) for k in ("means2d", "conics", "colors", "opacities")}
    forward, backward = [], []
    for i in range(repeats + 5):
        t0 = time.perf_counter()
        comp = backend.rasterize_to_pixels(
            leaves["means2d"], leaves["conics"], leaves["colors"], leaves["opacities"], a["depths"], a["radii"],
            a["width"], a["height"], a["background"], absgrad=a.get("absgrad", False),
        )
        t1 = time.perf_counter()
        grads = torch.autograd.grad(comp.colors, list(leaves.values()), step["v_colors"])
        t2 = time.perf_counter()
        if i >= 5:
            forward.append(t1 - t0)
            backward.append(t2 - t1)
    checksum = sum(float(g.double().abs().sum()) for g in grads)
    return {"forward_ms": 1e3 * statistics.median(forward), "backward_ms": 1e3 * statistics.median(backward),
            "backward_min_ms": 1e3 * min(backward), "gradient_abs_sum": checksum}


def main(cfg: RasterStepConfig) -> Dict[str, float]:
    if cfg.load is not None:
        root = cfg.code_root.resolve() if cfg.code_root is not None else HERE
        sys.path.insert(0, str(root))
        step = torch.load(cfg.load, weights_only=False)
    else:
        if cfg.code_root is not None:
            raise SystemExit("--code-root needs --load (capture with this checkout, then time another)")
        root = HERE
        step = capture_step(cfg)
        if cfg.save is not None:
            tmp = cfg.save.with_name(cfg.save.name + ".tmp")
            torch.save(step, tmp)
            os.replace(tmp, cfg.save)
    sys.path.insert(0, str(root))
    from scripts.bench_rasterizer import host_speed_gflops

    probe_start = host_speed_gflops()
    result = time_step(step, cfg.repeats, cfg.threads)
    result["host_gflops_start_end"] = [round(probe_start, 1), round(host_speed_gflops(), 1)]
    n = int(step["args"]["means2d"].shape[0])
    print(f"{step['workload']} ({n} primitives, {cfg.threads} threads, rasterizer of {root}): forward "
          f"{result['forward_ms']:.2f} ms, backward {result['backward_ms']:.2f} ms (min {result['backward_min_ms']:.2f}), "
          f"gradient |sum| {result['gradient_abs_sum']:.6e}, host probe {result['host_gflops_start_end']} GFLOP/s")
    return result


if __name__ == "__main__":
    main(tyro.cli(RasterStepConfig))
