"""GPU peer benchmark (issue 16): our CUDA rasterizer against gsplat's on the same GPU, in the same run.

Run (on a machine with an NVIDIA GPU and gsplat installed; gsplat compiles its kernels on first use):
    python -m scripts.bench_gsplat_peer [--out peer.json] [--cases B1 B2 B3 B4] [--workloads fern lego400]

1. Rasterizer, B1-B4 of scripts/bench_rasterizer.py (same seeded scenes and cameras as bench_cuda): forward and
   forward+backward of the whole render (SH degree 3 colours, projection, binning, blending; loss = sum of colours
   and alphas) per camera, through ours (`scripts.bench_rasterizer.render` on the cuda backend, as bench_cuda) and
   through `gsplat.rasterization` with the same tensors, both `packed=False` and `packed=True`. The two images of
   each case are compared too (same model, so they must agree to a few 1e-3).
2. Training: bench_training's fixed workloads (fern images_8 with its SfM points; lego 400x400 with 100k random
   Gaussians) on the GPU, steps per second of the same trainer with our rasterizer and with `gsplat.rasterization`
   swapped in for ours inside `render()` (loss, optimiser and everything else unchanged).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import torch
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cuda_rasterizer import cuda_backend  # noqa: E402
from cuda_rasterizer.constants import EPS_2D  # noqa: E402
from cuda_rasterizer.rasterize import RasterizeOutput  # noqa: E402
from scripts.bench_cuda import gpu_timed  # noqa: E402
from scripts.bench_rasterizer import CASES, camera, input_leaves, make_scene, render, write_results  # noqa: E402
from scripts.bench_training import SHARED, BenchTrainingConfig, make_workload  # noqa: E402
from trainers.device import tensors_to  # noqa: E402


@dataclass
class PeerBenchConfig:
    out: Optional[Path] = None
    """Write the results as JSON here."""
    cases: Tuple[str, ...] = ("B1", "B2", "B3", "B4")
    repeats: int = 10
    workloads: Tuple[str, ...] = ("fern", "lego400")
    data_root: Path = SHARED
    """Folder holding llff_fern and nerf_synthetic_lego_400."""
    warmup_steps: int = 20
    timed_steps: int = 200
    seed: int = 0
    profile_cases: Tuple[str, ...] = ("B2",)
    """Cases whose forward+backward is also run under the torch profiler: per-kernel GPU times of ours and gsplat's
    (unpacked), and how much of the wall time the GPU was busy."""


def gsplat_render(scene: Dict[str, torch.Tensor], view: torch.Tensor, width: int, height: int, backward: bool,
                  packed: bool):
    """gsplat's counterpart of `scripts.bench_rasterizer.render`: same input leaves, same colours, same loss."""
    import gsplat

    params = input_leaves(scene, backward)
    colors, alphas, _ = gsplat.rasterization(
        params["means"], params["quats"], params["scales"], params["opacities"], params["sh"], view[None],
        scene["K"][None], width, height, sh_degree=3, packed=packed, eps2d=EPS_2D,
    )  # no background: black, as ours renders it here
    if backward:
        (colors.sum() + alphas.sum()).backward()
    return colors[0], alphas[0]


def case_inputs(name: str, cfg: PeerBenchConfig):
    """(scene on the GPU, GPU cameras for gsplat, the scene with K on the host and host cameras for ours): each
    rasterizer gets the camera where it reads it (ours on the host, as render() passes it)."""
    case = CASES[name]
    scene = tensors_to(make_scene(case.n, case.width, case.height, cfg.seed), torch.device("cuda"))
    views = [camera(i).cuda() for i in range(case.cameras)]
    host_views, host_scene = [camera(i) for i in range(case.cameras)], dict(scene, K=scene["K"].cpu())
    return scene, views, host_scene, host_views


