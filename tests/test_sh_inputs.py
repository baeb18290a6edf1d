"""gather_sh: the scene's SH parameters (DC, rest) as the rasterizer's (N, K, 3) input, with the same values and
gradients as concatenating and slicing them (which the trainer did before)."""

from __future__ import annotations

import pytest
import torch

from scenes.sh_inputs import gather_sh


@pytest.mark.parametrize("k", [1, 4, 9, 16])
def test_values_and_gradients_equal_cat_and_slice(k):
    g = torch.Generator().manual_seed(k)
    dc = torch.randn(7, 1, 3, generator=g, dtype=torch.float64, requires_grad=True)
    rest = torch.randn(7, 15, 3, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(7, k, 3, generator=g, dtype=torch.float64)
    out = gather_sh(dc, rest, k)
    ref = torch.cat([dc, rest], dim=1)[:, :k]
    assert out.shape == (7, k, 3) and out.is_contiguous()
    assert torch.equal(out, ref)
    got = torch.autograd.grad((out * weights).sum(), (dc, rest))
    want = torch.autograd.grad((ref * weights).sum(), (dc, rest))
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.is_contiguous()
        assert torch.equal(a, b)
    assert torch.count_nonzero(got[1][:, k - 1 :]) == 0  # coefficients above k: exact zeros, as through the slice
    assert torch.autograd.gradcheck(lambda a, b: gather_sh(a, b, k), (dc, rest))


def test_degree_zero_scene_and_bad_count():
    dc = torch.randn(3, 1, 3, requires_grad=True)
    rest = torch.zeros(3, 0, 3, requires_grad=True)
    out = gather_sh(dc, rest, 1)
    out.sum().backward()
    assert torch.equal(dc.grad, torch.ones_like(dc)) and rest.grad.shape == (3, 0, 3)
    with pytest.raises(ValueError, match="k must be in 1..1"):
        gather_sh(dc, rest, 4)


@pytest.mark.parametrize("k", [1, 16])
def test_recycled_storage_gives_the_same_values_and_is_reused(k):
    """With the CPU extension loaded, gather_sh's tensors come from the native buffer pool (blocks of 1 MiB and up):
    the values and gradients are those of cat and slice, even though the pool hands back uninitialised memory (the
    zeros above k must be written, not inherited), and a freed block is what the next request of its size gets."""
    from cuda_rasterizer import cpu_backend
    from cuda_rasterizer.recycled import recycled_empty

    cpu_backend.ensure_built()
    n = 40_000  # the rest's gradient: 40k x 15 x 3 floats = 7.2 MB, pooled
    dirty = recycled_empty((n, 15, 3), torch.empty(0))
    dirty.fill_(float("nan"))  # the block the gradient below will most likely get back
    dirty_ptr = dirty.data_ptr()
    del dirty
    g = torch.Generator().manual_seed(3)
    dc = torch.randn(n, 1, 3, generator=g, requires_grad=True)
    rest = torch.randn(n, 15, 3, generator=g, requires_grad=True)
    weights = torch.randn(n, k, 3, generator=g)
    out = gather_sh(dc, rest, k)
    ref = torch.cat([dc, rest], dim=1)[:, :k]
    assert torch.equal(out, ref)
    got = torch.autograd.grad((out * weights).sum(), (dc, rest))
    want = torch.autograd.grad((ref * weights).sum(), (dc, rest))
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    ptr = got[1].data_ptr()
    del got, out, a, b
    again = recycled_empty((n, 15, 3), torch.empty(0))
    assert again.data_ptr() in (ptr, dirty_ptr)  # recycled, not freshly allocated
    assert not again.untyped_storage().resizable()  # the pool's block (torch's own storage would be resizable)
