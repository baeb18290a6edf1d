"""Radiance-field kernels: the native CPU kernels against the PyTorch reference (values and gradients, float64),
the CUDA build (wherever nvcc exists) and CUDA parity (GPU only)."""

import os
import shutil

import pytest
import torch

from cuda_rasterizer import field_ops as F

_NVCC = shutil.which("nvcc") or (os.path.exists("/usr/local/cuda/bin/nvcc") and "/usr/local/cuda/bin/nvcc")
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA parity needs a GPU")


def _grid(levels=4, log2=9, base=2, finest=24, feats=2, dtype=torch.float64, seed=0):
    res, offsets = F.hash_grid_levels(levels, log2, base, finest)
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(int(offsets[-1]), feats, generator=g, dtype=dtype) * 0.1
    return res, offsets, table


def _samples(rays=7, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 9, (rays,), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    s = int(offsets[-1])
    sigma = torch.rand(s, generator=g, dtype=dtype) * 6
    rgb = torch.rand(s, 3, generator=g, dtype=dtype)
    dt = torch.rand(s, generator=g, dtype=dtype) * 0.3 + 0.05
    t = torch.cat([torch.cumsum(dt[offsets[i]:offsets[i + 1]], 0) for i in range(rays)]) if s else dt
    return sigma, rgb, t, dt, offsets


def test_hash_grid_levels_dense_then_hashed():
    res, offsets = F.hash_grid_levels(16, 19, 16, 2048)
    assert int(res[0]) == 16 and int(res[-1]) == 2048
    sizes = (offsets[1:] - offsets[:-1]).tolist()
    assert sizes[0] == 17**3 and sizes[-1] == 2**19


def test_hash_encode_matches_reference_values_and_gradients():
    res, offsets, table = _grid()
    x = torch.rand(300, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x[0] = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)  # the cube's faces
    table_n = table.clone().requires_grad_(True)
    table_r = table.clone().requires_grad_(True)
    out_n = F.hash_encode(x, table_n, res, offsets)
    out_r = F.reference_hash_encode(x, table_r, res, offsets)
    torch.testing.assert_close(out_n, out_r, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(out_r)
    (out_n * w).sum().backward()
    (out_r * w).sum().backward()
    torch.testing.assert_close(table_n.grad, table_r.grad, rtol=1e-10, atol=1e-12)


def test_hash_encode_gradcheck():
    res, offsets, table = _grid(levels=2, log2=6, finest=6)
    x = torch.rand(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    table.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda tb: F.hash_encode(x, tb, res, offsets), (table,))


def test_composite_matches_reference_values_and_gradients():
    sigma, rgb, t, dt, offsets = _samples()
    inputs_n = [sigma.clone().requires_grad_(True), rgb.clone().requires_grad_(True)]
    inputs_r = [sigma.clone().requires_grad_(True), rgb.clone().requires_grad_(True)]
    out_n = F.composite(*inputs_n, t, dt, offsets)
    out_r = F.reference_composite(*inputs_r, t, dt, offsets)
    for a, b in zip(out_n, out_r):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    ws = [torch.randn_like(o) for o in out_r]
    sum((o * w).sum() for o, w in zip(out_n, ws)).backward()
    sum((o * w).sum() for o, w in zip(out_r, ws)).backward()
    for a, b in zip(inputs_n, inputs_r):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)


def test_composite_gradcheck_and_early_stop():
    sigma, rgb, t, dt, offsets = _samples(rays=4, seed=5)
    sigma.requires_grad_(True), rgb.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s, c: F.composite(s, c, t, dt, offsets, 0.0), (sigma, rgb))
    # an opaque first sample ends the ray: later samples get no weight and no gradient
    s = torch.tensor([50.0, 1.0, 1.0], dtype=torch.float64, requires_grad=True)
    c = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)
    off = torch.tensor([0, 3])
    rgb_out, op, _ = F.composite(s, c, torch.tensor([1.0, 2, 3]).double(), torch.ones(3).double(), off, 1e-4)
    rgb_out.sum().backward()
    assert float(op.detach()) == pytest.approx(1.0, abs=1e-12)
    assert s.grad[1:].abs().max() == 0 and c.grad[1:].abs().max() == 0


