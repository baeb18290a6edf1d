"""Coarse-to-fine resolution, mid-training evaluations (by step and by wall time) and resumed training time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from render import Camera
from trainers.config import TrainConfig
from trainers.data import DemoSceneConfig, generate_demo_scene, load_dataset
from trainers.resolution import check_schedule, downsample_depth, downsample_view, resolution_factor
from trainers.trainer import Trainer


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory) -> Path:
    config = DemoSceneConfig(output=tmp_path_factory.mktemp("demo") / "scene", width=40, height=30, num_views=8, num_points=300)
    return generate_demo_scene(config)


def test_resolution_factor_follows_the_schedule():
    schedule = (500, 1500)
    assert [resolution_factor(s, schedule) for s in (0, 499, 500, 1499, 1500, 9000)] == [4, 4, 2, 2, 1, 1]
    assert resolution_factor(0, ()) == 1
    with pytest.raises(ValueError, match="strictly increasing"):
        check_schedule((100, 100))
    with pytest.raises(ValueError, match="strictly increasing"):
        check_schedule((0, 10))


def test_downsample_view_box_filters_crops_and_scales_intrinsics():
    camera = Camera(torch.eye(4), fx=50.0, fy=40.0, cx=21.0, cy=15.0, width=43, height=31)
    image = torch.rand(31, 43, 3)
    mask = torch.ones(31, 43, 1, dtype=torch.bool)
    mask[3, 5] = False  # inside low-res pixel (1, 2) for factor 2
    small_cam, small, small_mask = downsample_view(camera, image, mask, 2)
    assert (small_cam.width, small_cam.height) == (21, 15)
    assert (small_cam.fx, small_cam.fy, small_cam.cx, small_cam.cy) == (25.0, 20.0, 10.5, 7.5)
    assert small.shape == (15, 21, 3)
    torch.testing.assert_close(small[4, 7], image[8:10, 14:16].mean(dim=(0, 1)))
    assert not bool(small_mask[1, 2]) and int((~small_mask).sum()) == 1
    # a world point projects to the same place in both images (pixel centres at i + 0.5 scale by 1/2)
    point = torch.tensor([0.3, -0.2, 2.0])
    u_full = camera.fx * point[0] / point[2] + camera.cx
    u_small = small_cam.fx * point[0] / point[2] + small_cam.cx
    assert float(u_small) == pytest.approx(float(u_full) / 2)
    assert downsample_view(camera, image, mask, 1)[1] is image


def test_downsample_depth_ignores_holes():
    depth = torch.full((4, 4, 1), 2.0)
    depth[0, 0] = 0.0  # hole
    depth[2:, 2:] = 5.0
    small = downsample_depth(depth, 2)
    assert torch.equal(small[..., 0], torch.tensor([[2.0, 2.0], [2.0, 5.0]]))
    empty = downsample_depth(torch.zeros(2, 2, 1), 2)
    assert float(empty.sum()) == 0.0


def test_coarse_to_fine_trains_at_low_resolution_first(tiny_demo, tmp_path):
    data = load_dataset(tiny_demo)
    sizes = []
    cfg = TrainConfig(data=tiny_demo, output_dir=tmp_path, run_name="c2f", max_steps=6, progress=False, video=False,
                      coarse_to_fine=(2, 4))
    trainer = Trainer(cfg, data)
    original = trainer.strategy.post_backward

    def spy(scene, optimizers, meta, step, size):
        sizes.append(size)
        return original(scene, optimizers, meta, step, size)

    trainer.strategy.post_backward = spy
    for _ in range(6):
        trainer.train_step()
    full = (data.train_views[0].camera.width, data.train_views[0].camera.height)
    assert sizes[0] == (full[0] // 4, full[1] // 4) and sizes[2] == (full[0] // 2, full[1] // 2) and sizes[4] == full
    assert trainer.history == []  # train_step alone does not log; factors are in the returned stats instead


def test_evaluations_at_steps_and_seconds_and_resumed_training_time(tiny_demo, tmp_path):
    data = load_dataset(tiny_demo)
    cfg = TrainConfig(data=tiny_demo, output_dir=tmp_path, run_name="ev", max_steps=6, progress=False, video=False,
                      eval_steps=(2,), eval_at_seconds=(1e-9,), checkpoint_every=3)
    trainer = Trainer(cfg, data)
    metrics = trainer.train()
    saved = json.loads((tmp_path / "ev" / "evaluations.json").read_text())
    reasons = [e["reason"] for e in saved]
    assert reasons[0].endswith("s of training") and saved[0]["step"] == 1
    assert any(e["step"] == 2 and e["reason"] == "step 2" for e in saved)
    assert all(0 < e["psnr"] < 100 and 0 < e["ssim"] <= 1 for e in saved)
    assert metrics["evaluations"] == saved
    seconds = [h["seconds"] for h in trainer.history]
    assert seconds == sorted(seconds) and metrics["train_seconds"] >= seconds[-1]

    resumed = Trainer(TrainConfig(data=tiny_demo, output_dir=tmp_path, run_name="ev2", max_steps=6, progress=False,
                                  video=False, resume=tmp_path / "ev" / "checkpoints" / "step_000003.pt"), data)
    at_checkpoint = resumed.train_seconds
    assert at_checkpoint == trainer.history[2]["seconds"] > 0
    resumed.train()
    assert resumed.history[3]["seconds"] > at_checkpoint  # the clock continues instead of restarting at 0


def test_depth_weight_adds_the_depth_loss_on_views_with_depth(tiny_demo, tmp_path):
    from render import render
    from trainers.losses import depth_l1

    data = load_dataset(tiny_demo)
    for view in data.train_views:
        view.depth = torch.full((view.camera.height, view.camera.width, 1), 3.0)
    losses = {}
    for weight in (0.0, 2.0):
        cfg = TrainConfig(data=tiny_demo, output_dir=tmp_path, run_name=f"d{weight}", max_steps=1, progress=False,
                          video=False, depth_weight=weight)
        trainer = Trainer(cfg, data)
        first_view = data.train_views[int(__import__("numpy").random.default_rng(cfg.seed).integers(len(data.train_views)))]
        with torch.no_grad():
            out = render(trainer.scene, first_view.camera, background=trainer.background)
            expected = float(depth_l1(out.depth, out.alpha, first_view.depth))
        losses[weight] = trainer.train_step()["loss"]
    assert expected > 0.1
    assert losses[2.0] - losses[0.0] == pytest.approx(2.0 * expected, rel=1e-4)
