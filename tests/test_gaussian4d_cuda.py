"""The fused CUDA slice kernel against the torch slice (skips without a GPU)."""

from __future__ import annotations

import pytest
import torch

from render import Camera

from test_gaussian4d import random_scene4

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the slice kernel runs there)")


@pytest.mark.parametrize("time_filter", [0.0, 0.1])
@pytest.mark.parametrize("t", [0.0, 0.45, 1.0])
def test_cuda_slice_matches_torch_slice(t, time_filter):
    from cuda_rasterizer.cuda_backend import slice4

    scene = random_scene4(n=5000, degree=1, seed=12).cuda()
    scene.time_filter = time_filter
    with torch.no_grad():
        scene.native_slice = False
        expect_means, expect_cov, expect_opac, expect_exp = scene._slice_terms(t)
        got = slice4(scene.params["means"], scene.params["times"], scene.params["quats"], scene.params["quats_r"],
                     scene.scales4, scene.opacities, t, time_filter)
    for got_t, want, name in zip(got, (expect_means, expect_cov, expect_opac, expect_exp), ("means", "covars", "opacities", "exponent")):
        assert torch.allclose(got_t, want, rtol=1e-4, atol=1e-6), name


def test_cuda_scene_inputs_match_cpu_scene_inputs():
    scene = random_scene4(n=3000, degree=1, seed=13)
    with torch.no_grad():
        scene.params["log_scale_t"].fill_(-2.5)  # short-lived primitives: temporal culling matters
    cam = Camera(torch.eye(4), 50.0, 50.0, 32.0, 32.0, 64, 64, time=0.3)
    with torch.no_grad():
        scene.native_slice = False  # torch on the CPU, the fused kernel on the GPU
        cpu_inputs, cpu_index = scene.rasterizer_inputs_with_index(cam)
        scene.native_slice = True
        gpu = scene.cuda()
        gpu_inputs, gpu_index = gpu.rasterizer_inputs_with_index(cam)
    assert torch.equal(cpu_index, gpu_index.cpu()) and cpu_index.numel() < 3000
    for name in ("means", "covars", "opacities", "colors"):
        assert torch.allclose(gpu_inputs[name].cpu(), cpu_inputs[name], rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("time_filter", [0.0, 0.1])
def test_cuda_slice_gradients_match_torch_slice(time_filter):
    cpu = random_scene4(n=2000, degree=1, seed=15)
    gpu = random_scene4(n=2000, degree=1, seed=15).cuda()
    cpu.time_filter = gpu.time_filter = time_filter
    cpu.native_slice = False  # torch autograd on the CPU, the fused VJP kernel on the GPU
    gen = torch.Generator().manual_seed(16)
    weights = [torch.randn(2000, 3, generator=gen), torch.randn(2000, 3, 3, generator=gen), torch.randn(2000, generator=gen)]
    for scene in (cpu, gpu):
        out = scene.slice(0.55)
        loss = sum((out[k] * w.to(out[k].device)).sum() for k, w in zip(("means", "covars", "opacities"), weights))
        loss.backward()
    for name, p in cpu.params.items():
        if name.startswith("sh_"):
            continue
        assert torch.allclose(gpu.params[name].grad.cpu(), p.grad, rtol=1e-3, atol=1e-4), name


def test_cuda_velocities_match_torch_values_and_gradients():
    """Gaussian4DScene.velocities (the rigidity prior's input) on the CUDA slice kernel against the torch path."""
    scene = random_scene4(n=4000, degree=1, seed=14).cuda()
    scene.time_filter = 0.05
    rows = torch.arange(0, 4000, 3, device="cuda")
    results = []
    for native in (True, False):
        scene.native_slice = native
        for p in scene.params.values():
            p.requires_grad_(True)
            p.grad = None
        v = scene.velocities(rows)
        (v * v).sum().backward()
        results.append((v.detach(), scene.params["quats_r"].grad.clone(), scene.params["log_scale_t"].grad.clone()))
    for got, want in zip(results[0], results[1]):
        assert torch.allclose(got, want, rtol=1e-3, atol=1e-5)
