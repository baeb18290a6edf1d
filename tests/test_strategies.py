"""Densification strategies: counts and parameter values after clone/split/prune/reset, MCMC's cap, relocation."""

from __future__ import annotations

import math

import torch

from scenes import GaussianScene
from trainers.config import LearningRates
from trainers.optim import make_optimizers
from trainers.strategies import DefaultStrategy, MCMCStrategy, relocated_opacity_and_scale
from trainers.strategies import ops


def _scene(n: int = 10, seed: int = 0) -> GaussianScene:
    gen = torch.Generator().manual_seed(seed)
    params = {
        "means": torch.randn(n, 3, generator=gen),
        "quats": torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1),
        "log_scales": torch.full((n, 3), math.log(0.005)),
        "opacity_logits": torch.zeros(n),
        "sh_dc": torch.randn(n, 1, 3, generator=gen),
        "sh_rest": torch.zeros(n, 15, 3),
    }
    return GaussianScene(params)


def _step_adam(scene, optimizers):
    loss = sum((p**2).sum() for p in scene.params.values())
    loss.backward()
    for opt in optimizers.values():
        opt.step()
        opt.zero_grad()


def _fake_meta(scene, grads):
    means2d = torch.zeros(len(scene), 2, requires_grad=True)
    means2d.grad = grads
    return {"means2d": means2d, "radii": torch.ones(len(scene), 2, dtype=torch.int32)}


def test_clone_small_and_split_large_high_gradient_gaussians():
    scene = _scene(6)
    with torch.no_grad():
        scene.params["log_scales"][3:] = math.log(0.5)  # large (scene scale 1 -> threshold 0.01)
    optimizers = make_optimizers(scene, LearningRates(), 1.0)
    _step_adam(scene, optimizers)
    strategy = DefaultStrategy(refine_start=0, refine_every=1, reset_every=10_000)
    strategy.initialise(scene, 1.0)
    grads = torch.zeros(6, 2)
    grads[[0, 1, 3], 0] = 1.0  # high gradient: two small (clone), one large (split)
    strategy.post_backward(scene, optimizers, _fake_meta(scene, grads), step=1, image_size=(100, 100))
    before = {k: v.detach().clone() for k, v in scene.params.items()}
    report = strategy.post_step(scene, optimizers, step=2)
    assert report["cloned"] == 2 and report["split"] == 1
    assert len(scene) == 6 + 2 + 1  # clones added; the split one replaced by two
    means = scene.params["means"].detach()
    # Clones are exact copies of 0 and 1 appended after the originals; removing the split one (3) shifts them to 5, 6.
    assert torch.equal(means[5], before["means"][0]) and torch.equal(means[6], before["means"][1])
    # The split Gaussian (3) is gone; its two children have scales / 1.6 and lie near it.
    assert not (means == before["means"][3]).all(dim=-1).any()
    children = scene.params["log_scales"].detach()[-2:]
    assert torch.allclose(children, before["log_scales"][3] - math.log(1.6))
    assert (scene.params["means"].detach()[-2:] - before["means"][3]).norm(dim=-1).max() < 0.5 * 4
    # Adam moments: kept rows keep theirs, new rows start at zero, and shapes follow the parameters.
    state = optimizers["means"].state[scene.params["means"]]
    assert state["exp_avg"].shape == scene.params["means"].shape
    assert torch.equal(state["exp_avg"][-1], torch.zeros(3)) and state["exp_avg"][0].abs().sum() > 0


def test_prune_removes_transparent_gaussians_and_reset_clamps_opacity():
    scene = _scene(8)
    with torch.no_grad():
        scene.params["opacity_logits"][[2, 5]] = -10.0  # opacity ~4.5e-5 < 0.005
    optimizers = make_optimizers(scene, LearningRates(), 1.0)
    strategy = DefaultStrategy(refine_start=0, refine_every=1, reset_every=4)
    strategy.initialise(scene, 1.0)
    kept_means = scene.params["means"].detach()[[0, 1, 3, 4, 6, 7]].clone()
    report = strategy.post_step(scene, optimizers, step=2)
    assert report["pruned"] == 2 and len(scene) == 6
    assert torch.equal(scene.params["means"].detach(), kept_means)
    strategy.post_step(scene, optimizers, step=4)  # an opacity reset step
    assert torch.all(scene.opacities <= 2 * 0.005 + 1e-6)


def test_max_gaussians_caps_growth():
    scene = _scene(10)
    optimizers = make_optimizers(scene, LearningRates(), 1.0)
    strategy = DefaultStrategy(refine_start=0, refine_every=1, max_gaussians=13)
    strategy.initialise(scene, 1.0)
    strategy.post_backward(scene, optimizers, _fake_meta(scene, torch.ones(10, 2)), step=1, image_size=(64, 64))
    strategy.post_step(scene, optimizers, step=2)
    assert len(scene) == 13


def test_relocation_of_one_copy_is_identity_and_many_copies_preserve_coverage():
    o = torch.tensor([0.3, 0.9], dtype=torch.float64)
    s = torch.ones(2, 3, dtype=torch.float64)
    new_o, new_s = relocated_opacity_and_scale(o, s, torch.tensor([1, 1]))
    assert torch.allclose(new_o, o) and torch.allclose(new_s, s)
    new_o, _ = relocated_opacity_and_scale(o, s, torch.tensor([3, 3]))
    # n copies stacked at the centre let through the same light as the original: (1 - new_o)^n = 1 - o.
    assert torch.allclose((1 - new_o) ** 3, 1 - o)


def test_mcmc_never_exceeds_cap_and_relocates_dead():
    scene = _scene(40)
    with torch.no_grad():
        scene.params["opacity_logits"][:10] = -10.0  # dead
    optimizers = make_optimizers(scene, LearningRates(), 1.0)
    strategy = MCMCStrategy(cap_max=50, refine_start=0, refine_every=1)
    strategy.initialise(scene, 1.0)
    for step in range(1, 12):
        strategy.post_step(scene, optimizers, step)
        assert len(scene) <= 50
        assert all(p.shape[0] == len(scene) for p in scene.params.values())
    assert len(scene) == 50
    assert (scene.opacities > 0.005).all()  # dead ones moved onto live ones


def test_ops_keep_and_append_keep_optimizer_in_step():
    scene = _scene(5)
    optimizers = make_optimizers(scene, LearningRates(), 1.0)
    _step_adam(scene, optimizers)
    ops.keep(scene, optimizers, torch.tensor([True, False, True, True, False]))
    ops.append(scene, optimizers, ops.gather(scene, torch.tensor([0])))
    _step_adam(scene, optimizers)  # must not fail: optimiser params are the scene's new tensors
    for name, opt in optimizers.items():
        assert opt.param_groups[0]["params"][0] is scene.params[name]
        assert opt.state[scene.params[name]]["exp_avg"].shape == scene.params[name].shape


def test_no_opacity_reset_too_close_to_the_end_of_the_run():
    """A run of exactly reset_every steps must not end on an opacity reset (the final scene would be transparent)."""
    from trainers.strategies import DefaultStrategy

    strategy = DefaultStrategy(reset_every=3000, refine_every=100, reset_recovery_steps=1000)
    strategy.total_steps = 3000
    assert not strategy._can_recover_from_reset(3000) and not strategy._can_recover_from_reset(2500)
    strategy.total_steps = 10_000
    assert strategy._can_recover_from_reset(3000) and strategy._can_recover_from_reset(9000)
    assert not strategy._can_recover_from_reset(9001)
