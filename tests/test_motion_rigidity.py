"""The velocity-rigidity prior of 4D training (trainers.motion_rigidity) and the scene's slice velocities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scenes import Gaussian4DScene
from scenes.gaussian4d_scene import _native_slice_available, conditional_of
from scenes.rotation4d import covariance4
from trainers.config import TrainConfig
from trainers.motion_rigidity import RigidityConfig, VelocityRigidity


def _xt_rotation(angles: torch.Tensor) -> tuple:
    """Quaternion pairs rotating the x-t plane by `angles` (N,) and leaving y, z alone: a primitive whose slice moves
    along x with a speed that grows with the angle."""
    half = 0.5 * angles
    q = torch.stack([torch.cos(half), torch.sin(half), torch.zeros_like(half), torch.zeros_like(half)], dim=-1)
    return q, q.clone()


def _scene(n: int = 400, seed: int = 0, angle=None) -> Gaussian4DScene:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 3)).astype(np.float32)
    times = rng.uniform(0, 1, n).astype(np.float32)
    scene = Gaussian4DScene.from_points(points, times, sh_degree=0)
    for p in scene.params.values():
        p.requires_grad_(False)
    scene.params["log_scales"].fill_(math.log(0.1))
    scene.params["log_scale_t"].fill_(math.log(0.3))
    if angle is not None:
        ql, qr = _xt_rotation(torch.as_tensor(angle, dtype=torch.float32).expand(n))
        scene.params["quats"].copy_(ql)
        scene.params["quats_r"].copy_(qr)
    scene.time_filter = 0.02
    for p in scene.params.values():
        p.requires_grad_(True)
    return scene


def _torch_velocity(scene: Gaussian4DScene) -> torch.Tensor:
    p = scene.params
    scales4 = torch.exp(torch.cat([p["log_scales"], p["log_scale_t"]], dim=-1))
    return conditional_of(covariance4(p["quats"], p["quats_r"], scales4), scene.time_filter)[1]


def test_xt_rotation_moves_along_x_only():
    scene = _scene(angle=0.5)
    v = scene.velocities().detach()
    assert (v[:, 0].abs() > 0.1).all()
    assert v[:, 1:].abs().max() < 1e-6


@pytest.mark.skipif(not _native_slice_available("cpu"), reason="the CPU extension could not be built here")
def test_native_velocities_match_torch_values_and_gradients():
    scene = _scene(n=300, seed=1)
    with torch.no_grad():  # general space-time rotations
        scene.params["quats"].add_(0.3 * torch.randn(300, 4, generator=torch.Generator().manual_seed(2)))
        scene.params["quats_r"].add_(0.3 * torch.randn(300, 4, generator=torch.Generator().manual_seed(3)))
    rows = torch.tensor([5, 17, 17, 42, 299])
    weights = torch.randn(5, 3, generator=torch.Generator().manual_seed(4))
    results = []
    for native in (True, False):
        scene.native_slice = native
        for p in scene.params.values():
            p.grad = None
        v = scene.velocities(rows)
        (v * weights).sum().backward()
        results.append((v.detach(), {k: p.grad.clone() for k, p in scene.params.items() if p.grad is not None}))
    (v_native, g_native), (v_torch, g_torch) = results
    assert torch.allclose(v_native, v_torch, atol=2e-5, rtol=1e-4)
    assert torch.allclose(v_native, _torch_velocity(scene).detach()[rows], atol=2e-5, rtol=1e-4)
    for name in ("quats", "quats_r", "log_scales", "log_scale_t"):
        assert torch.allclose(g_native[name], g_torch[name], atol=1e-4, rtol=1e-3), name
    untouched = torch.ones(300, dtype=torch.bool)
    untouched[rows] = False
    assert g_native["quats"][untouched].abs().max() == 0  # only the asked rows receive gradient


def test_loss_is_zero_for_a_common_motion_and_positive_for_mixed_motions():
    term = VelocityRigidity(RigidityConfig(neighbours=4, edges_per_step=10_000), scene_scale=2.0, time_span=1.0)
    common = _scene(angle=0.4)
    assert term.loss(common, 0).item() < 1e-6
    mixed = _scene(angle=torch.tensor([0.4, -0.4]).repeat(200))  # alternate neighbours move opposite ways
    term.mark_stale()
    assert term.loss(mixed, 0).item() > 1e-3


def test_small_scenes_take_all_velocities_with_the_same_loss_and_gradients():
    """With no more primitives than sampled edge ends, the term slices every primitive (no unique/sort of the
    endpoints); its value and gradients equal those from the distinct endpoints' velocities."""
    scene = _scene(angle=torch.linspace(-0.6, 0.6, 400))
    term = VelocityRigidity(RigidityConfig(neighbours=6, edges_per_step=10_000), scene_scale=1.0, time_span=1.0)
    g = term.graph(scene, 0)
    assert len(scene) <= 2 * g["src"].numel()  # the all-velocities path
    shape = [scene.params[k] for k in ("quats", "quats_r", "log_scales", "log_scale_t")]
    loss = term.loss(scene, 0)
    got = torch.autograd.grad(loss, shape)
    rows, inverse = torch.unique(torch.cat([g["src"], g["dst"]]), return_inverse=True)
    velocity = scene.velocities(rows)
    diff = velocity[inverse[: g["src"].numel()]] - velocity[inverse[g["src"].numel():]]
    norm = torch.sqrt((diff * diff).sum(dim=-1) + 1e-20)
    want_loss = term.config.weight * term.config.horizon * (g["weight"] * norm).mean()
    want = torch.autograd.grad(want_loss, shape)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=0)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert any(a.abs().sum() > 0 for a in got)


