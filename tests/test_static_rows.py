"""Static rows of a 4D scene (Gaussian4DScene.make_static / hold_static): plain 3D Gaussians inside the 4D model,
held static through training, inherited by densification, left out of the rigidity graph."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scenes import Gaussian4DScene
from scenes.gaussian4d_scene import conditional_of
from scenes.rotation4d import covariance4
from trainers.config import TrainConfig
from trainers.motion_rigidity import RigidityConfig, VelocityRigidity


def _scene(n: int = 300, seed: int = 0, time_range=(0.0, 2.0)) -> Gaussian4DScene:
    """Random 4D Gaussians with random 4D rotations (so every row moves before any is made static)."""
    rng = np.random.default_rng(seed)
    scene = Gaussian4DScene.from_points(rng.normal(size=(n, 3)).astype(np.float32),
                                        rng.uniform(*time_range, n).astype(np.float32), sh_degree=0,
                                        time_range=time_range)
    with torch.no_grad():
        scene.params["quats"].copy_(torch.as_tensor(rng.normal(size=(n, 4)), dtype=torch.float32))
        scene.params["quats_r"].copy_(torch.as_tensor(rng.normal(size=(n, 4)), dtype=torch.float32))
        scene.params["log_scales"].copy_(torch.as_tensor(rng.uniform(-3, -1, (n, 3)), dtype=torch.float32))
        scene.params["log_scale_t"].fill_(math.log(0.3))
    scene.native_slice = False  # torch path: float64-free but exact enough for these checks
    return scene


def _quaternion_covariance(quats: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """The 3D covariance R S^2 R^T of wxyz quaternions and log-scales, written out independently of rotation4d."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rot = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(-1, 3, 3)
    return rot @ torch.diag_embed(torch.exp(2 * log_scales)) @ rot.transpose(1, 2)


