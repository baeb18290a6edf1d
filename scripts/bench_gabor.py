"""B6 (DESIGN.md section 8): B2 (110k primitives, 3 cameras at 648x420) with 4 active Gabor terms per primitive,
against the same scene as plain Gaussians, forward and forward+backward, on one backend, measured in the same run.

Run: python -m scripts.bench_gabor [--threads 2] [--n 110000] [--out b6.json]
The two variants take turns within each repeat (this VM's speed drifts), and a host-speed probe is printed at the
start and the end. Target: Gabor forward+backward at most 1.5x the Gaussian's.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Dict, Optional

import torch
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cuda_rasterizer import cpu_backend, prepare_backend, rasterize_gaussians  # noqa: E402
from scripts.bench_rasterizer import (  # noqa: E402
    camera, host_speed_gflops, input_leaves, make_scene, timed_interleaved, write_results,
)


@dataclass
class GaborBenchConfig:
    n: int = 110_000  # primitives (B2)
    width: int = 648
    height: int = 420
    cameras: int = 3
    terms: int = 4  # active Gabor terms per primitive
    cycles_per_sigma: float = 1.0  # typical wave frequency, in cycles per standard deviation of the primitive
    threads: int = 2
    repeats: int = 3
    backend: str = "cpu"  # cpu | cuda (scene on the GPU; the CPU thread count is then irrelevant)
    absgrad: bool = True  # also compute means2d.absgrad (rasterize_gaussians' default); training runs without it
    seed: int = 0
    out: Optional[str] = None  # write the results as JSON here


def gabor_terms(scene: Dict[str, torch.Tensor], terms: int, cycles_per_sigma: float, seed: int) -> Dict[str, torch.Tensor]:
    """Active terms: random directions in each primitive's frame, |nu| ~ cycles_per_sigma, sum |w| = 0.9."""
    g = torch.Generator().manual_seed(seed + 1)
    n = scene["means"].shape[0]
    nu = torch.randn(n, terms, 3, generator=g)
    nu = nu / nu.norm(dim=-1, keepdim=True) * cycles_per_sigma * (0.5 + torch.rand(n, terms, 1, generator=g))
    freqs = 2 * math.pi * nu / scene["scales"][:, None, :]  # axis-aligned frame: enough for timing
    raw = torch.rand(n, terms, generator=g) + 0.1
    weights = 0.9 * raw / raw.sum(dim=-1, keepdim=True) * torch.where(torch.rand(n, terms, generator=g) < 0.5, -1.0, 1.0)
    phases = torch.rand(n, terms, generator=g) * 2 * math.pi
    return dict(gabor_freqs=freqs, gabor_weights=weights, gabor_phases=phases)


def frame(scene, waves, views, cfg: GaborBenchConfig, backward: bool) -> None:
    """Render every view (and backpropagate a fixed loss through each when `backward`)."""
    for view in views:
        p = input_leaves(scene, backward)  # fresh leaves sharing the storage, as a training step has (no copies)
        w = {k: t.detach().requires_grad_(backward) for k, t in waves.items()} if waves else {}
        out = rasterize_gaussians(p["means"], p["quats"], p["scales"], p["opacities"], p["sh"], view, scene["K"],
                                  cfg.width, cfg.height, sh_degree=3, background=torch.zeros(3, device=view.device),
                                  backend=cfg.backend, absgrad=cfg.absgrad, **w)
        if backward:
            (out.colors.sum() + out.alphas.sum()).backward()
    if view.is_cuda:
        torch.cuda.synchronize()


def main(cfg: GaborBenchConfig) -> Dict[str, object]:
    cpu_backend.set_num_threads(cfg.threads)
    torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if cfg.backend == "cuda" else "cpu")
    prepare_backend(cfg.backend, device)
    scene = make_scene(cfg.n, cfg.width, cfg.height, cfg.seed)
    waves = {k: t.to(device) for k, t in gabor_terms(scene, cfg.terms, cfg.cycles_per_sigma, cfg.seed).items()}
    scene = {k: t.to(device) for k, t in scene.items()}
    views = [camera(i).to(device) for i in range(cfg.cameras)]
    result: Dict[str, object] = dict(config=cfg.__dict__, host_gflops_at_start=host_speed_gflops(),
                                     loadavg_at_start=os.getloadavg())
    no_threads = lambda _: None  # noqa: E731  (both variants use cfg.threads)
    for label, backward in (("forward", False), ("forward_backward", True)):
        best = timed_interleaved({0: lambda: frame(scene, None, views, cfg, backward),
                                  1: lambda: frame(scene, waves, views, cfg, backward)}, cfg.repeats, no_threads)
        gauss_ms, gabor_ms = best[0][0], best[1][0]
        result[label] = dict(gaussian_ms=gauss_ms, gabor_ms=gabor_ms, ratio=gabor_ms / gauss_ms)
        print(f"{label}: Gaussian {gauss_ms:.0f} ms, Gabor ({cfg.terms} terms) {gabor_ms:.0f} ms, "
              f"ratio {gabor_ms / gauss_ms:.2f}", flush=True)
    result["host_gflops_at_end"] = host_speed_gflops()
    result["loadavg_at_end"] = os.getloadavg()
    print("host speed (1-thread matmul GFLOP/s): start %.1f, end %.1f; load average at end %s"
          % (result["host_gflops_at_start"], result["host_gflops_at_end"], result["loadavg_at_end"]))
    if cfg.out:
        write_results(cfg.out, result)
    return result


if __name__ == "__main__":
    main(tyro.cli(GaborBenchConfig))
