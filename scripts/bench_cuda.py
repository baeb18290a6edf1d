"""Benchmark the CUDA rasterizer on B1-B4 (DESIGN.md section 8), with same-run baselines.

Run (on a machine with an NVIDIA GPU): python scripts/bench_cuda.py [--out bench_cuda.json]
Scenes, cameras and the render call are those of scripts/bench_rasterizer.py. Baselines measured in the same run:
the CPU backend on all of this machine's cores (same cases) and the dense PyTorch reference on the GPU (small scene).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cuda_rasterizer import cpu_backend, cuda_backend, reference  # noqa: E402
from scripts.bench_rasterizer import CASES, camera, make_scene, render, timed, write_results  # noqa: E402
from trainers.device import tensors_to  # noqa: E402


@dataclass
class CudaBenchConfig:
    out: Optional[str] = None  # write the results as JSON here
    cases: Tuple[str, ...] = ("B1", "B2", "B3", "B4")
    repeats: int = 20
    cpu_baseline: bool = True  # also time the CPU backend on this machine's cores (same cases)
    seed: int = 0


def gpu_timed(fn: Callable[[], object], repeats: int) -> Tuple[float, float]:
    """(median ms, min ms) over `repeats` synchronised runs after two warm-ups."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(1000.0 * (time.perf_counter() - t0))
    return statistics.median(times), min(times)


def run_case(name: str, cfg: CudaBenchConfig) -> Dict[str, object]:
    case = CASES[name]
    cpu_scene = make_scene(case.n, case.width, case.height, cfg.seed)
    scene = tensors_to(cpu_scene, torch.device("cuda"))
    # the camera on the host, where the CUDA backend reads it (as render() passes it); absgrad off, as in the trainer
    # and gsplat's default (the CPU bench_rasterizer figures keep it on)
    views, scene = [camera(i) for i in range(case.cameras)], dict(scene, K=scene["K"].cpu())
    frame = lambda backward: [render(cuda_backend, scene, v, case.width, case.height, backward, absgrad=False)  # noqa: E731
                              for v in views]
    result: Dict[str, object] = dict(n=case.n, width=case.width, height=case.height, cameras=case.cameras)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    result["forward_ms"], result["forward_min_ms"] = gpu_timed(lambda: frame(False), cfg.repeats)
    if case.backward:
        result["forward_backward_ms"], result["forward_backward_min_ms"] = gpu_timed(lambda: frame(True), cfg.repeats)
    result["peak_gpu_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    covars = cuda_backend.quat_scale_to_covar(scene["quats"], scene["scales"])
    proj = cuda_backend.project(scene["means"], covars, scene["opacities"], views[-1], scene["K"], case.width, case.height)
    colors = torch.rand(case.n, 3, device="cuda")
    result["blend_ms"], _ = gpu_timed(
        lambda: cuda_backend.rasterize_to_pixels(
            proj.means2d, proj.conics, colors, proj.opacities, proj.depths, proj.radii, case.width, case.height
        ),
        cfg.repeats,
    )
    result["intersections"] = cuda_backend.last_stats.get("intersections")
    if cfg.cpu_baseline:
        cpu_views = [camera(i) for i in range(case.cameras)]
        cpu_frame = lambda: [  # noqa: E731
            render(cpu_backend, cpu_scene, v, case.width, case.height, case.backward) for v in cpu_views
        ]
        key = "forward_backward_ms" if case.backward else "forward_ms"
        result["cpu_threads"] = torch.get_num_threads()
        result["cpu_" + key] = timed(cpu_frame, 3)
        result["speedup_vs_cpu"] = result["cpu_" + key] / result[key]
    return result


def reference_comparison(cfg: CudaBenchConfig) -> Dict[str, object]:
    """The dense reference and the CUDA backend on the same GPU, on a scene the reference can hold (2k, 128x128)."""
    n, w, h = 2000, 128, 128
    scene = tensors_to(make_scene(n, w, h, cfg.seed), torch.device("cuda"))
    view = camera(0).cuda()
    ref_ms, _ = gpu_timed(lambda: render(reference, scene, view, w, h, True), 3)
    cuda_ms, _ = gpu_timed(lambda: render(cuda_backend, scene, view, w, h, True), cfg.repeats)
    return dict(n=n, width=w, height=h, reference_gpu_fwd_bwd_ms=ref_ms, cuda_fwd_bwd_ms=cuda_ms,
                speedup=ref_ms / cuda_ms)


def main(cfg: CudaBenchConfig) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("bench_cuda.py needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    cpu_backend.set_num_threads(torch.get_num_threads())
    results: Dict[str, object] = dict(
        machine=dict(gpu=torch.cuda.get_device_name(), cores=os.cpu_count(), torch=torch.__version__,
                     cuda=torch.version.cuda),
        timing_note="median wall ms of synchronised runs; forward(+backward) covers all cameras of a case",
    )
    for name in cfg.cases:
        results[name] = run_case(name, cfg)
        print(name, json.dumps(results[name], indent=1), flush=True)
    results["reference_comparison"] = reference_comparison(cfg)
    print("reference", json.dumps(results["reference_comparison"], indent=1), flush=True)
    if cfg.out:
        write_results(cfg.out, results)


if __name__ == "__main__":
    main(tyro.cli(CudaBenchConfig))