def test_static_rows_are_3d_gaussians_at_every_time():
    scene = _scene()
    pick = torch.arange(len(scene)) % 3 == 0
    scene.make_static(pick)
    assert torch.equal(scene.static_rows(), pick)
    expected_cov = _quaternion_covariance(scene.params["quats"].detach()[pick], scene.params["log_scales"].detach()[pick])
    opacity = scene.opacities.detach()[pick]
    for t in (0.0, 0.7, 2.0):
        with torch.no_grad():
            sliced = scene.slice(t)
        torch.testing.assert_close(sliced["means"][pick], scene.params["means"].detach()[pick], atol=1e-5, rtol=0)
        torch.testing.assert_close(sliced["covars"][pick], expected_cov, atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(sliced["opacities"][pick], opacity, atol=1e-4 * float(opacity.max()), rtol=0)
    with torch.no_grad():
        moving = scene.velocities().norm(dim=-1)
    assert float(moving[pick].max()) < 1e-5
    assert float(moving[~pick].min()) > 1e-4  # the others still move


def test_native_slice_agrees_on_static_rows():
    from scenes.gaussian4d_scene import _native_slice_available

    if not _native_slice_available("cpu"):
        pytest.skip("the CPU extension is not built")
    scene = _scene()
    scene.make_static(torch.arange(len(scene)) % 2 == 0)
    with torch.no_grad():
        reference = scene.slice(1.3)
        scene.native_slice = True
        native = scene.slice(1.3)
    for key in ("means", "covars", "opacities"):
        torch.testing.assert_close(native[key], reference[key], atol=1e-5, rtol=1e-4)


def test_hold_static_undoes_an_update_on_static_rows_only():
    scene = _scene()
    pick = torch.arange(len(scene)) < 100
    scene.make_static(pick)
    before = {k: v.detach().clone() for k, v in scene.params.items()}
    optimiser = torch.optim.Adam(scene.params.values(), lr=1e-2)
    with torch.no_grad():
        sliced_before = scene.slice(0.5)
    loss = sum((v * torch.randn_like(v)).sum() for v in scene.slice(0.5).values())
    loss.backward()
    optimiser.step()
    assert not torch.equal(scene.params["quats_r"].detach()[pick], before["quats_r"][pick])  # the step moved them
    scene.hold_static()
    assert torch.equal(scene.static_rows(), pick)
    quats = scene.params["quats"].detach()
    torch.testing.assert_close(scene.params["quats_r"].detach()[pick],
                               quats[pick] * torch.tensor([1.0, -1.0, -1.0, -1.0]), atol=0, rtol=0)
    assert torch.all(scene.params["log_scale_t"].detach()[pick] == scene.static_log_scale_t)
    # time-varying rows keep what the optimiser gave them
    assert not torch.equal(scene.params["quats_r"].detach()[~pick], before["quats_r"][~pick])
    with torch.no_grad():
        sliced = scene.slice(0.5)
    assert float((sliced["means"][pick] - sliced_before["means"][pick]).abs().max()) < 0.05


@pytest.mark.parametrize("mode", ["auto", "always", "never"])
def test_children_of_static_rows_are_static_and_keep_their_time(mode):
    scene = _scene(n=50)
    pick = torch.arange(50) < 25
    scene.make_static(pick)
    scene.split_in_time = mode
    rows = {k: v.detach() for k, v in scene.params.items()}
    children = scene.split_rows(rows, torch.Generator().manual_seed(0))
    for child in children:
        static = scene.static_rows(child["log_scale_t"])
        assert torch.equal(static[pick], torch.ones(25, dtype=torch.bool))
        assert torch.equal(child["times"][pick], rows["times"][pick])
        assert torch.equal(child["quats_r"][pick], rows["quats_r"][pick])


def test_rigidity_graph_leaves_static_rows_out():
    scene = _scene(n=400)
    pick = torch.arange(400) % 2 == 1
    scene.make_static(pick)
    rigidity = VelocityRigidity(RigidityConfig(weight=5.0, neighbours=4), scene_scale=1.0, time_span=2.0)
    graph = rigidity.graph(scene, 0)
    ends = torch.cat([graph["src"], graph["dst"]])
    assert ends.numel() > 0
    assert not bool(pick[ends].any())
    assert graph["src"].numel() == 200 * 4  # every time-varying row keeps its k neighbours among the others


def test_initial_fraction_and_option_checks(tmp_path):
    from trainers.data import load_dataset
    from trainers.data.dynamic_scene import DynamicSceneConfig, generate_dynamic_scene
    from trainers.initialise import initial_scene

    folder = generate_dynamic_scene(DynamicSceneConfig(output=tmp_path / "scene", num_views=8, width=24, height=16,
                                                       num_points=400, test_every=4, num_val_times=2))
    data = load_dataset(folder)
    counts = {}
    for fraction in (0.0, 0.5, 1.0):
        scene = initial_scene(data, 0, 0.1, 1000, 1000, 0, model="gaussian4d", static_fraction=fraction)
        counts[fraction] = int(scene.static_rows().sum())
    assert counts[0.0] == 0 and counts[1.0] == 400
    assert 150 < counts[0.5] < 250
    with pytest.raises(ValueError, match="--static-fraction"):
        TrainConfig(static_fraction=1.5)


def test_training_keeps_static_rows_static(tmp_path):
    from trainers.data import load_dataset
    from trainers.data.dynamic_scene import DynamicSceneConfig, generate_dynamic_scene
    from trainers.strategies import DefaultStrategy
    from trainers.trainer import Trainer

    folder = generate_dynamic_scene(DynamicSceneConfig(output=tmp_path / "scene", num_views=12, width=32, height=24,
                                                       num_points=300, test_every=4, num_val_times=2))
    data = load_dataset(folder)
    strategy = DefaultStrategy(refine_start=4, refine_every=4, refine_stop=16, reset_every=1000, grow_grad2d=1e-6)
    config = TrainConfig(data=folder, output_dir=tmp_path, run_name="run", max_steps=20, progress=False, video=False,
                         sh_degree=0, strategy=strategy, num_test_renders=0, static_fraction=0.5)
    trainer = Trainer(config, data)
    initial = int(trainer.scene.static_rows().sum())
    trainer.train()
    scene = trainer.scene
    static = scene.static_rows()
    assert initial > 0 and int(static.sum()) > 0 and not bool(static.all())
    assert len(scene) > 300  # densification ran, and static parents had static children
    with torch.no_grad():
        p = scene.params
        scales4 = torch.exp(torch.cat([p["log_scales"], p["log_scale_t"]], dim=-1))
        _, velocity, _ = conditional_of(covariance4(p["quats"], p["quats_r"], scales4), scene.time_filter)
    assert float(velocity[static].norm(dim=-1).max()) < 1e-5


def test_editor_rotation_keeps_static_rows_static():
    from scenes.editing import SplatEditor

    scene = _scene(n=60)
    pick = torch.arange(60) < 30
    scene.make_static(pick)
    editor = SplatEditor(scene)
    editor.select_all()
    angle = 0.7
    matrix = np.eye(4)
    matrix[:3, :3] = [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]]
    matrix[:3, 3] = [0.1, -0.2, 0.3]
    editor.transform(matrix)
    assert torch.equal(scene.static_rows(), pick)
    with torch.no_grad():
        speed = scene.velocities().norm(dim=-1)
    assert float(speed[pick].max()) < 1e-5