@pytest.mark.parametrize("mode", [F.MODE_BOX, F.MODE_CONTRACT])
def test_march_matches_reference(mode):
    g = torch.Generator().manual_seed(6)
    res = 8
    grid = (torch.rand(res, res, res, generator=g) > 0.6).to(torch.uint8)
    rays = 6
    o = torch.randn(rays, 3, generator=g, dtype=torch.float64) * 0.2 - torch.tensor([0.0, 0.0, 2.5], dtype=torch.float64)
    d = torch.nn.functional.normalize(torch.randn(rays, 3, generator=g, dtype=torch.float64) * 0.2 + torch.tensor([0, 0, 1.0]).double(), dim=1)
    params = torch.tensor([-1.0, -1, -1, 1, 1, 1], dtype=torch.float64) if mode == F.MODE_BOX else torch.tensor([0.0, 0, 0, 1, 0, 0], dtype=torch.float64)
    t0, t1 = torch.full((rays,), 0.5, dtype=torch.float64), torch.full((rays,), 6.0, dtype=torch.float64)
    jitter = torch.rand(rays, generator=g, dtype=torch.float64)
    args = (o, d, t0, t1, jitter, grid, params, mode, 0.05, 0.5, 0.02 if mode else 0.0, 40)
    native = F.march(*args)
    ref = F.reference_march(*args)
    assert torch.equal(native[0], ref[0]) and torch.equal(native[3], ref[3])
    torch.testing.assert_close(native[1], ref[1]), torch.testing.assert_close(native[2], ref[2])
    assert int(native[0][-1]) > 0


@pytest.mark.skipif(not _NVCC, reason="nvcc not installed")
def test_cuda_field_extension_compiles():
    """CI's proof that the CUDA field kernels compile and link (no GPU needed)."""
    from cuda_rasterizer._field_build import build_cuda_field_extension

    ext = build_cuda_field_extension("8.0")
    for name in ("hash_encode_fwd", "hash_encode_bwd", "march", "composite_fwd", "composite_bwd"):
        assert hasattr(ext, name)


@GPU
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_hash_encode_parity(dtype):
    res, offsets, table = _grid(levels=8, log2=12, finest=128, dtype=dtype)
    x = torch.rand(5000, 3, dtype=dtype, generator=torch.Generator().manual_seed(7))
    tc, tg = table.clone().requires_grad_(True), table.cuda().requires_grad_(True)
    oc, og = F.hash_encode(x, tc, res, offsets), F.hash_encode(x.cuda(), tg, res, offsets)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(og.cpu(), oc, **tol)
    w = torch.randn_like(oc)
    (oc * w).sum().backward(), (og * w.cuda()).sum().backward()
    torch.testing.assert_close(tg.grad.cpu(), tc.grad, rtol=1e-4, atol=1e-5)


@GPU
def test_cuda_march_and_composite_parity():
    g = torch.Generator().manual_seed(8)
    grid = (torch.rand(16, 16, 16, generator=g) > 0.5).to(torch.uint8)
    o = torch.zeros(500, 3, dtype=torch.float64) - torch.tensor([0, 0, 3.0]).double()
    d = torch.nn.functional.normalize(torch.randn(500, 3, generator=g).double() * 0.3 + torch.tensor([0, 0, 1.0]).double(), dim=1)
    t0, t1, jit = torch.full((500,), 1.0).double(), torch.full((500,), 5.0).double(), torch.rand(500, generator=g).double()
    params = torch.tensor([-1.0, -1, -1, 1, 1, 1]).double()
    args = (t0, t1, jit, grid, params, F.MODE_BOX, 0.02, 0.2, 0.0, 200)
    cpu = F.march(o, d, *args)
    gpu = F.march(o.cuda(), d.cuda(), *[a.cuda() if torch.is_tensor(a) else a for a in args])
    for a, b in zip(cpu, gpu):
        assert torch.allclose(a, b.cpu())
    sigma, rgb, t, dt, offsets = _samples(rays=300, seed=9)
    sc, cc = sigma.clone().requires_grad_(True), rgb.clone().requires_grad_(True)
    sg, cg = sigma.cuda().requires_grad_(True), rgb.cuda().requires_grad_(True)
    oc = F.composite(sc, cc, t, dt, offsets)
    og = F.composite(sg, cg, t.cuda(), dt.cuda(), offsets.cuda())
    for a, b in zip(oc, og):
        torch.testing.assert_close(b.cpu(), a)
    sum(o.sum() for o in oc).backward(), sum(o.sum() for o in og).backward()
    torch.testing.assert_close(sg.grad.cpu(), sc.grad), torch.testing.assert_close(cg.grad.cpu(), cc.grad)
