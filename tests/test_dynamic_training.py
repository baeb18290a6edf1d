"""Dynamic scenes end to end: D-NeRF time validation, the model choice, 4D densification and resume, per-time
evaluation, and a 4D scene beating a static one on a procedural moving scene."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from scenes import Gaussian4DScene, GaussianScene, load_scene
from trainers.config import TrainConfig
from trainers.data import load_dataset
from trainers.data.dynamic_scene import DynamicSceneConfig, generate_dynamic_scene
from trainers.evaluation import evaluate
from trainers.strategies import DefaultStrategy, FixedStrategy
from trainers.strategies import ops
from trainers.trainer import Trainer

STEPS = 800
MIN_GAIN_DB = 1.0


@pytest.fixture(scope="module")
def dynamic_scene(tmp_path_factory) -> Path:
    config = DynamicSceneConfig(output=tmp_path_factory.mktemp("dyn") / "scene", num_views=40, width=64, height=48,
                                num_points=1500, test_every=5, num_val_times=3, motion=1.5)
    return generate_dynamic_scene(config)


def _write_dnerf(folder: Path, times) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    img = np.zeros((8, 8, 4), np.uint8)
    frames = []
    for i, t in enumerate(times):
        iio.imwrite(folder / f"r_{i}.png", img)
        frame = {"file_path": f"./r_{i}", "transform_matrix": np.eye(4).tolist()}
        if t is not None:
            frame["time"] = t
        frames.append(frame)
    (folder / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": frames}))
    return folder


@pytest.mark.parametrize(
    "times, message",
    [
        ([0.0, 1.2], r"transforms_train\.json: frames\[1\].*'time' must be in \[0, 1\]"),
        ([0.5, 0.5, 0.5], r"transforms_train\.json: field 'time' is 0\.5 on every frame"),
        ([0.0, None], r"transforms_train\.json: frames\[1\] has no field 'time'"),
    ],
)
def test_dnerf_bad_times_name_file_and_field(tmp_path, times, message):
    folder = _write_dnerf(tmp_path / "d", times)
    with pytest.raises(ValueError, match=message):
        load_dataset(folder)


def test_dynamic_dataset_times_reach_cameras_and_seed_points(dynamic_scene):
    data = load_dataset(dynamic_scene, val=True)
    assert data.time_range == (0.0, 1.0)
    assert len({v.camera.time for v in data.train_views}) == len(data.train_views)
    assert data.point_times is not None and set(np.unique(data.point_times)) == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert any("time" in note for note in data.notes)
    val = data.extra_splits["val"]
    assert len(val) == 3 and len({tuple(v.camera.world_to_camera.flatten().tolist()) for v in val}) == 1
    # ground truth really moves: the fixed val camera sees different images at t = 0 and t = 1
    assert (val[0].image - val[-1].image).abs().max() > 0.5


def test_auto_model_choice_and_forced_static(dynamic_scene, tmp_path):
    data = load_dataset(dynamic_scene)
    auto = Trainer(TrainConfig(data=dynamic_scene, output_dir=tmp_path, progress=False, video=False), data)
    assert isinstance(auto.scene, Gaussian4DScene) and auto.model == "gaussian4d" and "times" in auto.model_reason
    assert set(auto.optimizers) == set(auto.scene.params.keys())
    forced = Trainer(TrainConfig(data=dynamic_scene, output_dir=tmp_path, model="gaussian", progress=False, video=False), data)
    assert type(forced.scene) is GaussianScene


def test_gaussian4d_on_untimed_data_is_a_clear_error(tmp_path):
    folder = _write_dnerf(tmp_path / "static", [None, None])
    data = load_dataset(folder)
    assert data.time_range is None
    with pytest.raises(ValueError, match="needs training views with times"):
        Trainer(TrainConfig(data=folder, output_dir=tmp_path, model="gaussian4d", progress=False, video=False), data)


def test_split_samples_children_in_space_and_time():
    from test_gaussian4d import random_scene4

    scene = random_scene4(n=10, seed=3)
    scene.split_in_time = "always"
    with torch.no_grad():
        scene.params["log_scale_t"].fill_(math.log(0.3))
    optimizers = {name: torch.optim.Adam([p], lr=1e-3) for name, p in scene.params.items()}
    strategy = DefaultStrategy()
    strategy.initialise(scene, 1.0)
    before_times = scene.params["times"].detach().clone()
    before_log_t = scene.params["log_scale_t"].detach().clone()
    mask = torch.zeros(10, dtype=torch.bool)
    mask[:4] = True
    strategy.split(scene, optimizers, mask)
    assert len(scene) == 14
    children_t = scene.params["times"].detach()[6:, 0]
    parents_t = before_times[:4, 0].repeat(2)
    assert (children_t - parents_t).abs().min() > 1e-4  # moved in time, by about the temporal extent
    assert (children_t - parents_t).abs().max() < 5 * 0.3 * 1.5 + 1e-3
    assert torch.allclose(scene.params["log_scale_t"].detach()[6:, 0], before_log_t[:4, 0].repeat(2) - math.log(1.6))
    assert all(opt.param_groups[0]["params"][0] is scene.params[name] for name, opt in optimizers.items())
    ops.keep(scene, optimizers, torch.arange(14) % 2 == 0)  # prune works by name on every 4D parameter
    assert all(p.shape[0] == 7 for p in scene.params.values())


def test_split_in_space_only_keeps_each_primitive_duration():
    """split_in_time 'never': children sit on the parent's 3 spatial axes (its 4D frame's axis 3 untouched) and keep its
    temporal scale, while the spatial scales shrink as usual."""
    from scenes.rotation4d import rotation4
    from test_gaussian4d import random_scene4

    scene = random_scene4(n=10, seed=4)
    scene.split_in_time = "never"
    optimizers = {name: torch.optim.Adam([p], lr=1e-3) for name, p in scene.params.items()}
    strategy = DefaultStrategy()
    strategy.initialise(scene, 1.0)
    before = {k: v.detach().clone() for k, v in scene.params.items()}
    mask = torch.zeros(10, dtype=torch.bool)
    mask[:4] = True
    strategy.split(scene, optimizers, mask)
    assert len(scene) == 14
    after = {k: v.detach() for k, v in scene.params.items()}
    parents = torch.arange(4).repeat(2)
    assert torch.equal(after["log_scale_t"][6:], before["log_scale_t"][parents])
    assert torch.allclose(after["log_scales"][6:], before["log_scales"][parents] - math.log(1.6))
    offsets = torch.cat([after["means"][6:] - before["means"][parents], after["times"][6:] - before["times"][parents]], 1)
    local = (rotation4(before["quats"][parents], before["quats_r"][parents]).transpose(-1, -2) @ offsets[..., None])[..., 0]
    assert local[:, :3].abs().max() > 1e-3  # moved in space
    assert local[:, 3].abs().max() < 1e-5  # not along the primitive's temporal axis


def test_auto_split_cuts_moving_primitives_in_time_and_still_ones_in_space():
    from test_gaussian4d import xt_rotor

    still = xt_rotor(0.0)  # no space-time rotation: v = 0
    moving = xt_rotor(1.2)  # a strong x-t rotation: long in time along a slanted axis, fast along x
    scene = Gaussian4DScene({
        "means": torch.zeros(2, 3), "times": torch.full((2, 1), 0.5),
        "quats": torch.stack([still[0], moving[0]]), "quats_r": torch.stack([still[1], moving[1]]),
        "log_scales": torch.log(torch.full((2, 3), 0.05)), "log_scale_t": torch.log(torch.full((2, 1), 0.5)),
        "opacity_logits": torch.zeros(2), "sh_dc": torch.zeros(2, 1, 3), "sh_rest": torch.zeros(2, 0, 3),
    }, sh_degree=0)
    rows = {k: v.detach() for k, v in scene.params.items()}
    children = scene.split_rows(rows, torch.Generator().manual_seed(0))
    log_t = children[0]["log_scale_t"][:, 0]
    assert log_t[0] == rows["log_scale_t"][0, 0]  # still: split in space, duration kept
    assert torch.isclose(log_t[1], rows["log_scale_t"][1, 0] - math.log(1.6))  # moving: split in time
    scene.split_in_time = "sometimes"
    with pytest.raises(ValueError, match="split_in_time"):
        scene.split_rows(rows, torch.Generator().manual_seed(0))


def test_4d_training_densifies_checkpoints_and_resumes(dynamic_scene, tmp_path):
    data = load_dataset(dynamic_scene)
    strategy = DefaultStrategy(refine_start=10, refine_every=10, refine_stop=40, reset_every=1000, grow_grad2d=1e-5)
    config = TrainConfig(data=dynamic_scene, output_dir=tmp_path, run_name="r", max_steps=30, strategy=strategy,
                         progress=False, video=False, sh_degree=0, checkpoint_every=20, num_test_renders=1,
                         split_in_time="always")
    trainer = Trainer(config, data)
    assert trainer.scene.split_in_time == "always" and trainer.scene.time_filter > 0  # config reaches the scene
    start = len(trainer.scene)
    for _ in range(30):
        trainer.train_step()
    assert len(trainer.scene) != start  # densification ran on the 4D parameters
    path = trainer.save_checkpoint()
    resumed = Trainer(TrainConfig(**{**config.__dict__, "resume": path, "max_steps": 32}), data)
    assert isinstance(resumed.scene, Gaussian4DScene) and len(resumed.scene) == len(trainer.scene)
    assert resumed.step == 30
    assert resumed.scene.split_in_time == "always" and resumed.scene.time_filter == trainer.scene.time_filter
    metrics = resumed.train()
    assert metrics["per_time"] and all("time" in r for r in metrics["per_image"])
    assert isinstance(load_scene(resumed.run_dir / "scene.ply"), Gaussian4DScene)


def test_mcmc_strategy_runs_on_a_4d_scene(dynamic_scene, tmp_path):
    from trainers.strategies import MCMCStrategy

    data = load_dataset(dynamic_scene)
    strategy = MCMCStrategy(refine_start=5, refine_every=5, cap_max=2000, growth=1.2)
    config = TrainConfig(data=dynamic_scene, output_dir=tmp_path, max_steps=12, strategy=strategy, progress=False,
                         video=False, sh_degree=0, max_init_points=1000)
    trainer = Trainer(config, data)
    for _ in range(12):
        trainer.train_step()
    assert isinstance(trainer.scene, Gaussian4DScene) and 1000 < len(trainer.scene) <= 2000
    assert all(p.shape[0] == len(trainer.scene) for p in trainer.scene.params.values())


@pytest.mark.slow
def test_4d_beats_static_at_mid_time(dynamic_scene, tmp_path):
    """Same data, steps, seed points and strategy: the 4D scene must win on the mid-time test views by a margin
    (a static scene can only average the moving objects over time)."""
    data = load_dataset(dynamic_scene)
    mid = [v for v in data.test_views if 0.3 <= v.camera.time <= 0.7]
    assert len(mid) >= 3
    results = {}
    for model in ("gaussian4d", "gaussian"):
        config = TrainConfig(data=dynamic_scene, output_dir=tmp_path, run_name=model, model=model, max_steps=STEPS,
                             strategy=FixedStrategy(), progress=False, video=False, sh_degree=0)
        trainer = Trainer(config, data)
        for _ in range(STEPS):
            trainer.train_step()
        results[model] = evaluate(trainer.scene, mid, trainer.background)["psnr"]
    print(f"mid-time test PSNR after {STEPS} steps: 4D {results['gaussian4d']:.2f} dB, static {results['gaussian']:.2f} dB")
    assert results["gaussian4d"] > results["gaussian"] + MIN_GAIN_DB, results


def test_sf_eval_reports_test_and_val_per_time(dynamic_scene, tmp_path):
    from scripts.eval_cli import EvalConfig, run_eval
    from trainers.initialise import initial_scene

    data = load_dataset(dynamic_scene)
    scene = initial_scene(data, 0, 0.5, 1000, 1000, 0, model="gaussian4d")
    scene.save_ply(tmp_path / "scene.ply")
    metrics = run_eval(EvalConfig(scene=tmp_path / "scene.ply", data=dynamic_scene, output=tmp_path / "eval.json"))
    assert metrics["split"] == "test" and len(metrics["per_time"]) == len(data.test_views)
    val = metrics["splits"]["val"]
    assert [round(r["time"], 3) for r in val["per_time"]] == [0.0, 0.5, 1.0]
    assert val["psnr"] == pytest.approx(sum(r["psnr"] for r in val["per_time"]) / 3)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert "val" in saved["splits"] and saved["per_time"]
    motion = val["motion"]  # the val split is one camera over time: the error is split into moving / still pixels
    assert 0 < motion["moving_fraction"] < 1 and 0 <= motion["moving_error_share"] <= 1
    # the two partial errors add up to the split's whole error (every view is rendered, the split's mean MSE)
    whole = sum(10 ** (-r["psnr"] / 10) for r in val["per_image"]) / len(val["per_image"])
    parts = 10 ** (-motion["psnr_if_moving_perfect"] / 10) + 10 ** (-motion["psnr_if_still_perfect"] / 10)
    assert parts == pytest.approx(whole, rel=1e-3)
    assert "motion" not in metrics  # the test split is monocular: no fixed camera


def test_motion_error_split_needs_one_camera_over_time():
    from trainers.motion_errors import fixed_camera

    views = _timed_views([0.0, 0.5])  # two cameras side by side
    assert not fixed_camera(views)
    same = _timed_views([0.0, 0.0])
    assert not fixed_camera(same[:1]) and not fixed_camera(same)  # one view, or one time
    from dataclasses import replace

    moving_time = [views[0], replace(views[0], camera=views[0].camera.with_time(0.7))]
    assert fixed_camera(moving_time)


def _timed_views(times) -> list:
    from render import Camera
    from trainers.data.dataset import View

    views = []
    for i, t in enumerate(times):
        pose = torch.eye(4)
        pose[0, 3] = float(i)  # cameras side by side
        views.append(View(Camera(pose, 10.0, 10.0, 4.0, 4.0, 8, 8, time=float(t)), torch.zeros(8, 8, 3), f"v{i}"))
    return views


def test_temporal_filter_follows_time_spacing_and_views_per_time():
    from trainers.data.dataset import SceneData
    from trainers.initialise import temporal_filter

    mono = SceneData(train_views=_timed_views(np.linspace(0, 1, 51)), test_views=[], source=Path("mono"))
    width, why = temporal_filter(mono)
    assert width == pytest.approx(2 * 0.02) and "1.0 views per time" in why  # monocular: 2 frame spacings
    multi = SceneData(train_views=_timed_views(np.repeat(np.linspace(0, 1, 11), 4)), test_views=[], source=Path("multi"))
    assert temporal_filter(multi)[0] == pytest.approx(0.5 * 0.1)  # 4 cameras per time: half a spacing
    assert temporal_filter(multi, 3.0)[0] == pytest.approx(0.3)
    assert temporal_filter(mono, 0.0)[0] == 0.0
    single = SceneData(train_views=_timed_views([0.5, 0.5]), test_views=[], source=Path("single"))
    assert temporal_filter(single)[0] == 0.0
    with pytest.raises(ValueError, match="time-filter-frames"):
        temporal_filter(mono, -1.0)


def test_initial_4d_scene_carries_the_temporal_filter(dynamic_scene):
    from trainers.initialise import initial_scene, temporal_filter

    data = load_dataset(dynamic_scene)
    scene = initial_scene(data, 0, 0.5, 100, 100, 0, model="gaussian4d", time_filter=0.037)
    assert scene.time_filter == 0.037
    scene = initial_scene(data, 0, 0.5, 100, 100, 0, model="gaussian4d")  # default: chosen by the capture
    assert scene.time_filter == pytest.approx(temporal_filter(data)[0]) and scene.time_filter > 0