def rasterizer_case(name: str, cfg: PeerBenchConfig) -> Dict[str, object]:
    case = CASES[name]
    scene, views, host_scene, host_views = case_inputs(name, cfg)
    result: Dict[str, object] = dict(n=case.n, width=case.width, height=case.height, cameras=case.cameras)
    runners = {
        "ours": lambda bwd: [render(cuda_backend, host_scene, v, case.width, case.height, bwd, absgrad=False)
                             for v in host_views],
        "gsplat_unpacked": lambda bwd: [gsplat_render(scene, v, case.width, case.height, bwd, False) for v in views],
        "gsplat_packed": lambda bwd: [gsplat_render(scene, v, case.width, case.height, bwd, True) for v in views],
    }
    for who, run in runners.items():
        result[f"{who}_forward_ms"], _ = gpu_timed(lambda: run(False), cfg.repeats)
        if case.backward:
            result[f"{who}_forward_backward_ms"], _ = gpu_timed(lambda: run(True), cfg.repeats)
    key = "forward_backward_ms" if case.backward else "forward_ms"
    best_gsplat = min(result[f"gsplat_unpacked_{key}"], result[f"gsplat_packed_{key}"])
    result[f"ours_over_best_gsplat_{key}"] = result[f"ours_{key}"] / best_gsplat
    with torch.no_grad():
        ours = render(cuda_backend, host_scene, host_views[0], case.width, case.height, False)
        theirs_rgb, theirs_alpha = gsplat_render(scene, views[0], case.width, case.height, False, False)
        diff = (ours.colors - theirs_rgb).abs()
        result["image_max_abs_diff"] = float(diff.max())
        result["image_mean_abs_diff"] = float(diff.mean())
        result["alpha_mean_abs_diff"] = float((ours.alphas - theirs_alpha).abs().mean())
    return result


