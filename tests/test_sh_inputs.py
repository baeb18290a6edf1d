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
