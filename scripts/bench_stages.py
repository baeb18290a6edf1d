"""Per-primitive stages of the CPU pipeline, in nanoseconds per primitive: covariance (forward, and forward + VJP),
projection (forward, and forward + VJP), SH colours (forward and VJP), the Gabor terms' world frequencies (native against the PyTorch reference,
forward + backward) and their projection into the image (forward, and forward + VJP); and the training step's
per-image stage, the fused L1 + D-SSIM loss with its gradient, in ms per image (fern's 504x378).

Run: python -m scripts.bench_stages [--n 1000000] [--threads 1] [--repeats 7]
Each figure is the best of `repeats` timed calls after one warm-up (this VM's speed drifts; the best is the least
disturbed), with a host-speed probe at the start and the end. These stages are per-primitive work that dominates at
1-2M small primitives (B3/B4) and that Gabor training pays every step.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cuda_rasterizer import cpu_backend  # noqa: E402
from cuda_rasterizer.gabor_frequencies import reference_world_frequencies, world_frequencies  # noqa: E402
from scripts.bench_rasterizer import camera, host_speed_gflops, make_scene, write_results  # noqa: E402


@dataclass
class StagesConfig:
    n: int = 1_000_000  # primitives
    gabor_n: int = 100_000  # primitives for the Gabor stages (a training-sized scene)
    terms: int = 4
    threads: int = 1
    repeats: int = 7
    seed: int = 0
    loss_image: Tuple[int, int] = (378, 504)  # (H, W) of the fused-loss stage: LLFF fern images_8
    out: Optional[str] = None  # write the results as JSON here


def best_ns_per_item(fn: Callable[[], object], items: int, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e9 / items


def main(cfg: StagesConfig) -> Dict[str, object]:
    cpu_backend.set_num_threads(cfg.threads)
    torch.set_num_threads(cfg.threads)
    cpu_backend.ensure_built()
    result: Dict[str, object] = dict(config=cfg.__dict__, host_gflops_at_start=host_speed_gflops())
    s = make_scene(cfg.n, 648, 420, cfg.seed)
    view = camera(0)
    covars = cpu_backend.quat_scale_to_covar(s["quats"], s["scales"])
    dirs = torch.nn.functional.normalize(s["means"] - 1.0, dim=-1)
    sh = s["sh"].clone().requires_grad_(True)

    def sh_forward_backward():
        out = cpu_backend.eval_sh(3, sh, dirs)
        out.backward(torch.ones_like(out))

    leaves = [t.clone().requires_grad_(True) for t in (s["means"], covars, s["opacities"])]

    cov_leaves = [t.clone().requires_grad_(True) for t in (s["quats"], s["scales"])]

    def covariance_forward_backward():
        cov = cpu_backend.quat_scale_to_covar(*cov_leaves)
        torch.autograd.grad(cov.sum(), cov_leaves)

    def projection_forward_backward():
        proj = cpu_backend.project(*leaves, view, s["K"], 648, 420)
        loss = proj.means2d.sum() + proj.conics.sum() + proj.depths.sum() + proj.opacities.sum()
        torch.autograd.grad(loss, leaves)

    stages = {
        "covariance_forward": lambda: cpu_backend.quat_scale_to_covar(s["quats"], s["scales"]),
        "covariance_forward_backward": covariance_forward_backward,
        "projection_forward": lambda: cpu_backend.project(s["means"], covars, s["opacities"], view, s["K"], 648, 420),
        "projection_forward_backward": projection_forward_backward,
        "sh3_forward": lambda: cpu_backend.eval_sh(3, s["sh"], dirs),
        "sh3_forward_backward": sh_forward_backward,
    }
    ns = {name: best_ns_per_item(fn, cfg.n, cfg.repeats) for name, fn in stages.items()}

    g = torch.Generator().manual_seed(cfg.seed)
    m = cfg.gabor_n
    nu = torch.randn(m, cfg.terms, 3, generator=g).requires_grad_(True)
    quats = torch.randn(m, 4, generator=g).requires_grad_(True)
    scales = (torch.rand(m, 3, generator=g) + 0.1).requires_grad_(True)

    def fwd_bwd(fn):
        def run():
            out = fn(nu, quats, scales)
            out.backward(torch.ones_like(out))
        return run

    ns["gabor_world_frequencies_native_fwd_bwd"] = best_ns_per_item(fwd_bwd(world_frequencies), m, cfg.repeats)
    ns["gabor_world_frequencies_reference_fwd_bwd"] = best_ns_per_item(fwd_bwd(reference_world_frequencies), m,
                                                                       cfg.repeats)

    # the terms' projection into the image (cpu_backend.project_gabor_terms) for the first gabor_n primitives
    freqs = (torch.randn(m, cfg.terms, 3, generator=g) * 3.0).requires_grad_(True)
    raw = torch.rand(m, cfg.terms, generator=g) + 0.1
    weights = (0.9 * raw / raw.sum(dim=-1, keepdim=True)).requires_grad_(True)
    phases = (torch.rand(m, cfg.terms, generator=g) * 6.283).requires_grad_(True)
    term_leaves = [s["means"][:m].clone().requires_grad_(True), covars[:m].clone().requires_grad_(True), freqs, weights,
                   phases]
    radii = cpu_backend.project(s["means"][:m], covars[:m], s["opacities"][:m], view, s["K"], 648, 420).radii

    def gabor_terms_forward():
        with torch.no_grad():
            cpu_backend.project_gabor_terms(*term_leaves, view, s["K"], 648, 420, radii)

    def gabor_terms_forward_backward():
        terms = cpu_backend.project_gabor_terms(*term_leaves, view, s["K"], 648, 420, radii)
        torch.autograd.grad(terms.sum(), term_leaves)

    ns["gabor_terms_forward"] = best_ns_per_item(gabor_terms_forward, m, cfg.repeats)
    ns["gabor_terms_forward_backward"] = best_ns_per_item(gabor_terms_forward_backward, m, cfg.repeats)
    result["ns_per_primitive"] = ns

    from cuda_rasterizer.fused_loss import photometric_terms

    h, w = cfg.loss_image
    image = torch.rand(h, w, 3, generator=g).requires_grad_(True)
    target = (image.detach() + 0.1 * torch.randn(h, w, 3, generator=g)).clamp(0, 1)
    mask = (torch.rand(h, w, 1, generator=g) > 0.02).expand(h, w, 3).contiguous()  # as the trainer keeps it

    def loss_with_gradient(with_mask: bool):
        def run():
            image.grad = None
            photometric_terms(image, target, 0.2, mask=mask if with_mask else None)[0].backward()
        return run

    ms = {
        "l1_ssim_with_gradient": best_ns_per_item(loss_with_gradient(False), 1, cfg.repeats) / 1e6,
        "l1_ssim_with_gradient_masked": best_ns_per_item(loss_with_gradient(True), 1, cfg.repeats) / 1e6,
    }
    result["ms_per_image"] = ms
    result["host_gflops_at_end"] = host_speed_gflops()
    for name, value in ns.items():
        items = cfg.gabor_n if name.startswith("gabor") else cfg.n
        print(f"{name}: {value:.1f} ns per primitive ({value * items / 1e6:.1f} ms for {items:,})")
    for name, value in ms.items():
        print(f"{name}: {value:.2f} ms per {w}x{h} RGB image")
    print("host speed (1-thread matmul GFLOP/s): start %.1f, end %.1f" % (result["host_gflops_at_start"],
                                                                          result["host_gflops_at_end"]))
    if cfg.out:
        write_results(cfg.out, result)
    return result


if __name__ == "__main__":
    main(tyro.cli(StagesConfig))