def profile_case(name: str, cfg: PeerBenchConfig, repeats: int = 5) -> Dict[str, object]:
    """Per-kernel GPU time of `repeats` forward+backward renders, ours and gsplat's: where the difference lies."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    case = CASES[name]
    scene, views, host_scene, host_views = case_inputs(name, cfg)
    runners = {
        "ours": lambda: [render(cuda_backend, host_scene, v, case.width, case.height, True, absgrad=False)
                         for v in host_views],
        "gsplat": lambda: [gsplat_render(scene, v, case.width, case.height, True, False) for v in views],
    }
    result: Dict[str, object] = {}
    for who, run in runners.items():
        for _ in range(2):
            run()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            start = time.perf_counter()
            for _ in range(repeats):
                run()
            torch.cuda.synchronize()
            wall_ms = 1000.0 * (time.perf_counter() - start) / repeats
        kernels = {}
        for event in prof.key_averages():
            if event.device_type != DeviceType.CUDA:  # host ops also carry their kernels' time: count kernels once
                continue
            gpu_us = getattr(event, "self_device_time_total", None)
            if gpu_us is None:
                gpu_us = getattr(event, "self_cuda_time_total", 0.0)
            if gpu_us > 0:
                kernels[event.key] = (gpu_us / 1000.0 / repeats, event.count // repeats)
        busy_ms = sum(ms for ms, _ in kernels.values())
        top = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:14]
        print(f"[profile {name} {who}] wall {wall_ms:.2f} ms per frame set, GPU busy {busy_ms:.2f} ms "
              f"({len(kernels)} kinds of GPU work)", flush=True)
        for key, (ms, count) in top:
            print(f"    {ms:8.3f} ms  x{count:<3d} {key[:110]}", flush=True)
        result[who] = {"wall_ms": wall_ms, "gpu_busy_ms": busy_ms,
                       "kernels": {k: {"ms": ms, "calls": c} for k, (ms, c) in top}}
    return result


def gsplat_rasterize_gaussians(means, quats, scales, opacities, colors, viewmat, K, width, height, *, sh_degree=None,
                               background=None, covars=None, near=0.01, far=1e10, eps2d=EPS_2D, antialiased=False,
                               backend="auto", gabor_freqs=None, gabor_weights=None,
                               gabor_phases=None, check_finite=True, absgrad=False) -> RasterizeOutput:
    """`cuda_rasterizer.rasterize_gaussians`'s signature, served by `gsplat.rasterization` (3D Gaussians only;
    check_finite is ours alone: gsplat scans nothing)."""
    import gsplat

    del check_finite
    viewmat, K = viewmat.to(means), K.to(means)  # gsplat wants the camera on the device

    if gabor_freqs is not None:
        raise ValueError("gsplat has no Gabor primitives: the peer benchmark trains Gaussian scenes only")
    rgbd, alphas, meta = gsplat.rasterization(
        means, quats if covars is None else None, scales if covars is None else None, opacities, colors, viewmat[None],
        K[None], width, height, near_plane=near, far_plane=far, eps2d=eps2d, sh_degree=sh_degree, packed=False,
        backgrounds=None if background is None else background.reshape(1, -1), render_mode="RGB+ED",
        rasterize_mode="antialiased" if antialiased else "classic", covars=covars, absgrad=absgrad,
    )
    rgb, depth = rgbd[0, ..., :-1], rgbd[0, ..., -1:]
    out_meta = {"means2d": meta["means2d"], "radii": meta["radii"], "depths": meta["depths"]}
    return RasterizeOutput(rgb, alphas[0], depth, out_meta)


@contextlib.contextmanager
def gsplat_in_render() -> Iterator[None]:
    """Within the context, `render()` (and so the trainer) rasterizes through gsplat."""
    import importlib

    render_module = importlib.import_module("render.render")  # the module: `render.render` is the function

    original = render_module.rasterize_gaussians
    render_module.rasterize_gaussians = gsplat_rasterize_gaussians
    try:
        yield
    finally:
        render_module.rasterize_gaussians = original


def training_workload(name: str, cfg: PeerBenchConfig, out_dir: Path, rasterizer: str) -> Dict[str, object]:
    """Seconds per step of a fixed workload on the GPU (no stage timing: no extra syncs inside the step)."""
    from render import prepare_renderer
    from trainers.trainer import Trainer

    bench_cfg = BenchTrainingConfig(data_root=cfg.data_root, device="cuda", warmup_steps=cfg.warmup_steps,
                                    timed_steps=cfg.timed_steps)
    data, train_cfg, steps, warmup = make_workload(name, bench_cfg, out_dir)
    context = gsplat_in_render() if rasterizer == "gsplat" else contextlib.nullcontext()
    with context:
        torch.manual_seed(cfg.seed)
        trainer = Trainer(train_cfg, data)
        prepare_renderer(train_cfg.backend, trainer.device)
        for _ in range(warmup):
            trainer.train_step()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            stats = trainer.train_step()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {"workload": name, "rasterizer": rasterizer, "gaussians": len(trainer.scene), "steps": steps,
            "seconds_per_step": seconds / steps, "steps_per_second": steps / seconds, "last_psnr": stats["psnr"]}


def main(cfg: PeerBenchConfig) -> Dict[str, object]:
    import gsplat

    if not torch.cuda.is_available():
        raise SystemExit("bench_gsplat_peer needs a CUDA GPU")
    props = torch.cuda.get_device_properties(0)
    results: Dict[str, object] = {
        "device": props.name, "torch": torch.__version__, "cuda": torch.version.cuda,
        "gsplat": gsplat.__version__, "rasterizer": {}, "training": {},
    }
    print(f"device {props.name}, torch {torch.__version__}, gsplat {gsplat.__version__}", flush=True)
    for name in cfg.cases:
        try:
            results["rasterizer"][name] = result = rasterizer_case(name, cfg)
            print(name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}, flush=True)
        except Exception:  # one failing case must not hide the others' figures
            traceback.print_exc()
        torch.cuda.empty_cache()
    results["profile"] = {}
    for name in cfg.profile_cases:
        try:
            results["profile"][name] = profile_case(name, cfg)
        except Exception:
            traceback.print_exc()
    with tempfile.TemporaryDirectory(prefix="sf-peer-") as tmp:
        for name in cfg.workloads:
            for rasterizer in ("ours", "gsplat"):
                try:
                    result = training_workload(name, cfg, Path(tmp), rasterizer)
                except FileNotFoundError as exc:
                    print(f"{name}: skipped ({exc})", flush=True)
                    break
                except Exception:
                    traceback.print_exc()
                    continue
                results["training"][f"{name}/{rasterizer}"] = result
                print(result, flush=True)
            pair = [results["training"].get(f"{name}/{r}") for r in ("ours", "gsplat")]
            if all(pair):
                print(f"{name}: ours {1000 * pair[0]['seconds_per_step']:.2f} ms/step, gsplat "
                      f"{1000 * pair[1]['seconds_per_step']:.2f} ms/step "
                      f"(ours/gsplat steps per second {pair[0]['steps_per_second'] / pair[1]['steps_per_second']:.2f})",
                      flush=True)
    if cfg.out:
        write_results(cfg.out, results)
    return results


if __name__ == "__main__":
    main(tyro.cli(PeerBenchConfig))
