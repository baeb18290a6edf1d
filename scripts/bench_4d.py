"""Benchmark B5 (DESIGN.md section 8): 4D Gaussians, slicing and rasterising timed apart.

Run: python -m scripts.bench_4d [--n 100000] [--size 400] [--out b5.json]
A seeded random Gaussian4DScene fills the camera frustum (as bench_rasterizer's B-scenes) with times spread over
[0, 1] and random space-time rotations. Per frame (a new time each frame, parameters unchanged, so the cached
conditional covariance is reused as in playback) it times: the torch slice (`rasterizer_inputs`: means, opacities,
temporal culling) three ways: the native kernel (sf_math.h slice4, what no-grad rendering uses), torch with Sigma3
and v cached, torch uncached (the cost after each optimiser step); then the rasteriser on its output (projection, SH,
blending); and each slice's share of the frame. Prints a host-speed probe first and last:
this VM's speed drifts, so compare runs only next to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
import tyro

from cuda_rasterizer import rasterize_gaussians
from render import Camera
from scenes import Gaussian4DScene

from .bench_rasterizer import host_speed_gflops, timed_interleaved, write_results


@dataclass
class Bench4DConfig:
    n: int = 100_000
    """Primitives."""
    size: int = 400
    """Image width and height."""
    repeats: int = 7
    threads: int = 2
    backend: str = "cpu"
    sh_degree: int = 3
    backward: bool = True
    """Also time forward + backward (a training step's slice against its whole render)."""
    seed: int = 0
    out: Optional[str] = None


def make_scene4(n: int, size: int, seed: int, sh_degree: int = 3) -> Gaussian4DScene:
    """Random 4D Gaussians in the frustum (depth 2..12, about 0.5-10 px sigma) of a camera with fx = 0.9 size."""
    g = torch.Generator().manual_seed(seed)
    fx = 0.9 * size
    z = 2.0 + 10.0 * torch.rand(n, generator=g)
    u = (torch.rand(n, generator=g) * 1.1 - 0.55) * size
    v = (torch.rand(n, generator=g) * 1.1 - 0.55) * size
    sigma_px = torch.exp(torch.randn(n, 3, generator=g) * 0.6 + math.log(2.0)).clamp(0.3, 15.0)
    params = {
        "means": torch.stack([u * z / fx, v * z / fx, z], dim=-1),
        "times": torch.rand(n, 1, generator=g),
        "quats": torch.randn(n, 4, generator=g),
        "quats_r": torch.randn(n, 4, generator=g),
        "log_scales": torch.log(sigma_px * z[:, None] / fx),
        "log_scale_t": torch.log(torch.rand(n, 1, generator=g) * 0.3 + 0.05),
        "opacity_logits": torch.randn(n, generator=g),
        "sh_dc": torch.randn(n, 1, 3, generator=g) * 0.2,
        "sh_rest": torch.randn(n, (sh_degree + 1) ** 2 - 1, 3, generator=g) * 0.2,
    }
    return Gaussian4DScene(params, sh_degree=sh_degree)


def synced(fn: Callable[[], object], on_gpu: bool) -> Callable[[], object]:
    """`fn`, followed by a device synchronisation on the GPU (kernels are asynchronous: time them to completion)."""
    if not on_gpu:
        return fn

    def run_and_wait():
        result = fn()
        torch.cuda.synchronize()
        return result

    return run_and_wait


def run(cfg: Bench4DConfig) -> Dict[str, object]:
    torch.set_num_threads(cfg.threads)
    probe_start = host_speed_gflops()
    scene = make_scene4(cfg.n, cfg.size, cfg.seed, cfg.sh_degree)
    on_gpu = cfg.backend == "cuda"
    if on_gpu:
        if not torch.cuda.is_available():
            raise SystemExit("--backend cuda needs a CUDA GPU")
        scene = scene.to(torch.device("cuda"))
    background = torch.ones(3, device=scene.params["means"].device)
    cam = Camera(torch.eye(4), 0.9 * cfg.size, 0.9 * cfg.size, cfg.size / 2, cfg.size / 2, cfg.size, cfg.size)
    times = iter([0.1 + 0.8 * ((i * 0.618) % 1.0) for i in range(10_000)])
    frame: Dict[str, object] = {}

    def slice_with(native: bool, uncached: bool = False):
        scene.native_slice = native
        if uncached:
            scene._cache = None  # as after an optimiser step: recompute Sigma3 and v too
        return scene.rasterizer_inputs(cam.with_time(next(times)))

    with torch.no_grad():
        frame["inputs"] = slice_with(True)
        kept = int(frame["inputs"]["means"].shape[0])

        def rasterise():
            rasterize_gaussians(viewmat=cam.world_to_camera, K=cam.K, width=cam.width, height=cam.height,
                                backend=cfg.backend, background=background, **frame["inputs"])

        # the four take turns within each repeat, so the machine's drift affects them alike
        best = timed_interleaved(
            {0: synced(lambda: slice_with(True), on_gpu), 1: synced(lambda: slice_with(False), on_gpu),
             2: synced(lambda: slice_with(False, True), on_gpu), 3: synced(rasterise, on_gpu)},
            cfg.repeats, lambda _: None,
        )
    native_ms, slice_ms, uncached_ms, raster_ms = (best[k][0] for k in range(4))
    train = {}
    if cfg.backward:  # a training step's share: slice forward + backward against render forward + backward

        def slice_backward(native: bool):
            scene.native_slice = native
            out = scene.slice(next(times))
            (out["means"].sum() + out["covars"].sum() + out["opacities"].sum()).backward()

        def render_backward():
            scene.native_slice = True
            inputs = scene.rasterizer_inputs(cam.with_time(next(times)))
            out = rasterize_gaussians(viewmat=cam.world_to_camera, K=cam.K, width=cam.width, height=cam.height,
                                      backend=cfg.backend, background=background, **inputs)
            out.colors.sum().backward()

        best = timed_interleaved({0: synced(lambda: slice_backward(True), on_gpu),
                                  1: synced(lambda: slice_backward(False), on_gpu), 2: synced(render_backward, on_gpu)},
                                 cfg.repeats, lambda _: None)
        train = {"train_slice_native_ms": best[0][0], "train_slice_torch_ms": best[1][0], "train_render_ms": best[2][0]}
    result = {
        "case": "B5", "n": cfg.n, "size": cfg.size, "threads": cfg.threads, "backend": cfg.backend,
        "kept_after_temporal_cull": kept,
        "slice_native_ms": native_ms, "slice_torch_cached_ms": slice_ms, "slice_torch_uncached_ms": uncached_ms,
        "raster_ms": raster_ms,
        "share_native": native_ms / (native_ms + raster_ms),
        "share_torch_cached": slice_ms / (slice_ms + raster_ms),
        "share_torch_uncached": uncached_ms / (uncached_ms + raster_ms),
        **train,
        "host_gflops_start": probe_start, "host_gflops_end": host_speed_gflops(),
    }
    print(f"host speed probe: {probe_start:.1f} GFLOP/s at start, {result['host_gflops_end']:.1f} at end (1-thread matmul)")
    print(f"B5 {cfg.n} 4D Gaussians at {cfg.size}x{cfg.size}, {cfg.threads} threads, backend {cfg.backend}: "
          f"raster {raster_ms:.1f} ms; slice (rasterizer_inputs at a new time) native {native_ms:.1f} ms "
          f"({100 * result['share_native']:.1f}% of the frame), torch with cached Sigma3 {slice_ms:.1f} ms "
          f"({100 * result['share_torch_cached']:.1f}%), torch uncached {uncached_ms:.1f} ms "
          f"({100 * result['share_torch_uncached']:.1f}%); {kept} of {cfg.n} kept after temporal culling")
    if train:
        print(f"training (forward + backward): whole render incl. native slice {train['train_render_ms']:.1f} ms; "
              f"slice alone native {train['train_slice_native_ms']:.1f} ms, torch {train['train_slice_torch_ms']:.1f} ms")
    if cfg.out:
        write_results(cfg.out, result)
    return result


if __name__ == "__main__":
    run(tyro.cli(Bench4DConfig))