def test_gradient_steps_make_neighbours_move_alike():
    scene = _scene(angle=torch.linspace(-0.6, 0.6, 400)[torch.randperm(400, generator=torch.Generator().manual_seed(5))])
    term = VelocityRigidity(RigidityConfig(neighbours=6, edges_per_step=10_000), scene_scale=1.0, time_span=1.0)
    shape = [scene.params[k] for k in ("quats", "quats_r", "log_scales", "log_scale_t")]
    opt = torch.optim.Adam(shape, lr=1e-2)
    first = term.loss(scene, 0).item()
    for step in range(60):
        opt.zero_grad()
        term.loss(scene, step).backward()
        opt.step()
    assert term.loss(scene, 60).item() < 0.5 * first


def test_primitives_apart_in_time_are_not_tied():
    """Two primitives at the same place, alive at far-apart times, moving opposite ways: no penalty."""
    scene = _scene(n=2, angle=torch.tensor([0.4, -0.4]))
    with torch.no_grad():
        scene.params["means"].zero_()
        scene.params["times"].copy_(torch.tensor([[0.0], [1.0]]))
        scene.params["log_scale_t"].fill_(math.log(0.05))
    term = VelocityRigidity(RigidityConfig(neighbours=1), scene_scale=1.0, time_span=1.0)
    assert term.loss(scene, 0).item() < 1e-6
    with torch.no_grad():
        scene.params["times"].fill_(0.5)  # alive together: now tied
    term.mark_stale()
    assert term.loss(scene, 1).item() > 1e-3


def test_graph_rebuilds_after_densification_and_state_round_trips():
    scene = _scene(n=100, angle=torch.linspace(-0.5, 0.5, 100))
    term = VelocityRigidity(RigidityConfig(neighbours=3, edges_per_step=50, refresh_every=1000), 1.0, 1.0, seed=3)
    term.loss(scene, 0)
    assert int(term.graph(scene, 1)["src"].max()) < 100
    copy = VelocityRigidity(RigidityConfig(neighbours=3, edges_per_step=50, refresh_every=1000), 1.0, 1.0, seed=99)
    copy.load_state_dict(term.state_dict(), torch.device("cpu"))
    assert torch.equal(term.loss(scene, 2).detach(), copy.loss(scene, 2).detach())  # same graph, same draws
    bigger = _scene(n=150, angle=torch.linspace(-0.5, 0.5, 150))
    assert int(term.graph(bigger, 3)["src"].max()) == 149  # the row count changed: rebuilt


def test_off_and_before_start_give_zero():
    scene = _scene(angle=torch.tensor([0.4, -0.4]).repeat(200))
    assert VelocityRigidity(RigidityConfig(weight=0.0), 1.0, 1.0).loss(scene, 5).item() == 0.0
    assert VelocityRigidity(RigidityConfig(start_step=10), 1.0, 1.0).loss(scene, 5).item() == 0.0


@pytest.mark.parametrize("field, value", [("weight", -1.0), ("neighbours", 0), ("horizon", 0.0), ("edges_per_step", 0)])
def test_bad_settings_name_the_option(field, value):
    with pytest.raises(ValueError, match=f"--rigidity.{field.replace('_', '-')}"):
        TrainConfig(rigidity=RigidityConfig(**{field: value}))


def test_default_weight_follows_the_capture():
    from trainers.motion_rigidity import MONOCULAR_WEIGHT, rigidity_weight

    assert rigidity_weight(RigidityConfig(), 1.0) == (MONOCULAR_WEIGHT, "1.0 views per time: monocular")
    weight, why = rigidity_weight(RigidityConfig(), 4.0)
    assert weight == 0.0 and "multi-view" in why
    assert rigidity_weight(RigidityConfig(weight=2.5), 4.0) == (2.5, "asked for")


def test_4d_resume_with_rigidity_matches_an_uninterrupted_run(tmp_path):
    """The graph and the edge draws live in the checkpoint: a resumed run continues exactly."""
    from trainers.data import load_dataset
    from trainers.data.dynamic_scene import DynamicSceneConfig, generate_dynamic_scene
    from trainers.strategies import DefaultStrategy
    from trainers.trainer import Trainer

    folder = generate_dynamic_scene(DynamicSceneConfig(output=tmp_path / "scene", num_views=12, width=32, height=24,
                                                       num_points=300, test_every=4, num_val_times=2))
    data = load_dataset(folder)
    strategy = DefaultStrategy(refine_start=4, refine_every=4, refine_stop=12, reset_every=1000, grow_grad2d=1e-6)
    rigidity = RigidityConfig(weight=5.0, edges_per_step=500, refresh_every=5)

    def config(name, resume=None):
        return TrainConfig(data=folder, output_dir=tmp_path, run_name=name, max_steps=14, progress=False,
                           video=False, sh_degree=0, strategy=strategy, checkpoint_every=7, num_test_renders=0,
                           rigidity=rigidity, resume=resume)

    full = Trainer(config("full"), data)
    assert full.rigidity is not None
    full.train()
    assert full.rigidity._built_at > 0  # rebuilt during the run
    resumed = Trainer(config("resumed", resume=tmp_path / "full" / "checkpoints" / "step_000007.pt"), data)
    assert resumed.step == 7
    resumed.train()
    for name, value in full.scene.params.items():
        assert torch.equal(resumed.scene.params[name], value), name
