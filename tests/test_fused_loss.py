"""Fused L1 + D-SSIM (cuda_rasterizer.fused_loss): native kernels against the PyTorch oracle, finite differences,
thread counts, real images, and the metric sf-eval reports."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from cuda_rasterizer import cpu_backend
from cuda_rasterizer.fused_loss import l1_ssim_loss, reference_l1_ssim, reference_ssim, ssim_value
from trainers.losses import photometric_loss, ssim


def _pair(h, w, c, seed, dtype=torch.float32, related=True):
    gen = torch.Generator().manual_seed(seed)
    ref = torch.rand(h, w, c, generator=gen, dtype=torch.float64)
    img = (ref + 0.15 * torch.randn(h, w, c, generator=gen, dtype=torch.float64)).clamp(0, 1) if related else torch.rand(
        h, w, c, generator=gen, dtype=torch.float64
    )
    return img.to(dtype), ref.to(dtype)


def _grads(fn, img, ref, weight):
    x = img.clone().requires_grad_(True)
    loss, s = fn(x, ref, weight)
    loss.backward()
    return loss.detach(), s.detach(), x.grad


@pytest.mark.parametrize("shape", [(48, 64, 3), (37, 53, 3), (7, 5, 1), (11, 11, 4), (3, 40, 3), (120, 90, 2)])
@pytest.mark.parametrize("weight", [0.2, 1.0])
def test_native_matches_pytorch_in_float32(shape, weight):
    img, ref = _pair(*shape, seed=sum(shape))
    loss, s, grad = _grads(l1_ssim_loss, img, ref, weight)
    ref_loss, ref_s, ref_grad = _grads(reference_l1_ssim, img, ref, weight)
    assert abs(float(loss - ref_loss)) < 1e-5 and abs(float(s - ref_s)) < 1e-5
    scale = float(ref_grad.abs().max())
    assert float((grad - ref_grad).abs().max()) <= 1e-5 * scale + 1e-9, "gradient differs from autograd"


def test_native_matches_pytorch_in_float64_tightly():
    img, ref = _pair(23, 31, 3, seed=5, dtype=torch.float64, related=False)
    loss, s, grad = _grads(l1_ssim_loss, img, ref, 0.2)
    ref_loss, ref_s, ref_grad = _grads(reference_l1_ssim, img, ref, 0.2)
    assert abs(float(loss - ref_loss)) < 1e-12 and abs(float(s - ref_s)) < 1e-12
    assert torch.allclose(grad, ref_grad, rtol=1e-9, atol=1e-14)


def test_gradient_matches_finite_differences():
    img, ref = _pair(9, 8, 2, seed=3, dtype=torch.float64)
    img = img.clamp(0.05, 0.95)  # keep away from |x - y| kinks at exact ties (none here, random data)
    x = img.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: l1_ssim_loss(t, ref, 0.3)[0], (x,), eps=1e-6, atol=1e-8)


def test_thread_counts_give_identical_results():
    img, ref = _pair(64, 80, 3, seed=9)
    results = []
    for threads in (1, 2):
        cpu_backend.set_num_threads(threads)
        try:
            results.append(_grads(l1_ssim_loss, img, ref, 0.2))
        finally:
            cpu_backend.set_num_threads(None)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][2], results[1][2])


def test_identical_images_give_ssim_one_and_zero_loss():
    img, _ = _pair(20, 30, 3, seed=1)
    loss, s = l1_ssim_loss(img, img, 0.2)
    assert float(s) == pytest.approx(1.0, abs=1e-6) and float(loss) == pytest.approx(0.0, abs=1e-6)


def test_photometric_loss_and_metric_use_the_kernel_and_agree_with_pytorch():
    img, ref = _pair(50, 60, 3, seed=2)
    native = photometric_loss(img, ref, 0.2)
    torch_graph = photometric_loss(img, ref, 0.2, native=False)
    assert abs(float(native - torch_graph)) < 1e-5
    assert abs(float(ssim(img, ref)) - float(reference_ssim(img, ref))) < 1e-5
    assert float(ssim_value(img, ref)) == float(ssim(img, ref))  # sf-eval's metric is the kernel's value


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(H, W, C\) of one shape"):
        l1_ssim_loss(torch.rand(4, 5, 3), torch.rand(4, 6, 3))


def test_real_images_match_pytorch(shared_data):
    folder = shared_data / "nerf_synthetic_lego_400" / "train"
    files = sorted(folder.glob("*.png"))[:2]
    if len(files) < 2:
        pytest.skip(f"no lego training images in {folder}")
    a, b = (torch.from_numpy(iio.imread(f)[..., :3].astype(np.float32) / 255.0) for f in files)
    loss, s, grad = _grads(l1_ssim_loss, a, b, 0.2)
    ref_loss, ref_s, ref_grad = _grads(reference_l1_ssim, a, b, 0.2)
    assert 0.3 < float(s) < 0.999  # two different views: a real, non-trivial SSIM
    assert abs(float(loss - ref_loss)) < 1e-5 and abs(float(s - ref_s)) < 1e-5
    # Flat white background: s_xx - mu^2 cancels in float32, so judge both float32 gradients against float64 truth.
    _, _, truth = _grads(reference_l1_ssim, a.double(), b.double(), 0.2)
    native_err = float((grad.double() - truth).abs().max())
    torch_err = float((ref_grad.double() - truth).abs().max())
    assert native_err <= 2 * torch_err + 1e-12, f"native float32 gradient error {native_err:.3g} vs PyTorch's {torch_err:.3g}"
    assert native_err <= 1e-3 * float(truth.abs().max())


def test_cuda_kernel_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    img, ref = _pair(97, 131, 3, seed=4)
    cpu_loss, cpu_s, cpu_grad = _grads(l1_ssim_loss, img, ref, 0.2)
    gpu_loss, gpu_s, gpu_grad = _grads(l1_ssim_loss, img.cuda(), ref.cuda(), 0.2)
    assert abs(float(gpu_loss.cpu() - cpu_loss)) < 1e-6 and abs(float(gpu_s.cpu() - cpu_s)) < 1e-6
    assert torch.allclose(gpu_grad.cpu(), cpu_grad, rtol=1e-4, atol=1e-10)


def test_one_pass_also_gives_the_psnr_error():
    from cuda_rasterizer.fused_loss import photometric_terms
    from trainers.losses import psnr, psnr_from_mse

    img, ref = _pair(40, 50, 3, seed=8)
    img = img * 1.3 - 0.1  # values outside [0, 1]: PSNR measures the image as displayed (clamped)
    _, _, mse = photometric_terms(img, ref, 0.2)
    _, _, ref_mse = photometric_terms(img, ref, 0.2, native=False)
    assert abs(float(mse) - float(ref_mse)) < 1e-7
    assert psnr_from_mse(float(mse)) == pytest.approx(psnr(img, ref), abs=1e-4)


@pytest.mark.parametrize("mask_channels", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_masked_loss_equals_the_loss_of_the_masked_image(mask_channels, dtype):
    """mask=: the terms of where(mask, img, ref), built by the CPU kernel itself; masked-out values get no gradient."""
    from cuda_rasterizer.fused_loss import photometric_terms

    img, ref = _pair(45, 38, 3, seed=12, dtype=dtype)
    gen = torch.Generator().manual_seed(3)
    mask = torch.rand(45, 38, mask_channels, generator=gen) > 0.3
    x = img.clone().requires_grad_(True)
    loss, s, mse = photometric_terms(x, ref, 0.2, mask=mask)
    loss.backward()
    y = img.clone().requires_grad_(True)
    ref_loss, ref_s, ref_mse = photometric_terms(torch.where(mask, y, ref), ref, 0.2, native=False)
    ref_loss.backward()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for got, want in ((loss, ref_loss), (s, ref_s), (mse, ref_mse)):
        assert abs(float((got - want).detach())) < tol
    assert torch.allclose(x.grad, y.grad, rtol=1e-4 if dtype == torch.float32 else 1e-9, atol=1e-12)
    masked_out = ~mask.expand_as(img)
    assert masked_out.any() and (x.grad[masked_out] == 0).all()
    assert (x.grad[~masked_out] != 0).float().mean() > 0.9  # the kept values are supervised
    # the mask matters: without it the loss differs
    assert abs(float(photometric_terms(img, ref, 0.2)[0]) - float(loss.detach())) > 1e-4


def test_mask_of_the_wrong_shape_or_type_is_a_clear_error():
    from cuda_rasterizer.fused_loss import photometric_terms

    img, ref = _pair(10, 12, 3, seed=1)
    with pytest.raises(ValueError, match=r"mask must be a bool .* got torch.bool \(10, 11, 1\)"):
        photometric_terms(img, ref, 0.2, mask=torch.ones(10, 11, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask must be a bool .* got torch.float32"):
        photometric_terms(img, ref, 0.2, mask=torch.ones(10, 12, 1))


def test_masked_l1_only_loss_ignores_masked_pixels():
    """ssim_weight = 0 (plain L1) with a mask: the same where(mask, img, ref) semantics as the fused kernel."""
    from trainers.losses import photometric_loss_and_mse

    img, ref = _pair(16, 20, 3, seed=6)
    mask = torch.zeros(16, 20, 1, dtype=torch.bool)
    mask[:8] = True
    x = img.clone().requires_grad_(True)
    loss, mse = photometric_loss_and_mse(x, ref, 0.0, mask=mask)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(float((img[:8] - ref[:8]).abs().sum() / img.numel()), rel=1e-6)
    assert (x.grad[8:] == 0).all() and (x.grad[:8] != 0).any()
    with pytest.raises(ValueError, match="mask must be a bool"):
        photometric_loss_and_mse(x, ref, 0.0, mask=torch.ones(16, 21, 1, dtype=torch.bool))


def test_scaled_loss_scales_the_gradient_and_repeated_backward_agrees():
    """The backward passes its saved gradient through unchanged when the upstream gradient is 1 and scales it
    otherwise: w * loss must give w times the gradient, and a second backward of the same graph the same gradient."""
    img, ref = _pair(24, 20, 3, seed=11)
    x = img.clone().requires_grad_(True)
    loss = l1_ssim_loss(x, ref, 0.2)[0]
    (g_one,) = torch.autograd.grad(loss, x, retain_graph=True)
    (g_scaled,) = torch.autograd.grad(0.25 * loss, x, retain_graph=True)
    (g_again,) = torch.autograd.grad(loss, x)
    assert g_one.abs().max() > 0
    torch.testing.assert_close(g_scaled, 0.25 * g_one, rtol=1e-6, atol=0)
    assert torch.equal(g_again, g_one)
